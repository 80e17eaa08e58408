"""Columnar replay (replay/columnar.py) gives what ``replay()`` gives, bit for bit: the same
messages, subjects, sequences and bytes in the same order, from ClickHouse and from a
Parquet export; and it refuses data that would break the order."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nats.aio.client import Client

from replay import Digest, Replay, ReplayMsg
from replay.columnar import Columnar, ColumnarError, arrow_copy, replay_batches
from sinks.clickhouse.store import Store
from sinks.clickhouse.tables import TABLE_OF_CLASS, columns, to_columns
from sinks.clickhouse.ttl import KEEP_ALL
from streams import schemas
from streams.settings import Settings
from streams.tables import TABLES
from tests.replay.test_clickhouse import messages

S = 1_000_000_000
T0 = 1_750_000_000 * S


def extra(t0: int) -> list[schemas.Base]:
    """Trades and depth of two symbols with many receive-time ties (the common case)."""
    out: list[schemas.Base] = []
    for i in range(600):
        ts = t0 + (i // 6) * 1_000_000
        sym = ("BTC-USDT", "ETH-USDT")[i % 2]
        if i % 3:
            out.append(schemas.Trade(venue="binance", symbol=sym, ts_event=ts - 7, ts_recv=ts,
                                     id=f"t{i}", price=100.0 + i / 7, size=0.1 + i / 1000,
                                     side=("buy", "sell", "unknown")[i % 3]))  # fmt: skip
        else:
            out.append(schemas.Depth(venue="binance", symbol=sym, ts_event=ts, ts_recv=ts,
                                     bids=[(100.0 - k / 3, 1.0 + k) for k in range(i % 4)],
                                     asks=[(101.0 + k, 0.5) for k in range(3)], seq=i,
                                     levels=5))  # fmt: skip
    return out


def store_market(dsn: str, msgs: list[schemas.Base]) -> None:
    """Through the sink's own column builder and insert, in shuffled parts (the tables'
    physical order then differs from the replay order), stream sequences as MARKET's."""
    store = Store(dsn)
    store.apply_ddl()
    store.apply_ttl(KEEP_ALL)  # historic timestamps: no table TTL
    by_cls: dict[type, list[tuple[schemas.Base, int]]] = {}
    for seq, m in enumerate(msgs, 1):
        by_cls.setdefault(type(m), []).append((m, seq))
    rnd = random.Random(7)
    for cls, items in by_cls.items():
        rnd.shuffle(items)
        for part in range(3):
            chunk = items[part::3]
            data = to_columns(cls, [m for m, _ in chunk], [s for _, s in chunk])
            store.insert(TABLE_OF_CLASS[cls], columns(cls), data, f"t{part}{cls.__name__}")
    store.close()


def key(msgs: list[ReplayMsg]) -> list[tuple]:
    return [(m.subject, m.stream, m.seq, m.ts_recv, m.data, m.msg) for m in msgs]


async def today(settings: Settings, nc: Client, **kw: object) -> list[ReplayMsg]:
    r = Replay(settings, source="clickhouse", clickhouse="direct", nc=nc, progress=False, **kw)  # type: ignore[arg-type]
    return [m async for m in r]


def columnar(settings: Settings, **kw: object) -> list[ReplayMsg]:
    return [m for b in replay_batches(settings, **kw) for m in b.replay_msgs()]  # type: ignore[arg-type]


@pytest.fixture
def loaded(settings: Settings) -> Settings:
    store_market(settings.clickhouse.dsn, messages(T0) + extra(T0 + 300_000_000))
    return settings


async def test_columnar_equals_replay_bit_for_bit(loaded: Settings, nc: Client) -> None:
    want = await today(loaded, nc, subjects="market.>")
    assert len(want) == 1000
    assert len({m.ts_recv for m in want}) < 400  # ties across tables are being tested
    for page in (7, 100, 100_000):  # windows smaller than a tie group, and one for all
        got = columnar(loaded, page_rows=page)
        assert key(got) == key(want), page
    d1, d2 = Digest(), Digest()
    d1.update(want)
    d2.update(got)
    assert d1.hexdigest() == d2.hexdigest()
    # typed messages alone (the fast path) are the same objects' values in the same order
    assert list(Columnar(loaded, page_rows=50)) == [m.msg for m in want]


