"""docs/openapi.json is the schema the API serves: regenerate it with
``python -m api openapi > docs/openapi.json`` when a route changes."""

from __future__ import annotations

import json

from api.schema import COMMITTED, openapi


def test_committed_openapi_is_in_sync() -> None:
    assert COMMITTED.is_file(), "docs/openapi.json missing: python -m api openapi > it"
    committed = json.loads(COMMITTED.read_text())
    assert committed == openapi(), (
        "docs/openapi.json is stale: python -m api openapi > docs/openapi.json"
    )
    paths = committed["paths"]
    for p in ("/v1/sql", "/v1/history/{kind}", "/v1/book/{venue}/{symbol}", "/v1/orders",
              "/v1/feeds", "/v1/positions"):  # fmt: skip
        assert p in paths, p
    # every data route documents its refusals
    assert {"400", "401", "403", "429"} <= set(paths["/v1/orders"]["post"]["responses"])
