"""What every venue's settings section shares, and how a collector reads its own.

A venue's section is ``[collector.<venue>]`` in the configuration file (or
``JETMARKET_COLLECTOR__<VENUE>__<KEY>`` in the environment). The contract keeps it as given
(``streams.settings.CollectorSettings.sections``); its schema and defaults live in the venue's
module (``collectors/<venue>.py``: URLs, symbols, channels, extra knobs) on the base classes
here, so a venue reads as one unit and adding one touches no shared file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar, get_type_hints

import msgspec

from streams.bus.budget import LimitsSettings, RateLimit
from streams.settings import Section, Settings, SettingsError, section

__all__ = ["LimitsSettings", "RateLimit", "ReconnectSettings", "VenueSettings"]

V = TypeVar("V", bound=Section)


class ReconnectSettings(Section):
    """Backoff between reconnects and REST retries: min_s doubling to max_s, +-jitter."""

    min_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.3

    def _check(self, prefix: str) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise SettingsError(f"{prefix}: need 0 < min_s <= max_s")


class VenueSettings(Section):
    """A native WebSocket venue. ``symbols`` are the venue's native instrument names;
    ``channels`` the venue module's channel-map keys; ``options`` holds venue-specific
    extras, documented in its module. A venue subclasses this with its defaults."""

    ws_url: str
    rest_url: str
    symbols: list[str]
    channels: list[str]
    ping_interval_s: float = 20.0
    stale_after_s: float = 60.0
    snapshot_depth: int = 400
    reconnect: ReconnectSettings = msgspec.field(default_factory=ReconnectSettings)
    options: dict[str, str] = msgspec.field(default_factory=dict)
    # the venue's REST limits and proxy (streams/bus/budget.py); defaults in its module
    limits: LimitsSettings = msgspec.field(default_factory=LimitsSettings)

    KNOWN_CHANNELS: ClassVar[frozenset[str]] = frozenset()  # empty: not checked here

    def _check(self, prefix: str) -> None:
        if not self.symbols:
            raise SettingsError(f"{prefix}.symbols must not be empty")
        if not self.channels:
            raise SettingsError(f"{prefix}.channels must not be empty")
        known = self.KNOWN_CHANNELS
        if not known:
            return
        # "orderbook.50": a channel with its parameter after the dot counts as that channel
        bad = [c for c in self.channels if c not in known and c.split(".")[0] not in known]
        if bad:
            raise SettingsError(
                f"{prefix}.channels: unknown {bad}; this venue's channels: {sorted(known)}"
            )


def venue_section(
    name: str, known_channels: Iterable[str] = (), **defaults: Any
) -> type[VenueSettings]:
    """A venue's settings class: ``VenueSettings`` with the venue's own defaults (its URLs,
    symbols and channels), named ``name`` in the calling module; ``known_channels`` (the
    venue's channel map) is what ``channels`` may name, checked when settings load. Lists
    are copied per instance, so one Settings never shares a list with another (a section,
    like ``limits``, is copied too)."""
    hints = get_type_hints(VenueSettings)
    fields = [
        (key, hints[key], msgspec.field(default_factory=lambda v=value: list(v)))
        if isinstance(value, list)
        else (key, hints[key], msgspec.field(default_factory=lambda v=value: copy_section(v)))
        if isinstance(value, Section)
        else (key, hints[key], value)
        for key, value in defaults.items()
    ]
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    return msgspec.defstruct(
        name, fields, bases=(VenueSettings,), module=module, kw_only=True,
        forbid_unknown_fields=True, namespace={"KNOWN_CHANNELS": frozenset(known_channels)},
    )  # fmt: skip


def copy_section(value: V) -> V:
    """A deep copy of a section (defaults must not be shared between Settings)."""
    return msgspec.convert(msgspec.to_builtins(value), type(value))


def venue_settings(settings: Settings, venue: str, cls: type[V]) -> V:
    """The section ``collector.<venue>`` read with the venue's own settings class (its
    defaults where the file says nothing); a bad value raises SettingsError naming the key."""
    data = dict(settings.collector.sections.get(venue, {}))
    if isinstance(data.get("limits"), dict):
        # keys given under [collector.<venue>.limits] change the venue's default limits,
        # they do not replace them (a proxy alone must not drop the venue's rules)
        for f in msgspec.structs.fields(cls):
            if f.name == "limits" and f.default_factory is not msgspec.NODEFAULT:
                data["limits"] = {**msgspec.to_builtins(f.default_factory()), **data["limits"]}
    return section(data, cls, f"collector.{venue}")


def check_sections(settings: Settings, known: list[str]) -> None:
    """A section for a venue no module speaks is a typo: fail at start, naming it."""
    unknown = sorted(set(settings.collector.sections) - set(known) - {"ccxt"})
    if unknown:
        raise SettingsError(
            f"collector.{unknown[0]}: no such venue; sections may name {sorted(known)} or ccxt"
        )
