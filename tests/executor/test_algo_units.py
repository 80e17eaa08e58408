"""The algorithms' arithmetic by hand: schedules, VWAP profile, peg prices, TCA figures and
the validation of algo commands."""

from __future__ import annotations

import pytest

from executor.algo import params, route, schedule
from executor.algo.tca import figures
from executor.precision import Spec
from streams.schemas import AlgoCommand
from streams.settings import AlgoSettings

S = schedule.NS
T0 = 1_700_000_000 * S


def test_twap_slices_begin_at_their_start_and_the_last_completes() -> None:
    # 10 over [0, 100 s) in 4 slices: slice k begins at 25*(k-1) s
    q = 10.0
    assert schedule.twap_target(q, T0 - 1, T0, T0 + 100 * S, 4) == 0
    assert schedule.twap_target(q, T0, T0, T0 + 100 * S, 4) == 2.5
    assert schedule.twap_target(q, T0 + 24 * S, T0, T0 + 100 * S, 4) == 2.5
    assert schedule.twap_target(q, T0 + 25 * S, T0, T0 + 100 * S, 4) == 5.0
    assert schedule.twap_target(q, T0 + 99 * S, T0, T0 + 100 * S, 4) == 10.0
    assert schedule.twap_target(q, T0 + 500 * S, T0, T0 + 100 * S, 4) == 10.0


def test_vwap_profile_weights_slices_by_the_hour_of_their_midpoint() -> None:
    # 4 slices of 30 min from 00:00 UTC: midpoints 00:15, 00:45 (hour 0), 01:15, 01:45 (hour 1)
    start = (T0 // (86400 * S)) * 86400 * S  # a midnight
    end = start + 2 * 3600 * S
    prof, why = schedule.vwap_profile({0: 10.0, 1: 30.0, 5: 99.0}, start, end, 4)
    assert prof == [0.125, 0.125, 0.375, 0.375] and "hourly volume" in why
    assert schedule.vwap_target(8.0, start, start, end, prof) == 1.0
    assert schedule.vwap_target(8.0, start + 3600 * S, start, end, prof) == 5.0
    flat, why = schedule.vwap_profile(None, start, end, 4)
    assert flat == [0.25] * 4 and "flat" in why
    flat, why = schedule.vwap_profile({7: 5.0}, start, end, 4)  # history, not in these hours
    assert flat == [0.25] * 4 and "flat" in why


def test_pov_is_a_share_of_traded_volume_capped_at_the_quantity() -> None:
    assert schedule.pov_target(5.0, 0.1, 12.0) == pytest.approx(1.2)
    assert schedule.pov_target(5.0, 0.1, 1000.0) == 5.0


def test_peg_joins_or_improves_the_touch_and_never_crosses() -> None:
    assert schedule.peg_price("buy", 100.0, 100.5, 0.1, 0, None) == 100.0
    assert schedule.peg_price("buy", 100.0, 100.5, 0.1, 2, None) == pytest.approx(100.2)
    assert schedule.peg_price("buy", 100.0, 100.5, 0.1, 50, None) == pytest.approx(100.4)
    assert schedule.peg_price("buy", 100.0, 100.5, 0.1, 2, 100.1) == 100.1  # the limit
    assert schedule.peg_price("sell", 100.0, 100.5, 0.1, 0, None) == 100.5
    assert schedule.peg_price("sell", 100.0, 100.5, 0.1, 50, None) == pytest.approx(100.1)
    assert schedule.peg_price("sell", 100.0, 100.5, 0.1, 0, 100.7) == 100.7


def test_floor_lot_tolerates_float_noise() -> None:
    assert schedule.floor_lot(0.30000000000000004, 0.1) == 0.3
    assert schedule.floor_lot(0.29999999999, 0.1) == 0.3
    assert schedule.floor_lot(0.2999, 0.1) == 0.2
    assert schedule.floor_lot(0.05, 0.1) == 0.0


def test_tca_figures_equal_a_hand_computed_example() -> None:
    # buy 10, filled 4 @ 101 and 4 @ 102 with fees 0.4 each; arrival mid 100; the market
    # traded 20 for 2030 in the interval (VWAP 101.5); mid 103 at the end.
    f = figures("buy", 10.0, [(101.0, 4.0, 0.4), (102.0, 4.0, 0.4)], 100.0, 20.0, 2030.0, 103.0)
    assert f.avg_price == 101.5
    assert f.slippage_bps == pytest.approx(150.0)  # (101.5 - 100) / 100 * 1e4
    assert f.interval_vwap == 101.5 and f.vwap_slippage_bps == pytest.approx(0.0)
    # (812 - 800) paid over arrival + 0.8 fees + (103 - 100) * 2 unfilled = 18.8
    assert f.shortfall == pytest.approx(18.8)
    assert f.shortfall_bps == pytest.approx(188.0)  # 18.8 / (10 * 100) * 1e4
    assert f.fill_ratio == 0.8 and f.fees == pytest.approx(0.8)
    # the same as a sell is a gain on price: negative costs
    s = figures("sell", 10.0, [(101.0, 4.0, 0.4), (102.0, 4.0, 0.4)], 100.0, 20.0, 2030.0, 103.0)
    assert s.slippage_bps == pytest.approx(-150.0)
    assert s.shortfall == pytest.approx(-12.0 + 0.8 - 6.0)
    none = figures("buy", 1.0, [], None, 0.0, 0.0, None)
    assert none.avg_price is None and none.shortfall is None and none.fill_ratio == 0.0


SPEC = Spec(tick="0.01", lot="0.001")
CFG = AlgoSettings()


def algo(**kw: object) -> AlgoCommand:
    base: dict[str, object] = {
        "account": "paper", "venue": "binance", "symbol": "BTC-USDT", "ts_event": T0,
        "ts_recv": T0, "action": "new", "parent_id": "p1", "algo": "twap", "side": "buy",
        "quantity": "1", "end_ts": T0 + 60 * S, "slices": 6,
    }  # fmt: skip
    return AlgoCommand(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"parent_id": "a.b"}, "parent_id must be"),
        ({"parent_id": "x" * 29}, "parent_id must be"),
        ({"algo": None}, "algo and side are required"),
        ({"quantity": "0.0001"}, "rounds to 0"),
        ({"quantity": "-1"}, "must be > 0"),
        ({"end_ts": None}, "needs end_ts"),
        ({"end_ts": T0 - 1}, "end_ts must be after"),
        ({"slices": 0}, "slices must be"),
        ({"slices": 1000}, "slices shorter than"),
        ({"algo": "pov", "slices": None}, "needs participation"),
        ({"algo": "pov", "slices": None, "participation": 0.9}, "participation must be in"),
        ({"algo": "iceberg", "slices": None, "display": "0.1"}, "needs display"),
        ({"algo": "iceberg", "slices": None, "display": "2", "limit_price": "100"}, "exceed"),
        ({"offset_ticks": 2}, "offset_ticks applies to peg"),
        ({"algo": "peg", "slices": None, "end_ts": None, "venues": ["okx"]}, "apply to twap"),
        ({"venues": ["a.b"]}, "venues: 1-8 venue names"),
        ({"limit_price": "abc"}, "not a decimal"),
    ],
)
def test_bad_algo_terms_are_refused_with_one_line(kw: dict[str, object], reason: str) -> None:
    with pytest.raises(params.Invalid, match=reason) as exc:
        params.new_parent(algo(**kw), SPEC, T0, CFG)
    assert "\n" not in str(exc.value)


