"""The states of a payment or top-up on this till (the journal's column `local.state`),
and the one table of the moves between them.

Pure: no SQLite, no card. The journal stores the values (`StrEnum`, so the database
holds the same words as before) and refuses, with `STATE_TRANSITION_REFUSED`, every
move that `TRANSITIONS` does not list (`check_start`, `check_transition`): a real
check, not an `assert` that `python -O` would strip. The payment logic and the
offline decision read the states through the named sets below.

The ways through it:

    online   intent → final → voided                  approved, card written; cashier's void
             intent → declined                        the server said no
             intent → approved → cancelled            approved, the card write failed
             intent → unshown → declined              no answer in time (or a restart);
             intent → unshown → approved → cancelled    the sync agent settles it
    offline  approved → final → voided                card written; cashier's void
             approved → cancelled                     card write failed, or a restart

Top-ups take the online ways. The cashier voids a shown payment (`Payments.void`, no card)
or top-up (`Payments.void_topup`, with its card, written down first): `final → voided`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from hcard.errors import Code, HCardError
from hcard.records import RecordKind


class State(StrEnum):
    """Progress of one payment or top-up on this terminal."""

    INTENT = "intent"  # online: journalled, the server's answer is not known yet
    APPROVED = "approved"  # decided (online by the server, or offline here); card not yet written
    DECLINED = "declined"  # online, the server declined: books nothing
    FINAL = "final"  # card written and the result handed to the front end as approved
    VOIDED = "voided"  # shown as approved, later voided by the cashier (receipt number)
    CANCELLED = "cancelled"  # never shown as approved: voided by the terminal itself
    UNSHOWN = "unshown"  # online outcome unknown, till moved on: the sync agent resolves it


# What the till showed as approved: these states carry a receipt number.
SHOWN: frozenset[State] = frozenset({State.FINAL, State.VOIDED})
# Records whose counter never reached the card as a shown payment (declined, unanswered,
# waiting, cancelled): their counter is never used again, and the consecutive-offline
# count does not take them for offline purse writes.
UNWRITTEN: frozenset[State] = frozenset(
    {State.DECLINED, State.UNSHOWN, State.INTENT, State.CANCELLED}
)
# An offline payment in one of these took (or may have taken) money from the card: it
# counts toward the card's offline day limit on this till.
SPENT: frozenset[State] = frozenset({State.FINAL, State.APPROVED, State.VOIDED})


# A payment or top-up enters the journal in one of these: `intent` when the server is
# asked, `approved` when the till decided offline. Voids and day closes have no state.
START: frozenset[State] = frozenset({State.INTENT, State.APPROVED})
STATEFUL_KINDS: frozenset[RecordKind] = frozenset({RecordKind.PAYMENT, RecordKind.TOPUP_REQUEST})

#: The state machine, the one place it is written down: each state and the states it
#: may move to. Anything else is refused. (docs/terminal.md has the same table; a test
#: compares them.)
TRANSITIONS: Mapping[State, frozenset[State]] = MappingProxyType(
    {
        # the server's answer: approved → the card is written and the record final (one
        # commit; `approved` first only when the write failed and it is cancelled);
        # declined; none in time → unshown (also at a restart)
        State.INTENT: frozenset({State.FINAL, State.APPROVED, State.DECLINED, State.UNSHOWN}),
        # card written → final; write failed, or a restart before final → cancelled
        State.APPROVED: frozenset({State.FINAL, State.CANCELLED}),
        # settled by the sync agent by the server's answer: approved (then cancelled, the
        # till never showed it) or declined
        State.UNSHOWN: frozenset({State.APPROVED, State.DECLINED}),
        # shown as approved: only the cashier's void
        State.FINAL: frozenset({State.VOIDED}),
        State.DECLINED: frozenset(),
        State.CANCELLED: frozenset(),
        State.VOIDED: frozenset(),
    }
)


def check_start(kind: str, state: State | None) -> None:
    """Refuse a new record whose state is not one a record of `kind` starts in."""
    allowed = state in START if kind in STATEFUL_KINDS else state is None
    if not allowed:
        raise HCardError(Code.STATE_TRANSITION_REFUSED, kind=str(kind), to=state)


def check_transition(seq: int, current: State | None, new: State) -> None:
    """Refuse moving record `seq` from `current` to `new` unless `TRANSITIONS` lists it.

    `current` None: the record has no state (a void, a day close) or does not exist.
    """
    if current is None or new not in TRANSITIONS[current]:
        raise HCardError(Code.STATE_TRANSITION_REFUSED, seq=seq, state=current, to=new)
