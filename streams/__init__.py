"""jetmarket streams."""
