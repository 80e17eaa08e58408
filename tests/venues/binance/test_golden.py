"""The Binance parsers' outputs, byte for byte, on every recorded Binance frame in
``../shared/frames`` and on a seeded set of generated frames (every channel of spot, USDⓈ-M
and COIN-M, with edge values and broken variants): subject, Nats-Msg-Id and payload of every
message, or the dead letter's reason. Pinned as digests recorded before the parsers' hot
handlers were rewritten for speed (issue 24), so a faster handler cannot change one byte.

A deliberate change of the output changes the digests: re-record them with
``python -m tests.venues.binance.test_golden`` (prints both) and say why in the commit.
``python -m tests.venues.binance.test_golden dump DIR`` writes the per-frame lines, for a diff
against another commit's."""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from normalizer.venues.base import Frame, Rejected
from normalizer.venues.binance import (
    BinanceCoinmParser,
    BinanceSpotParser,
    BinanceUsdmParser,
    parse,
)

# recorded before issue 24's rewrite of the hot handlers (commit f50a62e)
RECORDED_DIGEST = "c14230e36fc6a8902bbd910f2a8494835eff2b814f2a235f65f76a4843ce841d"
RECORDED_FRAMES = 1821
GENERATED_DIGEST = "a51135041c43973fb7bb2ab0cbf3784b8a2c42772e42f47350f9d2677271283b"
GENERATED_FRAMES = 3297

PARSERS = {"binance": BinanceSpotParser, "binanceusdm": BinanceUsdmParser,
           "binancecoinm": BinanceCoinmParser}  # fmt: skip
TS = 1_700_000_000_123_456_789
Item = tuple[str, str, str, bytes]  # venue token, channel, native symbol, data


def line(parse: Callable[[Frame], list], venue: str, frame: Frame) -> bytes:
    """One frame's outcome as bytes: every message's subject, msg-id and payload, or the
    dead letter's reason (what :class:`Rejected` says), or a parser bug's type and text."""
    head = f"{venue}|{frame.channel}|{frame.native_symbol}|{frame.raw_seq}|".encode()
    try:
        outs = parse(frame)
    except Rejected as exc:
        return head + b"R:" + str(exc).encode()
    except Exception as exc:  # a parser bug: pinned too, so a rewrite cannot add one
        return head + f"E:{type(exc).__name__}:{exc}".encode()
    return head + b"\x1e".join(
        b"\x1f".join((o.subject.encode(), o.msg_id.encode(), o.data)) for o in outs
    )


def lines(items: list[Item], compiled: bool | None = None) -> Iterator[bytes]:
    """Each item through one parser per venue token (state carries, in order); ``compiled``
    as the parsers take it (None: the C handlers when built)."""
    parsers = {v: cls(compiled=compiled).parse for v, cls in PARSERS.items()}
    for i, (venue, channel, native, data) in enumerate(items, 1):
        yield line(parsers[venue], venue, Frame(channel, native, data, TS + i, i))


def digest(items: list[Item], compiled: bool | None = None) -> str:
    h = hashlib.sha256()
    for x in lines(items, compiled):
        h.update(x)
        h.update(b"\n")
    return h.hexdigest()


# -- the recorded frames ---------------------------------------------------------------------
def recorded() -> list[Item]:
    """Every public Binance file of the conformance corpus, as the collector routes it."""
    from tests.venues import conformance

    out: list[Item] = []
    for rel in conformance.files():
        src = conformance.classify(rel)
        if src.venue in PARSERS and src.status == "public" and src.items is not None:
            out += [(it.venue, it.channel, it.native, it.data) for it in src.items()]
    return out


# -- generated frames ------------------------------------------------------------------------
def _num(r: random.Random) -> str:
    """A decimal string as Binance writes them, from tiny to huge, trailing zeros and all."""
    kind = r.randrange(6)
    if kind == 0:
        return f"{r.randint(0, 10**8) / 10**8:.8f}"  # 0.00000000 .. 1.00000000
    if kind == 1:
        return f"{r.randint(1, 10**9) / 100:.2f}"
    if kind == 2:
        x = f"{r.random() * 10 ** r.randint(-9, 12):.{r.randint(0, 12)}f}"
        return x if float(x) else "0.00000001"  # a zero is kind 0's (rare) business
    if kind == 3:
        return str(r.randint(0, 10**15))
    if kind == 4:
        return f"{r.randint(1, 999)}.{r.randint(0, 10**8):08d}"
    return repr(r.random() * 10 ** r.randint(-12, 15))  # may carry an exponent


