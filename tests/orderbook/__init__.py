"""The order-book service."""
