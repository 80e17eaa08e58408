"""Examples: run with `python -m examples.<name>` from the repo root."""
