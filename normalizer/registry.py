"""Venue name -> parser, discovered: every package ``normalizer/venues/<venue>/`` exports
``PARSERS`` (a list of parser classes), so adding a venue touches no other file."""

from __future__ import annotations

import importlib
import pkgutil

from normalizer import venues
from normalizer.venues.base import VenueParser


class Registry(dict[str, VenueParser]):
    """Native parsers by venue token. A venue without one falls back to a ccxt parser for
    that venue (the long tail: any ccxt exchange id), which takes the ``ccxt-*`` channels
    and rejects every other channel as having no parser."""

    def get(self, venue: str, default: VenueParser | None = None) -> VenueParser | None:  # type: ignore[override]
        hit = super().get(venue)
        if hit is None:
            from normalizer.venues.ccxt import CcxtParser

            hit = self[venue] = CcxtParser(venue)
        return hit


def parsers() -> dict[str, VenueParser]:
    out: dict[str, VenueParser] = Registry()
    for mod in pkgutil.iter_modules(venues.__path__):
        if not mod.ispkg:
            continue
        pkg = importlib.import_module(f"normalizer.venues.{mod.name}")
        for cls in getattr(pkg, "PARSERS", []):
            parser = cls()
            out[parser.venue] = parser  # the raw subject's venue token
    return out