async def test_columnar_selection_equals_replay(loaded: Settings, nc: Client) -> None:
    rng = {"start": T0 + 150_000_000, "end": T0 + 330_000_000}
    sel = {"venues": ["binance"], "symbols": ["ETH-USDT", "BTC-USDT"], "types": ["trade", "depth"]}
    want = await today(loaded, nc, **rng, **sel)
    got = columnar(loaded, page_rows=13, **rng, **sel)
    assert want and key(got) == key(want)
    assert {m.subject.split(".")[1] for m in got} == {"trade", "depth"}
    one = columnar(loaded, symbols=["ETH-USDT"], types=["depth"])
    assert one and {m.subject for m in one} == {"market.depth.binance.ETH-USDT"}


async def test_windows_bounded_by_event_time_miss_nothing(settings: Settings, nc: Client) -> None:
    """Each ClickHouse window is also bounded on ts_event by the selection's ts_recv - ts_event
    skew: rows whose venue time is far before, after, or equal to their receive time, over
    days (several partitions) and in windows of a few rows, come back all and in order, and
    depth-heavy (levels of 0 to 20 a side)."""
    day = 86_400 * S
    msgs: list[schemas.Base] = []
    for i in range(400):
        ts = T0 + (i // 3) * day // 40  # three per receive time, over about three days
        skew = (0, 7, -2 * day, 3 * day, 1)[i % 5]  # venue clock behind, ahead, equal
        base = {"venue": "binance", "symbol": ("BTC-USDT", "ETH-USDT")[i % 2],
                "ts_event": ts - skew, "ts_recv": ts}  # fmt: skip
        if i % 4 == 0:
            msgs.append(schemas.Trade(**base, id=f"s{i}", price=1.0 + i, size=0.5, side="buy"))
        else:
            lv = [(100.0 - k / 4, 1.0 + i + k) for k in range(i % 21)]
            msgs.append(schemas.Depth(**base, bids=lv, asks=lv[::-1], seq=i, levels=20))
    store_market(settings.clickhouse.dsn, msgs)
    want = await today(settings, nc, subjects="market.>")
    assert len(want) == 400
    for page in (5, 64, 100_000):
        assert key(columnar(settings, page_rows=page)) == key(want), page
    rng = {"start": T0 + day // 2, "end": T0 + 2 * day}
    want = await today(settings, nc, subjects="market.>", **rng)
    assert want and key(columnar(settings, page_rows=9, **rng)) == key(want)


def test_fetch_thread_stops_on_early_exit_and_errors_reach_the_caller(loaded: Settings) -> None:
    """The one thread fetching every table's windows stops when the caller leaves early (no
    thread left behind, the database opens again), and a table's error (here a column the
    schema has and the table lost) is raised to the caller, not lost in the thread."""
    import threading

    import clickhouse_connect

    def fetchers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "columnar-ahead"]

    for b in replay_batches(loaded, types=["trade", "depth"], page_rows=7):
        assert len(b) and len(fetchers()) == 1
        break
    assert not fetchers()
    assert len(list(Columnar(loaded, types=["trade", "depth"], page_rows=7))) == 650
    client = clickhouse_connect.get_client(dsn=loaded.clickhouse.dsn)
    client.command("ALTER TABLE depth DROP COLUMN levels")
    client.close()
    with pytest.raises(ColumnarError, match="table depth has no column levels"):
        list(Columnar(loaded, types=["trade", "depth"], page_rows=7))
    assert not fetchers()


def test_batches_carry_arrow_columns(loaded: Settings) -> None:
    n = 0
    for b in replay_batches(loaded, types=["trade", "depth"], symbols=["BTC-USDT"], page_rows=40):
        assert (b.ts_recv[1:] >= b.ts_recv[:-1]).all()
        msgs = b.messages()
        for i in (0, len(b) - 1):  # kind/row point at the Arrow row of each message
            t = b.types[b.kind[i]]
            row = b.tables[t].slice(int(b.row[i]), 1).to_pylist()[0]
            assert row["stream_seq"] == b.seq[i] and row["ts_recv"] == msgs[i].ts_recv
        n += len(b)
    assert n == 300 + 50  # extra(): half of 600; messages(): its 50 trades


def test_unsorted_parquet_is_refused(tmp_path: Path) -> None:
    tb = pa.table({"venue": ["x", "x"], "symbol": ["A", "A"], "ts_event": [2, 1],
                   "ts_recv": [2, 1], "mark_price": [1.0, 2.0], "index_price": [None, None],
                   "stream_seq": [2, 1]})  # fmt: skip
    pq.write_table(tb, tmp_path / "marks.parquet")
    with pytest.raises(ColumnarError, match="not sorted"):
        list(Columnar(source=tmp_path))


def test_locked_or_missing_source_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ColumnarError, match="no Parquet files"):
        list(Columnar(source=tmp_path / "nothing"))
    with pytest.raises(ValueError, match="end must be after start"):
        Columnar(source=tmp_path, start=10, end=5)


