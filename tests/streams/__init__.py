"""The contract and the NATS plumbing."""
