"""Venue name -> parser. A venue the normalizer speaks is listed here and nowhere else."""

from __future__ import annotations

from normalizer.venues.base import VenueParser
from normalizer.venues.binance import BinanceSpotParser, BinanceUsdmParser


def parsers() -> dict[str, VenueParser]:
    return {p.venue: p for p in (BinanceSpotParser(), BinanceUsdmParser())}