def _stream(native: str, stream: str, data: dict) -> bytes:
    return orjson.dumps({"stream": f"{native.lower()}@{stream}", "data": data})


def _events(r: random.Random, venue: str, native: str, i: int) -> Iterator[tuple[str, bytes]]:
    """(channel, frame) of every channel of ``venue`` for ``native``, one of each."""
    fut = venue != "binance"
    t = 1_700_000_000_000 + i * 37
    trade = {"e": "trade", "E": t, "s": native, "t": r.randint(0, 2**40), "p": _num(r),
             "q": _num(r), "T": t - r.randint(0, 5), "m": r.random() < 0.5, "M": True}  # fmt: skip
    if fut:
        trade["X"] = r.choice(("MARKET", "MARKET", "MARKET", "ADL", "INSURANCE_FUND", "NA", "X"))
    yield "trade", _stream(native, "trade", trade)
    yield "aggTrade", _stream(native, "aggTrade", {
        "e": "aggTrade", "E": t, "s": native, "a": r.randint(0, 2**40), "p": _num(r),
        "q": _num(r), "f": 1, "l": 2, "T": t - 1, "m": r.random() < 0.5, "M": True,
    })  # fmt: skip

    def levels() -> list[list[str]]:
        return [[_num(r), _num(r)] for _ in range(r.randint(0, 6))]

    u0 = r.randint(1, 2**40)
    depth = {"e": "depthUpdate", "E": t, "T": t, "s": native, "U": u0, "u": u0 + r.randint(0, 9),
             "b": levels(), "a": levels()}  # fmt: skip
    if fut:
        depth["pu"] = u0 - 1
    yield "depth", _stream(native, "depth@100ms", depth)
    snap = {"lastUpdateId": u0, "bids": levels(), "asks": levels()}
    if fut:
        snap = {"lastUpdateId": u0, "E": t, "T": t, "bids": snap["bids"], "asks": snap["asks"]}
    yield "snapshot", orjson.dumps(snap)
    bt = {"u": u0, "s": native, "b": _num(r), "B": _num(r), "a": _num(r), "A": _num(r)}
    if fut:
        bt = {"e": "bookTicker", "u": u0, "E": r.choice((t, 0)), "T": t, **bt}
    yield "bookTicker", _stream(native, "bookTicker", bt)
    ticker = {"e": "24hrTicker", "E": t, "s": native, "p": "1.0", "P": "0.1", "w": _num(r),
              "c": _num(r), "Q": _num(r), "o": _num(r), "h": _num(r), "l": _num(r),
              "v": _num(r), "q": _num(r), "O": t - 86_400_000, "C": t, "F": 1, "L": 9,
              "n": 9}  # fmt: skip
    if not fut:
        ticker.update(b=_num(r), B=_num(r), a=_num(r), A=_num(r))
    yield "ticker", _stream(native, "ticker", ticker)
    kt = t // 60_000 * 60_000
    yield "kline", _stream(native, "kline_1m", {"e": "kline", "E": t, "s": native, "k": {
        "t": kt, "T": kt + 59_999, "s": native, "i": r.choice(("1m", "5m", "1h", "1d")),
        "f": 1, "L": 2, "o": _num(r), "c": _num(r), "h": _num(r), "l": _num(r), "v": _num(r),
        "n": r.randint(0, 10**6), "x": r.random() < 0.5, "q": _num(r), "V": "1", "Q": "1",
        "B": "0"}})  # fmt: skip
    if not fut:
        return
    rate, nxt = r.choice(((_num(r), t + 1000), ("-" + _num(r), t + 5), ("", 0),
                          ("0.00000000", 0), (_num(r), 0)))  # fmt: skip
    yield "markPrice", _stream(native, "markPrice@1s", {
        "e": "markPriceUpdate", "E": t, "s": native, "p": _num(r), "P": _num(r),
        "i": _num(r), "r": rate, "T": nxt,
    })  # fmt: skip
    order = {"s": native, "S": r.choice(("BUY", "SELL", "WHAT")), "o": "LIMIT", "f": "IOC",
             "q": _num(r), "p": _num(r), "ap": r.choice((_num(r), "0")), "X": "FILLED",
             "l": "1", "z": r.choice((_num(r), "0")), "T": t}  # fmt: skip
    yield "forceOrder", _stream(native, "forceOrder", {"e": "forceOrder", "E": t, "o": order})
    yield "openInterest", orjson.dumps({"symbol": native, "openInterest": _num(r), "time": t})
    pair = native.partition("_")[0]
    who = {"pair": pair} if venue == "binancecoinm" else {"symbol": native}
    row = {**who, "timestamp": t, "longShortRatio": _num(r)}
    for endpoint in ("globalLongShortAccountRatio", "topLongShortAccountRatio"):
        yield f"{endpoint}-5m", orjson.dumps([{**row, "longAccount": _num(r),
                                              "shortAccount": _num(r)}])  # fmt: skip
    yield "topLongShortPositionRatio-1h", orjson.dumps([{**row, "longPosition": _num(r),
                                                         "shortPosition": _num(r)}])  # fmt: skip
    yield "takerlongshortRatio-1d", orjson.dumps([{"buySellRatio": "1.1",
        "buyVol": _num(r), "sellVol": _num(r), "timestamp": t}])  # fmt: skip
    yield "takerBuySellVol-4h", orjson.dumps([{"pair": pair, "contractType": "PERPETUAL",
        "takerBuyVol": _num(r), "takerSellVol": _num(r), "takerBuyVolValue": _num(r),
        "takerSellVolValue": _num(r), "timestamp": t}])  # fmt: skip
    yield "openInterestHist-15m", orjson.dumps([{**who,
        "sumOpenInterest": _num(r), "sumOpenInterestValue": _num(r), "timestamp": t}])  # fmt: skip


