"""Replay: history from JetStream or ClickHouse back onto the bus or into Python, in one
deterministic order, at 1x, Nx or max speed. See ``api.replay`` and ``clock.ReplayClock``.

Names are imported on first use, so ``jetmarket`` (which registers the replay commands)
starts without loading the NATS client and tqdm.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Replay": "api",
    "parse_speed": "api",
    "replay": "api",
    "ReplayClock": "clock",
    "ReplayMsg": "model",
    "ReplayStats": "model",
    "Digest": "model",
    "parse_time": "model",
    "Selection": "selection",
    "select": "selection",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"replay.{_WHERE[name]}"), name)
