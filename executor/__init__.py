"""jetmarket executor."""
