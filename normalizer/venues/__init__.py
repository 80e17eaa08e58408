"""One package per venue: ``wire.py`` holds the venue's frames as msgspec Structs,
``parse.py`` turns them into ``streams.schemas`` messages."""
