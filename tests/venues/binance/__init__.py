"""Binance spot and USDⓈ-M: parser, collector, book, emulator."""
