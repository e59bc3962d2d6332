"""CPU seconds a process has used so far (user + system, all its threads; Linux /proc).

A bench's CPU per unit of work holds on a shared machine, where its wall-clock rate follows
whatever else runs: the ingest benches report the server's CPU per record beside their rate.
"""

from __future__ import annotations

import os
from pathlib import Path


def cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` in seconds; None where /proc is not there to read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
