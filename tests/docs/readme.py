"""The README as a newcomer meets it: its code blocks, a fresh clone of the repository, and
``make up`` running in a pseudo-terminal of that clone (Ctrl-C included).

A block is skipped only with a reason, in an HTML comment right above its fence:
``<!-- readme-test: skip: runs until Ctrl-C -->``.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.bus.server import free_port
from tests.workers import ROOT

FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")
RUN_LANGS = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python"}


@dataclass
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` with its language and skip reason (if any)."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        # the skip marker: the nearest non-blank line above the fence
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skip = SKIP.search(lines[k]) if k >= 0 else None
        out.append(Block(lang, "\n".join(lines[i + 1 : j]) + "\n", start + 1,
                         skip.group(1) if skip else None))  # fmt: skip
        i = j + 1
    return out


def fresh_clone(dest: Path) -> Path:
    """``git clone`` of the repository into ``dest``, plus the working tree's uncommitted
    and new files (so a test run before a commit sees what will be committed), with a
    light ``.venv`` (see :func:`light_venv`) instead of a minute of ``make venv``."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, timeout=60)
    changed = subprocess.run(
        ["git", "ls-files", "-mo", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True, timeout=30,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, changed):
        src, dst = ROOT / rel, dest / rel
        if src.is_file() and not rel.startswith(("var/", ".venv")):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    deleted = (
        subprocess.run(
            ["git", "ls-files", "-d", "-z"], cwd=ROOT, check=True, capture_output=True, timeout=30
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, deleted):
        (dest / rel).unlink(missing_ok=True)
    light_venv(dest)
    return dest


def light_venv(checkout: Path) -> None:
    """A venv of its own in ``checkout`` that sees the repository venv's packages (a .pth
    line: its editable-install hook is not run, so the clone's own code is what imports)
    and its nats-server, with make's install stamp newer than pyproject.toml. Never a
    link to the repository's .venv: `make` would reinstall into it, pointing the shared
    editable install at the clone."""
    venv = checkout / ".venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    rel = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    (venv / rel / "jetmarket-shared.pth").write_text(f"{Path(sys.prefix) / rel}\n")
    (venv / "bin" / "nats-server").symlink_to(Path(sys.prefix) / "bin" / "nats-server")
    cksum = subprocess.run("cksum < pyproject.toml | cut -d' ' -f1", shell=True, cwd=checkout,
                           check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    stamp = venv / f".installed-{cksum}"
    stamp.touch()
    old = stamp.stat().st_mtime - 10
    os.utime(checkout / "pyproject.toml", (old, old))


def pipeline_env(checkout: Path, home: Path) -> dict[str, str]:
    """The newcomer's environment: free ports instead of 4222/8222/8780/4280 (other checkouts run
    on this machine too), metrics endpoints off, temporary files in the checkout's var/tmp
    (as the Makefile sets) and a HOME outside the checkout that must stay empty. Nothing
    else: every path is the default, relative to the checkout."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JETMARKET_", "PYTHON", "VIRTUAL_ENV", "JM_"))}  # fmt: skip
    env |= {
        "HOME": str(home),
        "TMPDIR": str(checkout / "var" / "tmp"),
        "JETMARKET_NATS__URL": f"nats://127.0.0.1:{port}",
        "JETMARKET_NATS__SERVER__PORT": str(port),
        "JETMARKET_NATS__SERVER__MONITOR_PORT": str(free_port()),
        "JETMARKET_API__PORT": str(free_port()),
        "JETMARKET_API__NATS_WS_PORT": str(free_port()),
        "JETMARKET_METRICS__PORTS": '{"collector": 0, "normalizer": 0, "sink": 0, '
        '"orderbook": 0, "executor": 0}',
        "TERM": "xterm",
    }
    return env


@dataclass
class Terminal:
    """A command in a pseudo-terminal: its session leader, output captured, Ctrl-C typed."""

    pid: int
    fd: int
    out: bytearray = field(default_factory=bytearray)
    code: int | None = None

    @classmethod
    def start(cls, argv: list[str], cwd: Path, env: dict[str, str]) -> Terminal:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal, it the foreground
            try:
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        t = cls(pid, fd)
        threading.Thread(target=t._read, daemon=True).start()
        return t

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.5)
                if ready:
                    chunk = os.read(self.fd, 65536)
                    if not chunk:
                        return
                    self.out += chunk
            except OSError:  # the other side closed
                return

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the line discipline signals the foreground group

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            time.sleep(0.1)
        return None

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_in(path: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose working directory is inside ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cwd == str(path) or cwd.startswith(f"{path}/"):
            found.append((int(proc.name), cmd))
    return found


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float = 60.0
              ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run a shell block with ``sh -e`` or a Python block as a script saved in ``cwd``."""
    if RUN_LANGS[block.lang] == "sh":
        argv = ["sh", "-ec", block.code]
    else:
        script = cwd / f"readme_block_{block.line}.py"
        script.write_text(block.code)
        argv = [str(cwd / ".venv" / "bin" / "python"), script.name]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
