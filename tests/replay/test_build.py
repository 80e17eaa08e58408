"""The C builder of typed messages (replay/_build.c) against the Python one, column kind by
column kind: the same messages, value for value (floats bit for bit, types exactly), on every
market type from ClickHouse and from Parquet, and on Arrow columns shaped every way the
readers can hand them over (slices, chunks, nulls, large offsets, extreme numbers). Broken
column descriptions are errors, never a read out of bounds."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from replay import columnar
from replay.columnar import Columnar, builder
from replay.export import export
from streams import schemas
from streams.settings import Settings
from streams.tables import TABLES
from tests.replay.test_clickhouse import messages
from tests.replay.test_columnar import T0, extra, store_market
from tests.sinks.test_clickhouse import sample

if columnar._build is None:  # built by make venv wherever there is a C compiler, as in CI
    if os.environ.get("CI"):
        raise RuntimeError("replay/_build.c is not built: CI must test the C builder")
    pytest.skip("replay/_build.c not built (no C compiler at install)", allow_module_level=True)
_build = columnar._build


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down; floats bit for bit (-0.0, NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, msgspec.Struct):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    return bool(a == b)


def both(msg_type: str, table: pa.Table) -> list[Any]:
    c = builder(msg_type).build(table, compiled=True)
    p = builder(msg_type).build(table, compiled=False)
    assert len(c) == len(p) == table.num_rows
    bad = [i for i, (x, y) in enumerate(zip(c, p, strict=True)) if not same(x, y)]
    assert not bad, (msg_type, bad[:3], c[bad[0]], p[bad[0]])
    assert [schemas.encode(m) for m in c] == [schemas.encode(m) for m in p]
    return c


def test_every_market_type_from_clickhouse_and_parquet(settings: Settings, tmp_path: Path) -> None:
    every = [sample(k, i) for k in schemas.MARKET_TYPES for i in range(30)]
    store_market(settings.clickhouse.dsn, messages(T0) + extra(T0 + 300_000_000) + every)
    export(settings.clickhouse.dsn, tmp_path / "pq", [TABLES[t] for t in schemas.MARKET_TYPES])
    seen: dict[str, int] = {}
    for source in ("clickhouse", str(tmp_path / "pq")):
        for page in (7, 100_000):  # small windows: slices whose offsets do not start at 0
            for batch in Columnar(settings, source=source, page_rows=page).batches():
                for t in batch.types:
                    seen[t] = seen.get(t, 0) + len(both(t, batch.tables[t]))
                # the replay order gathered in C equals the Python gather
                c = batch.messages()
                batch._msgs = None
                saved, columnar._build = columnar._build, None
                try:
                    p = batch.messages()
                finally:
                    columnar._build = saved
                assert c == p
    assert set(seen) == set(schemas.MARKET_TYPES), set(schemas.MARKET_TYPES) - set(seen)


def dictionary(values: list[str | None]) -> pa.Array:
    return pa.array(values).dictionary_encode()


def depth_table(n: int, large: bool = False, f32: bool = False) -> pa.Table:
    """Depth rows with ragged level lists (some empty), odd strings and extreme numbers."""
    ft = pa.float32() if f32 else pa.float64()
    level = pa.struct([pa.field("1", ft, nullable=False), pa.field("2", ft, nullable=False)])
    lt = pa.large_list(level) if large else pa.list_(level)
    specials = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 0.1]
    bids = [[{"1": specials[(i + k) % 8], "2": k / 3} for k in range(i % 5)] for i in range(n)]
    asks = [[{"1": 100.0 + i + k, "2": 1e-8 * k} for k in range((i * 7) % 4)] for i in range(n)]
    st = pa.large_string() if large else pa.string()
    return pa.table({
        "venue": dictionary([("binance", "okx", "bybit")[i % 3] for i in range(n)]),
        "symbol": pa.array([("BTC-USDT", "ÉTH-€", "")[i % 3] for i in range(n)], st),
        "ts_event": pa.array([-(2**63) + i if i % 2 else 2**63 - 1 - i for i in range(n)]),
        "ts_recv": pa.array([T0 + i for i in range(n)], pa.int64()),
        "bids": pa.array(bids, lt),
        "asks": pa.array(asks, lt),
        "seq": pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()),
        "levels": pa.array([i % 65536 for i in range(n)], pa.uint16()),
    })  # fmt: skip


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("f32", [False, True])
def test_depth_columns_sliced_and_chunked(large: bool, f32: bool) -> None:
    tb = depth_table(300, large, f32)
    for part in (tb, tb.slice(1), tb.slice(17, 100), tb.slice(299), tb.slice(5, 0)):
        both("depth", part)
    chunked = pa.concat_tables([tb.slice(0, 40), tb.slice(40, 3), tb.slice(43)])
    assert chunked.column("bids").num_chunks == 3
    got = both("depth", chunked)
    assert [m.seq for m in got] == [2**64 - 1 - i for i in range(300)]


def test_trade_columns_with_nulls_bools_and_odd_strings() -> None:
    n = 200
    tb = pa.table({
        "venue": dictionary(["binance"] * n),
        "symbol": dictionary([None if i % 7 == 0 else "BTC-USDT" for i in range(n)]),
        "ts_event": pa.array([i if i % 5 else None for i in range(n)], pa.int64()),
        "ts_recv": pa.array(range(n), pa.int64()),
        "id": pa.array(["", "ä", "x" * 300, "\U0001f600", "7"] * (n // 5)),
        "price": pa.array([math.nan if i % 9 == 0 else i / 3 for i in range(n)], pa.float64()),
        "size": pa.array([None if i % 11 == 0 else i / 7 for i in range(n)], pa.float64()),
        "side": dictionary(["buy", "sell", "unknown", "buy"] * (n // 4)),
        "aggregated": pa.array([i % 3 == 0 for i in range(n)]),
    })  # fmt: skip
    for part in (tb, tb.slice(3), tb.slice(50, 60)):
        both("trade", part)
    empty_ids = tb.set_column(4, "id", pa.array([""] * n))  # no data buffer at all
    both("trade", empty_ids)


def f64(values: list[float]) -> np.ndarray:
    return np.array(values, np.float64)


def test_broken_columns_are_errors() -> None:
    cls, names = schemas.Depth, ("bids",)
    p, s = f64([1.0, 2.0]), f64([3.0, 4.0])
    odd = f64([1.0, 2.0, 3.0, 4.0])[::2]  # every second value: not contiguous
    bad = [
        ((_build.LEVELS, p, s, np.array([0, 3], np.int32)), "past the values"),
        ((_build.LEVELS, p, s, np.array([1, 0], np.int64)), "out of order"),
        ((_build.LEVELS, p, s, np.array([-1, 1], np.int64)), "out of order"),
        ((_build.LEVELS, p, s, np.array([0], np.int32)), "offsets must be 2"),
        ((_build.LEVELS, p, np.array([1, 2], np.int64), np.array([0, 1], np.int32)), "floats"),
        ((_build.LEVELS, odd, s, np.array([0, 1], np.int32)), "contiguous"),
        ((_build.DICT, ["a"], np.array([1], np.int32)), "past the dictionary"),
        ((_build.DICT, ["a"], np.array([-1], np.int8)), "past the dictionary"),
        ((_build.DICT, ["a"], f64([0.0])), "integers"),
        ((_build.NUM, f64([])), "shorter"),
        ((_build.STR, np.array([0, 9], np.int32), b"abc"), "past the values"),
        ((_build.STR, np.array([0, 1], np.int32), b"\xff"), "utf-8"),
        ((_build.NUM, np.array(["x"])), "unsupported buffer format"),
        ((_build.NUM, np.zeros((1, 2))), "unsupported buffer format"),
        ((9, f64([1.0])), "column kind 9"),
        ((_build.NUM,), "a column is a list or"),
        ([], "list column is shorter"),
    ]
    for spec, why in bad:
        with pytest.raises((ValueError, TypeError, BufferError, UnicodeDecodeError)) as e:
            _build.build(cls, names, [spec], 1)
        assert why.lower() in str(e.value).lower(), (spec, e.value)
    with pytest.raises(ValueError, match="1 names, 2 columns"):
        _build.build(cls, names, [[1], [2]], 1)


def test_take_checks_every_index() -> None:
    parts = [["a", "b"], ["c"]]
    got = _build.take(parts, np.array([1, 0, 0], np.int16), np.array([0, 1, 0], np.int64))
    assert got == ["c", "b", "a"]
    for kind, row in (([2], [0]), ([0], [2]), ([-1], [0]), ([0], [-1])):
        with pytest.raises(IndexError, match="out of range"):
            _build.take(parts, np.array(kind, np.int16), np.array(row, np.int64))
    with pytest.raises(ValueError, match="one length"):
        _build.take(parts, np.array([0, 0], np.int16), np.array([0], np.int64))


def test_the_built_module_is_newer_than_its_source() -> None:
    """A stale build would test old C: ``pip install -e .`` (``make venv``) rebuilds it."""
    so = Path(_build.__file__)
    c = so.with_name("_build.c")
    assert so.stat().st_mtime >= c.stat().st_mtime, (
        f"{so.name} is older than _build.c: run `pip install -e .` to rebuild it"
    )


def test_the_compiled_builder_is_refused_when_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "_build", None)
    tb = depth_table(3)
    assert len(builder("depth").build(tb)) == 3  # Python alone
    with pytest.raises(columnar.ColumnarError, match="not built"):
        builder("depth").build(tb, compiled=True)
