"""CORS: only the origins in api.cors_origins get CORS headers (a preflight from any other
origin is refused). The app runs under uvicorn on a free port; CORS is answered before any
route, so no NATS is needed for it."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import uvicorn

from api.app import Services, create_app
from api.keys import KeyStore
from streams.bus.server import free_port
from streams.settings import from_mapping


async def test_cors_only_for_listed_origins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = from_mapping({"api": {"cors_origins": ["https://desk.example"]}})
    app = create_app(Services(None, settings, None, None), KeyStore(tmp_path / "k.json"))  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off"))  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/orders"
        pre = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
        async with aiohttp.ClientSession() as s:
            async with s.options(url, headers={"Origin": "https://desk.example", **pre}) as r:
                assert r.status == 200
                assert r.headers["Access-Control-Allow-Origin"] == "https://desk.example"
                assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
            async with s.options(url, headers={"Origin": "https://evil.example", **pre}) as r:
                assert r.status == 400
                assert "Access-Control-Allow-Origin" not in r.headers
            # a simple request from a listed origin carries the header, and still needs a key
            async with s.get(url, headers={"Origin": "https://desk.example"}) as r:
                assert r.status == 401
                assert r.headers["Access-Control-Allow-Origin"] == "https://desk.example"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
