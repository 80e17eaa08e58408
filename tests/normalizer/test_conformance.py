"""docs/conformance.md is what ``python -m tests.venues.conformance`` generates from the corpus
in ../shared/frames: regenerate it (``--write``) when a parser, a route, an expectation or
the corpus changes. Also: every corpus file is classified, and no frame of a supported API
comes out wrong."""

from __future__ import annotations

import pytest

from tests.venues import conformance


@pytest.fixture(scope="module")
def result() -> conformance.Result:
    if not conformance.SHARED.is_dir():
        pytest.skip(
            f"recorded frames {conformance.SHARED} absent (../shared/frames not beside the repo)"
        )
    return conformance.run()


def test_every_corpus_file_is_classified() -> None:
    if not conformance.SHARED.is_dir():
        pytest.skip(f"recorded frames {conformance.SHARED} absent")
    files = conformance.files()
    assert len(files) > 300
    for rel in files:
        src = conformance.classify(rel)  # LookupError names a file no rule covers
        assert src.items is not None or src.why, f"{rel} listed without a reason"


def test_no_frame_of_a_supported_api_comes_out_wrong(result: conformance.Result) -> None:
    wrong = {(r.rel, r.channel): dict(r.wrong_why) for r in result.rows if r.wrong}
    assert not wrong, wrong
    t = result.totals()
    assert t["right"] > 2000 and t["frames"] == t["right"] + t["rejected"]


def test_the_document_is_in_sync(result: conformance.Result) -> None:
    text = conformance.document(result, conformance.ccxt_differences())
    assert conformance.DOC.read_text() == text, (
        "docs/conformance.md is out of date: run python -m tests.venues.conformance --write"
    )
