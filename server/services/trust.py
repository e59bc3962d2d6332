"""What a till may take from the server's balance of a card: the card's trusted counter.

A till offline decides from the card's purse and the snapshot (`hcard.terminal.offline`).
The server's balance holds credits the purse lacks (an office top-up, a voided payment),
so the till takes it when the snapshot's counter covers the card's. That is safe only if
the server knows every purse write up to that counter: an offline payment at another
till that is not synced yet is in the purse and missing from the server's balance, and a
till that took the server's balance then wrote the card above the money on it. The
highest counter seen is not enough, since an online payment after that offline one moves
it past the gap (found by the simulation: `purse_above_ledger`).

So the snapshot's counter is the card's **trusted counter**: every purse write up to it is
known. Only writes the till showed as approved count (the sync batch's `shown`): a write
the till cancelled may or may not be on the card, and its counter may be written again by
another till. The trusted counter moves up:
- along the shown writes one counter at a time (`CardTrust.advance`: no gap from it);
- to an online payment the till showed, whose approval found the server's balance equal
  to the purse the till asked to write and no till top-up of the card unconfirmed
  (`purse_agreed`): the purse then holds every debit and the server every credit, so no
  write before it can be unknown.
It never moves down: a shown write stays on the card when the cashier voids its payment
(the money goes back on the server only, a credit the purse lacks).

A counter the till skipped (an online try before an offline payment, a declined one), a
cancelled write that reached the card anyway, or a till top-up (its record has no counter)
leaves a gap: the counter then waits for the next agreed online payment. Until then tills
take the lower of purse and server balance, which errs low: it can only refuse an
offline payment.

Pure: `services.sync` and `services.authorise` read and write the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def purse_agreed(*, balance_after_cents: int, purse_cents: int, pending_topups_cents: int) -> bool:
    """At an online approval: does the purse the till asked to write (its card's purse moved
    by the payment) equal the server's balance after it, with no top-up unconfirmed?

    The purse never holds more than the card's money and the server's balance never less
    than the debits it knows; equal, the purse lacks no credit and the server no debit. A
    till top-up still unconfirmed may be on the purse and not counted, or counted and not
    on the purse: then equality proves nothing."""
    return pending_topups_cents == 0 and balance_after_cents == purse_cents


@dataclass
class CardTrust:
    """One card's trusted counter through a sync batch."""

    trusted: int
    #: counters the batch's shown payments wrote
    written: set[int] = field(default_factory=set)

    def wrote(self, counter: int, *, agreed: bool) -> None:
        """A shown payment wrote `counter`; `agreed`: an online one (`purse_agreed`)."""
        self.written.add(counter)
        if agreed:
            self.trusted = max(self.trusted, counter)

    def advance(self, stored: Iterable[int] = ()) -> int:
        """The trusted counter after the batch: up through every next counter written, in
        the batch or `stored` (the card's shown writes above it, read only when the batch
        alone leaves a gap below the highest counter seen)."""
        counters = self.written.union(stored)
        trusted = self.trusted
        while trusted + 1 in counters:
            trusted += 1
        return trusted
