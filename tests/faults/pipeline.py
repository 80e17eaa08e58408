"""The pipeline under test: nats-server, emulator, four worker subprocesses, a client."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import ServiceUnavailableError

from streams import sql, subjects
from streams.bus.connect import connect
from streams.bus.server import CONFIG, NatsServer, free_port
from streams.provision import provision
from streams.settings import NatsServerSettings, Settings
from tests.conftest import make_settings
from tests.faults.emulator import LedgerEmulator
from tests.workers import Proc

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
OURS = {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT"}
WORKERS = {
    "collector": ("collectors", "binance"),
    "normalizer": ("normalizer",),
    "sink": ("sinks", "clickhouse"),
    "orderbook": ("orderbook",),
}
STALE_AFTER_S = 1.5
# The pipeline's nats-server store, small enough that the "JetStream store full" fault can
# fill it in a second or two; the streams' max_bytes fit 90% of it (settings check).
STORE_BYTES = 512 * 1024 * 1024
STREAM_LIMITS = {
    "raw": {"max_bytes": 160_000_000}, "market": {"max_bytes": 120_000_000},
    "exec": {"max_bytes": 20_000_000}, "dlq": {"max_bytes": 20_000_000},
    "frames": {"max_bytes": 120_000_000}, "store_bytes": STORE_BYTES,
}  # fmt: skip
# Frames the collector holds unconfirmed: ~3-5 s of the offered load, so the "NATS down
# past the buffer" and "store full" faults overflow it while a short restart does not.
BUFFER_FRAMES = 5000
BACKFILL_VENUE = "kucoin"  # a ccxt id: the 150-day batch is told apart from the live feed


class Pipeline:
    def __init__(self, workdir: Path, rate: float, seed: int = 8) -> None:
        self.dir = workdir
        self.rate = rate
        self.fail_file = workdir / "fail-inserts"
        cfg = NatsServerSettings(
            port=free_port(), monitor_port=free_port(), store_dir=str(workdir / "nats")
        )
        conf = workdir / "nats-server.conf"
        conf.write_text(
            re.sub(r"max_file_store: \S+", f"max_file_store: {STORE_BYTES}", CONFIG.read_text())
        )
        self.nats = NatsServer(cfg, log_file=workdir / "nats.log", config=conf)
        self.emu = LedgerEmulator(symbols=SYMBOLS, seed=seed)
        self.procs: dict[str, Proc] = {}
        self.nc: Client | None = None
        self.settings: Settings | None = None
        self._load: asyncio.Task[None] | None = None
        self._loading = False

    async def start(self) -> None:
        self.nats.start()
        await self.emu.start()
        self.settings = make_settings(
            self.dir, self.nats.url,
            collector={"binance": {
                "ws_url": self.emu.ws_url, "rest_url": self.emu.rest_url, "symbols": SYMBOLS,
                "stale_after_s": STALE_AFTER_S, "reconnect": {"min_s": 0.2, "max_s": 1.0},
            }, "buffer_frames": BUFFER_FRAMES},
            sink={"flush_interval_s": 0.2, "fail_inserts_file": str(self.fail_file),
                  "retry_max_s": 1.0},
            orderbook={"snapshot_retry_s": 0.5},
            log={"level": "WARNING"},
            streams=STREAM_LIMITS,
        )  # fmt: skip
        # streams provisioned by this (admin) client before any worker starts, as `make up`
        self.nc = await connect(self.settings.nats, "faults")
        await provision(self.nc.jetstream(timeout=10.0), self.settings)
        for name, args in WORKERS.items():
            self.procs[name] = Proc(
                args[0], self.settings, *args[1:], log=self.dir / f"{name}.log"
            ).start()
        await self.emu.wait_connected(1, timeout=60)

    def start_load(self) -> None:
        self._loading = True
        self._load = asyncio.create_task(self._steady())

    async def _steady(self) -> None:
        # half-second slices at the offered rate, forever until stop_load
        while self._loading:
            await self.emu.emit_trades(max(1, int(self.rate / 2)), rate=self.rate, chunk=50)

    async def stop_load(self) -> None:
        self._loading = False
        if self._load is not None:
            await self._load

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_load()
        for p in reversed(list(self.procs.values())):
            try:
                p.stop(timeout=20)
            except Exception:
                p.kill9()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self.emu.stop()
        self.nats.stop()

    # -- store full ----------------------------------------------------------------------
    async def fill_store(self) -> int:
        """A stream without max_bytes (as a careless replay or a colleague's stream would
        be) written until the store refuses: then every stream's publishes get 503."""
        assert self.nc is not None
        js = self.nc.jetstream(timeout=10.0)
        await js.add_stream(StreamConfig(name="FILLER", subjects=["filler.>"]))
        blob = b"f" * 1_000_000
        n = 0
        try:
            while n < 2 * STORE_BYTES // len(blob):
                await js.publish("filler.x", blob)
                n += 1
        except ServiceUnavailableError:
            return n
        raise RuntimeError(f"store took {n} MB and is still not full")

    async def free_store(self) -> None:
        assert self.nc is not None
        await self.nc.jetstream(timeout=10.0).delete_stream("FILLER")

    # -- queries -------------------------------------------------------------------------
    async def query(self, q: str, max_rows: int = 10_000, timeout: float = 3.0) -> list[list]:
        assert self.nc is not None
        res = await sql.query(self.nc, q, max_rows=max_rows, timeout=timeout)
        return res.rows

    async def stored_trades(self, page: int = 50_000) -> dict[tuple[str, int], int]:
        """(symbol, id) -> rows in ClickHouse, read in id pages (a reply is size-capped)."""
        out: dict[tuple[str, int], int] = {}
        top: dict[str, int] = {}
        for sym, tid in self.emu.generated:
            top[sym] = max(top.get(sym, 0), tid)
        for sym, hi in top.items():
            for lo in range(0, hi + 1, page):
                assert self.nc is not None
                res = await sql.query(
                    self.nc,
                    f"SELECT toUInt64(id), count() FROM trades WHERE venue = 'binance' AND "
                    f"symbol = '{sym}' AND "
                    f"toUInt64(id) >= {lo} AND toUInt64(id) < {lo + page} GROUP BY id",
                    max_rows=page + 1, timeout=60,
                )  # fmt: skip
                if res.truncated:
                    raise RuntimeError("sql reply truncated: use a smaller page")
                for tid, n in res.rows:
                    out[(sym, int(tid))] = int(n)
        res = await sql.query(self.nc, "SELECT count() FROM trades WHERE venue = 'binance'",
                              timeout=30)  # type: ignore[arg-type]  # fmt: skip
        if int(res.rows[0][0]) != sum(out.values()):
            raise RuntimeError("rows outside the venue's ids: trades the venue never made")
        return out

    async def newest_trade_ms(self) -> int:
        try:
            rows = await self.query(
                "SELECT toUnixTimestamp64Milli(max(ts_event)) FROM trades WHERE venue = 'binance'"
            )
            return int(rows[0][0] or 0)
        except Exception:  # sink restarting or nats down: not yet
            return 0

    async def book(self, native: str) -> dict | None:
        assert self.nc is not None
        try:
            msg = await self.nc.request(
                subjects.book_get("binance", OURS[native]), b"", timeout=1.0
            )
        except Exception:
            return None
        return orjson.loads(msg.data)
