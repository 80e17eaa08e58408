"""Venues the executor trades on: ``paper`` (simulated on MARKET data) and ``ccxt``."""
