"""jetmarket orderbook."""