def _instruments(venue: str, natives: list[str]) -> bytes:
    rows = []
    for n in natives:
        pair = n.partition("_")[0]
        base = pair[:3]
        quote = pair[3:]
        filters = [{"filterType": "PRICE_FILTER", "tickSize": "0.01"},
                   {"filterType": "LOT_SIZE", "stepSize": "0.001"}]  # fmt: skip
        row = {"symbol": n, "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
               "filters": filters}  # fmt: skip
        if venue != "binance":
            perp = "_" not in n or n.endswith("_PERP")
            row.update(contractType="PERPETUAL" if perp else "CURRENT_QUARTER",
                       deliveryDate=4133404800000, marginAsset=quote)  # fmt: skip
        if venue == "binancecoinm":
            row.update(contractSize=100 if base == "BTC" else 10, contractStatus="TRADING",
                       marginAsset=base)  # fmt: skip
        rows.append(row)
    rows.append({"symbol": "ODD", "status": "BREAK", "baseAsset": "O", "quoteAsset": "DD",
                 "filters": [], "contractType": "", "contractSize": 0})  # fmt: skip
    return orjson.dumps({"serverTime": 1_700_000_000_000, "symbols": rows})


NATIVES = {
    "binance": ["BTCUSDT", "ETHBTC", "SOLFDUSD"],
    "binanceusdm": ["BTCUSDT", "ETHUSDT_250627", "SOLUSDC"],
    "binancecoinm": ["BTCUSD_PERP", "ETHUSD_PERP", "BTCUSD_251226"],
}


def _broken(r: random.Random, channel: str, native: str, data: bytes) -> Iterator[Item]:
    """Variants the parsers must refuse (or accept) exactly as before."""
    yield "", channel, native, data[: r.randint(0, len(data))]  # truncated
    yield "", channel, "XRPUSDT" if native != "XRPUSDT" else "BTCUSDT", data  # another symbol
    yield "", channel, native, data.replace(b'"e":"', b'"e":"x', 1)  # another event type
    yield "", channel, native, data.replace(b'"s":"', b'"s":"Q', 1)  # a symbol not ours
    yield "", channel, native, data.replace(b'"p":"', b'"p":"x', 1)  # not a decimal
    yield "", channel, native, data.replace(b'"U":', b'"U":9', 1)  # U > u (depth)
    yield "", channel, native, data.replace(b'"m":true', b'"m":1', 1)  # a wrong type
    yield "", channel, native, b"\xff" + data  # not UTF-8


