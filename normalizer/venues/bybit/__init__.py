from normalizer.venues.bybit.parse import BybitInverseParser, BybitLinearParser, BybitSpotParser

PARSERS = [BybitSpotParser, BybitLinearParser, BybitInverseParser]
__all__ = ["PARSERS", "BybitInverseParser", "BybitLinearParser", "BybitSpotParser"]
