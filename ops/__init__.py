"""Operating jetmarket: the command line, the supervisor, status."""
