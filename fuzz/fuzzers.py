"""Adversarial raw frames for every venue parser, as hypothesis strategies.

Nothing here names a venue's channels by hand: parsers come from ``normalizer.registry``
and each parser's ``channels`` map, so a venue package that lands later is fuzzed without
touching this file. Four sources of frames, mixed:

* **wire shapes**: every ``msgspec.json.Decoder`` a parser module holds (module level or on
  the parser class) describes a frame the parser accepts; ``from_type`` generates JSON of
  that shape whose leaves are sometimes adversarial (wrong types, huge or negative numbers,
  NaN/inf as strings and as bare tokens, unicode, empty strings);
* **mutated seeds**: valid frames from the emulators' generators (binance, okx, bybit) and
  recorded traffic (``../shared/frames``, when present) with 1-4 mutations at random paths
  (replace a node, delete a key, add one, nest it deeper);
* **structure**: arbitrary JSON, deeply nested arrays, truncated and corrupted bytes;
* **crossings**: a valid frame published on another channel or for another symbol.

``check`` is the property: ``normalizer.core.Normalizer.normalize`` (what the worker runs)
returns either typed messages that re-decode with ``streams.schemas.decode``, carry finite
numbers and non-negative sizes and sit on their own subject, or a dead letter with a
non-empty reason that is not the catch-all for a parser exception (that one means a
parser raised something other than its documented ``Rejected``).

Profiles: ``ci`` (default, small) and ``fuzz`` (``make fuzz``: ≥ 100k cases over the
suite); ``JM_FUZZ_EXAMPLES`` overrides the per-test count of either.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from normalizer.core import Dead, Normalizer
from normalizer.registry import parsers
from normalizer.venues.base import Out
from streams import schemas, subjects

settings.register_profile(
    "ci", max_examples=80, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
settings.register_profile(
    "fuzz", max_examples=4000, deadline=None, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


def profile() -> settings:
    """The profile named by ``JM_FUZZ_PROFILE`` (default ``ci``), with ``JM_FUZZ_EXAMPLES``
    applied. Used per test, not loaded globally: other suites' hypothesis tests keep theirs."""
    base = settings.get_profile(os.environ.get("JM_FUZZ_PROFILE", "ci"))
    env = os.environ.get("JM_FUZZ_EXAMPLES")
    return settings(base, max_examples=int(env)) if env else base


def examples() -> int:
    return profile().max_examples


SHARED = Path(
    os.environ.get("JETMARKET_SHARED_FRAMES", Path(__file__).resolve().parents[2] / "shared/frames")
)
# recorded file prefix -> raw venue token (the files are named by cryptofeed's exchange ids)
RECORDED = {
    "BINANCE": "binance", "BINANCE_FUTURES": "binanceusdm", "OKX": "okx", "DERIBIT": "deribit",
    "COINBASE": "coinbase", "KRAKEN": "kraken", "BYBIT": "bybit_linear",
}  # fmt: skip
PARSER_ERROR = "parser error"  # normalizer.core's catch-all: a parser raised, not rejected
# Findings in parsers other engineers own, reported to them rather than edited here: the
# property tolerates exactly these exception names (raised through the parser) and these
# property violations, for exactly these venues; test_fuzz.test_known_findings_still_
# reproduce fails once one is fixed (then delete it).
KNOWN_FINDINGS: dict[str, tuple[str, ...]] = {}
# executor findings reported to its owner and not fixed yet (none open: the two found,
# an inf quantity and an empty venue, are regression tests in test_fuzz)
KNOWN_EXEC_FINDINGS: tuple[str, ...] = ()
RecvNs = 1_700_000_000_000_000_000

# -- leaves --------------------------------------------------------------------------------
# Bare JSON tokens orjson will not write (NaN, huge integers): written as a marker string
# and spliced in after encoding.
_RAW = "\x00raw:"
_RAW_RE = re.compile(rb'"\\u0000raw:([^"]*)"')
RAW_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", "18446744073709551616",
    "-9223372036854775809", "123456789012345678901234567890", "0.0000000000000000000001",
]  # fmt: skip
NUMERIC_STRINGS = [
    "nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", "-1",
    "-0.0", "0", "0.0", "", " ", "1_000", "0x10", "\uff11\uff12\uff13", "1e-400", "9" * 400,
    "\u0663", "+5",
    "65000.1", "65000.10000000", "-65000.1", "1,5",
]  # fmt: skip
SPECIAL_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, -(2**53)]
SPECIAL_FLOATS = [0.0, -0.0, 1e308, -1e308, 5e-324, 1e15, 1e-15, -1.5]


