"""The supervisor, status, observability config."""