def generated(rounds: int = 60) -> list[Item]:
    """Seeded frames of every channel of the three parsers, their broken variants, the
    connection and control channels and a few unknown channels."""
    r = random.Random(24)
    out: list[Item] = []
    for venue, natives in NATIVES.items():
        out.append((venue, "instruments", "ALL", _instruments(venue, natives)))
        for i in range(rounds):
            native = natives[i % len(natives)]
            for channel, data in _events(r, venue, native, i):
                out.append((venue, channel, native, data))
                if i < 3:
                    out += [(venue, *b[1:]) for b in _broken(r, channel, native, data)]
        lost = {"event": "lost", "conn": "c1", "ts": 1, "channel": "trade", "reason": "full",
                "lost": {natives[0]: [3, 10, 20], "ALL": [1, 5, 5]}}  # fmt: skip
        gone = {"event": "disconnected", "conn": "c1", "ts": 2, "symbols": natives,
                "reason": "stale: 30 s"}  # fmt: skip
        out += [(venue, "conn", "ALL", orjson.dumps(lost)), (venue, "conn", "ALL",
                orjson.dumps(gone)), (venue, "control", "ALL", b'{"result":null,"id":1}'),
                (venue, "nope", "ALL", b"{}"), (venue, "unknown", "ALL", b'{"x":1}'),
                (venue, "openInterestHist-7m", natives[0], b"[]")]  # fmt: skip
    return out


# -- the tests -------------------------------------------------------------------------------
# both paths: Python alone, and the C handlers (normalizer/venues/binance/_speedups.c)
PATHS = [
    pytest.param(False, id="python"),
    pytest.param(True, id="compiled", marks=pytest.mark.skipif(
        parse._speedups is None, reason="_speedups.c not built (no C compiler at install)")),
]  # fmt: skip


@pytest.mark.parametrize("compiled", PATHS)
def test_recorded_frames_give_the_same_bytes(compiled: bool) -> None:
    from tests.conftest import shared_frames

    shared_frames("cryptofeed/BINANCE.ws.1.0")  # skips clearly when ../shared is absent
    items = recorded()
    assert len(items) == RECORDED_FRAMES, "the recorded corpus changed: re-record the digest"
    assert digest(items, compiled) == RECORDED_DIGEST


@pytest.mark.parametrize("compiled", PATHS)
def test_generated_frames_give_the_same_bytes(compiled: bool) -> None:
    items = generated()
    assert len(items) == GENERATED_FRAMES
    assert digest(items, compiled) == GENERATED_DIGEST


def test_generated_frames_reach_every_handler() -> None:
    """The generated set is worth its digest: every channel of every parser yields messages
    somewhere in it, and the broken variants yield dead letters."""
    seen: dict[str, set[str]] = {}
    dead = 0
    for x in lines(generated()):
        venue, channel, _, _, rest = x.split(b"|", 4)
        if rest.startswith(b"R:"):
            dead += 1
        elif rest and not rest.startswith(b"E:"):
            seen.setdefault(venue.decode(), set()).add(channel.decode().split("-")[0])
    for venue, cls in PARSERS.items():
        want = {c.split("-")[0] for c in cls.channels} - {"control"}
        assert want <= seen[venue], (venue, want - seen[venue])
    assert dead > 100


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "dump":
        d = Path(sys.argv[2])
        d.mkdir(parents=True, exist_ok=True)
        (d / "generated.txt").write_bytes(b"\n".join(lines(generated())))
        (d / "recorded.txt").write_bytes(b"\n".join(lines(recorded())))
    else:
        g, rec = generated(), recorded()
        print(f'RECORDED_DIGEST = "{digest(rec)}"\nRECORDED_FRAMES = {len(rec)}')
        print(f'GENERATED_DIGEST = "{digest(g)}"\nGENERATED_FRAMES = {len(g)}')
