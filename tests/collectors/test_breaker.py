"""The breaker of a venue endpoint and a venue ban, seen from the operator's side: the
Binance collector's snapshot endpoint fails (503), the breaker opens after 5 failures
(fast, clear errors meanwhile), ``jetmarket status`` shows it, a half-open probe closes
it once the venue answers again; a 429 with Retry-After shows as a ban in status."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from nats.aio.client import Client
from prometheus_client import REGISTRY

from collectors.binance import run as collector_main
from ops.status import status
from streams import subjects
from streams.bus.connect import connect
from streams.bus.server import NatsServer
from tests.conftest import make_settings
from tests.venues.binance.emulator import BinanceEmulator
from tests.venues.emulator_base import VenueLimits
from tests.workers import inprocess


async def ask_snapshot(nc: Client) -> dict:
    reply = await nc.request(subjects.ctl_snapshot("binance", "BTC-USDT"), b"", timeout=10)
    return orjson.loads(reply.data)


def breaker_state() -> float | None:
    return REGISTRY.get_sample_value("jetmarket_budget_breaker_state",
                                     {"venue": "binance", "endpoint": "depth"})  # fmt: skip


async def test_breaker_and_ban_in_metrics_and_status(
    tmp_path: Path, nats_server: NatsServer, nc: Client
) -> None:
    async with BinanceEmulator(["BTCUSDT"]) as emu:
        settings = make_settings(tmp_path, nats_server.url, collector={"binance": {
            "ws_url": emu.ws_url, "rest_url": emu.rest_url, "symbols": ["BTCUSDT"],
            "channels": ["trade"], "limits": {"breaker_failures": 5, "breaker_open_s": 1.0,
                                              "default_ban_s": 3.0}}})  # fmt: skip
        operator = await connect(settings.nats, "status", role="operator")
        failing = VenueLimits(0, 60.0, over_status=503, ban_status=0, paths=("/api/v3/depth",),
                              over_body=b"Service Unavailable")  # fmt: skip
        try:
            async with inprocess("collector", collector_main, settings):
                await emu.wait_connected(1, timeout=15)
                emu.limits = failing
                for _ in range(5):
                    got = await ask_snapshot(nc)
                    assert not got["ok"] and "503" in got["error"], got
                assert breaker_state() == 2
                t0 = time.perf_counter()
                got = await ask_snapshot(nc)
                fast = time.perf_counter() - t0
                assert "binance depth: circuit open" in got["error"], got
                assert fast < 0.5 and failing.stats["over"] == 5  # not sent to the venue
                text = await status(operator, settings)
                assert "budget=binance/depth:open" in text, text
                # the venue recovers: after breaker_open_s one probe goes, and closes it
                emu.limits = None
                await asyncio.sleep(1.1)
                got = await ask_snapshot(nc)
                assert got["ok"], got
                assert breaker_state() == 0
                assert "budget=ok" in await status(operator, settings)
                # a 429 with Retry-After: a ban, in status for every process to see
                emu.limits = VenueLimits(0, 60.0, ban_status=0, paths=("/api/v3/depth",))
                got = await ask_snapshot(nc)
                assert "429" in got["error"] or "RateLimit" in got["error"], got
                await asyncio.sleep(0.3)
                text = await status(operator, settings)
                assert "binance" in text and "BANNED" in text, text
        finally:
            await operator.close()
