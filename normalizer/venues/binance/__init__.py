from normalizer.venues.binance.parse import BinanceSpotParser, BinanceUsdmParser

PARSERS = [BinanceSpotParser, BinanceUsdmParser]
__all__ = ["PARSERS", "BinanceSpotParser", "BinanceUsdmParser"]
