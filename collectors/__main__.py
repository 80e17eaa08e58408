"""``python -m collectors [venue ...] [ccxt:<exchange id> ...]``: one collector process for
the given venues (``ccxt:<id>``: any ccxt exchange, over WebSocket where ccxt pro can, see
collectors/ccxt_ws.py, else polled, collectors/ccxt_poller.py).

A venue is a module ``collectors/<venue>.py`` with ``async def run(w: Worker)``; this
entry point finds them by name, so adding a venue touches no other file.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
from pathlib import Path

from collectors.config import check_sections, venue_settings
from streams.bus.runtime import Worker, load_or_exit, parse_args, run
from streams.settings import Section, Settings, SettingsError

# the framework's own modules and packages: every other module here is a venue
_NOT_VENUES = {
    "backfill", "base", "ccxt_poller", "ccxt_ws", "config", "conn", "health", "losses", "metrics",
    "positioning", "publisher", "rest",
}  # fmt: skip


def venues() -> list[str]:
    here = str(Path(__file__).parent)
    return sorted(
        m.name
        for m in pkgutil.iter_modules([here])
        if not m.name.startswith("_") and m.name not in _NOT_VENUES
    )


def check_venues(chosen: list[str]) -> str | None:
    """One line naming the unknown venues of ``chosen`` and the known ones; None if all known."""
    known = venues()
    unknown = sorted({v for v in chosen if not v.startswith("ccxt:")} - set(known))
    if not unknown:
        return None
    return f"unknown venue(s) {', '.join(unknown)}; known: {', '.join(known)} or ccxt:<exchange id>"


def settings_class(venue: str) -> type[Section]:
    """The class of ``[collector.<venue>]``: the settings class of the collector that
    ``collectors/<venue>.py`` defines for that venue."""
    mod = importlib.import_module(f"collectors.{venue}")
    for obj in vars(mod).values():
        if isinstance(obj, type) and getattr(obj, "venue", None) == venue:
            return obj.settings_class  # type: ignore[no-any-return]
    raise LookupError(f"collectors/{venue}.py defines no collector for venue {venue!r}")


def read_sections(settings: Settings, chosen: list[str]) -> None:
    """Read each chosen venue's section with its class: a bad value fails here, in one
    line, not in the middle of a running collector."""
    for v in chosen:
        if v.startswith("ccxt:"):
            from collectors.ccxt_poller import ccxt_settings

            ccxt_settings(settings)
            continue
        venue_settings(settings, v, settings_class(v))


def main(argv: list[str]) -> None:
    args = parse_args("collectors", __doc__, argv, lambda p: p.add_argument(
        "venues", nargs="*", metavar="VENUE",
        help=f"venues to collect (default: collector.venues): {', '.join(venues())}, or "
        "ccxt:<exchange id>; each one's symbols and channels are in collector.<venue>",
    ))  # fmt: skip
    settings = load_or_exit("collector")
    chosen = args.venues or settings.collector.venues
    # checked before anything starts: a supervisor would restart a worker that fails later
    bad = check_venues(chosen)
    try:
        check_sections(settings, venues())
        if not bad:
            read_sections(settings, chosen)
    except SettingsError as exc:
        bad = f"bad configuration: {exc}"
    if bad:
        print(f"collector: {bad}", file=sys.stderr)
        raise SystemExit(2)

    async def body(w: Worker) -> None:
        # ``ccxt:<exchange id>``: the generic REST poller, settings in collector.ccxt
        polled = [v.split(":", 1)[1] for v in chosen if v.startswith("ccxt:")]
        modules = [importlib.import_module(f"collectors.{v}") for v in chosen if ":" not in v]
        pollers = []
        if polled:  # WebSocket where ccxt pro watches the channels, REST polling otherwise
            from collectors import ccxt_ws

            pollers = [ccxt_ws.run(w, x) for x in polled]
        await asyncio.gather(*(m.run(w) for m in modules), *pollers)

    run("collector", body, settings)


if __name__ == "__main__":
    main(sys.argv[1:])
