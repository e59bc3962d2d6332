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

import json
import random
import shutil
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
from hcard.terminal.card import TEST_PUBLIC_KEY_HEX, ntag424_cards
from hcard.terminal.card import image as images
from hcard.terminal.card.ntag import NTAG215
from hcard.terminal.card.ntag424_model import TEST_ORIGINALITY_PUBLIC_KEY_HEX, CardState
from hcard.terminal.card.ntag424_session import Ntag424Secrets
from hcard.terminal.core import TerminalTill

from .cards import SimCard, SimReader
from .clock import SimClock
from .network import Answer, AsgiDoor, ServerDownError, SimAdapter, SimNetwork, Wire

if TYPE_CHECKING:
    from .ops import Attempt


SERVER_URL = "http://sim"
#: the site's card write secret of every simulated town (cards and tills share it)
WRITE_SECRET = b"hcard-sim-card-write-secret-001"
#: an NTAG 424 DNA's other two site secrets (its SUN link; the office's keys)
SUN_SECRET = b"hcard-sim-card-sun-secret-00001"
ADMIN_SECRET = b"hcard-sim-card-admin-secret-001"
ADMIN = "admin"
#: backups kept: a restore takes the newest
BACKUPS_KEPT = 3
_IBAN = "DE89370400440532013000"
#: how far a till's clock may be off when it starts (mostly right)
CLOCK_SKEWS_S = (0, 0, 0, 0, -7200, -400, 400, 7200)
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
        self.http = AsgiDoor(create_app(ctx))

    def close(self) -> None:
        self.http.close()
        self.ctx.engine.dispose()

    def _on_commit(self, _conn: sa.Connection) -> None:
        if self._crash_armed:
            self._crash_armed = False
            self._crashed_in_commit = True
            raise ServerDownError("the server died before the commit")

    def deliver(self, wire: Wire, crash: bool) -> Answer:
        self._crash_armed, self._crashed_in_commit = crash, False
        answer = self.http.request(wire.method, wire.path, wire.body, dict(wire.headers))
        if crash:
            self._crash_armed = False
            self.restart("in the commit" if self._crashed_in_commit else "after the answer")
            raise ServerDownError("server crashed")
        return answer

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
        # a Pi has no real-time clock: after a start its clock may be off by hours until
        # the server's answers correct it (`Clock.learn`)
        skew_s = self.world.rng.choice(CLOCK_SKEWS_S)
        till.clock.offset_s += skew_s
        self.till = till
        if skew_s:
            self.world.log(f"{self.name} starts with its clock {skew_s:+d} s off")
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
    "note_topup_write",
    "drop_topup_write",
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


#: the town every seed starts from (`make_town`): tills, merchants and cards
TILLS = 3
MERCHANTS = 2
CARDS = 5
CARDS_424 = 2  # the first two are NTAG 424 DNA cards, the rest NTAG215
#: opening balances a card may get (the office's top-ups before the first backup)
OPENING_CENTS = (0, 500, 2000, 5000, 20000)


class World:
    """Server, tills, cards, clock, network and the event log of one seed, started from a
    copy of the town (`make_town`)."""

    def __init__(self, seed: int, folder: Path, town: Path, *, clock: SimClock) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.events: list[str] = []
        self.step = 0
        self.attempts: list[Attempt] = []  # what the tills showed (`ops`)
        self.attempts_checked = 0  # how many of them `checks.after_step` has seen
        self.clock = clock
        shutil.copytree(town, folder / "town")
        folder = folder / "town"
        self.server = SimServer(folder / "server", self.clock, self.log)
        self.network = SimNetwork(random.Random(self.rng.getrandbits(64)), self.server, self.log)
        self.network.healed = True  # no faults while the day is set up
        self.actor = _admin(self.server.ctx)
        self.tills = [SimTill(f"till{n}", folder / f"till{n}", self) for n in range(TILLS)]
        self.cards: list[SimCard] = []
        self.initial_cents: dict[str, int] = {}
        for path in sorted((folder / "cards").glob("*.json")):
            card = SimCard(path.stem, images.load(path), random.Random(self.rng.getrandbits(64)))
            opening_cents = self.rng.choice(OPENING_CENTS)
            if opening_cents:
                card_service.topup(
                    self.server.ctx, self.actor, card.number, opening_cents, TopupSource.CASH
                )
            self.initial_cents[card.number] = opening_cents
            self.cards.append(card)
            self.log(f"card {card.number} opens with {opening_cents}")
        self.server.take_backup()
        for till in self.tills:
            till.start()
            till.running.sync_now()
        self.network.healed = False

    def log(self, text: str) -> None:
        self.events.append(f"{self.step:05d} {self.clock.now_s():.3f} {text}")

    def close(self) -> None:
        for till in self.tills:
            till.stop()
        self.server.close()


