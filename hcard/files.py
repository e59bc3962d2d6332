"""Files that survive a power cut whole: written aside, fsynced, renamed, the folder fsynced.

A file written in place (`Path.write_bytes`) can be found after a power cut (or a kill
in the middle) empty or cut short under its final name, and a name created without an
fsync of its folder can vanish although its bytes reached the disk. `write_atomic`
leaves either the old file or the complete new one (tests/powercut, docs/power-cuts.md).
Shared by the till (config, snapshot), the office (provisioning) and the server
(settlement files), so it lives in the core.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make the names in `folder` (created, renamed, removed) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(folder: Path) -> None:
    """Create `folder` and any missing parent, each new name fsynced in its parent."""
    if folder.is_dir():
        return
    make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return  # made meanwhile by someone else, who makes it durable
    fsync_folder(folder.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file (mode 0600), fsync, rename, fsync the folder.

    A power cut leaves either the old or the new file, never half of one.
    """
    make_folder(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_folder(path.parent)
