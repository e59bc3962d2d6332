"""The simulated world: one server, a few tills, a few cards, one clock, one network.

Everything is real production code apart from the clock (`clock`), the network
(`network`) and the cards (`cards`, the chip model without radio):
- the server is `create_app` on a `Context` opened on a real SQLite file; a restart closes
  it and opens a new `Context` on the same files (`SimServer.restart`); a crash during a
  request makes the commit fail (a SQLAlchemy "commit" listener raises before the
  database commits) or comes after it, and the answer is lost either way; backups are
  taken with `hcard.server.backup` and a restore copies the newest one back.
- a till is a `TerminalTill` on its own state folder, enrolled with the real `enrol`; its
  sync agent runs only when the simulation calls `run_once` (no thread). A till crashes
  at a crash point (every card command, every journal write before and after it, every
  request before it is sent and after its answer came): `SimCrash` is raised there, the
  till's objects are dropped (an uncommitted journal transaction rolls back, as a killed
  process's does) and a new `TerminalTill` is built from the files, which runs the
  recovery (`Payments.recover`).
"""

from __future__ import annotations

import random
import shutil
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import keys
from hcard.server import backup
from hcard.server.app import create_app
from hcard.server.context import Context
from hcard.server.services import cards as card_service
from hcard.server.services import merchants, terminals, users
from hcard.server.services.users import Staff
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role, TopupSource
from hcard.terminal import config as terminal_config
from hcard.terminal.card import TEST_PUBLIC_KEY_HEX
from hcard.terminal.card import image as images
from hcard.terminal.card.ntag import NTAG215
from hcard.terminal.core import TerminalTill

from .cards import SimCard, SimReader
from .clock import SimClock
from .network import Answer, ServerDownError, SimAdapter, SimNetwork, Wire

if TYPE_CHECKING:
    from .ops import Attempt

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette deprecates its client on httpx: not ours
    from starlette.testclient import TestClient

SERVER_URL = "http://sim"
#: the site's card write secret of every simulated town (cards and tills share it)
WRITE_SECRET = b"hcard-sim-card-write-secret-001"
ADMIN = "admin"
#: backups kept: a restore takes the newest
BACKUPS_KEPT = 3
#: the issuer key of every simulated server (fixed, so a seed's cards are the same each run)
_ISSUER_SEED = bytes(range(32))


class SimCrash(BaseException):
    """A till dies here. A BaseException, so no `except Exception` of the till catches it."""


