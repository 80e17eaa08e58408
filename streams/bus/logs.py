"""Logs on stderr, one line per event: human-readable on a terminal (colour unless
``NO_COLOR``), JSON objects otherwise or when asked (``log.format``). Workers never log
per message."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

import orjson

from streams.settings import Settings, SettingsError, load

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# Values registered by streams.bus.secrets; matched literally wherever they appear in a line.
_SECRETS: set[str] = set()
_secret_re: re.Pattern[str] | None = None
# Credentials by shape, for secrets that were never registered (e.g. a key pasted into a
# URL by a library): query parameters and JSON/header fields whose names say "secret".
_SHAPES = re.compile(
    r"(?i)((?:api[-_]?key|apikey|secret|password|passphrase|signature|token|x-mbx-apikey)"
    r"(?:\\*[\"'])?\s*[:=]\s*(?:\\*[\"'])?)([^\s\"'\\&,}]+)"
)
MASK = "***"
# user:password@ in a URL or DSN (http://u:p@host, nats://u:p@host, clickhouse://...)
_URL_CREDS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:'\"]*):[^/@\s'\"]*@")


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` masked."""
    return _URL_CREDS.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def register_secret(value: str) -> None:
    """Never print ``value``: log lines and ``redact`` replace it with ``***``."""
    global _secret_re
    if len(value) < 4:  # masking 1-3 characters would mangle ordinary text
        return
    _SECRETS.add(value)
    _secret_re = re.compile("|".join(re.escape(s) for s in sorted(_SECRETS, key=len, reverse=True)))


def redact(text: str) -> str:
    """``text`` with registered secrets and credential-shaped values masked."""
    if _secret_re is not None:
        text = _secret_re.sub(MASK, text)
    return redact_url(_SHAPES.sub(lambda m: m.group(1) + MASK, text))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # the whole line, extras and tracebacks included, so nothing escapes the mask
        return redact(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


_LEVEL_COLOUR = {"DEBUG": "\x1b[2m", "INFO": "", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m",
                 "CRITICAL": "\x1b[1;31m"}  # fmt: skip
_LEVEL_WORD = {"DEBUG": "debug", "INFO": "info ", "WARNING": "WARN ", "ERROR": "ERROR",
               "CRITICAL": "CRIT "}  # fmt: skip


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS level logger  message  key=value ...``: one line per event for a person at
    a terminal (a traceback, if any, follows indented). Same redaction as JSON."""

    def __init__(self, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = record.__dict__
        who = extra.get("worker") or extra.get("client") or PROCESS or record.name
        fields = " ".join(
            f"{k}={_short(v)}"
            for k, v in record.__dict__.items()
            if k not in _RESERVED and not k.startswith("_") and v != who
        )
        level = _LEVEL_WORD.get(record.levelname, record.levelname)
        if self.colour and _LEVEL_COLOUR.get(record.levelname):
            level = f"{_LEVEL_COLOUR[record.levelname]}{level}\x1b[0m"
        line = f"{stamp} {level} {who:<11} {record.getMessage()}"
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n  " + self.formatException(record.exc_info).replace("\n", "\n  ")
        return line


def _short(v: Any) -> str:
    """A field value on one line: strings bare (quoted when they hold spaces), the rest JSON."""
    if isinstance(v, str):
        return v if v and " " not in v and "\n" not in v else orjson.dumps(v).decode()
    return orjson.dumps(v, default=str).decode()


def wants_json(fmt: str = "auto", stream: Any = None) -> bool:
    """JSON unless ``fmt`` is "human", or "auto" and ``stream`` (stderr) is a terminal."""
    if fmt == "json":
        return True
    if fmt == "human":
        return False
    stream = sys.stderr if stream is None else stream
    return not (hasattr(stream, "isatty") and stream.isatty())


def settings_format(settings: Settings) -> str:
    """``log.format`` of ``settings`` ("auto" when the setting does not exist)."""
    return str(getattr(settings.log, "format", "auto"))


# The process's own name (a worker's, set by runtime.run) shown on the console for lines
# that name no worker; else the logger's name.
PROCESS = ""
# True once setup() chose the console format: periodic repeats (health lines) are then left
# out, a person at a terminal wants changes; JSON consumers get every line.
HUMAN = False


def setup(level: str = "INFO", fmt: str = "auto") -> None:
    """Logging on stderr: ``fmt`` is "json", "human" or "auto" (human on a terminal)."""
    global HUMAN
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    HUMAN = not wants_json(fmt)
    if not HUMAN:
        handler.setFormatter(JsonFormatter())
    else:
        colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        handler.setFormatter(ConsoleFormatter(colour=colour and sys.stderr.isatty()))
    root.addHandler(handler)
    root.setLevel(level)
    # nats-py logs every reconnect attempt at ERROR with a traceback; we log our own line.
    logging.getLogger("nats").setLevel(logging.CRITICAL)


def command_settings(prog: str) -> Settings | None:
    """The settings of a command-line entry point, with logging set up from them; None after
    one line ``<prog>: bad configuration: ...`` on stderr (the command then exits 2). Here
    rather than in runtime: a command's start must not pay for importing nats-py."""
    try:
        settings = load()
    except SettingsError as exc:
        print(f"{prog}: bad configuration: {exc}", file=sys.stderr)
        return None
    setup(settings.log.level, settings_format(settings))
    return settings