def raw_token(tok: str) -> str:
    return _RAW + tok


def encode(value: Any) -> bytes:
    """JSON bytes of ``value``, with raw-token markers replaced by the bare token."""
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # an int past 64 bits
        data = orjson.dumps(_bigints_as_tokens(value))
    return _RAW_RE.sub(lambda m: m.group(1), data) if b"\\u0000raw:" in data else data


def _bigints_as_tokens(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and not -(2**63) <= v < 2**64:
        return raw_token(str(v))
    if isinstance(v, dict):
        return {k: _bigints_as_tokens(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_bigints_as_tokens(x) for x in v]
    return v


text = st.text(max_size=24) | st.sampled_from(["", "ALL", "BTC", "\u202e", "💥" * 3, "a.b>*"])
adversarial_leaf = st.one_of(
    st.sampled_from(RAW_TOKENS).map(raw_token),
    st.sampled_from(NUMERIC_STRINGS),
    st.sampled_from(SPECIAL_INTS),
    st.sampled_from(SPECIAL_FLOATS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({}),
)
json_values = st.recursive(
    adversarial_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def deep(n: int, leaf: Any = 1) -> Any:
    v = leaf
    for _ in range(n):
        v = [v]
    return v


# -- venues --------------------------------------------------------------------------------
@cache
def venue_parsers() -> dict[str, Any]:
    return parsers()


def package_of(token: str) -> str:
    """The normalizer/venues/<package> a raw venue token's parser lives in."""
    return type(venue_parsers()[token]).__module__.split(".")[2]


@cache
def decoder_types(token: str) -> tuple[Any, ...]:
    """Every frame shape the parser decodes: the types of the msgspec JSON decoders in its
    module and on its class (``depth_decoder`` and the like)."""
    parser = venue_parsers()[token]
    mod = importlib.import_module(type(parser).__module__)
    found: list[Any] = []
    owners = [vars(mod), *(vars(c) for c in type(parser).__mro__)]
    for ns in owners:
        for v in ns.values():
            if isinstance(v, msgspec.json.Decoder) and v.type not in found:
                found.append(v.type)
    return tuple(found)


# -- shapes from msgspec type info ---------------------------------------------------------
def _number_like(ti: Any, natives: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Venues send numbers as JSON numbers or decimal strings; mostly sane, sometimes not."""
    lo = 0 if getattr(ti, "ge", None) is not None or getattr(ti, "gt", None) is not None else -1e6
    if isinstance(ti, msgspec.inspect.IntType):
        sane: st.SearchStrategy[Any] = st.integers(min_value=int(lo), max_value=2**53)
    else:
        sane = st.floats(min_value=lo, max_value=1e9, allow_nan=False).map(
            lambda x: float(f"{x:.8g}")
        )
    return st.one_of(sane, sane.map(str), adversarial_leaf)


def from_info(ti: Any, natives: tuple[str, ...], depth: int = 0) -> st.SearchStrategy[Any]:
    i = msgspec.inspect
    if depth > 6:
        return adversarial_leaf
    if isinstance(ti, i.StructType):
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for f in ti.fields:
            (required if f.required else optional)[f.encode_name] = from_info(
                f.type, natives, depth + 1
            )
        body = st.fixed_dictionaries(required, optional=optional)
        if ti.tag_field is not None:
            body = body.map(lambda d, k=ti.tag_field, v=ti.tag: {k: v, **d})
        if ti.array_like:
            body = body.map(lambda d: list(d.values()))
        # occasionally drop a required key or add a stray one
        return st.one_of(
            body, body, body,
            st.tuples(body, st.integers(0, 50)).map(_drop_key),
            st.tuples(body, text, json_values).map(lambda t: {**t[0], t[1]: t[2]}),
        )  # fmt: skip
    if isinstance(ti, (i.IntType, i.FloatType)):
        return _number_like(ti, natives)
    if isinstance(ti, i.StrType):
        return st.one_of(st.sampled_from(natives), text, st.sampled_from(NUMERIC_STRINGS))
    if isinstance(ti, i.BoolType):
        return st.one_of(st.booleans(), st.booleans(), adversarial_leaf)
    if isinstance(ti, i.NoneType):
        return st.none()
    if isinstance(ti, i.LiteralType):
        return st.one_of(st.sampled_from(ti.values), adversarial_leaf)
    if isinstance(ti, i.UnionType):
        return st.one_of(*(from_info(t, natives, depth) for t in ti.types))
    if isinstance(ti, (i.ListType, i.VarTupleType, i.SetType, i.FrozenSetType)):
        return st.lists(from_info(ti.item_type, natives, depth + 1), max_size=4)
    if isinstance(ti, i.TupleType):
        items = st.tuples(*(from_info(t, natives, depth + 1) for t in ti.item_types)).map(list)
        return st.one_of(items, items, st.lists(adversarial_leaf, max_size=4))
    if isinstance(ti, i.DictType):
        return st.dictionaries(
            st.one_of(st.sampled_from(natives), text),
            from_info(ti.value_type, natives, depth + 1),
            max_size=3,
        )
    return json_values


def _drop_key(t: tuple[dict[str, Any], int]) -> dict[str, Any]:
    d, k = t
    if d and isinstance(d, dict):
        d = dict(d)
        del d[list(d)[k % len(d)]]
    return d


# -- seeds ---------------------------------------------------------------------------------
Seed = tuple[str, str, bytes]  # (channel, native symbol, frame bytes)


def _emulator_seeds() -> dict[str, list[Seed]]:
    """Valid frames from the emulators' generators (deterministic, no sockets)."""
    out: dict[str, list[Seed]] = {}
    rnd = random.Random(11)
    try:
        from tests.venues.binance import emulator as eb

        sim = eb.SymbolSim("BTCUSDT", rnd, 6_500_000)
        seeds = out.setdefault("binance", [])
        for _ in range(5):
            trade, _ = sim.trade(1_700_000_000_000)
            seeds.append(("trade", "BTCUSDT", encode({"stream": "btcusdt@trade", "data": trade})))
            depth = sim.depth(1_700_000_000_000)
            seeds.append(
                ("depth", "BTCUSDT", encode({"stream": "btcusdt@depth@100ms", "data": depth}))
            )
        seeds.append(("snapshot", "BTCUSDT", encode(sim.snapshot(20))))
    except ImportError:
        pass
    try:
        from tests.venues.okx import emulator as eo

        seeds = out.setdefault("okx", [])
        for inst, spec in eo.DEFAULT_SPECS.items():
            osim = eo.InstrumentSim(spec, rnd, 6_500_000)
            args = {"channel": "trades", "instId": inst}
            seeds.append(("trades", inst, encode({"arg": args, "data": [osim.trade(1)]})))
            args = {"channel": "books", "instId": inst}
            snap = {"arg": args, "action": "snapshot", "data": [osim.snapshot(1)]}
            seeds.append(("books", inst, encode(snap)))
            upd = {"arg": args, "action": "update", "data": [osim.update(2)]}
            seeds.append(("books", inst, encode(upd)))
    except ImportError:
        pass
    try:
        from tests.venues.bybit import emulator as ey

        for category, token in (("spot", "bybit_spot"), ("linear", "bybit_linear")):
            seeds = out.setdefault(token, [])
            ysim = ey.SymbolSim(category, "BTCUSDT", rnd, 6_500_000)
            trade = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1,
                     "data": [ysim.trade(1)]}  # fmt: skip
            seeds.append(("publicTrade", "BTCUSDT", encode(trade)))
            seeds.append(("orderbook", "BTCUSDT", encode(ysim.snapshot(50, 1))))
            for d in ysim.deltas(2).values():
                seeds.append(("orderbook", "BTCUSDT", encode(d)))
    except (ImportError, AttributeError, KeyError):
        pass
    return out


def _recorded_seeds(limit: int = 150) -> dict[str, list[Seed]]:
    """Recorded venue frames, routed the way each venue's collector routes them."""
    from tests.recorded import read

    out: dict[str, list[Seed]] = {}
    base = SHARED / "cryptofeed"
    if not base.is_dir():
        return out
    known = venue_parsers()
    for path in sorted(base.glob("*.ws.*")):
        token = RECORDED.get(path.name.split(".")[0])
        if token not in known:
            continue
        try:
            route = importlib.import_module(f"collectors.{package_of(token)}").route
        except (ImportError, AttributeError):
            continue
        seeds = out.setdefault(token, [])
        per_channel: dict[str, int] = {}
        for rec in read(path):
            if rec.kind != "recv":
                continue
            data = rec.payload.encode()
            try:
                channel, native = route(data)
            except Exception:
                continue
            if per_channel.get(channel, 0) < limit // 5:
                per_channel[channel] = per_channel.get(channel, 0) + 1
                seeds.append((channel, native, data))
            if sum(per_channel.values()) >= limit:
                break
    return out


@cache
def seeds(token: str) -> tuple[Seed, ...]:
    found = _emulator_seeds().get(token, []) + _recorded_seeds().get(token, [])
    return tuple(found)


@cache
def natives(token: str) -> tuple[str, ...]:
    names = {n for _, n, _ in seeds(token) if n and n != "ALL"}
    return tuple(sorted(names)) or ("BTCUSDT", "BTC-USDT", "BTC-PERPETUAL", "XBT/USD")


def channels(token: str) -> list[str]:
    return sorted(venue_parsers()[token].channels)


# -- frame strategies ----------------------------------------------------------------------
Case = tuple[str, str, bytes]  # (channel, native symbol, frame bytes)


def _channel(token: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(channels(token)), st.sampled_from(channels(token)),
        st.sampled_from(["unknown", "", "ALL", "trade\u0301", "conn2"]),
    )  # fmt: skip


def _native(token: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(natives(token)), st.sampled_from(natives(token)),
        st.sampled_from(["ALL", "BTC", "1", "ÄÖÜ", "-", "X" * 200]),
    )  # fmt: skip


def wire_frames(token: str) -> st.SearchStrategy[Case]:
    types = decoder_types(token)
    if not types:
        return st.tuples(_channel(token), _native(token), json_values.map(encode))
    shapes = st.one_of(
        *(from_info(msgspec.inspect.type_info(t), natives(token)) for t in types)
    ).map(encode)
    return st.tuples(_channel(token), _native(token), shapes)


def _paths(v: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, (*prefix, k))
    elif isinstance(v, list):
        for i, x in enumerate(v[:50]):
            yield from _paths(x, (*prefix, i))


def _apply(doc: Any, path: tuple[Any, ...], op: str, new: Any) -> Any:
    if not path:
        return deep(3, doc) if op == "nest" else new
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "nest":
        parent[last] = deep(2, parent[last])
    elif op == "add" and isinstance(parent, dict):
        parent[f"{last}_x"] = new
    elif op == "add" and isinstance(parent, list):
        parent.insert(last, new)
    else:
        parent[last] = new
    return doc


@st.composite
def mutated_frames(draw: st.DrawFn, token: str) -> Case:
    channel, native, data = draw(st.sampled_from(seeds(token)))
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if doc is None or not isinstance(doc, (dict, list)):
        return channel, native, data[: draw(st.integers(0, len(data)))]
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "nest"]))
        if op == "delete" and not path:
            op = "replace"
        new = draw(st.one_of(adversarial_leaf, json_values))
        doc = _apply(doc, path, op, new)
    if draw(st.integers(0, 9)) == 0:
        channel = draw(_channel(token))
    if draw(st.integers(0, 9)) == 0:
        native = draw(_native(token))
    return channel, native, encode(doc)


@st.composite
def byte_frames(draw: st.DrawFn, token: str) -> Case:
    """Truncated, corrupted, non-UTF-8 and absurdly nested bytes."""
    pool = seeds(token) or (("trade", natives(token)[0], b'{"data":[{"p":"1"}]}'),)
    channel, native, data = draw(st.sampled_from(pool))
    kind = draw(st.sampled_from(["truncate", "flip", "binary", "nest", "garbage", "empty"]))
    if kind == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif kind == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    elif kind == "binary":
        data = draw(st.binary(max_size=64))
    elif kind == "nest":
        n = draw(st.sampled_from([100, 1000, 5000, 50_000]))
        opener = draw(st.sampled_from([b"[", b'{"data":[', b'{"a":{"b":[']))
        data = opener + b"[" * n + b"]" * n + b"]"
    elif kind == "garbage":
        data = draw(st.sampled_from([b"\xff\xfe", b"null", b"[]", b"{}", b'"x"', b"1", b"true",
                                     b"{" * 3, b'{"a":1}{"a":2}', b"\x00", b"NaN"]))  # fmt: skip
    else:
        data = b""
    return draw(_channel(token)) if draw(st.booleans()) else channel, native, data


@st.composite
def crossed_frames(draw: st.DrawFn, token: str) -> Case:
    """A seed frame on another channel or for another symbol (routing gone wrong)."""
    pool = seeds(token)
    if not pool:
        return draw(wire_frames(token))
    channel, native, data = draw(st.sampled_from(pool))
    if draw(st.booleans()):
        channel = draw(st.sampled_from(channels(token)))
    else:
        native = draw(_native(token))
    return channel, native, data


def any_frames(token: str) -> st.SearchStrategy[Case]:
    parts = [wire_frames(token), byte_frames(token), crossed_frames(token)]
    if seeds(token):
        parts += [mutated_frames(token), mutated_frames(token)]
    parts.append(st.tuples(_channel(token), _native(token), json_values.map(encode)))
    return st.one_of(*parts)


# -- the property --------------------------------------------------------------------------
SIZE_FIELDS = {
    "size", "bid_size", "ask_size", "volume", "open_interest", "open_interest_value",
    "volume_24h", "quote_volume_24h", "lot_size", "tick_size", "contract_size",
}  # fmt: skip


class Finding(AssertionError):
    """A property violation: what the frame was and what went wrong."""


def check_out(o: Out) -> schemas.MarketMessage:
    try:
        msg = schemas.decode(o.data)
    except msgspec.DecodeError as exc:
        raise Finding(f"published bytes do not decode: {exc}: {o.data[:300]!r}") from None
    tag = type(msg).__struct_config__.tag
    want = subjects.market(str(tag), msg.venue, msg.symbol)
    if o.subject != want:
        raise Finding(f"subject {o.subject!r} but the message says {want!r}")
    if not o.msg_id:
        raise Finding("empty Nats-Msg-Id")
    for name in msg.__struct_fields__:
        v = getattr(msg, name)
        if isinstance(v, float):
            if not math.isfinite(v):
                raise Finding(f"{tag}.{name} = {v}")
            if name in SIZE_FIELDS and v < 0:
                raise Finding(f"{tag}.{name} = {v} < 0")
        elif name in ("bids", "asks"):
            for lvl in v:
                if not (math.isfinite(lvl[0]) and math.isfinite(lvl[1]) and lvl[1] >= 0):
                    raise Finding(f"{tag}.{name} level {lvl}")
    return msg


def check(norm: Normalizer, token: str, case: Case) -> list[schemas.MarketMessage] | str:
    """Run one frame through the worker's normalize; the typed messages or the DLQ reason."""
    channel, native, data = case
    subject = subjects.raw(token, channel or "_", native or "_")
    res = norm.normalize(subject, data, {subjects.H_RECV_NS: str(RecvNs)}, 1)
    if isinstance(res, Dead):
        if not res.reason.strip():
            raise Finding(f"dead letter without a reason for {case!r}")
        known = KNOWN_FINDINGS.get(token, ())
        if res.reason.startswith(PARSER_ERROR) and not res.reason.startswith(
            tuple(f"{PARSER_ERROR} {k}:" for k in known)
        ):
            raise Finding(f"{token}/{channel}: {res.reason[:300]} for {data[:300]!r}")
        return res.reason
    try:
        return [check_out(o) for o in res]
    except Finding as exc:
        if any(k in str(exc) for k in KNOWN_FINDINGS.get(token, ())):
            return f"known finding: {exc}"
        raise


# -- exec commands -------------------------------------------------------------------------
class Recorder:
    """The executor engine's publisher, in memory: what it would put on EXEC and DLQ."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []
        self.dead: list[tuple[bytes, str]] = []

    async def publish(self, subject: str, msg: schemas.ExecBase, msg_id: str) -> None:
        self.published.append((subject, schemas.encode(msg), msg_id))

    async def dlq(self, data: bytes, reason: str) -> None:
        self.dead.append((data, reason))


def exec_engine() -> tuple[Any, Recorder] | None:
    """The executor's command path (``executor.engine.Engine.handle``, the function its
    worker calls per command) on the paper venue with market data for BTC-USDT; None when
    the executor package is not there. HOOK: if the executor grows a pure validation
    function, fuzz that here as well."""
    try:
        from executor.engine import Engine, Marks
        from executor.venues.paper import PaperVenue
    except ImportError:
        return None
    from streams.settings import AccountSettings

    cfg = AccountSettings()
    marks, venue, rec = Marks(), PaperVenue(cfg), Recorder()
    depth = schemas.Depth(
        venue="binance", symbol="BTC-USDT", ts_event=1, ts_recv=1,
        bids=[(64999.0, 1.0)], asks=[(65001.0, 1.0)], seq=1, levels=1,
    )  # fmt: skip
    marks.on_market(depth)
    venue.on_market(depth)
    for symbol in ("BTC-USDT", "ETH-USDT"):  # precision, as the worker learns it from MARKET
        venue.on_market(schemas.Instrument(
            venue="binance", symbol=symbol, ts_event=1, ts_recv=1,
            native_symbol=symbol.replace("-", ""), kind="spot", base=symbol[:3],
            quote="USDT", tick_size=0.01, lot_size=0.00001,
        ))  # fmt: skip
    return Engine("paper", cfg, venue, rec, marks, clock=lambda: 1_700_000_000.0), rec


QTY = ["0.001", "0.5", "1", "0", "-1", "1e-9", "1e30", "0.0000001", "100000000", "0.00001"]
PRICES = ["65000", "64000.5", "65001", "0.001", "1e15", "-5", "0", "65000.123456789"]


@st.composite
def order_commands(draw: st.DrawFn) -> bytes:
    """A plausible command (odd but well-typed values), then 0-2 fields broken or removed:
    one bad field per command reaches deeper into validation than many."""
    cmd: dict[str, Any] = {
        "type": "order_command", "account": "paper", "venue": "binance",
        "symbol": draw(st.sampled_from(["BTC-USDT", "BTC-USDT", "ETH-USDT", "XRP-USDT"])),
        "ts_event": 1, "ts_recv": 1,
        "action": draw(st.sampled_from(["new", "new", "new", "cancel", "replace", "cancel_all"])),
        "client_order_id": draw(st.one_of(st.sampled_from(["c1", "c2", "c3", "c4"]),
                                          st.text(min_size=1, max_size=40))),
        "side": draw(st.sampled_from(["buy", "sell"])),
        "order_type": draw(st.sampled_from(["market", "limit", "limit", "stop", "stop_limit",
                                            "take_profit"])),
        "quantity": draw(st.one_of(st.sampled_from(["0.001", "0.5", "1"]),
                                   st.sampled_from(QTY + NUMERIC_STRINGS))),
        "price": draw(st.one_of(st.sampled_from(["65000", "64000.5"]),
                                st.sampled_from(PRICES + NUMERIC_STRINGS))),
        "time_in_force": draw(st.sampled_from(["GTC", "IOC", "FOK", "POST_ONLY"])),
        "reduce_only": draw(st.booleans()),
    }  # fmt: skip
    for key in ("price", "stop_price", "timeout_s", "side", "order_type"):
        if draw(st.integers(0, 3)) == 0:
            cmd.pop(key, None)
    if draw(st.booleans()):
        cmd["stop_price"] = draw(st.sampled_from(PRICES))
    if draw(st.booleans()):
        cmd["timeout_s"] = draw(st.sampled_from([0.5, 30.0, -1.0, 0.0, 1e308]))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(cmd)))
        if draw(st.booleans()):
            cmd[key] = draw(adversarial_leaf)
        else:
            cmd.pop(key)
    return encode(cmd)
