"""Bybit v5."""
