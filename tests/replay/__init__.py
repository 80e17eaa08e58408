"""Replay, record, re-normalization."""
