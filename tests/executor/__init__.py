"""The executor and backtests."""
