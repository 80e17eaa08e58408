from normalizer.venues.binance.parse import (
    BinanceCoinmParser,
    BinanceSpotParser,
    BinanceUsdmParser,
)

PARSERS = [BinanceSpotParser, BinanceUsdmParser, BinanceCoinmParser]
__all__ = ["PARSERS", "BinanceCoinmParser", "BinanceSpotParser", "BinanceUsdmParser"]
