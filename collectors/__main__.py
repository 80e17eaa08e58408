"""``python -m collectors [venue ...]``: one collector process for the given venues."""

from __future__ import annotations

import asyncio
import sys

from streams.runtime import Worker, run

VENUES = ("binance",)


def main(argv: list[str]) -> None:
    venues = argv or None

    async def body(w: Worker) -> None:
        chosen = venues or w.settings.collector.venues
        unknown = sorted(set(chosen) - set(VENUES))
        if unknown:
            raise SystemExit(f"unknown venue(s) {unknown}; this collector speaks {list(VENUES)}")
        runners = []
        if "binance" in chosen:
            from collectors import binance

            runners.append(binance.run(w))
        await asyncio.gather(*runners)

    run("collector", body)


if __name__ == "__main__":
    main(sys.argv[1:])
