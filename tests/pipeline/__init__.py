"""The whole pipeline: end to end, faults, loss, security."""
