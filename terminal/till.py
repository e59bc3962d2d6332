"""What a front end (the `hcard-terminal` CLI, the Kivy app) may ask of the terminal core.

The front ends hold no payment logic: they call a `Till` and show its results.
This module pins the shapes both sides code against; the core implements
`Till` (see `hcard.terminal.core`), tests may drive either front end through it.

Blocking calls (`pay`, `topup`, `balance`, and `void` of a top-up) wait for a card on
the reader for at most `card_timeout_s` and must be called off the UI thread;
`cancel()` may be called from any thread and makes a waiting call return CANCELLED.
`void` of a payment needs no card: the amount goes back to the card's account on the
server (the purse on the card stays lower, which errs on the safe side). `void` of a
top-up (the cash handed back) waits for the top-up's card and writes its purse down
by the amount before the void counts, so the card never keeps money that went back
as cash; money already spent is not voided (`INSUFFICIENT_FUNDS`).
`topup` (cash taken at the till onto the card) is online only: without the
server's answer in time it is declined `server_unreachable` and nothing is
booked (a late approval is voided by the terminal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from hcard.errors import Code


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # see `code` for why
    CANCELLED = "cancelled"  # cashier cancelled or no card within the timeout


@dataclass(frozen=True)
class PaymentResult:
    outcome: Outcome
    code: Code | None  # why it was declined; None when approved
    amount_cents: int  # charged (tip included); 0 unless approved
    tip_cents: int
    balance_cents: int | None  # the card's balance after, when known
    # The receipt number the cashier sees and voids by: payments and top-ups the
    # till showed as approved are numbered 1, 2, 3, ... without gaps (a void
    # answers with the voided payment's number). Not the journal's seq.
    receipt_no: int | None
    offline: bool
    # On INSUFFICIENT_FUNDS: what the card could pay, so the till can offer a
    # partial payment of exactly this amount.
    available_cents: int | None = None
    # The journal record's sequence number (the payment, top-up or void record),
    # for support and tests; failed tries use seqs too, so it is never shown.
    seq: int | None = None


def declined(code: Code, *, offline: bool, available_cents: object = None) -> PaymentResult:
    """A refused payment: nothing charged, no receipt; the core and the front ends
    (a call that failed in the app) build it here alike.

    `available_cents` is kept only as a positive whole amount (it may come from the
    server's answer): zero or anything else offers no partial payment.
    """
    positive = (
        available_cents
        if isinstance(available_cents, int)
        and not isinstance(available_cents, bool)
        and available_cents > 0
        else None
    )
    return PaymentResult(
        outcome=Outcome.DECLINED,
        code=code,
        amount_cents=0,
        tip_cents=0,
        balance_cents=None,
        receipt_no=None,
        offline=offline,
        available_cents=positive,
    )


@dataclass(frozen=True)
class CardInfo:
    card_number: str
    balance_cents: int | None
    blocked: bool
    recent: list[tuple[int, str]] = field(default_factory=list)  # (amount_cents, label)
    code: Code | None = None  # set when the card was refused (not issued, copied, ...)


@dataclass(frozen=True)
class TodayEntry:
    receipt_no: int
    amount_cents: int
    tip_cents: int
    card_number: str
    offline: bool
    voided: bool
    topup: bool = False  # cash loaded onto the card; voided with the card on the reader


@dataclass(frozen=True)
class DayTotals:
    """A business day's totals. Payments (`count` … `offline_count`) are what the signed
    `day_close` record holds; the top-ups come from the journal only (the record's body is
    fixed, docs/protocol.md)."""

    count: int  # payments shown as approved, voided ones included
    sum_cents: int
    void_count: int  # of those, voided
    void_sum_cents: int
    offline_count: int
    unsynced_count: int
    # the business day's receipt numbers (payments and top-ups), None without any
    first_receipt_no: int | None = None
    last_receipt_no: int | None = None
    # cash taken for top-ups (voided ones included), and of those the voided ones (cash back)
    topup_count: int = 0
    topup_sum_cents: int = 0
    topup_void_count: int = 0
    topup_void_sum_cents: int = 0

    @property
    def operator_cash_cents(self) -> int:
        """The cash the merchant holds for the operator: top-ups less voided top-ups (it
        comes off the merchant's payout at settlement)."""
        return self.topup_sum_cents - self.topup_void_sum_cents


@dataclass(frozen=True)
class Status:
    enrolled: bool
    online: bool
    reader_connected: bool
    unsynced_count: int
    last_sync_s: float | None  # monotonic-independent: seconds since the epoch, or None
    terminal_id: int | None
    merchant_name: str | None
    server_url: str | None


class Till(Protocol):
    def pay(
        self, amount_cents: int, tip_cents: int = 0, card_timeout_s: float = 30
    ) -> PaymentResult: ...
    def topup(self, amount_cents: int, card_timeout_s: float = 30) -> PaymentResult: ...
    def balance(self, card_timeout_s: float = 30) -> CardInfo: ...
    def void(self, receipt_no: int, card_timeout_s: float = 30) -> PaymentResult: ...
    def today(self) -> list[TodayEntry]: ...
    def day_close(self) -> DayTotals: ...
    def status(self) -> Status: ...
    def sync_now(self) -> None: ...
    def cancel(self) -> None: ...
