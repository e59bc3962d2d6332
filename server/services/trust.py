"""What a till may take from the server's balance of a card: the card's trusted counter.

A till offline decides from the card's purse and the snapshot (`hcard.terminal.offline`).
The server's balance holds credits the purse lacks (an office top-up, a voided payment),
so the till takes it when the snapshot covers the card's counter. That is safe only if the
server knows every purse write up to that counter: an offline payment at another till that
is not synced yet is in the purse and missing from the server's balance, and a till that
took the server's balance then wrote the card above the money on it. The highest counter
seen is not enough, since an online payment after that offline one moves it past the gap
(found by the simulation: `purse_above_ledger`).

So the snapshot carries the card's **trusted counter** beside the highest one seen (which
the offline limits count from): every purse write up to it is known. It moves up along the
writes the tills showed as approved (the sync batch's `shown`), one counter after the
other: a write the till cancelled may or may not be on the card, and its counter may be
written again by another till. It never moves down: a shown write stays on the card when
the cashier voids its payment (the money goes back on the server only, a credit the purse
lacks).

A counter the till skipped (an online try before an offline payment, a declined one), a
cancelled write that reached the card anyway, or a till top-up (its record has no counter)
leaves a gap, and the counter stays below it: tills take the lower of purse and balance,
which errs low, it can only refuse an offline payment. (Closing such gaps needs the
counter each write read from the card in its record: a change of the record format.)

Pure: `services.sync` reads and writes the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class CardTrust:
    """One card's trusted counter through a sync batch."""

    trusted: int
    #: counters the batch's shown payments wrote
    written: set[int] = field(default_factory=set)

    def wrote(self, counter: int) -> None:
        """A payment the till showed wrote `counter` to the card."""
        self.written.add(counter)

    def advance(self, stored: Iterable[int] = ()) -> int:
        """The trusted counter after the batch: up through every next counter written, in
        the batch or `stored` (the card's shown writes above it)."""
        counters = self.written.union(stored)
        trusted = self.trusted
        while trusted + 1 in counters:
            trusted += 1
        return trusted