def _admin(ctx: Context) -> Staff:
    from hcard.server.db.tables import users as users_table

    with ctx.engine.connect() as conn:
        admin_id = conn.execute(
            sa.select(users_table.c.id).where(users_table.c.username == ADMIN)
        ).scalar_one()
    return Staff(user_id=int(admin_id), username=ADMIN, role=Role.ADMIN, merchant_id=None)


def make_town(folder: Path) -> Path:
    """The town every seed starts from, made once per process: a migrated server with its
    issuer key and admin (argon2 once), two merchants, three tills enrolled with the real
    `enrol` and five issued cards (no money yet), all from fixed keys and UIDs."""
    town = folder / "town"
    settings = Settings.build(data_dir=town / "server")
    (town / "server").mkdir(parents=True)
    keys.save_private(Ed25519PrivateKey.from_private_bytes(_ISSUER_SEED), settings.issuer_key_path)
    ctx = Context.open(settings, create_key=False)
    users.create_user(ctx, None, ADMIN, "sim-admin-password", Role.ADMIN)
    actor = _admin(ctx)
    rng = random.Random(0)
    merchant_ids = [
        int(str(merchants.create_merchant(ctx, actor, name=f"Laden {n}", iban=_IBAN)["id"]))
        for n in range(MERCHANTS)
    ]
    door = AsgiDoor(create_app(ctx))
    for n in range(TILLS):
        _enrol(ctx, actor, door, town / f"till{n}", merchant_ids[n % MERCHANTS], rng)
    door.close()
    (town / "cards").mkdir()
    for n in range(CARDS):
        uid = b"\x04" + rng.randbytes(6)
        number = str(card_service.issue(ctx, actor, uid.hex())["card_number"])
        image: images.CardImage | CardState
        if n < CARDS_424:
            secrets = Ntag424Secrets(WRITE_SECRET, SUN_SECRET, ADMIN_SECRET)
            image = ntag424_cards.issued_state(
                images.blank424(uid), number, ctx.issuer_key, "https://karte.sim", secrets
            )
        else:
            image = images.issue(
                images.blank(NTAG215, uid),
                number,
                ctx.issuer_key,
                f"https://karte.sim/c/{number}",
                WRITE_SECRET,
            )
        images.save(image, town / "cards" / f"{number}.json")
    ctx.engine.dispose()
    return town


def _enrol(
    ctx: Context,
    actor: Staff,
    door: AsgiDoor,
    state_dir: Path,
    merchant_id: int,
    rng: random.Random,
) -> None:
    """Enrol a till with the real `enrol`, its request straight into the app."""
    name = state_dir.name
    made = terminals.create_terminal(ctx, actor, merchant_id, name)
    state = terminal_config.TerminalState(state_dir)
    keys.save_private(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)), state.key_path)

    def post(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> Any:
        body = json.dumps(payload).encode()
        answer = door.request(
            "POST", url.removeprefix(SERVER_URL), body, {"content-type": "application/json"}
        )
        if answer.status != 200:
            raise RuntimeError(f"enrolment refused: {answer.status} {answer.body!r}")
        return json.loads(answer.body)

    with mock.patch.object(terminal_config, "post_json", post):
        terminal_config.enrol(
            state,
            SERVER_URL,
            str(made["code"]),
            name=name,
            reader="sim:",
            originality_key=TEST_PUBLIC_KEY_HEX,
            originality_424_key=TEST_ORIGINALITY_PUBLIC_KEY_HEX,
            card_write_secret=WRITE_SECRET.hex(),
        )
