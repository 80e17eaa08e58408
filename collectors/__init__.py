"""jetmarket collectors."""
