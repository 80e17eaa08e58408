"""Backtests: a strategy trading on the paper venue over replayed market data.

    python -m executor.backtest --strategy examples/sma_cross.py:SmaCross \\
        --venue binance --symbol BTC-USDT --start 2025-01-01T00:00:00Z --end 2h

Design, chosen for determinism (same data + same strategy = identical fills and PnL):

* The executor's own ``Engine`` and ``PaperVenue`` run **in this process**, driven message
  by message in replay order (``replay``: receive time, then stream sequence). Each
  market message updates marks and the paper book, fills resting orders, then reaches the
  strategy; the orders the strategy places are executed before the next message. Running
  the executor worker over ``replay.<name>.`` subjects instead would let the arrival of a
  command race the arrival of market messages (two subscriptions, one network), so fills
  would depend on scheduling: not reproducible.
* Time is the replay clock (``replay.ReplayClock``: receive time of the message
  being handled). The engine's clock, order timeouts, risk rate limits, fill and position
  timestamps all read it; nothing in the results comes from the wall clock. Client order
  ids are ``o1, o2, ...`` in order of placement.
* Results are published on EXEC under account ``bt-<run_id>`` (``exec.evt.bt-<run_id>.*``,
  ``exec.pos.bt-<run_id>``) and the ClickHouse sink stores them in ``orders``, ``fills``
  and ``positions`` like any account's. This keeps the sink the single writer of the
  embedded chdb path (ARCHITECTURE.md), works unchanged with a ClickHouse server, needs no
  new table, and makes runs separable by ``account``. Commands are not published on
  ``exec.cmd``: a live executor consumes that subject and would dead-letter them.
  The PnL curve is the run's ``positions`` rows (see ``results``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from executor.backtest.strategy import BacktestError, Context, Strategy, load_strategy

if TYPE_CHECKING:
    from executor.backtest.results import Summary
    from executor.backtest.runner import Backtest

__all__ = ["Backtest", "BacktestError", "Context", "Strategy", "Summary", "load_strategy"]
# loaded on first use: a strategy file's `from executor.backtest import Strategy` must not
# pull in the engine, NATS and ccxt (~0.4 s CPU per research sweep worker, measured)
_LAZY = {"Backtest": "executor.backtest.runner", "Summary": "executor.backtest.results"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
