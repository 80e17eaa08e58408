"""Kraken v2."""
