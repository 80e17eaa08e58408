"""Collectors beyond one venue."""
