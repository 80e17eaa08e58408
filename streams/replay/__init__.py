"""Replay: history from JetStream or ClickHouse back onto the bus or into Python, in one
deterministic order, at 1x, Nx or max speed. See ``api.replay`` and ``clock.ReplayClock``."""

from streams.replay.api import Replay, parse_speed, replay
from streams.replay.clock import ReplayClock
from streams.replay.model import ReplayMsg, ReplayStats, parse_time
from streams.replay.select import Selection, select

__all__ = [
    "Replay",
    "ReplayClock",
    "ReplayMsg",
    "ReplayStats",
    "Selection",
    "parse_speed",
    "parse_time",
    "replay",
    "select",
]
