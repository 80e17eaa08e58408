"""One real pipeline (tests/api/pipeline.py) for every API and console test in this folder:
starting it costs ~10 s, so they share it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.pipeline import ApiPipeline


@pytest.fixture(scope="package")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiPipeline]:
    p = ApiPipeline(tmp_path_factory.mktemp("api"), api={"rate_per_s": 200, "burst": 400})
    p.start()
    yield p
    codes = p.stop()
    assert codes == [0] * len(codes), f"a worker did not stop cleanly: {codes}"
