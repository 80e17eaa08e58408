"""The README's coverage table is what the parsers' channel maps say."""

from __future__ import annotations

import pytest

from normalizer import coverage
from tests.workers import ROOT


def test_readme_table_matches_the_channel_maps() -> None:
    readme = (ROOT / "README.md").read_text()
    assert coverage.START in readme and coverage.END in readme, "README lacks the markers"
    assert coverage.replace_in(readme) == readme, (
        "README coverage table is out of date: run `python -m normalizer.coverage --write`"
    )


def test_every_venue_covers_its_core_channels() -> None:
    cov = coverage.coverage()
    for venue, row in cov.items():
        assert row["trade"], f"{venue} parses no trades"
        if venue.endswith("(WebSocket)"):
            # the ccxt WebSocket row: its instruments are the ccxt-market frames the collector
            # also publishes, counted in the REST row (ccxt-ws-market feeds ccxt's handlers)
            continue
        assert row["instrument"], f"{venue} parses no instruments"


def test_unknown_type_in_a_channel_map_fails() -> None:
    with pytest.raises(ValueError, match="oi"):
        coverage.types_of("ticker+oi")
    assert coverage.types_of("book|bbo") == {"book", "bbo"}
    assert coverage.types_of("") == set()
