"""Process figures for benchmark rows."""

from __future__ import annotations

import resource


def peak_rss_bytes() -> int:
    """This process's own peak resident set. Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux
    carries that across exec, so a child started from a big parent (``make bench`` reaches
    1.5 GB) reports the parent's peak; VmHWM belongs to the process's own address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
