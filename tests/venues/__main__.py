"""``python -m tests.venues binance --port P --symbols BTCUSDT,ETHUSDT --rate 2000 [--trades N]``

Serves until stopped. With ``--rate R`` it trades at R trades/s (forever, or ``--trades N`` of
them and then idles); with ``--rate 0`` it idles and is driven over HTTP: ``POST
/_emu/emit?n=&rate=``, ``POST /_emu/drop``, ``POST /_emu/raw`` (body sent as a frame),
``GET /_emu/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.venues.binance.emulator import BinanceEmulator


async def _run_coinbase(args: argparse.Namespace) -> None:
    """Coinbase Advanced Trade: ``--symbols BTC-USD,ETH-USD``; ``--rate`` level2 updates/s."""
    from tests.venues.coinbase.emulator import CoinbaseEmulator

    emu = CoinbaseEmulator(args.symbols.split(","), seed=args.seed, port=args.port)
    await emu.start()
    print(f"coinbase emulator on {emu.ws_url} (REST {emu.rest_url})", flush=True)
    try:
        while args.rate > 0:
            await emu.emit(max(1, int(args.rate // 10)))
            await asyncio.sleep(0.1)
        await asyncio.Event().wait()
    finally:
        await emu.stop()


async def _run_kraken(args: argparse.Namespace) -> None:
    """Kraken v2: ``--symbols BTC/USD,ETH/USD``; ``--rate`` steps/s (a trade each, a book
    move every second step)."""
    from tests.venues.kraken.emulator import KrakenEmulator

    emu = KrakenEmulator(args.symbols.split(","), seed=args.seed, port=args.port)
    await emu.start()
    print(f"kraken emulator on {emu.ws_url} (REST {emu.rest_url})", flush=True)
    try:
        while args.rate > 0:
            await emu.emit(max(2, int(args.rate // 10)))
            await asyncio.sleep(0.1)
        await asyncio.Event().wait()
    finally:
        await emu.stop()


async def _run(args: argparse.Namespace) -> None:
    if args.venue == "coinbase":
        return await _run_coinbase(args)
    if args.venue == "kraken":
        return await _run_kraken(args)
    emu = BinanceEmulator(args.symbols.split(","), seed=args.seed, port=args.port)
    await emu.start()
    print(f"binance emulator on {emu.ws_url} (REST {emu.rest_url})", flush=True)
    try:
        if args.trades:
            await emu.wait_connected(1, timeout=3600)
            await emu.emit_trades(args.trades, rate=args.rate or None)
            print(f"emitted {args.trades} trades", flush=True)
        elif args.rate > 0:
            while True:  # a steady market until stopped
                await emu.emit_trades(max(1, int(args.rate)), rate=args.rate)
        await asyncio.Event().wait()
    finally:
        await emu.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.venues")
    p.add_argument("venue", choices=["binance", "coinbase", "kraken"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    p.add_argument(
        "--rate", type=float, default=0.0, help="trades/s (0: idle, or full speed with --trades)"
    )
    p.add_argument("--trades", type=int, default=0, help="emit this many trades, then idle")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
