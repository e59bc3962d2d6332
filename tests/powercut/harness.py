"""Run a workload once under the tracer, then open every disk a power cut can leave.

    shim = build_shim(build_dir)                 # conftest.py's `powercut_shim`
    trace = traced(shim, folder, "powercut.till_workload")
    report = sweep(trace, content_key, inspect, check, scratch)
    assert not report.failures, report.summary()

`sweep` walks every cut point (before each traced operation, and after the last) in every
variant of `replay.Variant`. Equal disks are opened once (`replay.digest`), and disks that
SQLite reads as the same rows (`content_key`, a plain sqlite3 read of a copy: every
distinct disk is still opened by SQLite, WAL recovery and all) are given once to the
production code (`inspect`, on a fresh copy: opening may write). `check` compares what the
production code found with what the workload had shown before the cut (its markers) and
returns the problems. See docs/power-cuts.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from powercut.replay import MARKERS, Trace, digest, write

SHIM_SOURCE = Path(__file__).with_name("shim.c")
F = TypeVar("F")


def build_shim(build_dir: Path) -> Path:
    """Compile shim.c (once per source: the file name carries its hash) into `build_dir`."""
    source = SHIM_SOURCE.read_bytes()
    target = build_dir / f"shim-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if target.exists():
        return target
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = build_dir / f"{target.name}.{os.getpid()}.tmp"
    flags = ["-O2", "-Wall", "-Werror", "-shared", "-fPIC"]
    subprocess.run(
        ["cc", *flags, "-o", str(partial), str(SHIM_SOURCE), "-ldl", "-lpthread"],
        check=True,
        capture_output=True,
    )
    partial.replace(target)  # several xdist workers may build at once: each its own file
    for old in build_dir.glob("shim-*.so"):  # the builds of an older shim.c
        if old != target:
            old.unlink(missing_ok=True)
    return target


def traced(shim: Path, folder: Path, module: str, *args: str, timeout_s: float = 120) -> Trace:
    """Run `python -m module folder *args` under the tracer, watching `folder`; the trace.

    The folder as it is now is the disk before the run."""
    folder = folder.resolve()
    log = folder.parent / f"{folder.name}.powercut-log"
    log.unlink(missing_ok=True)
    before = {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    directories = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_dir()}
    tests = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")])),
        "POWERCUT_DIR": str(folder),
        "POWERCUT_LOG": str(log),
        "LD_PRELOAD": str(shim),
    }
    done = subprocess.run(
        [sys.executable, "-m", module, str(folder), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise AssertionError(f"workload {module} failed:\n{done.stdout}\n{done.stderr}")
    trace = Trace(before, directories, log.read_bytes())
    log.unlink()
    return trace


def sqlite_rows_key(database: Path) -> str:
    """What SQLite reads from `database` (every table's rows, the schema), as a digest.

    Opening it runs SQLite's own recovery (the WAL replayed up to its last valid commit)
    and may write: call it on a copy."""
    h = hashlib.sha256()
    connection = sqlite3.connect(database)
    try:
        tables = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
        for name, sql in tables:
            h.update(repr((name, sql)).encode())
            for row in connection.execute(f'SELECT * FROM "{name}"'):
                h.update(repr(row).encode())
    finally:
        connection.close()
    return h.hexdigest()


@dataclass
class Report(Generic[F]):
    cuts: int = 0  # cut points x variants checked
    disks: int = 0  # distinct disks (bytes) rebuilt and opened by SQLite
    states: int = 0  # distinct contents given to the production code
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        shown = "\n".join(self.failures[:20])
        more = f"\n... and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
        return (
            f"{len(self.failures)} of {self.cuts} power cuts failed "
            f"({self.disks} distinct disks, {self.states} distinct states):\n{shown}{more}"
        )


@dataclass(frozen=True)
class Broken:
    """The production code refused (or crashed on) the disk a cut left."""

    error: str


def sweep(
    trace: Trace,
    content_key: Callable[[Path], str],
    inspect: Callable[[Path], F],
    check: Callable[[F, list[str]], Iterable[str]],
    scratch: Path,
    seed: int = 0,
) -> Report[F]:
    """Every cut point in every variant: rebuild, open, check against the markers.

    The disks are written under /dev/shm when there is one (`scratch` otherwise): the
    production code fsyncs, and the thousands of rebuilt disks need no disk."""
    memory = Path("/dev/shm")
    if memory.is_dir() and os.access(memory, os.W_OK):
        with tempfile.TemporaryDirectory(dir=memory, prefix="powercut-") as folder:
            return _sweep(trace, content_key, inspect, check, Path(folder), seed)
    return _sweep(trace, content_key, inspect, check, scratch, seed)


def _sweep(
    trace: Trace,
    content_key: Callable[[Path], str],
    inspect: Callable[[Path], F],
    check: Callable[[F, list[str]], Iterable[str]],
    scratch: Path,
    seed: int,
) -> Report[F]:
    report: Report[F] = Report()
    keys: dict[str, str] = {}
    states: dict[str, F | Broken] = {}
    shown: list[str] = []
    for n, variant, files in trace.disks(seed):
        report.cuts += 1
        if n > 0 and trace.entries[n - 1].path == MARKERS:
            shown = trace.shown(n)
        files.pop(MARKERS, None)
        disk = digest(files)
        if disk not in keys:
            report.disks += 1
            folder = scratch / f"disk-{report.disks}"
            write(files, folder, trace.directories)
            try:
                keys[disk] = content_key(folder)
            except Exception as exc:  # SQLite refused it: the production code must say why
                keys[disk] = f"unreadable {disk}: {exc!r}"
            shutil.rmtree(folder)
        key = keys[disk]
        if key not in states:
            report.states += 1
            folder = scratch / f"state-{report.states}"
            write(files, folder, trace.directories)
            try:
                states[key] = inspect(folder)
            except Exception as exc:
                states[key] = Broken(f"{type(exc).__name__}: {exc}")
            shutil.rmtree(folder)
        facts = states[key]
        problems = (
            [f"refused to open: {facts.error}"]
            if isinstance(facts, Broken)
            else list(check(facts, shown))
        )
        for problem in problems:
            report.failures.append(f"cut before op {_describe(trace, n)} [{variant}]: {problem}")
    return report


def _describe(trace: Trace, n: int) -> str:
    if n == len(trace.entries):
        return f"{n} (after the last)"
    entry = trace.entries[n]
    return f"{n} ({entry.op.name} {entry.path or '.'}{' ' + entry.path2 if entry.path2 else ''})"