async def test_parquet_export_replays_like_clickhouse(
    loaded: Settings, nc: Client, tmp_path: Path
) -> None:
    from replay.export import export

    out = tmp_path / "export"
    done = export(loaded.clickhouse.dsn, out, list(TABLES), page_rows=64)
    assert sum(done.values()) == 1000 and (out / "trades.parquet").is_file()
    assert not (out / "liquidations.parquet").exists()  # nothing in range: no file
    # several row groups, so the range really skips some by their statistics
    assert pq.ParquetFile(out / "trades.parquet").metadata.num_row_groups > 1
    want = await today(loaded, nc, subjects="market.>")
    got = [m for b in replay_batches(source=out, page_rows=33) for m in b.replay_msgs()]
    assert key(got) == key(want)
    rng = {"start": T0 + 150_000_000, "end": T0 + 330_000_000, "symbols": ["ETH-USDT"]}
    want = await today(loaded, nc, **rng)
    got = [m for b in replay_batches(source=out, **rng) for m in b.replay_msgs()]  # type: ignore[arg-type]
    assert want and key(got) == key(want)
    # the Arrow IPC copy a sweep maps: batches outside the range skipped by their rows
    arrow = arrow_copy(out, tmp_path / "arrow")
    got = [m for b in replay_batches(source=arrow, **rng) for m in b.replay_msgs()]  # type: ignore[arg-type]
    assert key(got) == key(want)
    got = [m for b in replay_batches(source=arrow, page_rows=33) for m in b.replay_msgs()]
    assert len(got) == 1000
    # a range and a venue select from ClickHouse, CSV for other tools
    part = export(loaded.clickhouse.dsn, tmp_path / "csv", ["depth", "trade"], fmt="csv",
                  venues=["binance"], symbols=["BTC-USDT"], start=rng["start"],
                  end=rng["end"])  # fmt: skip
    text = (tmp_path / "csv" / "depth.csv").read_text().splitlines()
    assert part["depth"] == len(text) - 1 > 0 and '"[[' in text[1]
    assert all(',"BTC-USDT",' in line for line in text[1:])


