"""jetmarket.example.toml is generated from the settings classes (it cannot rot), and
`jetmarket config` shows the effective value and source of every setting, secrets masked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec

from ops import config
from streams import settings as S
from tests.workers import ROOT


def test_example_file_is_the_generated_one() -> None:
    on_disk = (ROOT / config.EXAMPLE_FILE).read_text()
    assert on_disk == config.example(), (
        "jetmarket.example.toml is stale: `.venv/bin/jetmarket config --example > "
        "jetmarket.example.toml`"
    )


def test_example_uncommented_is_valid_and_every_value_is_the_default() -> None:
    text = config.example()
    # every table has a description right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#["):
            assert lines[i - 1].startswith("# "), f"section {line} has no description"
    code = "\n".join(line[1:] for line in lines if re.match(r"#[\[A-Za-z_]", line))
    data = tomllib.loads(code)
    loaded = S.from_mapping(data)
    # example-only entries (a paper account, a ccxt exchange) are examples, not defaults
    ex = msgspec.to_builtins(loaded)
    default = msgspec.to_builtins(S.Settings())
    for tree in (ex, default):
        tree["executor"].pop("accounts")
        tree["backtest"]["account"].pop("instruments")
    sections = ex["collector"].pop("sections")
    default["collector"].pop("sections")
    assert ex == default
    from collectors.config import venue_settings

    for venue, cls in config.venue_sections():
        assert venue in sections, f"no [collector.{venue}] in the example"
        if venue != "ccxt":
            assert venue_settings(loaded, venue, cls) == cls()  # type: ignore[type-var]


def test_config_command_shows_sources_and_masks_secrets(tmp_path: Path) -> None:
    toml = tmp_path / "jm.toml"
    toml.write_text('[log]\nlevel = "WARNING"\n[collector.okx]\nsymbols = ["ETH-USDT"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETMARKET_")}
    env |= {
        "JETMARKET_CLICKHOUSE__DSN": "http://jm:hunter2secret@ch.example:8123/jm",
        "JETMARKET_COLLECTOR__VENUES": '["binance", "okx"]',
    }
    out = subprocess.run(
        [sys.executable, "-m", "ops", "--config", str(toml), "config"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "hunter2secret" not in text
    assert re.search(r'^dsn = "http://jm:\*\*\*@ch.example:8123/jm" +# env$', text, re.M)
    assert re.search(r'^level = "WARNING" +# file$', text, re.M)
    assert re.search(r"^port = 4222 +# default$", text, re.M)
    # the collected venue's section, read with its class: the file's symbols, default URLs
    okx = text.split("[collector.okx]")[1]
    assert re.search(r'^symbols = \["ETH-USDT"\] +# file$', okx, re.M)
    assert re.search(r'^ws_url = "wss://ws.okx.com.*# default$', okx, re.M)


def test_config_command_names_a_bad_venue_key_in_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "jm.toml"
    toml.write_text('[collector.okx]\nchanels = ["trades"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETMARKET_")}
    out = subprocess.run(
        [sys.executable, "-m", "ops", "--config", str(toml), "config"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "jetmarket config: invalid setting collector.okx.chanels: "
        "Object contains unknown field `chanels`"
    ]
