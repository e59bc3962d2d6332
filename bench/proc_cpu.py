"""CPU seconds a process, or the whole machine, has used so far (Linux /proc).

A bench's CPU per unit of work holds on a shared machine, where its wall-clock rate follows
whatever else runs: the ingest benches report the server's CPU per record beside their rate,
and `server_auth.py` what one authorisation costs the server, the client and the rest of
the machine (PostgreSQL's processes, the kernel's loopback).
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


def machine_busy_s() -> float | None:
    """CPU seconds all cores have been busy since boot (`/proc/stat`: everything but idle and
    I/O wait); None where /proc is not there to read."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy / os.sysconf("SC_CLK_TCK")
