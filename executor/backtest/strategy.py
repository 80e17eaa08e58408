"""What a strategy sees: market messages in, order commands out, through a ``Context``.

A strategy is a small class::

    class Buyer(Strategy):
        size = 0.01                      # parameters are class attributes (--param size=0.02)

        def on_trade(self, t: Trade) -> None:
            if self.ctx.position() == 0:
                self.ctx.buy(self.size)

Callbacks are plain functions (no ``await``): orders placed in one are executed by the
runner right after it returns, against the market as of the message being handled, and
their outcomes come back through ``on_order``/``on_fill`` before the next message.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.schemas import BBO, Depth, Fill, Mark, OrderCommand, OrderUpdate, Side, Trade

TimeInForce = str  # "GTC" | "IOC" | "FOK" | "POST_ONLY", checked by the executor


class OrderApi(ABC):
    """The order calls a strategy makes, on top of ``_order`` and ``cancel``: one definition
    for the replay backtest's ``Context`` and the research simulator's ``SimContext``
    (executor/backtest/sim.py), so a strategy runs unchanged on both."""

    open: dict[str, Any]  # live orders by client order id

    @abstractmethod
    def _order(
        self, side: Side, quantity: float | str, price: float | str | None, **kw: Any
    ) -> str:
        """Queue one order; returns its client order id (deterministic per run)."""

    @abstractmethod
    def cancel(self, client_order_id: str) -> None:
        """Queue the cancel of a live order."""

    def buy(self, quantity: float | str, price: float | str | None = None, **kw: Any) -> str:
        """Market buy, or a GTC limit buy when ``price`` is given; returns the client id."""
        return self._order("buy", quantity, price, **kw)

    def sell(self, quantity: float | str, price: float | str | None = None, **kw: Any) -> str:
        return self._order("sell", quantity, price, **kw)

    def limit(
        self, side: Side, quantity: float | str, price: float | str, tif: TimeInForce = "GTC",
        **kw: Any,
    ) -> str:  # fmt: skip
        return self._order(side, quantity, price, time_in_force=tif, **kw)

    def cancel_all(self, symbol: str | None = None) -> None:
        for cid, o in list(self.open.items()):
            if symbol is None or o.symbol == symbol:
                self.cancel(cid)


class Context(OrderApi):
    """The strategy's handle on the backtest. Time is the replay clock's, never the wall's."""

    def __init__(
        self,
        account: str,
        venue: str,
        symbol: str,
        now_ns: Callable[[], int],
        position: Callable[[str, str], float],
        pnl: Callable[[str, str], float],
    ) -> None:
        self.account = account
        self.venue = venue  # the defaults for orders that name no venue/symbol
        self.symbol = symbol
        self._now_ns = now_ns
        self._position = position
        self._pnl = pnl
        self.pending: list[OrderCommand] = []  # sent by the runner after the callback
        self.open: dict[str, OrderUpdate] = {}
        self._n = 0

    def now(self) -> int:
        """Replay time in ns (receive time of the message being handled)."""
        return self._now_ns()

    def position(self, symbol: str | None = None, venue: str | None = None) -> float:
        """Signed size in base units (fills applied so far)."""
        return self._position(venue or self.venue, symbol or self.symbol)

    def pnl(self, symbol: str | None = None, venue: str | None = None) -> float:
        """Realized (net of fees) plus unrealized at the latest mark."""
        return self._pnl(venue or self.venue, symbol or self.symbol)

    def cancel(self, client_order_id: str) -> None:
        o = self.open.get(client_order_id)
        venue, symbol = (o.venue, o.symbol) if o else (self.venue, self.symbol)
        self.pending.append(self._cmd("cancel", client_order_id, venue, symbol))

    def _order(  # type: ignore[override]
        self,
        side: Side,
        quantity: float | str,
        price: float | str | None,
        *,
        symbol: str | None = None,
        venue: str | None = None,
        time_in_force: TimeInForce = "GTC",
        reduce_only: bool = False,
        timeout_s: float | None = None,
    ) -> str:
        self._n += 1
        cid = f"o{self._n}"  # deterministic: the nth order of the run
        self.pending.append(self._cmd(
            "new", cid, venue or self.venue, symbol or self.symbol, side=side,
            order_type="market" if price is None else "limit", quantity=_dec(quantity),
            price=None if price is None else _dec(price), time_in_force=time_in_force,
            reduce_only=reduce_only, timeout_s=timeout_s,
        ))  # fmt: skip
        return cid

    def _cmd(self, action: str, cid: str, venue: str, symbol: str, **kw: Any) -> OrderCommand:
        now = self._now_ns()
        return OrderCommand(account=self.account, venue=venue, symbol=symbol, ts_event=now,
                            ts_recv=now, action=action, client_order_id=cid, **kw)  # type: ignore[arg-type]  # fmt: skip


def _dec(value: float | str) -> str:
    # repr of a float is the shortest string that round-trips; the executor rounds it to
    # the instrument's lot/tick with Decimal once per command
    return value if isinstance(value, str) else repr(float(value))


class Strategy:
    """Subclass and override the callbacks you need. Class attributes are parameters."""

    def __init__(self, ctx: Context, **params: Any) -> None:
        self.ctx = ctx
        for name, value in params.items():
            if name.startswith("_") or not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} has no parameter {name!r}")
            setattr(self, name, value)

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Public class attributes that are plain values: the tunable parameters."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is Strategy:
                continue
            for k, v in vars(klass).items():
                if not k.startswith("_") and isinstance(v, int | float | str | bool):
                    out[k] = v
        return out

    def on_start(self) -> None:
        """Before the first message."""

    def on_market(self, msg: object) -> None:
        """Every market message; dispatches by type (override for anything else)."""
        if isinstance(msg, Trade):
            self.on_trade(msg)
        elif isinstance(msg, Depth):
            self.on_depth(msg)
        elif isinstance(msg, BBO):
            self.on_bbo(msg)
        elif isinstance(msg, Mark):
            self.on_mark(msg)

    def on_trade(self, trade: Trade) -> None: ...

    def on_depth(self, depth: Depth) -> None: ...

    def on_bbo(self, bbo: BBO) -> None: ...

    def on_mark(self, mark: Mark) -> None: ...

    def on_order(self, update: OrderUpdate) -> None:
        """Every state change of one of our orders (``rejected`` ones carry the reason)."""

    def on_fill(self, fill: Fill) -> None: ...

    def on_stop(self) -> None:
        """After the last message; orders placed here still execute."""


class BacktestError(RuntimeError):
    pass


def load_strategy(spec: str) -> type[Strategy]:
    """``path/to/file.py:Class`` or ``package.module:Class``."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise BacktestError(f"strategy {spec!r}: expected FILE.py:Class or module:Class")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise BacktestError(f"strategy file {where} not found")
        mod_name = f"_jm_strategy_{path.stem}"
        loader = importlib.util.spec_from_file_location(mod_name, path)
        if loader is None or loader.loader is None:
            raise BacktestError(f"cannot load {where}")
        module = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = module
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise BacktestError(f"{spec}: {name} is not a Strategy subclass in {where}")
    return cls
