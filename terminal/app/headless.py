"""A private X display (Xvfb) for running the app without a screen.

Used by the screenshot command, the GUI tests and `bench/app_start.py`. Xvfb
picks a free display number itself (`-displayfd`), so several runs on one
machine never collide over `:99`.
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

SCREEN_SIZE = "1280x1280x24"  # holds 800x480, 1280x800 and 800x1280


@contextmanager
def virtual_display(timeout_s: float = 20) -> Iterator[str]:
    """Start Xvfb and yield its DISPLAY value (":N"); stop it afterwards."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", SCREEN_SIZE, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], timeout_s)
        number = os.read(read_fd, 32).decode().strip() if ready else ""
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start (apt-get install xvfb)")
        yield f":{number}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
