"""jetmarket normalizer."""
