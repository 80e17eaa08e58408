"""Secrets: read only from files nobody else can read (or the environment), and never
written out again: every value read here is registered with the log redactor, so a key
that ends up in an exception text, a URL or a log extra prints as ``***``."""

from __future__ import annotations

import os
from pathlib import Path

from streams.bus import logs


class SecretsError(PermissionError):
    """A secrets file is missing or readable by group/others; the message names the file."""


def read_file(path: str | os.PathLike[str]) -> str:
    """The stripped content of a secrets file with mode 0600 (or stricter)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise SecretsError(f"{p}: secrets file not found") from None
    if mode & 0o077:
        raise SecretsError(f"{p}: secrets file must not be readable by group/others (chmod 600)")
    value = p.read_text().strip()
    logs.register_secret(value)
    return value


def from_env(name: str) -> str | None:
    """A secret from the environment variable ``name`` (None when unset or empty)."""
    value = os.environ.get(name) or None
    if value:
        logs.register_secret(value)
    return value
