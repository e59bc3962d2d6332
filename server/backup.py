"""Back the server database up while the server keeps running, keeping N generations.

`hcard-server backup` (run nightly by `systemd/hcard-server-backup.timer`) calls `backup`
with the database the server itself uses (`Settings`: `--data-dir` / `HCARD_DATABASE_URL`),
so the backup and the server can never disagree about which database that is. Only the
standard library (and `pg_dump` for PostgreSQL) is used here.

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies a consistent snapshot
  page by page while the server goes on writing (WAL); a plain `cp` of a WAL database can
  catch a half-applied checkpoint. The copy is checked with `PRAGMA integrity_check`.
- PostgreSQL: `pg_dump --format=custom` (restore with `pg_restore`); the password travels in
  the environment (`PGPASSWORD`), never on the command line where `ps` shows it.

Every backup is written under a temporary name, fsync'd and then renamed, so a backup file
with the final name is always complete; only then are generations beyond `keep` removed.
The issuer key is NOT copied here: it never changes, so it is saved once, offline, at
install time (see docs/deploy.md), instead of spreading a secret over every backup.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from hcard.files import fsync_folder
from hcard.i18n import both as _

PREFIX = "hcard-"
SQLITE_SUFFIX = ".sqlite3"
POSTGRES_SUFFIX = ".pgdump"
DEFAULT_KEEP = 14
# How many pages the online backup copies per step: small steps let the server's writers in
# between, so a backup never holds the database for long.
_PAGES_PER_STEP = 1024


class BackupError(Exception):
    """A backup that could not be made; the message says why, German first."""


def _stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")


def _finish(tmp: Path, final: Path) -> Path:
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    tmp.chmod(0o600)
    tmp.replace(final)
    fsync_folder(final.parent)
    return final


def sqlite_path(url: str) -> Path:
    """The file of an SQLAlchemy SQLite URL (`sqlite:///relative`, `sqlite:////absolute`)
    or of a plain path."""
    if "://" not in url:
        return Path(url)
    scheme, rest = url.split("://", 1)
    if not scheme.startswith("sqlite"):
        raise BackupError(_("not an SQLite URL") + f": {scheme}")
    if not rest.startswith("/"):
        raise BackupError(_("SQLite URL without a file"))
    return Path(rest[1:].split("?", 1)[0])


def backup_sqlite(database: Path, dest: Path, now: datetime | None = None) -> Path:
    """Copy `database` with the online backup API into `dest`; return the new file."""
    if not database.is_file():
        raise BackupError(_("database not found") + f": {database}")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = dest / f"{PREFIX}{_stamp(now)}{SQLITE_SUFFIX}"
    tmp = final.with_name(final.name + ".part")
    tmp.unlink(missing_ok=True)
    # Not a read-only URI: a read-only reader of a WAL database fails when the server is
    # down and no -shm file exists; the backup API only reads either way.
    source = sqlite3.connect(database)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target, pages=_PAGES_PER_STEP)
            # The copy stands alone: no -wal file beside it.
            target.execute("PRAGMA journal_mode=DELETE")
            (verdict,) = target.execute("PRAGMA integrity_check").fetchone()
        finally:
            target.close()
    finally:
        source.close()
    if verdict != "ok":
        tmp.unlink(missing_ok=True)
        raise BackupError(_("backup corrupt") + f": {verdict}")
    return _finish(tmp, final)


def _libpq_url(url: str) -> tuple[str, dict[str, str]]:
    """SQLAlchemy's `postgresql+psycopg://u:pw@h/db` as a libpq URI without the password,
    and the environment that carries the password."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgresql", "postgres"}:
        raise BackupError(_("not a PostgreSQL URL") + f": {parts.scheme}")
    env: dict[str, str] = {}
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        user, _colon, password = userinfo.partition(":")
        if password:
            env["PGPASSWORD"] = unquote(password)
        netloc = f"{user}@{hostport}" if user else hostport
    return urlunsplit(("postgresql", netloc, parts.path, parts.query, "")), env


def backup_postgres(
    url: str, dest: Path, pg_dump: str = "pg_dump", now: datetime | None = None
) -> Path:
    """`pg_dump --format=custom` of the database at `url` into `dest`."""
    uri, extra_env = _libpq_url(url)
    if shutil.which(pg_dump) is None:
        raise BackupError(_("pg_dump not found") + f": {pg_dump}")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = dest / f"{PREFIX}{_stamp(now)}{POSTGRES_SUFFIX}"
    tmp = final.with_name(final.name + ".part")
    done = subprocess.run(
        [pg_dump, "--format=custom", "--no-password", f"--file={tmp}", f"--dbname={uri}"],
        env={**os.environ, **extra_env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BackupError(_("pg_dump failed") + f": {done.stderr.strip()}")
    return _finish(tmp, final)


def prune(dest: Path, keep: int) -> list[Path]:
    """Remove all but the `keep` newest backups (names sort by time); return the removed."""
    if keep < 1:
        raise BackupError(_("keep at least one generation"))
    backups = sorted(
        p
        for p in dest.glob(f"{PREFIX}*")
        if p.suffix in {SQLITE_SUFFIX, POSTGRES_SUFFIX} and p.is_file()
    )
    removed = backups[:-keep]
    for path in removed:
        path.unlink()
    # Leftovers of a run that was killed mid-copy.
    for part in dest.glob(f"{PREFIX}*.part"):
        part.unlink()
        removed.append(part)
    return removed


def backup(database_url: str, dest: Path, keep: int, pg_dump: str = "pg_dump") -> Path:
    """One backup generation of whatever engine `database_url` names, then prune."""
    if database_url.startswith("postgres"):
        made = backup_postgres(database_url, dest, pg_dump=pg_dump)
    else:
        made = backup_sqlite(sqlite_path(database_url), dest)
    prune(dest, keep)
    return made
