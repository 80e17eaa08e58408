"""``python -m executor``: order commands to venues, with timeouts, reconciliation, risk, PnL."""

from __future__ import annotations

from executor.worker import main
from streams.bus.runtime import run

if __name__ == "__main__":
    run("executor", main)