def test_valid_terms_are_rounded_and_defaulted() -> None:
    rec = params.new_parent(algo(quantity="1.23456", limit_price="100.004"), SPEC, T0, CFG)
    assert (rec.quantity, rec.limit_price, rec.start_ts, rec.slices) == (1.234, 100.0, T0, 6)
    peg = params.new_parent(algo(algo="peg", slices=None, end_ts=None, offset_ticks=1), SPEC,
                            T0, CFG)  # fmt: skip
    assert peg.end_ts is None and peg.offset_ticks == 1


def test_amend_is_all_or_nothing() -> None:
    rec = params.new_parent(algo(), SPEC, T0, CFG)
    rec.filled = 0.5
    with pytest.raises(params.Invalid, match="below what is already filled"):
        params.amend(rec, algo(action="amend", algo=None, side=None, end_ts=None, slices=None,
                               quantity="0.4"), SPEC, T0)  # fmt: skip
    with pytest.raises(params.Invalid, match="slices cannot be amended"):
        params.amend(rec, algo(action="amend", algo=None, side=None, end_ts=None, slices=3,
                               quantity="2"), SPEC, T0)  # fmt: skip
    assert rec.quantity == 1.0
    amend = algo(action="amend", algo=None, side=None, end_ts=None, slices=None, quantity="2",
                 limit_price="99")  # fmt: skip
    changed = params.amend(rec, amend, SPEC, T0)
    assert changed == ["limit_price", "quantity"] and (rec.quantity, rec.limit_price) == (2, 99)


def test_routing_picks_what_a_hand_calculation_picks_and_skips_a_gap() -> None:
    # buy 3; drift 0.01 bps/ms: okx's 10 ms add 0.00001 to its 0.0002 fee
    bn = route.Quote("binance", [(100.0, 1.0), (100.2, 5.0)], fee=0.001)
    okx = route.Quote("okx", [(100.05, 1.5), (100.1, 1.0)], fee=0.0002, latency_ms=10.0)
    gap = route.Quote("bybit", [(99.0, 10.0)], fee=0.0, in_gap=True)  # cheapest, but in gap
    # effective: okx 100.05*1.00021 = 100.0710 (1.5), binance 100.0*1.001 = 100.1 (1.0),
    # okx 100.1*1.00021 = 100.1210 (0.5 of 1.0 needed), binance 100.2*1.001 = 100.3002
    legs = route.route("buy", 3.0, [bn, okx, gap], drift_bps_per_ms=0.01)
    assert [(leg.venue, leg.quantity) for leg in legs] == [("okx", 2.0), ("binance", 1.0)]
    assert legs[0].price == pytest.approx((1.5 * 100.05 + 0.5 * 100.1) / 2)  # 100.0625
    assert legs[0].effective == pytest.approx((1.5 * 100.05 + 0.5 * 100.1) * 1.00021 / 2)
    assert legs[1].price == 100.0 and legs[1].effective == pytest.approx(100.1)
    # okx may take only 1 more (position limit): binance's second level fills the rest
    okx.headroom = 1.0
    legs = route.route("buy", 3.0, [bn, okx, gap], drift_bps_per_ms=0.01)
    assert [(leg.venue, leg.quantity) for leg in legs] == [("okx", 1.0), ("binance", 2.0)]
    assert legs[1].price == pytest.approx(100.1)  # 1 @ 100.0 + 1 @ 100.2
    # selling: bids valued down by the fee; okx 99.95*(1-0.00021) beats binance 99.9*(1-0.001)
    legs = route.route(
        "sell",
        1.0,
        [
            route.Quote("binance", [(99.9, 5.0)], 0.001),
            route.Quote("okx", [(99.95, 5.0)], 0.0002, 10.0),
        ],
        0.01,
    )
    assert [(leg.venue, leg.quantity) for leg in legs] == [("okx", 1.0)]
    # every book in a gap or empty: nowhere to go
    assert route.route("buy", 1.0, [gap, route.Quote("okx", [], 0.0)]) == []
