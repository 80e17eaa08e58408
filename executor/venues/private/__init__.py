"""Live account streams of ccxt accounts (stream.py), their frames (parse.py), account truth."""
