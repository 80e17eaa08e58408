"""The normalizer worker, partitions, coverage, fuzzing."""
