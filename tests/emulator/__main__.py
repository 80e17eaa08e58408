"""``python -m tests.emulator binance --port P --symbols BTCUSDT,ETHUSDT --rate 1000``"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.emulator.binance import BinanceEmulator


async def _run(args: argparse.Namespace) -> None:
    emu = BinanceEmulator(args.symbols.split(","), seed=args.seed, port=args.port)
    await emu.start()
    print(f"binance emulator on {emu.ws_url} (REST {emu.rest_url})", flush=True)
    try:
        if args.rate > 0:
            while True:  # a steady market until stopped
                await emu.emit_trades(int(args.rate), rate=args.rate)
        else:
            await asyncio.Event().wait()
    finally:
        await emu.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.emulator")
    p.add_argument("venue", choices=["binance"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    p.add_argument("--rate", type=float, default=0.0, help="trades per second, 0 = idle")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
