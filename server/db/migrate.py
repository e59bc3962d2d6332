"""Schema migrations (Alembic), shipped inside the package and run by `init` and at start.

No `alembic.ini` to find and no command to remember: `upgrade(engine)` brings any
database, empty or from an older release, to the newest schema, and does nothing
when it is already there.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

_HERE = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    return config


def head() -> str:
    head_revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert head_revision is not None
    return head_revision


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Run every migration not yet applied (up to `revision`), in one transaction per run.

    On SQLite a migration that changes a CHECK constraint copies the table and drops the
    old one, which `PRAGMA foreign_keys=ON` refuses as soon as any row refers to it (every
    till has its enrolment code). So foreign keys are off while migrating (SQLite ignores
    the pragma inside a transaction: it is set before) and every reference is checked with
    `PRAGMA foreign_key_check` before the commit: a migration that broke one rolls back.
    """
    if current(engine) == head():
        return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        # on the driver's connection: SQLAlchemy's own would begin a transaction first
        raw = connection.connection.driver_connection
        if raw is None:  # only a closed connection has none
            raise RuntimeError("the database connection is closed")
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config = _config()
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")