class SimServer:
    """The real app on a real SQLite file, restartable and restorable."""

    def __init__(self, folder: Path, clock: SimClock, log: Callable[[str], None]) -> None:
        self.folder = folder
        self.clock = clock
        self.log = log
        self.settings = Settings.build(data_dir=folder)
        self.database = backup.sqlite_path(self.settings.database_url)
        self.backups = folder / "backups"
        self.restarts = 0
        self._crash_armed = False
        self._crashed_in_commit = False
        self._open()

    def _open(self) -> None:
        ctx = Context.open(self.settings, create_key=True)
        setattr(ctx, "now", self.clock.now_s)  # noqa: B010 - the simulated clock
        sa.event.listen(ctx.engine, "commit", self._on_commit)
        self.ctx = ctx
        self.http = TestClient(create_app(ctx), base_url=SERVER_URL, raise_server_exceptions=False)
        self.http.__enter__()

    def close(self) -> None:
        self.http.__exit__(None, None, None)
        self.ctx.engine.dispose()

    def _on_commit(self, _conn: sa.Connection) -> None:
        if self._crash_armed:
            self._crash_armed = False
            self._crashed_in_commit = True
            raise ServerDownError("the server died before the commit")

    def deliver(self, wire: Wire, crash: bool) -> Answer:
        self._crash_armed, self._crashed_in_commit = crash, False
        response = self.http.request(
            wire.method, wire.path, content=wire.body, headers=dict(wire.headers)
        )
        if crash:
            self._crash_armed = False
            self.restart("in the commit" if self._crashed_in_commit else "after the answer")
            raise ServerDownError("server crashed")
        return Answer(response.status_code, tuple(response.headers.items()), response.content)

    def restart(self, why: str) -> None:
        self.log(f"server restart ({why})")
        self.restarts += 1
        self.close()
        self._open()

    def take_backup(self) -> None:
        stamp = datetime.fromtimestamp(self.clock.now_s(), UTC)
        made = backup.backup_sqlite(self.database, self.backups, now=stamp)
        backup.prune(self.backups, BACKUPS_KEPT)
        self.log(f"server backup {made.name}")

    def restore(self) -> None:
        """Stop, put the newest backup in place of the database, start again."""
        newest = max(self.backups.glob(f"{backup.PREFIX}*{backup.SQLITE_SUFFIX}"))
        self.log(f"server restore {newest.name}")
        self.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(newest, self.database)
        self._open()

    def enrol_post(self, url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> Any:
        """`post_json` of a till's enrolment, straight to the app (set-up, no faults)."""
        response = self.http.post(url.removeprefix(SERVER_URL), json=payload)
        response.raise_for_status()
        return response.json()


class SimTill:
    """One till: its state folder, its reader, and the `TerminalTill` now running on it."""

    def __init__(self, name: str, state_dir: Path, world: World) -> None:
        self.name = name
        self.state_dir = state_dir
        self.world = world
        self.reader = SimReader(self.crash_point)
        self.crash_in: int | None = None  # crash at the n-th crash point from now
        self.crashes = 0
        self.till: TerminalTill | None = None

    @property
    def running(self) -> TerminalTill:
        assert self.till is not None, f"{self.name} is not running"
        return self.till

    def start(self) -> None:
        till = TerminalTill(
            self.state_dir, reader=self.reader, start_sync=False, reader_check_interval_s=None
        )
        # the client's own session, with the simulated network as its transport
        session = till.client._session()
        session.mount(SERVER_URL, SimAdapter(self.world.network, self.name, self.crash_point))
        _hook_journal(till, self.crash_point)
        self.till = till
        if till.recovered:
            self.world.log(f"{self.name} recovered: cancelled seqs {till.recovered}")

    def crash_point(self, where: str) -> None:
        if self.crash_in is None:
            return
        if self.crash_in <= 0:
            self.crash_in = None
            raise SimCrash(f"{self.name} crashed at {where}")
        self.crash_in -= 1

    def crash_and_restart(self, where: str) -> None:
        """Drop the till's objects (as a killed process) and start it from its files."""
        self.world.log(f"{where}; restart")
        self.crashes += 1
        self.crash_in = None
        if self.till is not None:
            self.till.journal.close()  # committed work stays, an open transaction rolled back
        self.till = None
        self.start()

    def stop(self) -> None:
        if self.till is not None:
            self.till.close()
            self.till = None


#: the journal's writes, each a crash point before and after it
_JOURNAL_WRITES = (
    "append",
    "set_state",
    "finish",
    "void",
    "mark_acked",
    "rewind_acked",
    "set_meta",
    "note_tap_counter",
)


def _hook_journal(till: TerminalTill, crash_point: Callable[[str], None]) -> None:
    journal = till.journal
    for name in _JOURNAL_WRITES:
        original = getattr(journal, name, None)
        if original is None:
            continue

        def hooked(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            crash_point(f"before journal.{_name}")
            result = _original(*args, **kwargs)
            crash_point(f"after journal.{_name}")
            return result

        setattr(journal, name, hooked)


class World:
    """Server, tills, cards, clock, network and the event log of one seed."""

    def __init__(
        self,
        seed: int,
        folder: Path,
        template: Path,
        *,
        clock: SimClock,
        tills: int = 3,
        cards: int = 5,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.events: list[str] = []
        self.step = 0
        self.attempts: list[Attempt] = []  # what the tills showed (`ops`)
        self.attempts_checked = 0  # how many of them `checks.after_step` has seen
        self.clock = clock
        shutil.copytree(template, folder / "server")
        self.server = SimServer(folder / "server", self.clock, self.log)
        self.network = SimNetwork(random.Random(self.rng.getrandbits(64)), self.server, self.log)
        self.network.healed = True  # no faults while the town is set up
        ctx = self.server.ctx
        admin_id = _admin_id(ctx)
        self.actor = Staff(user_id=admin_id, username=ADMIN, role=Role.ADMIN, merchant_id=None)
        merchant_ids = [
            int(
                merchants.create_merchant(  # type: ignore[arg-type]
                    ctx, self.actor, name=f"Laden {n}", iban="DE89370400440532013000"
                )["id"]
            )
            for n in range(2)
        ]
        self.merchant_of: dict[str, int] = {}
        self.tills: list[SimTill] = []
        for n in range(tills):
            name = f"till{n}"
            till = SimTill(name, folder / name, self)
            self._enrol(till, merchant_ids[n % len(merchant_ids)])
            self.tills.append(till)
        self.initial_cents: dict[str, int] = {}
        self.cards: list[SimCard] = []
        for n in range(cards):
            self.cards.append(self._issue(n))
        self.server.take_backup()
        for till in self.tills:
            till.start()
            till.running.sync_now()
        self.network.healed = False
        self.log(f"world seed {seed}: {len(self.tills)} tills, {len(self.cards)} cards")

    # ------------------------------------------------------------------ set-up
    def _enrol(self, till: SimTill, merchant_id: int) -> None:
        ctx = self.server.ctx
        made = terminals.create_terminal(ctx, self.actor, merchant_id, till.name)
        state = terminal_config.TerminalState(till.state_dir)
        key = Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32))
        keys.save_private(key, state.key_path)
        with mock.patch.object(terminal_config, "post_json", self.server.enrol_post):
            config = terminal_config.enrol(
                state,
                SERVER_URL,
                str(made["code"]),
                name=till.name,
                reader="sim:",
                originality_key=TEST_PUBLIC_KEY_HEX,
                card_write_secret=WRITE_SECRET.hex(),
            )
        self.merchant_of[till.name] = config.merchant_id

    def _issue(self, n: int) -> SimCard:
        ctx = self.server.ctx
        uid = b"\x04" + self.rng.randbytes(6)
        issued = card_service.issue(ctx, self.actor, uid.hex())
        number = str(issued["card_number"])
        image = images.issue(
            images.blank(NTAG215, uid),
            number,
            ctx.issuer_key,
            f"https://karte.sim/c/{number}",
            WRITE_SECRET,
        )
        balance_cents = self.rng.choice([0, 500, 2000, 5000, 20000])
        if balance_cents:
            card_service.topup(ctx, self.actor, number, balance_cents, TopupSource.CASH)
        self.initial_cents[number] = balance_cents
        self.log(f"card {n} {number} {balance_cents}")
        return SimCard(number, image)

    # ------------------------------------------------------------------ running
    def log(self, text: str) -> None:
        self.events.append(f"{self.step:05d} {self.clock.now_s():.3f} {text}")

    def close(self) -> None:
        for till in self.tills:
            till.stop()
        self.server.close()


def _admin_id(ctx: Context) -> int:
    from hcard.server.db.tables import users as users_table

    with ctx.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(users_table.c.id).where(users_table.c.username == ADMIN)
            ).scalar_one()
        )


def make_template(folder: Path) -> Path:
    """A migrated server folder with the issuer key and the admin (argon2 once per process)."""
    template = folder / "template"
    settings = Settings.build(data_dir=template)
    template.mkdir(parents=True)
    keys.save_private(Ed25519PrivateKey.from_private_bytes(_ISSUER_SEED), settings.issuer_key_path)
    ctx = Context.open(settings, create_key=False)
    users.create_user(ctx, None, ADMIN, "sim-admin-password", Role.ADMIN)
    ctx.engine.dispose()
    return template
