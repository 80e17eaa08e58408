"""Fuzzers: adversarial frames and commands (`make fuzz`, tests/normalizer/test_fuzz.py)."""
