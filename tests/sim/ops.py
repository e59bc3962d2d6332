"""The random operations of a run and the faults around them, chosen by the seeded RNG.

Each operation is one thing a cashier, the office or the world does: a payment, a top-up,
a void, a day close, a sync round (which pulls the snapshot), a balance look-up; the
network going down or coming back; the server restarting, backed up or restored from its
newest backup; time passing. A payment, top-up or void may have its card torn away after
any command, and any till operation may crash the till at any crash point.

What the till showed is kept as an `Attempt` (the records the operation journalled and
the result it returned), for `checks`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hcard.errors import HCardError
from hcard.terminal.till import PaymentResult

from .cards import SimCard, Tear
from .world import SimCrash, SimTill, World

#: a payment's amount: mostly small, now and then more than most cards hold
_AMOUNTS_CENTS = ((1, 500), (500, 3_000), (3_000, 30_000))
#: how many commands a tap takes at most (an NTAG215 payment: about 30); a tear later
#: than the tap's last command is no tear
_TEAR_AFTER_MAX = 40
#: how many crash points an operation passes at most (card commands, journal writes,
#: requests)
_CRASH_AFTER_MAX = 60


@dataclass
class Attempt:
    """One payment, top-up or void as the till showed it: its result, and the seqs
    `after_seq` < seq <= `last_seq` it journalled meanwhile."""

    step: int
    till: str
    kind: str
    after_seq: int
    last_seq: int
    result: PaymentResult


@dataclass(frozen=True)
class Chances:
    """How often a card is torn and a till crashes during an operation."""

    tear: float = 0.15
    crash: float = 0.06


def _card_op(
    world: World,
    rng: random.Random,
    chances: Chances,
    kind: str,
    act: Callable[[SimTill], PaymentResult],
    till: SimTill,
    card: SimCard | None,
) -> str:
    """Run a card operation with its faults; note what the till showed."""
    till.reader.card = card
    if card is not None and rng.random() < chances.tear:
        card.tear = Tear(after=rng.randint(0, _TEAR_AFTER_MAX), commit=rng.random() < 0.5)
        world.log(f"{till.name} card {card.number[-4:]} tears after {card.tear.after}")
    _maybe_crash(world, rng, chances, till)
    journal = till.running.journal
    after_seq = journal.last_seq()
    try:
        result = act(till)
    except SimCrash as crash:
        till.crash_and_restart(str(crash))
        return f"{kind} crashed"
    finally:
        till.reader.card = None
        if card is not None:
            card.tear = None
        till.crash_in = None
    world.attempts.append(
        Attempt(world.step, till.name, kind, after_seq, till.running.journal.last_seq(), result)
    )
    return (
        f"{kind} -> {result.outcome} {result.code or ''} receipt {result.receipt_no}"
        f" balance {result.balance_cents} offline {result.offline}"
    )


def _maybe_crash(world: World, rng: random.Random, chances: Chances, till: SimTill) -> None:
    if rng.random() < chances.crash:
        till.crash_in = rng.randint(0, _CRASH_AFTER_MAX)
        world.log(f"{till.name} crashes after {till.crash_in} points")


def pay(world: World, rng: random.Random, chances: Chances) -> str:
    till, card = rng.choice(world.tills), rng.choice(world.cards)
    low, high = rng.choice(_AMOUNTS_CENTS)
    amount_cents = rng.randint(low, high)
    tip_cents = rng.choice([0, 0, 0, min(amount_cents - 1, rng.randint(1, 200))])
    world.log(f"{till.name} pay {amount_cents} tip {tip_cents} card {card.number[-4:]}")
    return _card_op(
        world,
        rng,
        chances,
        "pay",
        lambda t: t.running.pay(amount_cents, tip_cents, card_timeout_s=0),
        till,
        card,
    )


def topup(world: World, rng: random.Random, chances: Chances) -> str:
    till, card = rng.choice(world.tills), rng.choice(world.cards)
    amount_cents = rng.choice([500, 1000, 2000, 5000])
    world.log(f"{till.name} topup {amount_cents} card {card.number[-4:]}")
    return _card_op(
        world,
        rng,
        chances,
        "topup",
        lambda t: t.running.topup(amount_cents, card_timeout_s=0),
        till,
        card,
    )


def void(world: World, rng: random.Random, chances: Chances) -> str:
    till = rng.choice(world.tills)
    open_entries = [e for e in till.running.today() if not e.voided]
    if not open_entries:
        return f"{till.name} void: nothing to void"
    entry = rng.choice(open_entries)
    card = None
    if entry.topup:  # its card on the reader, now and then another one
        by_number = {c.number: c for c in world.cards}
        card = by_number[entry.card_number] if rng.random() < 0.9 else rng.choice(world.cards)
    world.log(f"{till.name} void receipt {entry.receipt_no} topup {entry.topup}")
    return _card_op(
        world,
        rng,
        chances,
        "void",
        lambda t: t.running.void(entry.receipt_no, card_timeout_s=0),
        till,
        card,
    )


def day_close(world: World, rng: random.Random, chances: Chances) -> str:
    till = rng.choice(world.tills)
    _maybe_crash(world, rng, chances, till)
    try:
        totals = till.running.day_close()
    except SimCrash as crash:
        till.crash_and_restart(str(crash))
        return f"{till.name} day close crashed"
    finally:
        till.crash_in = None
    return f"{till.name} day close: {totals.count} payments {totals.sum_cents}"


def sync(world: World, rng: random.Random, chances: Chances) -> str:
    till = rng.choice(world.tills)
    _maybe_crash(world, rng, chances, till)
    try:
        till.running.sync_now()
    except SimCrash as crash:
        till.crash_and_restart(str(crash))
        return f"{till.name} sync crashed"
    except HCardError as exc:
        return f"{till.name} sync refused {exc.code}"
    finally:
        till.crash_in = None
    agent = till.running.agent
    return f"{till.name} sync online {till.running.link.online} error {agent.last_error}"


def balance(world: World, rng: random.Random, chances: Chances) -> str:
    till, card = rng.choice(world.tills), rng.choice(world.cards)
    till.reader.card = card
    try:
        info = till.running.balance(card_timeout_s=0)
    finally:
        till.reader.card = None
    return f"{till.name} balance card {card.number[-4:]}: {info.balance_cents} {info.code}"


def network(world: World, rng: random.Random, chances: Chances) -> str:
    world.network.down = not world.network.down
    return f"network {'down' if world.network.down else 'up'}"


def server_restart(world: World, rng: random.Random, chances: Chances) -> str:
    world.server.restart("planned")
    return "server restarted"


def server_backup(world: World, rng: random.Random, chances: Chances) -> str:
    world.server.take_backup()
    return "server backed up"


def server_restore(world: World, rng: random.Random, chances: Chances) -> str:
    world.server.restore()
    return "server restored"


def time_passes(world: World, rng: random.Random, chances: Chances) -> str:
    hours = rng.choice([1, 3, 14])
    world.clock.advance_s(hours * 3600)
    return f"{hours} h pass"


Operation = Callable[[World, random.Random, Chances], str]

#: every operation with its weight
OPERATIONS: tuple[tuple[Operation, int], ...] = (
    (pay, 40),
    (topup, 8),
    (void, 7),
    (day_close, 2),
    (sync, 20),
    (balance, 3),
    (network, 6),
    (server_restart, 1),
    (server_backup, 2),
    (server_restore, 1),
    (time_passes, 2),
)


def step(world: World, rng: random.Random, chances: Chances) -> None:
    """One operation, then time moves on and some requests in the network arrive."""
    world.step += 1
    operations, weights = zip(*OPERATIONS, strict=True)
    operation = rng.choices(operations, weights)[0]
    world.log(operation(world, rng, chances))
    world.clock.advance_s(rng.randint(1, 90))
    world.network.tick()
