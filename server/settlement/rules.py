"""The arithmetic of a settlement run, as pure functions: fee, VAT, payout, carry-over.

Rounding rule, applied here and nowhere else: the fee is the merchant's rate (basis
points) on the period's payments less voids, rounded **once per merchant and run**,
half up (away from zero at exactly half a cent), to the cent; never per payment. The VAT
on the fee is the rounded net fee times the VAT rate, rounded the same way (an invoice
states net, VAT and gross, and gross = net + VAT exactly). A base below zero (more voids
of earlier payments than payments) gives a negative fee: the fee charged on them before
is credited back.

What is paid: everything the merchant is owed up to the cut-off (carried in from the last
run, plus this period's payments, less voids, less the cash taken for till top-ups, plus
returned transfers) less the fee. Nothing is transferred, and the whole amount is carried
forward, when it is zero or negative, below the minimum payout, or when the merchant has no
valid IBAN (held back, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from hcard.server.vocabulary import PayoutOutcome

BP = 10_000  # basis points in one


def round_half_up(numerator: int, denominator: int) -> int:
    """`numerator / denominator` to the nearest integer, halves away from zero (exact)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), ROUND_HALF_UP))


@dataclass(frozen=True)
class Fee:
    base_cents: int
    rate_bp: int
    net_cents: int
    vat_bp: int
    vat_cents: int

    @property
    def gross_cents(self) -> int:
        return self.net_cents + self.vat_cents


def fee(base_cents: int, rate_bp: int, vat_bp: int) -> Fee:
    """The operator's fee on `base_cents` (payments less voids) and the VAT on it."""
    if not 0 <= rate_bp <= BP or not 0 <= vat_bp <= BP:
        raise ValueError("rates are basis points 0..10000")
    net = round_half_up(base_cents * rate_bp, BP)
    vat = round_half_up(net * vat_bp, BP)
    return Fee(base_cents=base_cents, rate_bp=rate_bp, net_cents=net, vat_bp=vat_bp, vat_cents=vat)


@dataclass(frozen=True)
class Movements:
    """A merchant's movements settled by one run (each as the merchant sees it: a payment
    adds, a void and a till top-up's cash subtract)."""

    payments_cents: int = 0
    voids_cents: int = 0  # voids of payments (positive number, subtracted)
    topups_cents: int = 0  # cash taken for till top-ups, net of their voids (subtracted)
    returns_cents: int = 0  # transfers of earlier runs that came back (added)

    @property
    def fee_base_cents(self) -> int:
        return self.payments_cents - self.voids_cents

    @property
    def net_cents(self) -> int:
        return self.payments_cents - self.voids_cents - self.topups_cents + self.returns_cents


@dataclass(frozen=True)
class Payout:
    carry_in_cents: int
    movements: Movements
    fee: Fee
    #: what the merchant is owed after the fee (may be negative)
    due_cents: int
    outcome: PayoutOutcome
    #: transferred now (0 unless TRANSFER)
    payout_cents: int
    #: left on the merchant's account for the next run
    carry_out_cents: int


def payout(
    carry_in_cents: int,
    movements: Movements,
    *,
    rate_bp: int,
    vat_bp: int,
    minimum_cents: int,
    iban_valid: bool,
) -> Payout:
    """Decide one merchant's payout in a run."""
    charged = fee(movements.fee_base_cents, rate_bp, vat_bp)
    due = carry_in_cents + movements.net_cents - charged.gross_cents
    if due <= 0:
        outcome = PayoutOutcome.NOTHING_DUE
    elif not iban_valid:
        outcome = PayoutOutcome.NO_VALID_IBAN
    elif due < minimum_cents:
        outcome = PayoutOutcome.BELOW_MINIMUM
    else:
        outcome = PayoutOutcome.TRANSFER
    paid = due if outcome is PayoutOutcome.TRANSFER else 0
    result = Payout(
        carry_in_cents=carry_in_cents,
        movements=movements,
        fee=charged,
        due_cents=due,
        outcome=outcome,
        payout_cents=paid,
        carry_out_cents=due - paid,
    )
    if result.carry_in_cents + movements.net_cents != (
        charged.gross_cents + result.payout_cents + result.carry_out_cents
    ):
        raise ArithmeticError("payout does not add up")  # stays on under python -O
    return result
