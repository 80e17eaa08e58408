"""The order-book service: ``market.book.>`` in; validated books; depth, BBO, gaps out.

Reads MARKET with an ordered consumer (books are rebuilt, never trusted across restarts:
at start every book is invalid until a snapshot arrives, and one is requested for every
book seen). Serves ``book.get.<venue>.<symbol>`` with the full current book.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
import orjson
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from prometheus_client import Counter, Gauge

from orderbook.sync import BookState, Problem, rule_for, wants_instruments
from streams import schemas, subjects
from streams.bus.runtime import Worker
from streams.provision import STREAM_MARKET

log = logging.getLogger("orderbook")

UPDATES = Counter("jetmarket_orderbook_updates_total", "book messages applied", ["venue"])
PROBLEMS = Counter(
    "jetmarket_orderbook_problems_total", "sequence/checksum/crossed problems", ["venue", "reason"]
)
RESYNCS = Counter("jetmarket_orderbook_resync_requests_total", "snapshot requests sent", ["venue"])
VALID = Gauge("jetmarket_orderbook_books_valid", "books currently valid")
BOOKS = Gauge("jetmarket_orderbook_books", "books tracked")

_decode_book = msgspec.json.Decoder(schemas.Book).decode
_decode_instrument = msgspec.json.Decoder(schemas.Instrument).decode
_encode = msgspec.json.Encoder().encode


class OrderBookService:
    def __init__(self, w: Worker) -> None:
        self.w = w
        self.cfg = w.settings.orderbook
        self.books: dict[tuple[str, str], BookState] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.last_bbo: dict[tuple[str, str], tuple[object, object]] = {}
        self.resync_at: dict[tuple[str, str], float] = {}
        self.unsupported: set[str] = set()
        # instrument specs for venues whose checksum needs them (OKX derivatives)
        self.instruments: dict[tuple[str, str], schemas.Instrument] = {}
        self._wants: dict[str, bool] = {}
        self._pending_publishes = 0

    # -- state -------------------------------------------------------------------------
    def state(self, venue: str, symbol: str) -> BookState | None:
        key = (venue, symbol)
        st = self.books.get(key)
        if st is None:
            rule = rule_for(venue, symbol, self.instruments.get(key))
            if rule is None:
                if venue not in self.unsupported:
                    self.unsupported.add(venue)
                    log.warning(
                        "no sync rule for venue; its books are ignored", extra={"venue": venue}
                    )
                return None
            st = self.books[key] = BookState(rule, max_buffer=self.cfg.max_buffer)
            BOOKS.set(len(self.books))
        return st

    def on_instrument(self, inst: schemas.Instrument) -> None:
        """Keep the spec of instruments whose venue's rule uses it; a book already tracked
        gets the fuller rule from its next message on (same state, same validity)."""
        wants = self._wants.get(inst.venue)
        if wants is None:
            wants = self._wants[inst.venue] = wants_instruments(inst.venue)
        if not wants:
            return
        key = (inst.venue, inst.symbol)
        self.instruments[key] = inst
        st = self.books.get(key)
        if st is not None:
            rule = rule_for(inst.venue, inst.symbol, inst)
            if rule is not None:
                st.rule = rule

    async def _instrument_loop(self) -> None:
        assert self.w.js is not None
        sub = await self.w.js.subscribe(
            subjects.market_filter("instrument"),
            stream=STREAM_MARKET,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            pending_msgs_limit=200_000,
        )
        try:
            while not self.w.stop.is_set():
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except Exception:  # nats TimeoutError: idle
                    continue
                try:
                    self.on_instrument(_decode_instrument(msg.data))
                except msgspec.DecodeError as exc:
                    log.warning("undecodable instrument", extra={"error": str(exc)[:200]})
        finally:
            with contextlib.suppress(Exception):  # the connection may already be draining
                await sub.unsubscribe()

    async def on_book(self, m: schemas.Book) -> None:
        st = self.state(m.venue, m.symbol)
        if st is None:
            return
        key = (m.venue, m.symbol)
        was_valid = st.valid
        problem = st.feed(m)
        UPDATES.labels(m.venue).inc()
        if problem is not None:
            await self._problem(m, st, problem)
        if st.valid:
            self.dirty.add(key)
            await self._bbo(key, st)
        else:
            await self._request_snapshot(key)  # rate-limited per book
        if was_valid != st.valid:
            VALID.set(sum(1 for s in self.books.values() if s.valid))

    async def _problem(self, m: schemas.Book, st: BookState, p: Problem) -> None:
        PROBLEMS.labels(m.venue, p.reason).inc()
        st.problems += 1
        gap = schemas.Gap(
            venue=m.venue,
            symbol=m.symbol,
            ts_event=m.ts_event,
            ts_recv=m.ts_recv,
            reason=p.reason,  # type: ignore[arg-type]
            channel="book",
            expected_seq=p.expected,
            got_seq=p.got,
            detail=p.detail if p.fatal else f"{p.detail} (book still valid)",
        )
        msg_id = f"{m.venue}:gap:{m.symbol}:book-{m.seq}-{p.reason}-{int(p.fatal)}"
        await self._publish(subjects.market("gap", m.venue, m.symbol), gap, msg_id)
        if p.fatal:
            self.last_bbo.pop((m.venue, m.symbol), None)

    async def _request_snapshot(self, key: tuple[str, str]) -> None:
        now = time.monotonic()
        if now - self.resync_at.get(key, -1e9) < self.cfg.snapshot_retry_s:
            return
        self.resync_at[key] = now
        RESYNCS.labels(key[0]).inc()
        assert self.w.nc is not None
        # Fire and forget: the snapshot comes back through RAW -> normalizer -> MARKET.
        await self.w.nc.publish(subjects.ctl_snapshot(*key), b"{}")

    async def _retry_unanswered(self) -> None:
        """A book still invalid well after its snapshot was asked for (the request or its
        answer lost, a snapshot that did not bridge) asks again even when no delta comes
        to trigger it: a quiet symbol must not stay in gap for good. Only books that asked
        before, so idle symbols never seen cost no REST calls."""
        now = time.monotonic()
        patience = self.cfg.snapshot_retry_s * 5
        for key, asked in list(self.resync_at.items()):
            st = self.books.get(key)
            if st is not None and not st.valid and now - asked >= patience:
                await self._request_snapshot(key)

    # -- outputs -------------------------------------------------------------------------
    async def _publish(self, subject: str, msg: schemas.Base, msg_id: str) -> None:
        assert self.w.nc is not None
        await self.w.nc.publish(subject, _encode(msg), headers={subjects.H_MSG_ID: msg_id})
        self._pending_publishes += 1

    async def _publish_book(
        self, kind: str, key: tuple[str, str], st: BookState, **body: Any
    ) -> None:
        """A message made from a validated book (``bbo``, ``depth``): venue, symbol, times
        and sequence come from the book's state; its msg id makes a re-publish a duplicate."""
        venue, symbol = key
        cls = schemas.BBO if kind == "bbo" else schemas.Depth
        msg = cls(venue=venue, symbol=symbol, ts_event=st.ts_event, ts_recv=st.ts_recv,
                  seq=st.seq, **body)  # fmt: skip
        await self._publish(
            subjects.market(kind, venue, symbol), msg, f"{venue}:{kind}:{symbol}:{st.seq}"
        )

    async def _bbo(self, key: tuple[str, str], st: BookState) -> None:
        bb, ba = st.book.best_bid(), st.book.best_ask()
        if bb is None or ba is None or self.last_bbo.get(key) == (bb, ba):
            return
        self.last_bbo[key] = (bb, ba)
        await self._publish_book(
            "bbo", key, st, bid_price=bb[0], bid_size=bb[1], ask_price=ba[0], ask_size=ba[1]
        )

    async def publish_depth(self) -> None:
        n = self.cfg.depth_levels
        for key in list(self.dirty):
            st = self.books[key]
            if not st.valid or st.seq is None:
                continue
            bids, asks = st.book.top(n)
            await self._publish_book("depth", key, st, bids=bids, asks=asks, levels=n)
        self.dirty.clear()
        await self._barrier()

    async def _barrier(self) -> None:
        """Confirm the core publishes reached the stream (one acked publish would need a
        message; a flush proves the server has them, JetStream stores in order)."""
        if self._pending_publishes:
            assert self.w.nc is not None
            await self.w.nc.flush(timeout=10)
            self._pending_publishes = 0

    # -- book.get ------------------------------------------------------------------------
    def snapshot_reply(self, venue: str, symbol: str) -> bytes:
        st = self.books.get((venue, symbol))
        if st is None:
            return orjson.dumps({"error": f"no book for {venue} {symbol}"})
        bids, asks = st.book.levels()
        return orjson.dumps(
            {
                "venue": venue,
                "symbol": symbol,
                "valid": st.valid,
                "rule": st.rule.name,
                # what the venue's data is checked with (ccxt books may say "none: ...")
                "validation": getattr(st.rule, "validation", None)
                or ("checksum and sequence" if hasattr(st.rule, "verify") else "sequence"),
                "seq": st.seq,
                "ts_event": st.ts_event,
                "ts_recv": st.ts_recv,
                "updates": st.updates,
                "problems": st.problems,
                "bids": bids,
                "asks": asks,
            }
        )

    async def _serve_get(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 4:
            await msg.respond(orjson.dumps({"error": "use book.get.<venue>.<symbol>"}))
            return
        await msg.respond(self.snapshot_reply(parts[2], parts[3]))

    # -- run -------------------------------------------------------------------------------
    async def run(self) -> None:
        w = self.w
        assert w.js is not None and w.nc is not None
        await w.nc.subscribe(subjects.BOOK_GET_ALL, cb=self._serve_get)
        sub = await w.js.subscribe(
            subjects.market_filter("book"),
            stream=STREAM_MARKET,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            pending_msgs_limit=200_000,
        )
        depth_task = asyncio.create_task(self._depth_loop())
        instrument_task = asyncio.create_task(self._instrument_loop())
        w.health.set("ok", books=0)
        try:
            while not w.stop.is_set():
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except Exception:  # nats TimeoutError: idle
                    continue
                try:
                    m = _decode_book(msg.data)
                except msgspec.DecodeError as exc:
                    log.warning("undecodable book message", extra={"error": str(exc)[:200]})
                    continue
                await self.on_book(m)
        finally:
            depth_task.cancel()
            instrument_task.cancel()
            await sub.unsubscribe()
            await self._barrier()

    async def _depth_loop(self) -> None:
        interval = self.cfg.depth_interval_ms / 1000
        while not self.w.stop.is_set():
            try:
                await self.publish_depth()
                await self._retry_unanswered()
                valid = sum(1 for s in self.books.values() if s.valid)
                self.w.health.set("ok", books=len(self.books), valid=valid)
            except Exception as exc:
                log.warning("depth publish failed", extra={"error": repr(exc)})
            if await self.w.sleep(interval):
                return


async def main(w: Worker) -> None:
    await OrderBookService(w).run()
