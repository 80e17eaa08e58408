"""NATS plumbing every worker shares: connect and identities, consumers and delivery, the
worker runtime, logs, secrets, big frames, the embedded server and the wire encoder."""
