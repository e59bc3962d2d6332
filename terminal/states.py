"""The states of a payment or top-up on this till (the journal's column `local.state`).

Pure: no SQLite, no card. The journal stores the values (`StrEnum`, so the database
holds the same words as before); the payment logic and the offline decision read
them through the named sets below.
"""

from __future__ import annotations

from enum import StrEnum


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
