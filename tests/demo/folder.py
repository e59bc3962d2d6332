"""A demo holds its folder while it runs, so two demos never delete each other's files.

`make demo` empties its folder (`.demo/`) at start; while another demo runs there, that
would delete its database, the till app's control socket and the card images. So every demo
(`make demo`, `--script`, `--server-only`) takes an exclusive `flock` on
`<folder>/.demo.lock` first. The kernel releases it when the process ends, however it ends,
so a crashed demo never leaves a stale lock behind. The lock file itself is never deleted (a
new file under the same name would be another lock).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

LOCK_NAME = ".demo.lock"


def hold(folder: Path, hint: tuple[str, str] = ("", "")) -> int:
    """Hold `folder` for this process's lifetime, or exit with a message if another demo does.

    Returns the open file descriptor, which must stay open while the demo runs. `hint` is
    what else the user can do, in German and English (" oder ...", " or ...").
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SystemExit(
            f"Eine andere Demo läuft schon in {folder}/ (Prozess {holder}); erst beenden (q, "
            f"Strg-C){hint[0]}. / Another demo is running in {folder}/ (process {holder}); "
            f"quit it first (q, Ctrl-C){hint[1]}."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def clear(folder: Path) -> None:
    """Empty a folder held with `hold`, keeping its lock file."""
    for entry in folder.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
