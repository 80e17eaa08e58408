from normalizer.venues.binance.parse import BinanceSpotParser, BinanceUsdmParser

__all__ = ["BinanceSpotParser", "BinanceUsdmParser"]
