"""Venue name -> parser, discovered: every package ``normalizer/venues/<venue>/`` exports
``PARSERS`` (a list of parser classes), so adding a venue touches no other file."""

from __future__ import annotations

import importlib
import pkgutil

from normalizer import venues
from normalizer.venues.base import VenueParser


def parsers() -> dict[str, VenueParser]:
    out: dict[str, VenueParser] = {}
    for mod in pkgutil.iter_modules(venues.__path__):
        if not mod.ispkg:
            continue
        pkg = importlib.import_module(f"normalizer.venues.{mod.name}")
        for cls in getattr(pkg, "PARSERS", []):
            parser = cls()
            out[parser.venue] = parser  # the raw subject's venue token
    return out
