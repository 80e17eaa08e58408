"""How a backfill ends early: the command line's fault, or the job's."""

from __future__ import annotations


class BadArgs(Exception):
    """The command line asks for something impossible (exit status 2)."""


class Failed(Exception):
    """The job stopped before its end; the checkpoint holds what is done (exit status 1)."""
