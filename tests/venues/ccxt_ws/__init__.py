"""The ccxt WebSocket long tail: emulators of venues ccxt pro speaks, and the tests."""
