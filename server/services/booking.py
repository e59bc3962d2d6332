"""Every transaction's postings, built in one place: from what happened to a `ledger.Txn`.

Pure functions, no database: account ids and amounts in, the transaction to book out. The
services decide whether something may be booked and look the accounts up; these functions
say which accounts move by how much, under which label, and what the transaction refers to
(the till's record, the staff member). Online authorisation and sync build payments, voids
and till top-ups here, so a payment booked at authorisation and one booked at sync cannot
differ; the staff services build top-ups, transfers and corrections here; settlement will
build its own transactions here too. `ledger.post_many` books them.

| transaction | postings (a posting adds its amount to the account's balance) |
|---|---|
| `payment` | card −x, merchant +x (online: the card's debit is guarded, never below zero) |
| `till_topup` | merchant −x (cash taken at the till), card +x |
| `void` of a payment | merchant −x, card +x |
| `void` of a till top-up | merchant +x, card −x (even below zero) |
| `topup` (office) | cash / bank / online −x, card +x |
| `transfer` | old card −x (guarded), new card +x |
| `correction` | card ±x (a debit guarded unless confirmed), correction ∓x |
| `settlement` | merchant −(fee + payout), fees +fee, payouts in transit +payout |
| `payout` (executed by the bank) | in transit −x, bank +x |
| `payout_return` | in transit (or bank, once executed) −x, merchant +x |
| `topup` from a bank transfer | bank −x, card +x |
| `deposit` (till cash into the bank) | cash +x, bank −x |
| `fee_withdrawal` (fees taken out, bank charges) | fees −x, bank +x |
| the reverse of any of them | every posting negated (a cancelled settlement run) |

Labels are what the cardholder and the office read, in German like every label.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcard.records import PaymentMode, RecordKind
from hcard.server.services.ledger import Posting, Txn
from hcard.server.vocabulary import TopupSource, TxnKind

#: what the cardholder and the office read for a top-up, by source
TOPUP_LABELS = {
    TopupSource.CASH: "Aufladung (bar)",
    TopupSource.BANK: "Aufladung (Überweisung)",
    TopupSource.ONLINE: "Aufladung (online)",
}
CORRECTION_LABEL = "Korrektur"
#: bound once: sync builds a payment per record (an Enum class attribute costs ~60 ns on 3.11)
_ONLINE = PaymentMode.ONLINE


@dataclass(frozen=True)
class Till:
    """Where a till's records are booked: the terminal and its merchant's account."""

    terminal_id: int
    merchant_account_id: int
    merchant_name: str


def payment(till: Till, seq: int, card_account_id: int, amount_cents: int, mode: str) -> Txn:
    """A payment at the till: card −x, merchant +x.

    Online (`PaymentMode.ONLINE`) the card's debit is guarded: refused in its own statement
    if the balance does not cover it, so concurrent payments never overdraw. Offline it is
    booked even below zero: the till promised the merchant (the caller flags the card).
    """
    floor_cents = 0 if mode == _ONLINE else None
    return Txn(
        TxnKind.PAYMENT,
        [
            Posting(card_account_id, -amount_cents, floor_cents=floor_cents),
            Posting(till.merchant_account_id, amount_cents),
        ],
        label=till.merchant_name,
        terminal_id=till.terminal_id,
        seq=seq,
    )


def till_topup(till: Till, seq: int, card_account_id: int, amount_cents: int) -> Txn:
    """Cash taken at the till for the card: the merchant now owes it to the scheme."""
    return Txn(
        TxnKind.TILL_TOPUP,
        [
            Posting(till.merchant_account_id, -amount_cents),
            Posting(card_account_id, amount_cents),
        ],
        label=f"Aufladung {till.merchant_name}",
        terminal_id=till.terminal_id,
        seq=seq,
    )


def void(till: Till, seq: int, card_account_id: int, amount_cents: int, voided_kind: str) -> Txn:
    """The reverse of the till's own payment (`RecordKind.PAYMENT`: back to the card) or
    till top-up (`RecordKind.TOPUP_REQUEST`: the cash back to the merchant, taken off the
    card even below zero)."""
    if voided_kind == RecordKind.PAYMENT:
        sign, label = 1, "Storno"
    elif voided_kind == RecordKind.TOPUP_REQUEST:
        sign, label = -1, "Storno Aufladung"
    else:
        raise ValueError(f"only payments and till top-ups are voided, not {voided_kind!r}")
    return Txn(
        TxnKind.VOID,
        [
            Posting(till.merchant_account_id, -sign * amount_cents),
            Posting(card_account_id, sign * amount_cents),
        ],
        label=f"{label} {till.merchant_name}",
        terminal_id=till.terminal_id,
        seq=seq,
    )


def topup(
    source: TopupSource,
    source_account_id: int,
    card_account_id: int,
    amount_cents: int,
    user_id: int,
) -> Txn:
    """Money paid in at the office (cash), by transfer (bank) or online: the source's float
    account goes negative by what came in, the card gains it."""
    return Txn(
        TxnKind.TOPUP,
        [Posting(source_account_id, -amount_cents), Posting(card_account_id, amount_cents)],
        label=TOPUP_LABELS[source],
        user_id=user_id,
    )


def transfer(
    old_account_id: int,
    new_account_id: int,
    amount_cents: int,
    old_number: str,
    new_number: str,
    user_id: int,
) -> Txn:
    """A lost card's balance to its replacement; the floor re-checks the old card's balance
    at the moment of the debit."""
    return Txn(
        TxnKind.TRANSFER,
        [
            Posting(old_account_id, -amount_cents, floor_cents=0),
            Posting(new_account_id, amount_cents),
        ],
        label=f"Übertrag {old_number} → {new_number}",
        user_id=user_id,
    )


def correction(
    card_account_id: int,
    correction_account_id: int,
    amount_cents: int,
    reason: str,
    user_id: int,
    *,
    allow_below_zero: bool,
) -> Txn:
    """A manual correction of a card (±x) against the correction account. A debit is
    guarded (refused below zero) unless the admin confirmed `allow_below_zero`."""
    floor_cents = None if allow_below_zero or amount_cents > 0 else 0
    return Txn(
        TxnKind.CORRECTION,
        [
            Posting(card_account_id, amount_cents, floor_cents=floor_cents),
            Posting(correction_account_id, -amount_cents),
        ],
        label=CORRECTION_LABEL,
        user_id=user_id,
        reason=reason,
    )


def settlement(
    *,
    merchant_account_id: int,
    fees_account_id: int,
    in_transit_account_id: int,
    fee_cents: int,
    payout_cents: int,
    label: str,
    user_id: int,
) -> Txn | None:
    """A merchant's settlement in a run: the fee (with VAT; negative when voids of earlier
    payments give it back) to the fees account, the payout on its way to the bank. None
    when neither moves anything."""
    entries = [
        Posting(merchant_account_id, -(fee_cents + payout_cents)),
        Posting(fees_account_id, fee_cents),
        Posting(in_transit_account_id, payout_cents),
    ]
    moving = [entry for entry in entries if entry.amount_cents]
    if not moving:
        return None
    return Txn(TxnKind.SETTLEMENT, moving, label=label, user_id=user_id)


def reverse(entries: list[tuple[int, int]], *, label: str, user_id: int) -> Txn:
    """The exact reverse of a settlement (a cancelled run): every (account, cents) of it
    negated."""
    return Txn(
        TxnKind.SETTLEMENT,
        [Posting(account_id, -amount_cents) for account_id, amount_cents in entries],
        label=label,
        user_id=user_id,
    )


def payout_executed(
    in_transit_account_id: int, bank_account_id: int, amount_cents: int, label: str, user_id: int
) -> Txn:
    """The bank executed a payout: it leaves the bank (the bank account goes less negative)."""
    return Txn(
        TxnKind.PAYOUT,
        [Posting(in_transit_account_id, -amount_cents), Posting(bank_account_id, amount_cents)],
        label=label,
        user_id=user_id,
    )


def payout_returned(
    from_account_id: int,
    merchant_account_id: int,
    amount_cents: int,
    label: str,
    user_id: int,
    reason: str,
) -> Txn:
    """A payout came back: owed to the merchant again. From in transit when the bank never
    executed it, from the bank when it did and the money came back in."""
    return Txn(
        TxnKind.PAYOUT_RETURN,
        [Posting(from_account_id, -amount_cents), Posting(merchant_account_id, amount_cents)],
        label=label,
        user_id=user_id,
        reason=reason,
    )


def cash_deposit(
    cash_account_id: int, bank_account_id: int, amount_cents: int, user_id: int
) -> Txn:
    """The office's till cash paid into the bank: from the cash float to the bank float."""
    return Txn(
        TxnKind.DEPOSIT,
        [Posting(cash_account_id, amount_cents), Posting(bank_account_id, -amount_cents)],
        label="Bareinzahlung",
        user_id=user_id,
    )


def fee_withdrawal(
    fees_account_id: int, bank_account_id: int, amount_cents: int, label: str, user_id: int
) -> Txn:
    """The operator's own money leaving the bank: its fees taken out, or bank charges."""
    return Txn(
        TxnKind.FEE_WITHDRAWAL,
        [Posting(fees_account_id, -amount_cents), Posting(bank_account_id, amount_cents)],
        label=label,
        user_id=user_id,
    )
