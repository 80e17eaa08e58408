"""What every venue's ``wire.py`` shares: the value constraints of prices and sizes, and
how a wire shape becomes a JSON decoder.

Constraints reject zero/negative prices, NaN and infinities inside msgspec's C decoder, so
no parser checks them per field.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Price = Annotated[float, Meta(gt=0.0, lt=1e15)]
Size = Annotated[float, Meta(ge=0.0, lt=1e15)]  # 0 deletes a book level
PosSize = Annotated[float, Meta(gt=0.0, lt=1e15)]  # a trade or liquidation: never 0


def decoder(kind: object) -> msgspec.json.Decoder:  # type: ignore[type-arg]
    """A decoder for venues that write numbers as decimal strings (``"65000.10"``):
    ``strict=False`` turns them into floats inside msgspec's C decoder, with no per-field
    Python ``float()`` on the hot path."""
    return msgspec.json.Decoder(kind, strict=False)  # type: ignore[arg-type]


def strict_decoder(kind: object) -> msgspec.json.Decoder:  # type: ignore[type-arg]
    """A decoder for venues that write JSON numbers: a number sent as a string is refused."""
    return msgspec.json.Decoder(kind)  # type: ignore[arg-type]
