"""The ccxt long tail (REST poller) and its emulator."""
