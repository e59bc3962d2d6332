"""The server's vocabulary (`hcard.server.vocabulary`): the strings stay what the databases
and the tills already hold, and services use the names, not the bare strings."""

from __future__ import annotations

import ast
from enum import StrEnum
from pathlib import Path

import pytest

from hcard.records import PaymentMode, RecordKind
from hcard.server import vocabulary as v
from hcard.server.db import tables

SERVER = Path(__file__).resolve().parents[2] / "server"

#: the stored and sent strings, written out: a renamed value would break old databases,
#: stored answers and the tills, so changing one here must be a deliberate migration
PINNED: dict[type[StrEnum], tuple[str, ...]] = {
    v.AccountKind: (
        "card",
        "merchant",
        "cash",
        "bank",
        "online",
        "bonus_pool",
        "fees",
        "correction",
        "in_transit",
    ),
    v.TopupSource: ("cash", "bank", "online"),
    v.TxnKind: (
        "topup",
        "payment",
        "void",
        "transfer",
        "correction",
        "till_topup",
        "settlement",
        "payout",
        "payout_return",
        "deposit",
        "fee_withdrawal",
    ),
    v.Role: ("admin", "marketing", "merchant"),
    v.TerminalStatus: ("pending", "active", "revoked"),
    v.Outcome: ("approved", "declined"),
    v.SyncStatus: ("applied", "already_applied", "refused"),
    v.AlertKind: (
        "chain_gap",
        "chain_fork",
        "bad_signature",
        "bad_record",
        "journal_foreign",
        "card_rollback",
        "overdraw",
        "unknown_card",
        "revoked_terminal",
        "card_copied",
        "payout_returned",
        "shown_not_authorised",
    ),
    v.FlagReason: ("overdraw", "card_rollback", "card_copied"),
    v.CounterName: ("version", "card_serial", "invoice"),
    v.RunStatus: ("created", "downloaded", "cancelled"),
    v.PasswordHashCost: ("standard", "test-only"),
    v.PayoutStatus: ("none", "pending", "sent", "executed", "returned", "cancelled"),
    v.PayoutOutcome: ("transfer", "nothing_due", "below_minimum", "no_valid_iban"),
    v.LineMatch: (
        "payout_executed",
        "payout_returned",
        "card_topup",
        "cash_deposit",
        "fee_withdrawal",
        "unmatched",
    ),
    v.MerchantCategory: (
        "restaurant",
        "food",
        "retail",
        "fashion",
        "health",
        "services",
        "culture",
        "other",
    ),
    v.TxnTotal: ("topup", "payment"),
}


@pytest.mark.parametrize("enum", list(PINNED), ids=lambda e: e.__name__)
def test_values_are_the_stored_strings(enum):
    assert tuple(member.value for member in enum) == PINNED[enum]
    for member in enum:
        assert member == member.value
        assert str(member) == member.value


def test_every_enum_of_the_module_is_pinned():
    found = {
        obj
        for obj in vars(v).values()
        if isinstance(obj, type) and issubclass(obj, StrEnum) and obj is not StrEnum
    }
    assert found == set(PINNED)


def test_related_words_agree():
    assert {f.value for f in v.FlagReason} <= {a.value for a in v.AlertKind}
    assert all(source.account.value == source.value for source in v.TopupSource)
    assert set(v.SYSTEM_ACCOUNTS) == set(v.AccountKind) - {
        v.AccountKind.CARD,
        v.AccountKind.MERCHANT,
    }
    assert set(v.JOURNAL_STATUSES) == {v.SyncStatus.APPLIED, v.SyncStatus.REFUSED}


def test_check_constraints_list_the_enum_values():
    checks = {
        (table.name, constraint.name): str(constraint.sqltext)
        for table in tables.metadata.tables.values()
        for constraint in table.constraints
        if constraint.__class__.__name__ == "CheckConstraint"
    }
    assert checks[("accounts", "ck_accounts_kind")] == (
        "kind IN ('card', 'merchant', 'cash', 'bank', 'online', 'bonus_pool', 'fees', 'correction',"
        " 'in_transit')"
    )
    assert checks[("terminals", "ck_terminals_status")] == (
        "status IN ('pending', 'active', 'revoked')"
    )
    assert checks[("journal", "ck_journal_status")] == "status IN ('applied', 'refused')"
    assert checks[("authorisations", "ck_authorisations_booked")] == (
        "(outcome = 'approved') = (txn_id IS NOT NULL)"
    )


#: words that are also column or body field names (`cards.version`, `body["card"]`,
#: `users.active`, `what="merchant"`): too common to search for as literals
_FIELD_NAMES = {"card", "merchant", "version", "active"}


def _vocabulary_words() -> set[str]:
    words = {member.value for enum in (*PINNED, RecordKind, PaymentMode) for member in enum}
    return words - _FIELD_NAMES


def _literals(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are values: not docstrings, dict keys, subscripts, an argparse
    `default=` (a user name such as `admin` is not a role) or a class's own members (another
    enum's word that happens to be spelt the same)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))
        if isinstance(node, ast.Dict):
            skip.update(id(key) for key in node.keys if key is not None)
        if isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
        if isinstance(node, ast.keyword) and node.arg == "default":
            skip.add(id(node.value))
        if isinstance(node, ast.ClassDef):  # defining a word (an enum member) is not using it
            skip.update(
                id(item.value)
                for item in node.body
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant)
            )
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_services_use_the_names_not_the_strings():
    words = _vocabulary_words()
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        if "migrations" in path.parts or path.name == "vocabulary.py":
            continue  # migrations keep the literal words of their day
        for node in _literals(ast.parse(path.read_text(encoding="utf-8"))):
            if node.value in words:
                found.append(f"{path.relative_to(SERVER)}:{node.lineno}: {node.value!r}")
    assert not found, "use hcard.server.vocabulary / hcard.records enums:\n" + "\n".join(found)