def test_export_command(loaded: Settings, tmp_path: Path) -> None:
    import subprocess
    import sys

    from streams.settings import to_toml_env
    from tests.workers import ROOT

    out = subprocess.run(
        [sys.executable, "-m", "ops", "export", "--out", str(tmp_path / "x"), "--table", "trade",
         "--table", "nope"], env=to_toml_env(loaded), cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "unknown table 'nope'" in out.stderr, out.stderr[-500:]
    out = subprocess.run(
        [sys.executable, "-m", "ops", "export", "--out", str(tmp_path / "x"), "--table", "trade"],
        env=to_toml_env(loaded), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-500:]
    assert "trades" in out.stdout and "450 rows" in out.stdout
    assert pq.read_table(tmp_path / "x" / "trades.parquet").num_rows == 450
    (tmp_path / "afile").write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "ops", "export", "--out", str(tmp_path / "afile"), "--table",
         "trade"], env=to_toml_env(loaded), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-500:]
    assert out.stderr.strip() == f"jetmarket export: cannot write {tmp_path / 'afile'}: File exists"


def test_export_cut_short_leaves_no_file(
    loaded: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills mid-export: the error reaches the caller, and neither the table's
    file nor its part is left behind (a part of a table would read as the whole of it)."""
    import errno

    from replay import columnar as col
    from replay.export import export

    chunks = col.ClickHouseTables.chunks

    def full(self, *a, **kw):  # type: ignore[no-untyped-def]
        it = chunks(self, *a, **kw)
        yield next(it)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(col.ClickHouseTables, "chunks", full)
    with pytest.raises(OSError, match="No space left"):
        export(loaded.clickhouse.dsn, tmp_path / "x", ["trades"], page_rows=50)
    assert list((tmp_path / "x").iterdir()) == []


def test_chdb_owned_by_another_process_is_one_clear_error(tmp_path: Path) -> None:
    """A running sink owns its chdb path: the columnar replay says so instead of reading."""
    import subprocess
    import sys

    dsn = f"chdb://{tmp_path / 'ch'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, clickhouse_connect\n"
         f"c = clickhouse_connect.get_client(dsn={dsn!r}); c.query('SELECT 1')\n"
         "print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(ColumnarError, match="a running sink owns the chdb path"):
            list(Columnar(dsn=dsn, types=["trade"]))
    finally:
        holder.kill()
        holder.wait(10)


def test_replay_from_parquet_does_not_import_pandas(loaded: Settings, tmp_path: Path) -> None:
    """pyarrow imports pandas the first time a Python value becomes an Arrow scalar or an
    array goes through ``to_numpy`` (0.3-1.5 s and ~60 MB per process here): every sweep
    worker would pay it. A fresh process replays a selection of an export without it."""
    import subprocess
    import sys

    from replay.export import export

    out = tmp_path / "export"
    export(loaded.clickhouse.dsn, out, ["trades", "depth"])
    code = (
        "import sys\n"
        "from replay.columnar import replay_batches\n"
        f"bs = replay_batches(source={str(out)!r}, start={T0 + 150_000_000}, "
        f"end={T0 + 330_000_000}, venues=['binance'], symbols=['ETH-USDT'])\n"
        "n = sum(len(b.messages()) for b in bs)\n"
        "print(n, 'pandas' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, timeout=120, check=True)  # fmt: skip
    n, pandas = res.stdout.split()
    assert int(n) > 0 and pandas == "False", res.stdout


def test_levels_fixed_and_ragged_slices_equal_to_pylist() -> None:
    """Depth levels, as many in every row or not, are lists of (price, size) tuples equal to
    Arrow's own, on slices (whose offsets do not start at 0) too."""
    from replay.columnar import column_list

    f = [pa.field(n, pa.float64(), nullable=False) for n in ("1", "2")]
    ty = pa.list_(pa.struct(f))
    for width in (lambda i: 3, lambda i: i % 4):
        rows = [[{"1": i + k / 8, "2": k / 3} for k in range(width(i))] for i in range(50)]
        arr = pa.array(rows, ty)
        for part in (arr, arr.slice(7), arr.slice(7, 11), arr.slice(49), arr.slice(8, 1)):
            want = [[(d["1"], d["2"]) for d in r] for r in part.to_pylist()]
            got = column_list(part)
            assert got == want and all(type(x) is tuple for r in got for x in r)
