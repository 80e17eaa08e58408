"""Run workers in tests: in-process (an asyncio task) or as real subprocesses (kill -9 able)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from streams.bus.runtime import Worker, start_worker
from streams.settings import Settings, to_toml_env

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def inprocess(
    name: str, body: Callable[[Worker], Awaitable[None]], settings: Settings
) -> AsyncIterator[Worker]:
    w = Worker(name, settings)
    await start_worker(w)
    task = asyncio.create_task(body(w))
    try:
        yield w
    finally:
        w.stop.set()
        await asyncio.wait_for(task, 30)
        if w.nc is not None:
            await w.nc.drain()


@asynccontextmanager
async def inprocess_all(
    settings: Settings, **bodies: Callable[[Worker], Awaitable[None]]
) -> AsyncIterator[None]:
    """Several in-process workers, started in the order given (name=body) and stopped in
    reverse, like nested ``inprocess`` blocks."""
    async with AsyncExitStack() as stack:
        for name, body in bodies.items():
            await stack.enter_async_context(inprocess(name, body, settings))
        yield


class Proc:
    """A worker subprocess (``python -m <module> args``) with settings passed through env."""

    def __init__(self, module: str, settings: Settings, *args: str, log: Path) -> None:
        self.cmd = [sys.executable, "-m", module, *args]
        self.env = {**os.environ, **to_toml_env(settings), "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        out = self.log.open("ab")
        self.p = subprocess.Popen(self.cmd, env=self.env, cwd=ROOT, stdout=out, stderr=out)
        out.close()
        return self

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.p is not None
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def stop(self, timeout: float = 30.0) -> int:
        if self.p is None:
            return 0
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                return self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise
        return self.p.returncode
