from normalizer.venues.bybit.parse import (
    BybitInverseParser,
    BybitLinearParser,
    BybitOptionParser,
    BybitSpotParser,
)

PARSERS = [BybitSpotParser, BybitLinearParser, BybitInverseParser, BybitOptionParser]
__all__ = [
    "PARSERS",
    "BybitInverseParser",
    "BybitLinearParser",
    "BybitOptionParser",
    "BybitSpotParser",
]
