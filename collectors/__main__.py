"""``python -m collectors [venue ...] [ccxt:<exchange id> ...]``: one collector process for
the given venues (``ccxt:<id>`` polls any ccxt exchange, see collectors/ccxt_poller.py).

A venue is a module ``collectors/<venue>.py`` with ``async def run(w: Worker)``; this
entry point finds them by name, so adding a venue touches no other file.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
from pathlib import Path

from streams.bus.runtime import Worker, run

# the framework's own modules and packages: every other module here is a venue
_NOT_VENUES = {
    "backfill", "base", "ccxt_poller", "conn", "health", "losses", "metrics", "publisher", "rest",
}  # fmt: skip


def venues() -> list[str]:
    here = str(Path(__file__).parent)
    return sorted(
        m.name
        for m in pkgutil.iter_modules([here])
        if not m.name.startswith("_") and m.name not in _NOT_VENUES
    )


def main(argv: list[str]) -> None:
    chosen_args = argv or None

    async def body(w: Worker) -> None:
        chosen = chosen_args or w.settings.collector.venues
        # ``ccxt:<exchange id>``: the generic REST poller, settings in collector.ccxt
        polled = [v.split(":", 1)[1] for v in chosen if v.startswith("ccxt:")]
        chosen = [v for v in chosen if not v.startswith("ccxt:")]
        known = venues()
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise SystemExit(f"unknown venue(s) {unknown}; this collector speaks {known}")
        modules = [importlib.import_module(f"collectors.{v}") for v in chosen]
        pollers = []
        if polled:
            from collectors import ccxt_poller

            pollers = [ccxt_poller.run(w, x) for x in polled]
        await asyncio.gather(*(m.run(w) for m in modules), *pollers)

    run("collector", body)


if __name__ == "__main__":
    main(sys.argv[1:])
