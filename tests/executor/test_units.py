"""Executor pieces without I/O: the order state machine (every pair of states), decimal
rounding, position accounting, and the paper venue's order types."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path

import pytest

from executor import state as sm
from executor.model import Order, VenueRejected
from executor.positions import Pos, fee_in_quote
from executor.precision import PrecisionError, Spec, parse_decimal
from executor.venues.ccxt_venue import load_keys
from executor.venues.paper import PaperVenue
from streams import settings as settings_mod
from streams.schemas import Depth, Trade
from streams.settings import AccountSettings

# The legal moves, written out by hand from ARCHITECTURE.md's lifecycle.
LEGAL = {
    ("pending_new", s) for s in ("new", "partially_filled", "filled", "canceled", "rejected",
                                 "expired", "unknown", "pending_cancel")
} | {
    ("unknown", s) for s in ("pending_new", "new", "partially_filled", "filled", "canceled",
                             "rejected", "expired")
} | {
    ("new", s) for s in ("partially_filled", "filled", "pending_cancel", "canceled", "expired")
} | {
    ("partially_filled", s) for s in ("partially_filled", "filled", "pending_cancel",
                                      "canceled", "expired")
} | {
    ("pending_cancel", s) for s in ("pending_cancel", "new", "partially_filled", "filled",
                                    "canceled", "expired")
}  # fmt: skip


@pytest.mark.parametrize("old,new", list(itertools.product(sm.STATES, sm.STATES)))
def test_every_transition_is_legal_or_raises(old: str, new: str) -> None:
    if (old, new) in LEGAL:
        assert sm.check(old, new, "c1") == new  # type: ignore[arg-type]
    else:
        with pytest.raises(sm.IllegalTransition, match=f"{old} -> {new}"):
            sm.check(old, new, "c1")  # type: ignore[arg-type]


def test_terminal_states_are_final_and_every_state_is_covered() -> None:
    assert set(sm.STATES) == set(sm.TRANSITIONS)
    for s in sm.TERMINAL:
        assert not sm.TRANSITIONS[s]
    o = Order("a", "binance", "BTC-USDT", "c1", "buy", "limit", 1.0)
    o.move("new", 1.0)
    o.move("filled", 2.0)
    with pytest.raises(sm.IllegalTransition):
        o.move("canceled", 3.0)
    assert o.state == "filled" and o.since == 2.0


def test_rounding_truncates_quantities_and_rounds_prices_exactly() -> None:
    spec = Spec(tick="0.01", lot="0.00001")
    assert spec.round_qty(Decimal("0.0123456789")) == "0.01234"
    assert spec.round_price(Decimal("65000.125")) == "65000.13"
    assert spec.round_price(Decimal("0.1")) == "0.1"
    assert Spec(tick="0.5", lot="1").round_price(Decimal("100.74")) == "100.5"
    with pytest.raises(PrecisionError, match="rounds to 0 at lot size 0.00001"):
        spec.round_qty(Decimal("0.000009"))
    for bad in ("", "x", "-1", "0", "nan", "inf"):
        with pytest.raises(PrecisionError):
            parse_decimal("quantity", bad)


def test_positions_average_realize_flip_and_fees() -> None:
    p = Pos()
    p.apply("buy", 100.0, 2.0, 0.2)
    p.apply("buy", 110.0, 2.0, 0.22)
    assert p.size == 4.0 and p.avg_price == 105.0
    p.apply("sell", 120.0, 5.0, 0.6)  # closes 4 at +15, opens 1 short at 120
    assert p.size == -1.0 and p.avg_price == 120.0
    assert p.gross == pytest.approx(60.0) and p.fees == pytest.approx(1.02)
    assert p.unrealized(110.0) == pytest.approx(10.0)
    msg = p.message("a", "binance", "BTC-USDT", 110.0, 1)
    assert msg.realized_pnl == pytest.approx(60.0 - 1.02)
    p.apply("buy", 100.0, 1.0, 0.0)
    assert p.size == 0.0 and p.avg_price is None and p.gross == pytest.approx(80.0)
    assert fee_in_quote("BTC-USDT", 0.001, "BTC", 50_000.0) == pytest.approx(50.0)
    assert fee_in_quote("BTC-USDT", 1.5, "USDT", 50_000.0) == 1.5


def _order(cid: str, side: str, kind: str, qty: float, price: float | None = None,
           stop: float | None = None, tif: str = "GTC") -> Order:  # fmt: skip
    return Order("a", "binance", "BTC-USDT", cid, side, kind, qty, price, stop, tif)  # type: ignore[arg-type]


def _venue() -> PaperVenue:
    v = PaperVenue(AccountSettings(maker_fee=0.0, taker_fee=0.001))
    ts = {"venue": "binance", "symbol": "BTC-USDT", "ts_event": 1, "ts_recv": 1}
    v.on_market(Depth(**ts, bids=[(99.0, 1.0), (98.0, 1.0)], asks=[(100.0, 1.0), (101.0, 1.0)],
                      seq=1, levels=2))  # fmt: skip
    return v


def _trade(price: float, size: float = 10.0) -> Trade:
    return Trade(venue="binance", symbol="BTC-USDT", ts_event=2, ts_recv=2, id="t",
                 price=price, size=size, side="buy")  # fmt: skip


async def test_paper_order_types() -> None:
    v = _venue()
    fok = await v.submit(_order("fok", "buy", "limit", 3.0, 101.0, tif="FOK"))
    assert fok.status == "expired" and fok.filled == 0
    ioc = await v.submit(_order("ioc", "buy", "limit", 3.0, 100.0, tif="IOC"))
    assert ioc.status == "canceled" and ioc.filled == 1.0 and ioc.fills[0].fee == 0.1
    with pytest.raises(VenueRejected, match="post-only"):
        await v.submit(_order("po", "sell", "limit", 1.0, 99.0, tif="POST_ONLY"))
    stop = await v.submit(_order("stop", "sell", "stop", 1.5, stop=95.0))
    tp = await v.submit(_order("tp", "sell", "take_profit", 1.0, stop=105.0))
    sl = await v.submit(_order("sl", "buy", "stop_limit", 1.0, 102.0, stop=101.5))
    assert (stop.status, tp.status, sl.status) == ("new", "new", "new")
    assert v.on_market(_trade(96.0)) == []
    hit = {r.client_order_id: r for r in v.on_market(_trade(94.0))}
    assert set(hit) == {"stop"} and hit["stop"].status == "filled"
    assert [(f.price, f.size) for f in hit["stop"].fills] == [(99.0, 1.0), (98.0, 0.5)]
    hit = {r.client_order_id: r for r in v.on_market(_trade(101.6))}
    # the stop-limit triggered and became a limit at 102: takes the 100 and 101 asks
    assert hit["sl"].status == "filled" and hit["sl"].avg_price == 100.0
    hit = {r.client_order_id: r for r in v.on_market(_trade(105.0))}
    assert hit["tp"].status == "filled"
    assert (await v.cancel(_order("tp", "sell", "take_profit", 1.0))) is None  # already done
    with pytest.raises(VenueRejected, match="no book"):
        await PaperVenue(AccountSettings()).submit(_order("m", "buy", "market", 1.0))


def test_keys_from_env_or_owner_only_secrets_file(tmp_path: Path) -> None:
    cfg = AccountSettings(venue="ccxt", exchange="binance", api_key_env="K", secret_env="S")
    assert load_keys(cfg, {"K": "k1", "S": "s1"}) == {"apiKey": "k1", "secret": "s1"}
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"apiKey": "fk", "secret": "fs", "other": "x"}))
    f.chmod(0o644)
    loose = AccountSettings(venue="ccxt", exchange="binance", secrets_file=str(f))
    with pytest.raises(PermissionError, match="chmod 600"):
        load_keys(loose, {})
    f.chmod(0o600)
    assert load_keys(loose, {}) == {"apiKey": "fk", "secret": "fs"}
    both = AccountSettings(venue="ccxt", exchange="binance", secrets_file=str(f), api_key_env="K")
    assert load_keys(both, {"K": "envk"}) == {"apiKey": "envk", "secret": "fs"}


def test_settings_default_to_one_paper_account_and_ccxt_needs_an_exchange() -> None:
    s = settings_mod.load(env={})
    assert list(s.executor.active_accounts()) == ["paper"]
    s = settings_mod.load(env={"JETMARKET_EXECUTOR__ACCOUNTS": '{"desk": {"venue": "paper"}}'})
    assert list(s.executor.active_accounts()) == ["desk"]
    with pytest.raises(settings_mod.SettingsError, match="exchange must name a ccxt exchange"):
        settings_mod.load(env={"JETMARKET_EXECUTOR__ACCOUNTS": '{"x": {"venue": "ccxt"}}'})
