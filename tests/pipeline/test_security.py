"""TLS to NATS, secrets files, and redaction of secrets from logs and errors."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams.bus import logs, secrets
from streams.bus.connect import connect
from streams.bus.server import CONFIG, NatsServer, free_port
from streams.settings import NatsServerSettings, NatsSettings
from tests.conftest import CREDENTIALS

TLS_CONF = CONFIG.parent / "nats-server-tls.conf"


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer, *, ca: bool
) -> x509.Certificate:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(signer, hashes.SHA256())


def _pki(d: Path, prefix: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (ca, cert, key) files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix} test CA")])
    ca = _cert(f"{prefix} test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, ca_name, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    files = (d / f"{prefix}-ca.pem", d / f"{prefix}-cert.pem", d / f"{prefix}-key.pem")
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(cert.public_bytes(pem))
    files[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files[2].chmod(0o600)
    return files


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    ca, cert, key = _pki(tmp_path, "good")
    os.environ.update(
        JM_NATS_TLS_CERT=str(cert), JM_NATS_TLS_KEY=str(key),
        JM_NATS_TLS_CA=str(ca), JM_NATS_TLS_VERIFY="false",
    )  # fmt: skip
    cfg = NatsServerSettings(port=free_port(), monitor_port=free_port(), store_dir=str(tmp_path))
    srv = NatsServer(cfg, log_file=tmp_path / "nats.log", config=TLS_CONF).start()
    yield srv, ca
    srv.stop()


async def test_tls_connection_verified_against_our_ca(
    tmp_path: Path, tls_server: tuple[NatsServer, Path]
) -> None:
    srv, ca = tls_server
    # the TLS config has the same users: the client needs the generated credentials too
    creds = {"credentials_dir": str(CREDENTIALS), "default_role": "reader"}
    nc = await connect(NatsSettings(url=srv.url, tls_ca=str(ca), **creds), "tls-test")
    sub = await nc.subscribe("market.trade.x.Y")
    admin = await connect(NatsSettings(url=srv.url, tls_ca=str(ca), **creds), "t", role="admin")
    await admin.publish("market.trade.x.Y", b"over tls")
    await admin.close()
    msg = await sub.next_msg(timeout=2)
    assert msg.data == b"over tls"
    assert nc.connected_url is not None
    await nc.close()

    # a server whose certificate our CA did not sign is refused
    other_ca, _, _ = _pki(tmp_path, "other")
    with pytest.raises(Exception, match="(?i)certificate|ssl"):
        await connect(
            NatsSettings(url=srv.url, tls_ca=str(other_ca), connect_timeout_s=1.0, **creds),
            "tls-wrong-ca",
            allow_reconnect=False,
        )


def test_secrets_file_must_be_private(tmp_path: Path) -> None:
    p = tmp_path / "key"
    p.write_text("s3cr3t-value-0600\n")
    p.chmod(0o644)
    with pytest.raises(secrets.SecretsError, match=str(p)):
        secrets.read_file(p)
    p.chmod(0o600)
    assert secrets.read_file(p) == "s3cr3t-value-0600"
    with pytest.raises(secrets.SecretsError, match="not found"):
        secrets.read_file(tmp_path / "absent")


def test_secrets_never_reach_the_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "api.secret"
    key_file.write_text("K3y-From-File-9f8e7d")
    key_file.chmod(0o600)
    from_file = secrets.read_file(key_file)
    monkeypatch.setenv("JM_TEST_API_SECRET", "Env-Secret-Value-1234")
    from_env = secrets.from_env("JM_TEST_API_SECRET")
    assert from_env == "Env-Secret-Value-1234"

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning(f"request failed with key {from_file}", extra={"secret": from_env})
        try:
            raise RuntimeError(f"GET https://x/api?apiKey={from_file}&signature=abcdef0123")
        except RuntimeError:
            log.exception("venue error")
        # a credential no one registered is still masked by its shape
        log.warning("upstream said", extra={"body": '{"api_key": "unregistered-credential"}'})
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    for leaked in (from_file, from_env, "abcdef0123", "unregistered-credential"):
        assert leaked not in text, f"{leaked!r} leaked into {text}"
    assert text.count(logs.MASK) >= 5
    assert "request failed with key ***" in text
    # error texts sent back to users go through the same mask
    assert logs.redact(f"auth failed for {from_env}") == "auth failed for ***"


def test_exchange_keys_are_masked_wherever_they_surface(tmp_path: Path) -> None:
    """Executor keys from a 0600 JSON file and the environment: an exception text that
    carries them (as ccxt's do, with the request URL and headers) logs only ``***``."""
    from executor.venues.ccxt_venue import load_keys
    from streams.settings import AccountSettings

    f = tmp_path / "binance.json"
    f.write_text('{"apiKey": "FileApiKey-77aa", "secret": "FileSecret-88bb"}')
    f.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_keys(AccountSettings(venue="ccxt", exchange="binance", secrets_file=str(f)))
    f.chmod(0o600)
    keys = load_keys(
        AccountSettings(venue="ccxt", exchange="binance", secrets_file=str(f),
                        secret_env="JM_TEST_EXEC_SECRET"),
        env={"JM_TEST_EXEC_SECRET": "EnvSecret-99cc"},
    )  # fmt: skip
    assert keys == {"apiKey": "FileApiKey-77aa", "secret": "EnvSecret-99cc"}
    err = (
        'binance {"code":-2014,"msg":"API-key format invalid."} POST '
        "http://127.0.0.1/api/v3/order headers X-MBX-APIKEY: FileApiKey-77aa "
        "signed with EnvSecret-99cc, file secret FileSecret-88bb"
    )
    text = logs.redact(err)
    for leaked in ("FileApiKey-77aa", "EnvSecret-99cc", "FileSecret-88bb"):
        assert leaked not in text, text
    assert "API-key format invalid" in text  # the useful part survives
