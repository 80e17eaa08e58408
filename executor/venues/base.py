"""What the engine needs from a venue. Every call answers with a VenueReport (the venue's
view of the order), raises VenueRejected (refused, with the reason) or VenueUnknown (the
outcome is not known; the engine resolves it by ``lookup``)."""

from __future__ import annotations

from typing import Protocol

from executor.model import Order, VenueOrder, VenueReport, VenueTrade
from executor.precision import Spec


class Venue(Protocol):
    # True when a submission leaves the process (ccxt): the executor then stores the order
    # as pending_new on EXEC before sending, so a crash mid-submission is found at restart.
    write_ahead: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def spec(self, venue: str, symbol: str) -> Spec:
        """Increments of the instrument; raises VenueRejected for an unknown symbol."""
        ...

    async def submit(self, order: Order) -> VenueReport: ...

    async def cancel(self, order: Order) -> VenueReport | None:
        """None when the venue no longer knows the order as open (filled or gone)."""
        ...

    async def lookup(self, order: Order) -> VenueReport | None:
        """The order as the venue has it, found by client order id; None if never seen."""
        ...

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        """Every open order of the account on these symbols, ours or not."""
        ...

    async def recent_fills(self, symbols: list[str], since_ms: int) -> list[VenueTrade]:
        """The account's fills on these symbols since ``since_ms`` (epoch milliseconds)."""
        ...

    async def order_by_id(self, symbol: str, venue_order_id: str) -> VenueOrder | None:
        """An order found by the venue's id (a fill of an order we have no record of);
        None if the venue does not know it."""
        ...

    def restore(self, order: Order) -> None:
        """Re-register a live order after a restart (in-process venues only)."""
        ...
