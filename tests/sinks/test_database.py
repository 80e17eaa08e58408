"""The database a ClickHouse DSN names is created when it does not exist (clickhouse-connect
only joins an existing one): on chdb here, the same code path as a server's
``http://user:pass@host:8123/jetmarket``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sinks.clickhouse.store import dsn_database

ROOT = Path(__file__).resolve().parents[2]


def test_dsn_database() -> None:
    assert dsn_database("http://u:p@h:8123/jetmarket") == ("jetmarket", "http://u:p@h:8123")
    assert dsn_database("https://h:8443/") == ("", "https://h:8443/")
    assert dsn_database("chdb:///a/b") == ("", "chdb:///a/b")
    assert dsn_database("chdb:///a/b?database=jm") == ("jm", "chdb:///a/b")
    assert dsn_database("chdb:///a/b?database=jm&x=1") == ("jm", "chdb:///a/b?x=1")


def test_a_missing_database_is_created(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}?database=jetmarket"
    code = (
        "from sinks.clickhouse.store import Store\n"
        f"s = Store({dsn!r}); s.apply_ddl()\n"
        'print(s.rows("SELECT currentDatabase(), count() FROM system.tables WHERE database ='
        " 'jetmarket' AND name IN ('trades', 'raw_frames')\"))\n"
        "s.close()\n"
    )
    # in a child: chdb binds one path per process; run twice (the second finds it existing)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr[-1500:]
        assert out.stdout.strip() == "[('jetmarket', 2)]"
