"""Deribit v2."""
