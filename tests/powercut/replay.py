"""The disk a power cut leaves, rebuilt for every operation of one traced run.

A workload runs once in a subprocess under the tracer (`shim.c`, LD_PRELOAD), which logs
every open, write, sync, truncation, rename, unlink and close under the watched folder, in
the order they happened. `Trace.disk(n, variant)` then rebuilds the folder as a power cut
just before operation `n` would leave it, from a copy of the folder taken before the run.

The fault model (docs/power-cuts.md), more pessimistic than ext4 in its default
`data=ordered` mode, never more lenient:
- A file's bytes are durable only up to its last fsync/fdatasync. The writes and
  truncations after it are all lost (`Variant.LOST`), or a seeded random subset of them
  survives, applied in order (`Variant.SOME`: the disk kept some out of order; a later
  write may survive an earlier one; a surviving write may be torn after any of its
  512-byte sectors). `sync_file_range` is no durability point.
- A name (created, renamed, unlinked) is durable only after an fsync of its folder. Until
  then the folder shows its state at that fsync (`LOST`), or a random prefix of the name
  changes since (`SOME`: ext4 journals metadata in order). An unlinked name comes back.
- `Variant.KEPT` is the crash of the process only (kill -9): everything the kernel took.
- SQLite's `-shm` file is never durable (it is rebuilt from the WAL): dropped.
- The marker file (`MARKERS`) is the oracle, not part of the disk: what the workload
  showed, in order with the operations.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path, PurePosixPath

HEADER = struct.Struct("=IIiIIIqq")  # shim.c's struct header
MARKERS = "markers.txt"  # the workload's oracle: one line per thing it showed
SECTOR_BYTES = 512  # what a disk writes whole (Variant.SOME may tear a write between two)


class Op(IntEnum):
    OPEN = 1
    WRITE = 2
    SYNC = 3
    TRUNCATE = 4
    RENAME = 5
    UNLINK = 6
    CLOSE = 7
    RANGE = 8  # sync_file_range: logged, no durability point
    MKDIR = 9


OPEN_CREATED = 1
OPEN_TRUNCATED = 2


class Variant(StrEnum):
    LOST = "lost"  # every write since the last sync is lost
    SOME = "some"  # a seeded random subset of them survives
    KEPT = "kept"  # none is lost: the process died, the kernel kept all (kill -9)


@dataclass(frozen=True)
class Entry:
    index: int
    op: Op
    flags: int
    fd: int
    path: str
    path2: str
    offset: int
    size: int
    data: bytes


def parse(log: bytes) -> list[Entry]:
    entries: list[Entry] = []
    pos = 0
    while pos < len(log):
        op, flags, fd, path_len, path2_len, _pad, offset, size = HEADER.unpack_from(log, pos)
        pos += HEADER.size
        path = log[pos : pos + path_len].decode()
        pos += path_len
        path2 = log[pos : pos + path2_len].decode()
        pos += path2_len
        data = b""
        if op == Op.WRITE:
            data = log[pos : pos + size]
            pos += size
        entries.append(Entry(len(entries), Op(op), flags, fd, path, path2, offset, size, data))
    return entries


def _parent(path: str) -> str:
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else parent


@dataclass
class _Inode:
    durable: bytearray
    pending: list[Entry] = field(default_factory=list)  # writes/truncations since its sync
    directory: bool = False


def _apply(content: bytearray, entry: Entry) -> None:
    if entry.op == Op.WRITE:
        end = entry.offset + len(entry.data)
        if len(content) < entry.offset:
            content.extend(bytes(entry.offset - len(content)))
        content[entry.offset : end] = entry.data
    else:  # TRUNCATE
        del content[entry.size :]
        content.extend(bytes(entry.size - len(content)))


@dataclass(frozen=True)
class _NameChange:
    op: Op  # OPEN (created), RENAME, UNLINK
    path: str
    path2: str
    inode: int


class Trace:
    """One traced run: the folder before it and the operations, replayable at any point."""

    def __init__(self, before: dict[str, bytes], directories: set[str], log: bytes) -> None:
        self.before = before
        self.directories = directories | {""}
        self.entries = parse(log)
        self.markers_at = [e.index for e in self.entries if e.op == Op.WRITE and e.path == MARKERS]

    @classmethod
    def load(cls, before_dir: Path, log_path: Path) -> Trace:
        before = {
            str(p.relative_to(before_dir)): p.read_bytes()
            for p in sorted(before_dir.rglob("*"))
            if p.is_file()
        }
        directories = {str(p.relative_to(before_dir)) for p in before_dir.rglob("*") if p.is_dir()}
        return cls(before, directories, log_path.read_bytes())

    def shown(self, n: int) -> list[str]:
        """The markers written before operation `n`: what the workload had shown."""
        return [
            line
            for e in self.entries[:n]
            if e.op == Op.WRITE and e.path == MARKERS
            for line in e.data.decode().splitlines()
        ]

    def durability_points(self) -> list[int]:
        """The operations that make something durable: fsyncs of files and folders."""
        return [e.index for e in self.entries if e.op == Op.SYNC]

    def disks(self, seed: int = 0) -> Iterator[tuple[int, Variant, dict[str, bytes]]]:
        """For every cut point n (before operation n; n = len means after the last) and
        every variant: the files (path -> bytes) the power cut leaves. One pass."""
        disk = _Disk(self.before, set(self.directories))
        for n in range(len(self.entries) + 1):
            for variant in Variant:
                yield n, variant, disk.after_cut(variant, random.Random(f"{seed}:{n}"))
            if n < len(self.entries):
                disk.step(self.entries[n])


class _Disk:
    """The folder as the kernel sees it, and what of it is durable, operation by operation."""

    def __init__(self, before: dict[str, bytes], directories: set[str]) -> None:
        self.directories = directories
        self.inodes: dict[int, _Inode] = {}
        self.live: dict[str, int] = {}
        for path, content in before.items():
            self.live[path] = self._new(_Inode(bytearray(content)))
        for path in directories:
            self.live[path] = self._new(_Inode(bytearray(), directory=True))
        self.durable_names = dict(self.live)
        self.changes: dict[str, list[_NameChange]] = {}  # per folder, since its last fsync
        self.fds: dict[int, int] = {}

    def _new(self, inode: _Inode) -> int:
        number = len(self.inodes)
        self.inodes[number] = inode
        return number

    def _change(self, folder: str, change: _NameChange) -> None:
        self.changes.setdefault(folder, []).append(change)

    def step(self, entry: Entry) -> None:
        if entry.path == MARKERS:
            return
        if entry.op == Op.OPEN:
            inode = self.live.get(entry.path)
            if inode is None or entry.flags & OPEN_CREATED:
                inode = self._new(_Inode(bytearray(), directory=entry.path in self.directories))
                self.live[entry.path] = inode
                self._change(_parent(entry.path), _NameChange(Op.OPEN, entry.path, "", inode))
            elif entry.flags & OPEN_TRUNCATED:
                self.inodes[inode].pending.append(
                    Entry(entry.index, Op.TRUNCATE, 0, entry.fd, entry.path, "", 0, 0, b"")
                )
            self.fds[entry.fd] = inode
        elif entry.op in (Op.WRITE, Op.TRUNCATE):
            inode = self.fds[entry.fd] if entry.fd >= 0 else self.live[entry.path]
            self.inodes[inode].pending.append(entry)
        elif entry.op == Op.SYNC:
            node = self.inodes[self.fds[entry.fd]]
            if node.directory:
                for change in self.changes.pop(entry.path, []):
                    _rename(self.durable_names, change)
            else:
                for pending in node.pending:
                    _apply(node.durable, pending)
                node.pending.clear()
        elif entry.op == Op.RENAME:
            if _parent(entry.path) != _parent(entry.path2):
                raise NotImplementedError(f"rename across folders: {entry}")
            inode = self.live.pop(entry.path)
            self.live[entry.path2] = inode
            self._change(
                _parent(entry.path2), _NameChange(Op.RENAME, entry.path, entry.path2, inode)
            )
        elif entry.op == Op.MKDIR:
            inode = self._new(_Inode(bytearray(), directory=True))
            self.live[entry.path] = inode
            self.directories.add(entry.path)
            self._change(_parent(entry.path), _NameChange(Op.OPEN, entry.path, "", inode))
        elif entry.op == Op.UNLINK:
            inode = self.live.pop(entry.path)
            self._change(_parent(entry.path), _NameChange(Op.UNLINK, entry.path, "", inode))
        elif entry.op == Op.CLOSE:
            self.fds.pop(entry.fd, None)

    def after_cut(self, variant: Variant, rng: random.Random) -> dict[str, bytes]:
        names = dict(self.durable_names)
        for folder in sorted(self.changes):
            folder_changes = self.changes[folder]
            if variant == Variant.KEPT:
                kept = len(folder_changes)
            elif variant == Variant.SOME:
                kept = rng.randint(0, len(folder_changes))
            else:
                kept = 0
            for change in folder_changes[:kept]:
                _rename(names, change)
        files: dict[str, bytes] = {}
        for path, inode in sorted(names.items()):
            node = self.inodes[inode]
            if node.directory or path.endswith("-shm") or not _reachable(names, path):
                continue
            if variant == Variant.LOST or not node.pending:
                files[path] = bytes(node.durable)
                continue
            content = bytearray(node.durable)
            for pending in node.pending:
                if variant == Variant.KEPT:
                    _apply(content, pending)
                else:
                    _apply_some(content, pending, rng)
            files[path] = bytes(content)
        return files


def _apply_some(content: bytearray, entry: Entry, rng: random.Random) -> None:
    """`Variant.SOME` for one unsynced write: lost, kept, or torn (only its first sectors
    reached the disk; a sector itself is written whole)."""
    draw = rng.random()
    if draw < 0.5:
        return
    sectors = -(-len(entry.data) // SECTOR_BYTES)
    if entry.op == Op.WRITE and draw < 0.65 and sectors > 1:
        kept = rng.randint(1, sectors - 1) * SECTOR_BYTES - entry.offset % SECTOR_BYTES
        entry = Entry(**{**entry.__dict__, "data": entry.data[: max(kept, 1)]})
    _apply(content, entry)


def _reachable(names: dict[str, int], path: str) -> bool:
    """Is every folder above `path` there (a new folder's name is durable only after an
    fsync of its parent)?"""
    parent = _parent(path)
    return parent == "" or (parent in names and _reachable(names, parent))


def _rename(names: dict[str, int], change: _NameChange) -> None:
    if change.op == Op.OPEN:
        names[change.path] = change.inode
    elif change.op == Op.RENAME:
        names.pop(change.path, None)
        names[change.path2] = change.inode
    else:
        names.pop(change.path, None)


def digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for path, content in sorted(files.items()):
        h.update(path.encode() + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


def write(files: dict[str, bytes], folder: Path, directories: set[str]) -> None:
    """Materialise a rebuilt disk in an empty `folder` (every file 0600, as the server
    wants its key; the modes are not traced)."""
    for directory in sorted(directories):
        (folder / directory).mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(0o600)
