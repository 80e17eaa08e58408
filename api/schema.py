"""The OpenAPI schema, as committed in docs/openapi.json (a test keeps the two equal).

``python -m api openapi > docs/openapi.json`` writes it again after a route changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.settings import Settings

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def openapi() -> dict[str, Any]:
    """The schema of the routes, built without NATS (routes only need it when called)."""
    from api.app import Services, create_app
    from api.keys import KeyStore

    svc = Services(None, Settings(), None, None)  # type: ignore[arg-type]
    return create_app(svc, KeyStore("/nonexistent")).openapi()


def text() -> str:
    return json.dumps(openapi(), indent=1, sort_keys=True) + "\n"
