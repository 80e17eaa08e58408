"""API keys: ``jm_<id>_<secret>``, stored as SHA-256 of the secret in a 0600 JSON file
(``api.keys_file``, ./var/api/keys.json), managed by ``jetmarket api keys add/list/revoke``.

The secret is 256 random bits, so a fast hash is enough: nothing can be guessed from it
by brute force (a slow hash protects low-entropy passwords, which these are not). The
running API re-reads the file when it changes, so a revoked key stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from pathlib import Path

import msgspec

# read market data (live and history) / read one account's orders, fills, positions and run
# SQL (which can read every table) / place, cancel and amend orders for that account
SCOPES = ("market", "account", "trade")
log = logging.getLogger("api.keys")
_TOKEN = re.compile(r"^jm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class KeysError(ValueError):
    """A bad key operation (unknown id, bad scope); the message is one line."""


class ApiKey(msgspec.Struct, kw_only=True):
    id: str
    name: str
    scopes: list[str]
    account: str = ""  # the executor account of the account/trade scopes
    rate_per_s: float | None = None  # None: api.rate_per_s
    created_ns: int = 0
    revoked: bool = False
    sha256: str = ""


class KeyStore:
    """The keys file. Every write replaces it whole (0600, atomic rename)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None

    def _load(self) -> dict[str, ApiKey]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return self._keys
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                keys = msgspec.json.decode(self.path.read_bytes(), type=list[ApiKey])
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise KeysError(f"{self.path} is not a keys file: {exc}") from None
            self._keys, self._stamp = {k.id: k for k in keys}, stamp
        return self._keys

    def _save(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(list(keys.values()))))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._stamp = None

    def add(
        self, name: str, scopes: list[str], account: str = "", rate_per_s: float | None = None
    ) -> tuple[ApiKey, str]:
        """A new key and its token (shown once: only its hash is kept)."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise KeysError(f"scopes must be some of {', '.join(SCOPES)}; got {scopes}")
        if {"account", "trade"} & set(scopes) and not account:
            raise KeysError("the account and trade scopes need --account (an executor account)")
        if rate_per_s is not None and rate_per_s <= 0:
            raise KeysError("rate must be > 0 requests per second")
        keys = dict(self._load())
        kid = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(id=kid, name=name, scopes=sorted(set(scopes)), account=account,
                     rate_per_s=rate_per_s, created_ns=time.time_ns(),
                     sha256=hashlib.sha256(secret.encode()).hexdigest())  # fmt: skip
        keys[kid] = key
        self._save(keys)
        return key, f"jm_{kid}_{secret}"

    def list(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.created_ns)

    def revoke(self, kid: str) -> ApiKey:
        keys = dict(self._load())
        if kid not in keys:
            raise KeysError(f"no key {kid!r} in {self.path}")
        keys[kid] = msgspec.structs.replace(keys[kid], revoked=True)
        self._save(keys)
        return keys[kid]

    def verify(self, token: str) -> ApiKey | None:
        """The live key ``token`` names, or None (malformed, unknown, revoked, wrong secret)."""
        m = _TOKEN.match(token or "")
        if not m:
            return None
        try:
            key = self._load().get(m.group(1))
        except KeysError as exc:  # a damaged file admits nobody, and says why
            log.error("API keys unreadable: every request is refused", extra={"error": str(exc)})
            return None
        if key is None or key.revoked:
            return None
        digest = hashlib.sha256(m.group(2).encode()).hexdigest()
        return key if hmac.compare_digest(digest, key.sha256) else None
