"""jetmarket sinks."""
