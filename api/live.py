"""What the API keeps live from the bus, for its read endpoints and the console: the last
BBO and trades of each symbol, recent gaps, each account's orders and positions, and the
health of every feed (venue/channel).

Everything here is a copy of messages others publish (the orderbook's BBO, the normalizer's
trades and gaps, the executor's order updates and positions) or the answer of an existing
service (RAW's subject counts, ``status.query``); nothing is computed a second way. The
callbacks keep raw bytes and decode only when asked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from streams import subjects
from streams.provision import STREAM_RAW

log = logging.getLogger("api.live")
TERMINAL = {"filled", "canceled", "rejected", "expired"}
SPARK = 60  # rate samples kept per feed (one per poll)


class Feed:
    """One venue/channel of RAW."""

    def __init__(self) -> None:
        self.frames = 0  # frames RAW holds now
        self.rate = 0.0  # frames/s over the last poll
        self.last_change = 0.0  # monotonic time the count last grew
        self.age0: float | None = None  # age of the newest frame at the first poll
        self.spark: deque[float] = deque(maxlen=SPARK)
        self.gaps = 0
        self.reconnects = 0
        self.raw = False  # a RAW channel; else only gap events name it ("ws", "book")
        self._closed: set[str] = set()  # connections whose close was counted

    def age(self, now: float) -> float | None:
        if self.last_change:
            return now - self.last_change
        return None if self.age0 is None else self.age0 + (now - START)


START = time.monotonic()
# the working algorithm parents a restarted API starts from (executor/algo's parents table)
PARENTS_SQL = (
    "SELECT account, venue, symbol, toUnixTimestamp64Nano(ts_event), parent_id, "
    "algo, state, side, quantity, filled, avg_price, children, reason FROM "
    "(SELECT * FROM parents ORDER BY ts_event DESC, version DESC "
    "LIMIT 1 BY account, parent_id) WHERE state IN ('working', 'paused') LIMIT 10000"
)


class Live:
    def __init__(self, nc: Client, *, trades_kept: int = 200, gaps_kept: int = 500) -> None:
        self.nc = nc
        self.bbo: dict[tuple[str, str], bytes] = {}
        self.trades: dict[tuple[str, str], deque[bytes]] = {}
        self.trades_kept = trades_kept
        self.gaps: deque[bytes] = deque(maxlen=gaps_kept)
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}  # (account, cid) -> update
        self.positions: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.parents: dict[tuple[str, str], dict[str, Any]] = {}  # (account, parent_id)
        self.feeds: dict[str, Feed] = {}
        self.workers: list[dict[str, Any]] = []
        self.polled = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, poll_s: float = 2.0) -> None:
        nc = self.nc
        await nc.subscribe(subjects.market_filter("bbo", "*", "*"), cb=self._on_bbo)
        await nc.subscribe(subjects.market_filter("trade", "*", "*"), cb=self._on_trade,
                           pending_msgs_limit=1_000_000)  # fmt: skip
        await nc.subscribe(subjects.market_filter("gap", "*", "*"), cb=self._on_gap)
        await nc.subscribe("exec.evt.>", cb=self._on_evt)
        await nc.subscribe("exec.pos.>", cb=self._on_pos)
        self._tasks.append(asyncio.create_task(self._poll_loop(poll_s)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # -- callbacks: keep bytes -----------------------------------------------------------
    async def _on_bbo(self, msg: Msg) -> None:
        _, _, venue, symbol = msg.subject.split(".", 3)
        self.bbo[venue, symbol] = msg.data

    async def _on_trade(self, msg: Msg) -> None:
        _, _, venue, symbol = msg.subject.split(".", 3)
        q = self.trades.get((venue, symbol))
        if q is None:
            q = self.trades[venue, symbol] = deque(maxlen=self.trades_kept)
        q.append(msg.data)

    async def _on_gap(self, msg: Msg) -> None:
        self.gaps.append(msg.data)
        try:
            gap = orjson.loads(msg.data)
            key = f"{gap['venue']}.{gap.get('channel') or '?'}"
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        feed = self.feeds.setdefault(key, Feed())
        if gap.get("reason") == "reconnect":
            # one gap per symbol of the connection: count the connection's close once
            conn = str(gap.get("detail", ""))[:200]
            if conn not in feed._closed:
                if len(feed._closed) > 1000:
                    feed._closed.clear()
                feed._closed.add(conn)
                feed.reconnects += 1
        else:
            feed.gaps += 1

    async def _on_evt(self, msg: Msg) -> None:
        try:
            evt = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        kind = evt.get("type")
        if kind == "order_update":
            self.orders[evt["account"], evt["client_order_id"]] = evt
        elif kind == "parent_update":  # an execution algorithm's parent (executor/algo)
            self.parents[evt["account"], evt["parent_id"]] = evt

    async def _on_pos(self, msg: Msg) -> None:
        try:
            pos = orjson.loads(msg.data)
            self.positions[pos["account"], pos["venue"], pos["symbol"]] = pos
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return

    # -- seeds from history (the sink's tables), so a restart of the API forgets nothing --
    async def seed_until_done(
        self, query: Callable[[str], Awaitable[Any]], every_s: float = 2.0
    ) -> None:
        """``seed`` until the SQL service answers (under `make up` the sink starts beside
        the API): said once, then retried quietly."""
        said = False
        while True:
            try:
                await self.seed(query)
                return
            except Exception as exc:
                if not said:
                    log.info("orders/positions wait for the SQL service",
                             extra={"error": str(exc)[:200]})  # fmt: skip
                    said = True
            await asyncio.sleep(every_s)

    async def seed(self, query: Callable[[str], Awaitable[Any]]) -> None:
        """Open orders and last positions from ClickHouse; a live update already received
        wins over a stored row."""
        states = ", ".join(f"'{s}'" for s in sorted(TERMINAL))
        orders = await query(
            "SELECT account, venue, symbol, toUnixTimestamp64Nano(ts_event), "
            "client_order_id, venue_order_id, state, side, order_type, quantity, price, "
            "filled, avg_price, reason FROM (SELECT * FROM orders ORDER BY ts_event DESC, "
            "stream_seq DESC LIMIT 1 BY account, client_order_id) "
            f"WHERE state NOT IN ({states}) LIMIT 10000"
        )
        for r in orders.rows:
            keys = ("account", "venue", "symbol", "ts_event", "client_order_id",
                    "venue_order_id", "state", "side", "order_type", "quantity", "price",
                    "filled", "avg_price", "reason")  # fmt: skip
            row = dict(zip(keys, r, strict=True))
            self.orders.setdefault((row["account"], row["client_order_id"]),
                                   {"type": "order_update", **row})  # fmt: skip
        pos = await query(
            "SELECT account, venue, symbol, toUnixTimestamp64Nano(ts_event), size, "
            "avg_price, realized_pnl, unrealized_pnl, fees, mark_price FROM positions "
            "ORDER BY ts_event DESC LIMIT 1 BY account, venue, symbol LIMIT 10000"
        )
        for r in pos.rows:
            keys = ("account", "venue", "symbol", "ts_event", "size", "avg_price",
                    "realized_pnl", "unrealized_pnl", "fees", "mark_price")  # fmt: skip
            row = dict(zip(keys, r, strict=True))
            self.positions.setdefault((row["account"], row["venue"], row["symbol"]),
                                      {"type": "position", **row})  # fmt: skip
        # working algorithm parents (executor/algo's parents table), where it exists
        tables = await query("SELECT name FROM system.tables WHERE name = 'parents' "
                             "AND database = currentDatabase()")  # fmt: skip
        if tables.rows:
            par = await query(PARENTS_SQL)
            for r in par.rows:
                keys = ("account", "venue", "symbol", "ts_event", "parent_id", "algo",
                        "state", "side", "quantity", "filled", "avg_price", "children",
                        "reason")  # fmt: skip
                row = dict(zip(keys, r, strict=True))
                self.parents.setdefault((row["account"], row["parent_id"]),
                                        {"type": "parent_update", **row})  # fmt: skip

    # -- feed health ------------------------------------------------------------------------
    async def _poll_loop(self, every_s: float) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.poll()
            await asyncio.sleep(every_s)

    async def poll(self) -> None:
        """RAW's frame count per subject (one STREAM.INFO) and every worker's status line."""
        js = self.nc.jetstream(timeout=5.0)
        info = await js.stream_info(STREAM_RAW, subjects_filter=subjects.RAW_ALL)
        now = time.monotonic()
        dt = now - self.polled if self.polled else 0.0
        counts: dict[str, int] = {}
        newest: dict[str, str] = {}
        for subject, n in (info.state.subjects or {}).items():
            parts = subject.split(".")
            if len(parts) < 4 or subject.startswith(subjects.RAW_PRIVATE_PREFIX):
                continue  # account frames are not a feed (and not the API's to read)
            key = f"{parts[1]}.{parts[2]}"
            counts[key] = counts.get(key, 0) + n
            newest.setdefault(key, subject)
        first = not self.polled
        for key, n in counts.items():
            feed = self.feeds.setdefault(key, Feed())
            feed.raw = True
            if first and feed.age0 is None:
                feed.age0 = await self._age(js, newest[key])
            if dt and n > feed.frames:
                feed.rate = (n - feed.frames) / dt
                feed.last_change = now
            elif dt:
                feed.rate = 0.0
            if dt:
                feed.spark.append(round(feed.rate, 1))
            feed.frames = n
        self.polled = now
        self.workers = await self.status()

    async def _age(self, js: Any, subject: str) -> float | None:
        try:
            last = await js.get_last_msg(STREAM_RAW, subject, direct=True)
            recv = int((last.headers or {}).get(subjects.H_RECV_NS, "0"))
        except Exception:
            return None
        return (time.time_ns() - recv) / 1e9 if recv else None

    async def status(self, wait: float = 0.8) -> list[dict[str, Any]]:
        """Scatter-gather on status.query: every worker answers with its health line."""
        inbox = self.nc.new_inbox()
        replies: list[dict[str, Any]] = []
        sub = await self.nc.subscribe(inbox)
        await self.nc.publish(subjects.STATUS_QUERY, b"", reply=inbox)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except Exception:  # nobody else answers
                break
            with contextlib.suppress(orjson.JSONDecodeError):
                replies.append(orjson.loads(msg.data))
        await sub.unsubscribe()
        return sorted(replies, key=lambda r: (r.get("worker", ""), r.get("pid", 0)))

    def feed_rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        rows = []
        for key, f in sorted(self.feeds.items()):
            venue, _, channel = key.partition(".")
            age = f.age(now)
            rows.append({
                "venue": venue, "channel": channel, "frames": f.frames,
                "rate": round(f.rate, 1), "age_s": None if age is None else round(age, 1),
                "gaps": f.gaps, "reconnects": f.reconnects, "spark": list(f.spark),
                "raw": f.raw,
            })  # fmt: skip
        return rows
