"""The C handlers (normalizer/venues/binance/_speedups.c) against the Python ones, frame by
frame: the same messages byte for byte, or the same dead letter, on seeded random frames of
aggTrade, trade, bookTicker, kline and depth, spot and USDⓈ-M, written every way JSON allows and a
few ways it does not (whitespace, key order, unknown keys with nested values, duplicate keys,
escapes, non-ASCII, numbers as strings and strings as numbers, decimals of every length and
notation, ints at and past 64 bits, truncation). Each test also checks the C path took a
good share of the frames itself, so the comparison is not Python against Python."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from normalizer.venues.base import Frame, Rejected
from normalizer.venues.binance import BinanceSpotParser, BinanceUsdmParser, parse

pytestmark = pytest.mark.skipif(
    parse._speedups is None, reason="_speedups.c not built (no C compiler at install)"
)

CHANNELS = {"aggTrade": "aggTrade", "trade": "trade", "bookTicker": "bookTicker",
            "kline": "kline_1m", "depth": "depth@100ms"}  # fmt: skip
NATIVES = ("BTCUSDT", "ETHBTC")


def _canonical(r: random.Random, binance: float = 0.0) -> str:
    """A decimal as Binance writes it, any length: up to 17 significant digits, leading and
    trailing zeros, below 1e-5 and near 1e15; ``binance`` of them with 8 decimals."""
    kind = 5 if r.random() < binance else r.randrange(6)
    if kind == 0:  # 0.000...ddd
        return "0." + "0" * r.randint(0, 12) + str(r.randint(1, 10 ** r.randint(1, 17)))
    if kind == 1:  # ddd.ddd
        ip = str(r.randint(1, 10 ** r.randint(1, 16)))
        return ip + "." + str(r.randint(0, 10 ** r.randint(1, 12))).zfill(r.randint(1, 10))
    if kind == 2:  # an integer, maybe with zeros after the point
        return str(r.randint(0, 10 ** r.randint(1, 16))) + r.choice(("", ".0", ".00000000"))
    if kind == 4:
        return repr(r.random() * 10 ** r.randint(-12, 15))  # may carry an exponent
    return f"{r.randint(0, 10**6)}.{r.randint(0, 10**8 - 1):08d}"  # Binance's 8 decimals


ODD_DECIMALS = ("01.5", "1.", ".5", "1e-5", "1E5", "+1", "-1", " 1", "1 ", "1,5", "", "1.5.5",
                "\u0661", "NaN", "inf", "0x1", "00", "-0", "0", "0.0", "1000000000000000",
                "999999999999999.9", "99999999999999.99", "123456789012345", "1e15",
                "0.000010", "0.0000099", "0.00001000000000001", "0." + "0" * 400 + "1",
                "0." + "0" * 310 + "5", "0." + "0" * 299 + "123",
                "0." + "0" * 306 + "22250738585")  # fmt: skip


def _decimal(r: random.Random) -> str:
    s = r.choice(ODD_DECIMALS) if r.random() < 0.02 else _canonical(r, 0.9)
    return msgspec.json.encode(s).decode() if r.random() > 0.01 else s  # sometimes a number


def _int(r: random.Random) -> str:
    if r.random() < 0.9:
        return str(r.randint(0, 2**41))
    return r.choice(("0", "-7",
                     str(2**63 - 1), str(10**18), str(10**19), "007", "1.0", '"12"', "1e3",
                     "-0", "null"))  # fmt: skip


def _ws(r: random.Random) -> str:
    return r.choice(("", "", "", " ", "\n", "\t ", "\r\n"))


def _obj(r: random.Random, pairs: list[tuple[str, str]]) -> str:
    """A JSON object of (key, raw value) pairs, shuffled now and then, spaced at random."""
    if r.random() < 0.2:
        pairs = pairs[:]
        r.shuffle(pairs)
    w = _ws(r)
    items = (f"{_ws(r)}{msgspec.json.encode(k).decode()}{_ws(r)}:{_ws(r)}{v}{_ws(r)}"
             for k, v in pairs)  # fmt: skip
    return "{" + w + ("," + w).join(items) + w + "}"


def _extra(r: random.Random) -> tuple[str, str]:
    """An unknown key with a value of any shape."""
    return r.choice(("M", "f", "l", "st", "ps", "xx", "\u00e9", "q2")), r.choice(
        ("true", "null", "1.5e-3", "-2", '"x"', '"a\\"b"', "[]", '[1,[2,{"a":null}]]', "{}",
         '{"k":{"k":[true,false]}}', '"\u00e9"', "[[[[[[[[[[1]]]]]]]]]]"))  # fmt: skip


def _event(r: random.Random, channel: str, native: str, usdm: bool, i: int) -> list[tuple]:
    t = 1_700_000_000_000 + i
    sym = r.choice((native,) * 30 + ("XRPUSDT", native.lower(), '"BTC\\u0055SDT"'))
    s = sym if sym.startswith('"') else msgspec.json.encode(sym).decode()
    m = r.choice(("true", "false") * 20 + ("1", '"true"'))
    if channel in ("aggTrade", "trade"):
        e = channel if r.random() < 0.95 else r.choice(("trade", "aggTrade", "kline", ""))
        pairs = [("e", msgspec.json.encode(e).decode()), ("E", _int(r)), ("s", s),
                 ("a" if channel == "aggTrade" else "t", _int(r)), ("p", _decimal(r)),
                 ("q", _decimal(r)), ("T", _int(r) if r.random() < 0.2 else str(t)),
                 ("m", m)]  # fmt: skip
        if channel == "aggTrade" and usdm:
            pairs.insert(2, pairs.pop(3))  # USDⓈ-M writes a before s
        if channel == "trade" and usdm:
            x = r.choice(("MARKET",) * 6 + ("ADL", "NA", "INSURANCE_FUND", "market"))
            pairs.insert(r.randint(0, len(pairs)), ("X", msgspec.json.encode(x).decode()))
    elif channel == "bookTicker":
        pairs = [("u", _int(r)), ("s", s), ("b", _decimal(r)), ("B", _decimal(r)),
                 ("a", _decimal(r)), ("A", _decimal(r))]  # fmt: skip
        if usdm:
            pairs = [("e", '"bookTicker"'), *pairs, ("T", str(t)),
                     ("E", r.choice((str(t), str(t), "0", "null")))]  # fmt: skip
    elif channel == "depth":

        def levels() -> str:
            one = [f"[{_decimal(r)},{_ws(r)}{_decimal(r)}]" for _ in range(r.randint(0, 8))]
            if r.random() < 0.03:
                one.append(r.choice(("[]", f"[{_decimal(r)}]", '["1","2","3"]', "{}", "1")))
            return "[" + _ws(r) + ",".join(one) + "]"

        first = r.randint(1, 2**40)
        last = first + r.choice((0, 1, 5, 5, 5, -1))
        pairs = [("e", r.choice(('"depthUpdate"',) * 30 + ('"depth"',))), ("E", str(t)),
                 ("s", s), ("U", str(first)), ("u", str(last)), ("b", levels()),
                 ("a", levels())]  # fmt: skip
        if usdm:
            pairs[2:2] = [("T", str(t))]
            pairs.insert(6, ("pu", r.choice((str(first - 1),) * 20 + ("null", '"5"'))))
    else:
        k = [("t", str(t // 60000 * 60000)), ("T", str(t + 59999)), ("s", s),
             ("i", r.choice(('"1m"', '"1h"', '"1\\u006d"', '"1M"', '"' + "9" * 150 + '"'))),
             ("f", "1"), ("L", "2"),
             ("o", _decimal(r)), ("c", _decimal(r)), ("h", _decimal(r)), ("l", _decimal(r)),
             ("v", _decimal(r)), ("n", _int(r)), ("x", m), ("q", _decimal(r)), ("V", "1"),
             ("Q", '"1"'), ("B", '"0"')]  # fmt: skip
        pairs = [("e", '"kline"'), ("E", str(t)), ("s", s), ("k", _obj(r, k))]
    if r.random() < 0.3:
        pairs.insert(r.randint(0, len(pairs)), _extra(r))
    if r.random() < 0.03:
        pairs.append(r.choice(pairs))  # a key twice
    if r.random() < 0.03:
        pairs.pop(r.randrange(len(pairs)))  # a key missing
    return pairs


def _frame(r: random.Random, channel: str, native: str, usdm: bool, i: int) -> bytes:
    data = _obj(r, _event(r, channel, native, usdm, i))
    stream = msgspec.json.encode(f"{native.lower()}@{CHANNELS[channel]}").decode()
    top = [("stream", stream), ("data", data)]
    if r.random() < 0.03:
        top.reverse()
    if r.random() < 0.03:
        top.append(_extra(r))
    text = _obj(r, top).encode()
    if r.random() < 0.02:
        text = text[: r.randrange(len(text))]
    if r.random() < 0.01:
        text += b" x"
    return text


def _outcome(parse_: Callable[[Frame], list], frame: Frame) -> object:
    try:
        return [tuple(o) for o in parse_(frame)]
    except Rejected as exc:
        return f"dead: {exc}"
    except Exception as exc:  # a parser bug on either side must be the same bug
        return f"error {type(exc).__name__}: {exc}"


@pytest.mark.parametrize("cls", [BinanceSpotParser, BinanceUsdmParser])
def test_compiled_equals_python_on_random_frames(cls: type) -> None:
    r = random.Random(24)
    usdm = cls is BinanceUsdmParser
    fast, slow = cls(compiled=True), cls(compiled=False)
    took: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for i in range(6_000):
        channel = r.choice(list(CHANNELS))
        native = r.choice(NATIVES)
        frame = Frame(channel, native, _frame(r, channel, native, usdm, i),
                      r.choice((1_700_000_000_000_000_000 + i,) * 20 + (0, -5, 2**64)),
                      i)  # fmt: skip
        took[channel] += fast._dispatch[channel].fast(frame) is not None
        total[channel] += 1
        a, b = _outcome(fast.parse, frame), _outcome(slow.parse, frame)
        assert a == b, (frame, a, b)
    for channel in CHANNELS:  # each channel's C path did real work
        assert took[channel] > total[channel] * 0.1, (channel, took[channel], total[channel])


def test_decimals_are_written_as_msgspec_writes_their_floats() -> None:
    """Every decimal the C path takes comes out as msgspec's encoding of its float: 200k
    random decimals through the aggTrade price, compared with msgspec directly."""
    r = random.Random(7)
    p = BinanceSpotParser(compiled=True)
    first = b'{"stream":"x","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1","q":"1",'
    p.parse(Frame("aggTrade", "BTCUSDT", first + b'"T":1,"m":true}}', 1, 1))  # names it
    handler = p._dispatch["aggTrade"]
    took = 0
    for i in range(60_000):
        d = _canonical(r) if i % 10 else r.choice(ODD_DECIMALS)
        body = (b'{"stream":"x","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":'
                + msgspec.json.encode(d) + b',"q":"1","T":1,"m":true}}')  # fmt: skip
        out = handler.fast(Frame("aggTrade", "BTCUSDT", body, 1, 1))
        if out is None:
            continue
        took += 1
        price = msgspec.json.decode(out[0].data)["price"]
        want = msgspec.json.encode(float(d))
        assert price == float(d) and f'"price":{want.decode()},'.encode() in out[0].data, d
    assert took > 30_000


def test_the_built_module_is_newer_than_its_source() -> None:
    """A stale build would test old C: ``pip install -e .`` (``make venv``) rebuilds it."""
    so = Path(parse._speedups.__file__)
    c = so.with_name("_speedups.c")
    assert so.stat().st_mtime >= c.stat().st_mtime, (
        f"{so.name} is older than _speedups.c: run `pip install -e .` to rebuild it"
    )


def test_the_compiled_path_is_refused_when_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "_speedups", None)
    assert BinanceSpotParser().compiled is False  # the Python handlers alone
    with pytest.raises(RuntimeError, match="not built"):
        BinanceSpotParser(compiled=True)


@pytest.mark.parametrize("cls", [BinanceSpotParser, BinanceUsdmParser])
def test_a_depth_update_of_thousands_of_levels(cls: type) -> None:
    """The C path sizes its output from the frame: 5,000 levels a side, the longest decimals
    it takes, come out as Python writes them (and from C, not refused)."""
    side = [[f"{10**13 + i}.{i % 10}", f"0.0000{i + 1:010d}"] for i in range(5_000)]
    event = {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT", "U": 5, "u": 9, "pu": 4,
             "b": side, "a": side[::-1]}  # fmt: skip
    frame = Frame("depth", "BTCUSDT", msgspec.json.encode({"stream": "x", "data": event}), 7, 1)
    fast, slow = cls(compiled=True), cls(compiled=False)
    want = slow.parse(frame)
    assert fast.parse(frame) == want
    assert fast._dispatch["depth"].fast(frame) == want
