"""The sink worker: durable pull consumers on MARKET and RAW -> ClickHouse, effectively once.

Per pipe (MARKET, RAW): fetch batches, hold them until ``max_batch_rows`` or
``flush_interval_s``, insert column-oriented per table, and only after the inserts
commit ack the last message (AckAll). Redelivery after a crash starts at the consumer's
ack floor, in order (streams/bus/consumer.py); rows carry their stream sequence, and a
per-table high-water mark skips whatever was already stored. Plain ``count()`` never
sees duplicates, no ``FINAL`` needed.

With ``sink.shared`` several sink processes split the work through one shared durable per
stream (streams/bus/shared_consumer.py). A high-water mark means nothing with several writers
(one instance may commit seq 5,000 while another still holds 4,000), so there the rule is:
a message delivered for the first time cannot have been stored by anyone, and is inserted;
a redelivered one (``delivered > 1``), or one older than the point where the shared durable
took over from a single sink, is looked up in its table by ``stream_seq`` first.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import zlib
from array import array
from collections import defaultdict
from collections.abc import Callable

import msgspec
from clickhouse_connect.driver.exceptions import OperationalError
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge, Histogram

from sinks.clickhouse import tables
from sinks.clickhouse.sqlservice import Sandbox, SqlService
from sinks.clickhouse.store import InsertFault, Store, without_pandas
from streams import schemas, subjects
from streams.bus.consumer import BatchConsumer, stream_seq
from streams.bus.delivery import Delivery
from streams.bus.logs import redact_url
from streams.bus.runtime import Worker, collect_young_every
from streams.bus.shared_consumer import SharedConsumer
from streams.provision import STREAM_DLQ, STREAM_EXEC, STREAM_MARKET, STREAM_RAW
from streams.settings import ConsumerSettings

log = logging.getLogger("sinks.clickhouse")
RAW_CACHE_MAX = 100_000  # raw subjects / connection ids remembered for raw_frames rows
META_CHECK_BELOW = "jm_check_below"  # shared durable metadata (Pipe.check_below)

ROWS = Counter("jetmarket_sink_rows_total", "rows inserted", ["table"])
SKIPPED = Counter(
    "jetmarket_sink_skipped_total", "redelivered rows skipped (already stored)", ["table"]
)
INSERT_SECONDS = Histogram("jetmarket_sink_insert_seconds", "one table insert")
FAILURES = Counter("jetmarket_sink_insert_failures_total", "failed insert attempts", ["table"])
DLQ = Counter("jetmarket_sink_dlq_total", "messages sent to dlq.sink")
LAG = Gauge("jetmarket_sink_lag", "messages not yet stored (consumer pending)", ["stream"])
BATCH = Histogram(
    "jetmarket_sink_batch_rows",
    "messages per flush",
    buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000),
)


class Unstored(Exception):
    """Stopping while inserts fail: the batch stays unacked and is redelivered on restart."""


class Pipe:
    """One consumer -> ClickHouse loop."""

    def __init__(self, sink: ClickHouseSink, stream: str, cfg: ConsumerSettings, filt: str):
        self.sink = sink
        self.stream = stream
        self.shared = sink.cfg.shared
        self.consumer: BatchConsumer | SharedConsumer = (
            SharedConsumer if self.shared else BatchConsumer
        )(sink.w.js, stream, cfg, filt)  # type: ignore[arg-type]
        self.limit = min(sink.cfg.max_batch_rows, max(cfg.batch * 4, 10_000))
        self.pending: list[Msg] = []
        self.pending_seqs: list[int] = []  # their stream sequences (read once, on arrival)
        self.pending_suspect: list[bool] = []  # shared mode: may already be stored
        self.flushing: list[Msg] = []
        self.first_at = 0.0
        # shared mode: messages up to this stream sequence may have been stored by the
        # single sink that ran before the shared durable existed (its metadata says)
        self.check_below = 0
        self.progress_at = time.monotonic()

    async def start(self, start_seq: int | None, check_below: int) -> None:
        if isinstance(self.consumer, SharedConsumer):
            await self.consumer.start(start_seq, {META_CHECK_BELOW: str(check_below)})
            self.check_below = int(self.consumer.metadata.get(META_CHECK_BELOW, "0"))
        else:
            await self.consumer.start()

    async def _keepalive(self) -> None:
        """Shared mode: ``+WPI`` for what this instance holds, so a batch waiting on a
        slow or failing insert is not redelivered to another instance meanwhile."""
        assert isinstance(self.consumer, SharedConsumer)
        every = self.consumer.cfg.ack_wait_s / 4
        while not await self.sink.w.sleep(every):
            await self.consumer.progress([*self.flushing, *self.pending])
            self.progress_at = time.monotonic()

    async def run(self) -> None:
        w, cfg = self.sink.w, self.sink.cfg
        keepalive = asyncio.create_task(self._keepalive()) if self.shared else None
        try:
            while not w.stop.is_set():
                room = self.limit - len(self.pending)
                msgs = await self.consumer.fetch(min(room, self.consumer.cfg.batch))
                if msgs:
                    if not self.pending:
                        self.first_at = time.monotonic()
                    self.pending.extend(msgs)
                    self.pending_seqs.extend(self.consumer.seqs)
                    if isinstance(self.consumer, SharedConsumer):
                        below = self.check_below
                        self.pending_suspect.extend(
                            d > 1 or s <= below
                            for s, d in zip(
                                self.consumer.seqs, self.consumer.delivered, strict=True
                            )
                        )
                due = self.pending and (
                    len(self.pending) >= self.limit
                    or time.monotonic() - self.first_at >= cfg.flush_interval_s
                )
                if due:
                    await self.flush()
            if self.pending:
                await self.flush()  # graceful stop: store and ack what we hold
        except Unstored:
            log.warning(
                "stopping with unstored messages; unacked, they are redelivered on restart",
                extra={"stream": self.stream},
            )
        finally:
            if keepalive is not None:
                keepalive.cancel()
            await self.consumer.stop()

    async def flush(self) -> None:
        msgs, self.pending = self.pending, []
        seqs, self.pending_seqs = self.pending_seqs, []
        suspect, self.pending_suspect = self.pending_suspect, []
        self.flushing = msgs
        if self.stream == STREAM_RAW:
            groups = self.sink.raw_columns(msgs, seqs)
        elif self.stream == STREAM_EXEC:
            groups = await self.sink.market_columns(msgs, schemas.decode_exec, seqs)
        else:
            groups = await self.sink.market_columns(msgs, seqs=seqs)
        if isinstance(self.consumer, SharedConsumer):
            if time.monotonic() - self.progress_at > self.consumer.cfg.ack_wait_s * 0.75:
                # the keepalive has not run for most of ack_wait (this process stalled):
                # any of these may have been handed to another instance meanwhile
                suspect = [True] * len(seqs)
            await self._shared_flush(
                groups,
                {s for s, x in zip(seqs, suspect, strict=True) if x},
                dict(zip(seqs, msgs, strict=True)),
            )
            await self.consumer.ack(msgs, seqs)
        else:
            by_seq = dict(zip(seqs, msgs, strict=True))
            for table, (names, data, first, last) in groups.items():
                await self.sink.insert(table, names, data, first, last, by_seq=by_seq)
            await self.consumer.ack_through(msgs[-1])
        self.flushing = []
        BATCH.observe(len(msgs))

    async def _shared_flush(
        self, groups: dict[str, tuple], suspects: set[int], by_seq: dict[int, Msg]
    ) -> None:
        store = self.sink.store
        for table, (names, data, _, _) in groups.items():
            seqs = data[-1]
            if suspects:
                maybe = [s for s in seqs if s in suspects]
                stored = await store.call(store.stored_seqs, table, maybe) if maybe else set()
                if stored:
                    SKIPPED.labels(table).inc(len(stored))
                    data = tables.drop_rows(data, {i for i, s in enumerate(seqs) if s in stored})
                    seqs = data[-1]
                    if not seqs:
                        continue
            # several writers: first-last alone no longer names one set of rows
            crc = zlib.crc32(array("Q", seqs).tobytes())
            await self.sink.insert(
                table, names, data, min(seqs), max(seqs), token=f"{len(seqs)}:{crc:08x}",
                by_seq=by_seq,
            )  # fmt: skip


# The EXEC message types each subject kind carries (exec.<kind>.<account>...). Only the
# executor may publish exec.evt/exec.pos; exec.cmd is open to traders, so a fill or position
# there is forged and must not be stored as the account's history.
EXEC_KINDS: dict[str, tuple[type, ...]] = {
    "cmd": (schemas.OrderCommand, schemas.AlgoCommand),
    "evt": (schemas.OrderUpdate, schemas.Fill, schemas.ParentUpdate, schemas.Tca),
    "pos": (schemas.Position,),
}


def _exec_kind_ok(subject: str, obj: object) -> bool:
    parts = subject.split(".")
    if len(parts) < 3 or not isinstance(obj, EXEC_KINDS.get(parts[1], ())):
        return False
    account = obj.account  # type: ignore[attr-defined]
    return bool(account) and subjects.token(account) == parts[2]


class ClickHouseSink:
    def __init__(self, w: Worker) -> None:
        self.w = w
        self.cfg = w.settings.sink
        self.store = Store(w.settings.clickhouse.dsn, fail_inserts_file=self.cfg.fail_inserts_file)
        self.watermarks: dict[str, int] = {}
        self.limits: dict[str, dict[str, tuple[int, int]]] = {}
        self.rows: dict[str, int] = defaultdict(int)
        self.failing = False
        self.partition_columns: dict[str, str] = {}  # table -> its partition key's column
        self.dead_batches = 0  # batches sent to dlq.sink after insert_tries refusals
        self.degraded_until = 0.0  # health stays degraded this long after one
        self._raw_places: dict[str, tuple[str, str, str] | None] = {}  # see _raw_place
        self._raw_conns: dict[bytes, str] = {}

    # -- batches -> columns --------------------------------------------------------------
    async def market_columns(
        self,
        msgs: list[Msg],
        decode: Callable[[bytes], object] = schemas.decode,
        seqs: list[int] | None = None,
    ) -> dict[str, tuple]:
        """Typed messages (MARKET, or EXEC with ``decode=schemas.decode_exec``) -> columns.

        Per message only the decode and two appends: the table and its high-water mark are
        looked up once per message class, and the sequence -> message map the dead letters
        quote is built only when a row is refused."""
        # message class -> (messages, their stream sequences, the table's high-water mark)
        by_cls: dict[type, tuple[list, list[int], int]] = {}
        dead = []
        seq_list = seqs or [stream_seq(m) for m in msgs]
        check_exec = decode is schemas.decode_exec
        for m, seq in zip(msgs, seq_list, strict=True):
            try:
                obj = decode(m.data)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                dead.append((m, seq, f"undecodable message: {exc}"))
                continue
            cls = type(obj)
            if check_exec and not _exec_kind_ok(m.subject, obj):
                # e.g. a fill published on exec.cmd.*: not the executor's, never a real fill
                dead.append((m, seq, f"{cls.__name__} with account {obj.account!r} "  # type: ignore[attr-defined]
                             f"does not belong on {m.subject}"))  # fmt: skip
                continue
            entry = by_cls.get(cls)
            if entry is None:
                mark = self.watermarks.get(tables.TABLE_OF_CLASS[cls], 0)
                entry = by_cls[cls] = ([], [], mark)
            if seq <= entry[2]:
                SKIPPED.labels(tables.TABLE_OF_CLASS[cls]).inc()
                continue
            entry[0].append(obj)
            entry[1].append(seq)
        out = {}
        by_seq: dict[int, Msg] = {}
        for cls, (objs, seqs, _) in by_cls.items():
            if not objs:
                continue  # every one already stored
            table, names = tables.TABLE_OF_CLASS[cls], tables.columns(cls)
            data = tables.to_columns(cls, objs, seqs)
            bad = tables.out_of_range(names, data, self.limits.get(table, {}))
            if bad:
                by_seq = by_seq or dict(zip(seq_list, msgs, strict=True))
                for i, why in bad.items():
                    m = by_seq[seqs[i]]
                    dead.append((m, seqs[i], f"value out of range for {table}: {why}"))
                data = tables.drop_rows(data, set(bad))
                seqs = data[-1]
                if not seqs:
                    continue
            out[table] = (names, data, seqs[0], seqs[-1])
        if dead:
            await self._dead_letters(dead)
        return out

    def raw_columns(self, msgs: list[Delivery], seqs: list[int] | None = None) -> dict[str, tuple]:
        table = tables.RAW_TABLE
        mark = self.watermarks.get(table, 0)
        cols: list[list] = [[] for _ in tables.RAW_COLUMNS]
        # (the sequence column is not ``seqs``: that name once hid the argument, and every
        # row's sequence was read again from its ack subject)
        venue, channel, symbol, ts, conn, subj, payload, seq_col = cols
        places, conns = self._raw_places, self._raw_conns
        for m, seq in zip(msgs, seqs or [stream_seq(m) for m in msgs], strict=True):
            if seq <= mark:
                SKIPPED.labels(table).inc()
                continue
            subject = m.subject
            place = places.get(subject, False)
            if place is False:
                place = self._raw_place(subject)
            if place is None:
                continue  # an account's private frames stay out of SQL (executor/venues/private)
            try:  # both values from the raw header block in one split: no dict per frame
                recv, conn_raw = m.raw_stamp()
                conn_id = conns.get(conn_raw)
                if conn_id is None:
                    conn_id = self._raw_conn(conn_raw)
            except (KeyError, ValueError):  # an odd block: the headers as nats-py reads them
                h = m.headers or {}
                conn_id = h.get(subjects.H_CONN, "")
                try:
                    recv = int(h.get(subjects.H_RECV_NS, "0"))
                except ValueError:
                    recv = 0  # kept anyway: the raw table stores what arrived
            if not 0 <= recv < 2**63:
                recv = 0  # a DateTime64 cannot hold it; the frame is still stored
            venue.append(place[0])
            channel.append(place[1])
            symbol.append(place[2])
            ts.append(recv)
            conn.append(conn_id)
            subj.append(subject)
            payload.append(m.data)
            seq_col.append(seq)
        if not seq_col:
            return {}
        return {table: (tables.RAW_COLUMNS, cols, seq_col[0], seq_col[-1])}

    def _raw_place(self, subject: str) -> tuple[str, str, str] | None:
        """(venue, channel, symbol) of a raw subject for its row, None for an account's
        private frames; cached per subject (a few hundred): a split per frame was a tenth
        of building the rows."""
        if len(self._raw_places) >= RAW_CACHE_MAX:  # only junk subjects grow it this far
            self._raw_places.clear()
        if subject.startswith(subjects.RAW_PRIVATE_PREFIX):
            place = None
        else:
            # at most 4 splits: a partitioned RAW's ``.<N>.<p>`` tail stays out of the symbol
            parts = [*subject.split(".", 4), "", "", ""]
            place = (parts[1], parts[2], parts[3])
        self._raw_places[subject] = place
        return place

    def _raw_conn(self, raw: bytes) -> str:
        """A connection id header value as text, cached (one per collector connection)."""
        if len(self._raw_conns) >= RAW_CACHE_MAX:
            self._raw_conns.clear()
        text = self._raw_conns[raw] = raw.decode("utf-8", "replace")
        return text

    async def _dead_letters(self, dead: list[tuple[Msg, int, str]]) -> None:
        js = self.w.js
        assert js is not None
        for m, seq, reason in dead:
            headers = {
                subjects.H_REASON: subjects.one_line(reason),
                subjects.H_SOURCE: m.subject,
                # per stream: MARKET, EXEC and RAW sequences overlap
                subjects.H_MSG_ID: f"sink:{m.subject.split('.', 1)[0]}:{seq}",
            }
            await js.publish(subjects.dlq("sink"), m.data, headers=headers, stream=STREAM_DLQ)
            DLQ.inc()
        log.warning("messages sent to dlq.sink", extra={"count": len(dead)})

    # -- inserts -------------------------------------------------------------------------
    async def insert(
        self, table: str, names: list[str], data: list[list], first: int, last: int,
        token: str = "", by_seq: dict[int, Msg] | None = None,
    ) -> None:  # fmt: skip
        """Insert until it commits, acking nothing meanwhile. The block is split so no insert
        spans more than ``max_partitions_per_insert`` days. A part that ClickHouse keeps
        refusing (not an outage) goes to dlq.sink after ``insert_tries`` with a gap row, so
        one bad batch never blocks the stream for good."""
        token = f"{table}:{first}-{last}" + (f":{token}" if token else "")
        column = self.partition_columns.get(table)
        parts = (
            tables.split_by_day(names, data, column, self.cfg.max_partitions_per_insert)
            if column in names
            else [data]
        )
        n = 0
        for k, part in enumerate(parts):
            # one block keeps the plain token (dedup across restarts as before)
            tok = token if len(parts) == 1 else f"{token}:part{k}of{len(parts)}"
            if await self._insert_part(table, names, part, tok, by_seq):
                n += len(part[-1])
        ROWS.labels(table).inc(n)
        self.rows[table] += n
        if not self.cfg.shared:
            self.watermarks[table] = last
        if time.monotonic() >= self.degraded_until:
            self.w.health.set("ok", rows=dict(self.rows))
        else:
            self.w.health.fields["rows"] = dict(self.rows)

    async def _insert_part(
        self, table: str, names: list[str], data: list[list], token: str,
        by_seq: dict[int, Msg] | None,
    ) -> bool:  # fmt: skip
        """True once stored, False when dead-lettered."""
        delay = 0.2
        refused = 0
        while True:
            t0 = time.perf_counter()
            try:
                await self.store.call(self.store.insert, table, names, data, token)
                break
            except Exception as exc:
                FAILURES.labels(table).inc()
                if not self.failing:
                    log.error(
                        "insert failed, retrying", extra={"table": table, "error": str(exc)[:300]}
                    )
                self.failing = True
                self.w.health.set("degraded", error=f"{table}: {str(exc)[:200]}")
                # an outage (ClickHouse away, the drill's fault file) is waited out; an
                # error ClickHouse keeps giving for this very block is counted
                if not isinstance(exc, InsertFault | OperationalError | OSError):
                    refused += 1
                    if refused >= self.cfg.insert_tries and by_seq is not None:
                        await self._dead_batch(table, names, data, by_seq, exc)
                        return False
                if self.w.stop.is_set() or await self.w.sleep(delay):
                    # nothing is acked, so nothing is lost: the batch is redelivered later
                    raise Unstored(table) from exc
                delay = min(delay * 2, self.cfg.retry_max_s)
        INSERT_SECONDS.observe(time.perf_counter() - t0)
        if self.failing:
            log.info("inserts recovered", extra={"table": table})
            self.failing = False
        return True

    async def _dead_batch(
        self, table: str, names: list[str], data: list[list], by_seq: dict[int, Msg],
        exc: Exception,
    ) -> None:  # fmt: skip
        """Send the rows ClickHouse refused ``insert_tries`` times to dlq.sink (their
        original messages, reason in the header), record a gap row, stay degraded a while."""
        seqs = data[-1]
        why = f"insert into {table} refused {self.cfg.insert_tries} times: {str(exc)[:600]}"
        await self._dead_letters([(by_seq[s], s, why) for s in seqs if s in by_seq])
        self.dead_batches += 1
        self.failing = False
        self.degraded_until = time.monotonic() + 300.0
        detail = f"{len(seqs)} rows of {table} (seq {seqs[0]}-{seqs[-1]}) sent to dlq.sink: {why}"
        log.error("batch dead-lettered", extra={"table": table, "rows": len(seqs),
                                                "first": seqs[0], "last": seqs[-1]})  # fmt: skip
        self.w.health.set("degraded", error=detail[:300], dead_batches=self.dead_batches)
        now = time.time_ns()
        gap = schemas.Gap(venue="jetmarket", symbol="sink", ts_event=now, ts_recv=now,
                          reason="other", channel=table, expected_seq=seqs[0],
                          got_seq=seqs[-1], detail=detail[:2000])  # fmt: skip
        g_names = tables.columns(schemas.Gap)
        g_data = tables.to_columns(schemas.Gap, [gap], [0])
        try:
            await self.store.call(self.store.insert, "gaps", g_names, g_data, f"dead:{now}")
        except Exception as gexc:  # the DLQ entry and the log line still record it
            log.error("gap row not stored", extra={"error": str(gexc)[:300]})

    # -- run -----------------------------------------------------------------------------
    async def run(self) -> None:
        w = self.w
        assert w.nc is not None
        if _own_process():
            without_pandas()  # not imported at the first insert (store.without_pandas)
            collect_young_every()  # ~970 young collections per 200k trades at Python's 700
        applied = await self.store.call(self.store.apply_ddl)
        ttl_days = msgspec.to_builtins(w.settings.clickhouse.ttl_days)
        changed, foreign = await self.store.call(self.store.apply_ttl, ttl_days)
        for line in changed:
            log.info("table TTL set", extra={"ttl": line})
        for line in foreign:
            log.warning("table TTL not changed", extra={"ttl": line})
        keys = await self.store.call(self.store.partition_keys)
        self.partition_columns = {
            t: c for t, k in keys.items() if (c := tables.partition_column(k)) is not None
        }
        for table in [*tables.TABLES.values(), *tables.EXEC_TABLES.values(), tables.RAW_TABLE]:
            self.watermarks[table] = await self.store.call(self.store.watermark, table)
            types = await self.store.call(self.store.column_types, table)
            self.limits[table] = tables.bounds(types)
        dsn = redact_url(w.settings.clickhouse.dsn)
        log.info("clickhouse ready", extra={"ddl": applied, "dsn": dsn})
        # queries run in read-only sessions of their own, never the inserts' (sqlservice.py);
        # a queue group: with several sink instances, one of them answers each query
        server = not w.settings.clickhouse.dsn.startswith("chdb://")
        qdsn = self.cfg.sql.query_dsn if server and self.cfg.sql.query_dsn else None
        sandbox = Sandbox(qdsn or w.settings.clickhouse.dsn, self.cfg.sql)
        sql_sub = await w.nc.subscribe(
            subjects.SQL_QUERY, queue="sink-sql", cb=SqlService(w.nc, sandbox).handle
        )
        pipes = [
            Pipe(self, STREAM_MARKET, self.cfg.market, subjects.MARKET_ALL),
            Pipe(self, STREAM_EXEC, self.cfg.exec, subjects.EXEC_ALL),
        ]
        if self.cfg.store_raw:
            pipes.append(Pipe(self, STREAM_RAW, self.cfg.raw, subjects.RAW_ALL))
        for p in pipes:
            await p.start(*await self._takeover(p))
        if self.cfg.shared:
            self.watermarks = {}  # meaningless with several writers (module docstring)
        w.health.set("ok", rows={})
        lag = asyncio.create_task(self._lag_loop(pipes))
        try:
            await asyncio.gather(*(p.run() for p in pipes))
        finally:
            lag.cancel()
            await sql_sub.unsubscribe()
            await sandbox.aclose()
            await self.store.aclose()

    async def _takeover(self, p: Pipe) -> tuple[int | None, int]:
        """Shared mode: where a new shared durable starts, and up to which sequence its
        messages must be looked up before insert. A single sink that ran before has
        stored everything up to its durable's ack floor, and possibly (inserted, not yet
        acked) up to its tables' high-water mark: start after the floor, check up to the
        mark. Used only by the instance that creates the durable; the others read the
        result from its metadata. The single sink must be stopped first (docs/scaling.md)."""
        if not self.cfg.shared:
            return None, 0
        own = {
            STREAM_MARKET: tables.TABLES.values(),
            STREAM_EXEC: tables.EXEC_TABLES.values(),
            STREAM_RAW: [tables.RAW_TABLE],
        }[p.stream]
        mark = max((self.watermarks.get(t, 0) for t in own), default=0)
        try:
            info = await self.w.js.consumer_info(p.stream, p.consumer.cfg.durable)
        except NotFoundError:
            return None, mark  # no single sink ever ran (or its durable is gone): check all
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        return (floor + 1 if floor else None), mark

    async def _lag_loop(self, pipes: list[Pipe]) -> None:
        while not await self.w.sleep(5.0):
            for p in pipes:
                try:
                    LAG.labels(p.stream).set(await p.consumer.lag())
                except Exception:  # server briefly away; next round
                    pass


def _own_process() -> bool:
    """True in ``python -m sinks`` (the worker's own process), not in tests or tools that
    run the sink beside other code."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return getattr(spec, "name", "") == "sinks.__main__"


async def main(w: Worker) -> None:
    await ClickHouseSink(w).run()
