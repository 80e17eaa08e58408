"""Connection identity and reconnect pacing: the id every raw frame carries in
``Jm-Conn`` (a change marks a possible gap) and the backoff between attempts."""

from __future__ import annotations

import os
import random
import time

from collectors.config import ReconnectSettings


class Backoff:
    """Exponential backoff with jitter; ``reset()`` after a connection proved healthy."""

    def __init__(self, cfg: ReconnectSettings, rnd: random.Random | None = None) -> None:
        self.cfg = cfg
        self.rnd = rnd or random.Random()
        self.current = cfg.min_s

    def next(self) -> float:
        delay = self.current * (1 + self.rnd.uniform(-self.cfg.jitter, self.cfg.jitter))
        self.current = min(self.current * 2, self.cfg.max_s)
        return max(0.0, delay)

    def reset(self) -> None:
        self.current = self.cfg.min_s


START_NS = time.time_ns()
_EPOCH = 0


def new_conn_id(venue: str) -> str:
    """Unique per process start and per connection: ``<venue>-<pid>-<start ns>-<epoch>``;
    the epoch counts connections in this process, so a change of id marks a possible gap."""
    global _EPOCH
    _EPOCH += 1
    return f"{venue}-{os.getpid()}-{START_NS}-{_EPOCH}"
