"""Every README code block runs: shell and Python against a running pipeline (a fresh
clone with `make up EMULATOR=1`, see conftest.py), TOML loads as settings. A block is
skipped only with a reason (``<!-- readme-test: skip: why -->`` above it)."""

from __future__ import annotations

import tomllib

import pytest

from collectors.config import venue_settings
from ops import config
from streams import settings as S
from tests.docs.conftest import Checkout
from tests.docs.readme import RUN_LANGS, blocks, run_block
from tests.workers import ROOT

README = (ROOT / "README.md").read_text()
# languages that are shown, not run: diagrams and sample output (no language), SQL with
# placeholders (docs/sql.md has the tested queries)
SHOWN = {"", "sql"}


def test_every_block_is_checked_or_skipped_with_a_reason() -> None:
    found = blocks(README)
    assert len(found) >= 8
    for b in found:
        assert b.lang in RUN_LANGS or b.lang in SHOWN or b.lang == "toml", (b.where, b.lang)
        if b.lang == "python":
            compile(b.code, b.where, "exec")
        if b.lang == "toml":  # a configuration example must load as one, venues included
            loaded = S.from_mapping(tomllib.loads(b.code))
            classes = dict(config.venue_sections())
            for venue in loaded.collector.sections:
                venue_settings(loaded, venue, classes[venue])  # type: ignore[type-var]
        if b.skip is not None:
            assert len(b.skip) > 10, f"{b.where}: say why it is skipped"


def test_skip_marker_is_read() -> None:
    text = "<!-- readme-test: skip: runs forever -->\n```sh\nmake up\n```\n\n```sh\nls\n```\n"
    a, b = blocks(text)
    assert (a.skip, a.code, b.skip) == ("runs forever", "make up\n", None)


RUNNABLE = [b for b in blocks(README) if b.lang in RUN_LANGS]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_readme_block_runs(block, checkout: Checkout) -> None:  # type: ignore[no-untyped-def]
    if block.skip:
        pytest.skip(block.skip)
    # the clone's README: the same text unless a test run races an edit
    res = run_block(block, checkout.path, checkout.env)
    out = f"{block.where}\n{block.code}\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}"
    assert res.returncode == 0, out
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
