"""Hypothesis, stateful: random top-ups, payments, voids, transfers and syncs.

Drives the service layer directly (same code the HTTP routers call) on a real
SQLite file, and for a shorter run on the real PostgreSQL. After every step:
`ledger.check` is clean (postings sum to zero per transaction, stored balances
equal the sum of postings, nothing booked twice), and every card's balance is
what a simple model of the rules says it must be.
"""

from __future__ import annotations

import itertools
import json
import secrets
from pathlib import Path

import hypothesis.strategies as st
import pytest
from fixtures.server import fresh_postgres_database
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hcard import keys
from hcard.errors import Code, HCardError
from hcard.records import GENESIS_HASH, make_record
from hcard.server.context import Context
from hcard.server.services import authorise, cards, ledger, merchants, sync, terminals, users
from hcard.server.services.users import Staff
from hcard.server.settings import Settings

CARDS, TILLS = 4, 2
amounts = st.integers(min_value=1, max_value=3_000)

_counter = itertools.count()


class Till:
    def __init__(self, ctx: Context, admin: Staff, merchant_id: int) -> None:
        self.key = keys.generate()
        code = terminals.create_terminal(ctx, admin, merchant_id, "Kasse")["code"]
        enrolled = terminals.enrol(ctx, str(code), keys.public_hex(self.key), None, "127.0.0.1")
        self.auth = terminals.Terminal(
            id=int(str(enrolled["terminal_id"])),
            merchant_id=merchant_id,
            public=self.key.public_key(),
        )
        self.ctx = ctx
        self.seq, self.prev = 0, GENESIS_HASH
        self.pending: list = []
        self.last_batch: list = []
        self.payments: list[tuple[int, int, int]] = []  # (seq, card index, amount)

    def request(self) -> terminals.SignedRequest:
        """What the API hands the services: an authenticated request with a fresh nonce."""
        return terminals.SignedRequest(self.ctx, self.auth, b"", secrets.token_hex(16))

    def record(self, kind: str, body: dict):
        self.seq += 1
        record = make_record(self.key, self.auth.id, self.seq, self.prev, kind, body)
        self.prev = record.hash
        self.pending.append(record)
        return record


class LedgerMachine(RuleBasedStateMachine):
    database_url: str = ""

    @initialize()
    def setup(self) -> None:
        folder = Path(self.data_root) / f"run{next(_counter)}"
        url = self.database_url or f"sqlite:///{folder / 'hcard.db'}"
        self.ctx = Context.open(Settings.build(folder, url), create_key=True)
        name = f"admin{secrets.token_hex(4)}"
        user = users.create_user(self.ctx, None, name, "stateful-password", "admin")
        self.admin = Staff(
            user_id=int(str(user["id"])), username=name, role="admin", merchant_id=None
        )
        merchant = merchants.create_merchant(
            self.ctx, self.admin, name="Stateful", iban="DE89370400440532013000"
        )
        self.tills = [Till(self.ctx, self.admin, int(str(merchant["id"]))) for _ in range(TILLS)]
        self.cards = []
        for _ in range(CARDS):
            uid = "04" + secrets.token_hex(6)
            self.cards.append((str(cards.issue(self.ctx, self.admin, uid)["card_number"]), uid))
        self.balance = [0] * CARDS
        self.blocked = [False] * CARDS
        self.replaced = [False] * CARDS  # a card is replaced once, and is no replacement then
        self.counter = itertools.count(1)
        self.voided: set[tuple[int, int]] = set()

    # --- staff -------------------------------------------------------------------

    @rule(card=st.integers(0, CARDS - 1), amount=amounts)
    def topup(self, card: int, amount: int) -> None:
        if self.blocked[card]:
            return
        cards.topup(self.ctx, self.admin, self.cards[card][0], amount, "online")
        self.balance[card] += amount

    @rule(old=st.integers(0, CARDS - 1), new=st.integers(0, CARDS - 1))
    def transfer(self, old: int, new: int) -> None:
        if old == new or self.blocked[new] or self.balance[old] < 0:
            return
        if self.replaced[old] or self.replaced[new]:
            with pytest.raises(HCardError) as refused:
                cards.transfer(self.ctx, self.admin, self.cards[old][0], self.cards[new][0])
            assert refused.value.code is Code.CARD_ALREADY_REPLACED
            return
        cards.transfer(self.ctx, self.admin, self.cards[old][0], self.cards[new][0])
        self.balance[new] += self.balance[old]
        self.balance[old] = 0
        self.blocked[old] = self.replaced[old] = True

    @rule(card=st.integers(0, CARDS - 1))
    def unblock(self, card: int) -> None:
        cards.set_blocked(self.ctx, self.admin, self.cards[card][0], False)
        self.blocked[card] = False

    # --- tills -------------------------------------------------------------------

    @rule(till=st.integers(0, TILLS - 1), card=st.integers(0, CARDS - 1), amount=amounts)
    def pay_online(self, till: int, card: int, amount: int) -> None:
        t = self.tills[till]
        number, uid = self.cards[card]
        record = t.record("payment", self._payment(number, uid, amount, "online"))
        answer = json.loads(
            authorise.authorise(self.ctx, t.request(), {"record": record.to_wire()})[0]
        )
        should = not self.blocked[card] and self.balance[card] >= amount
        assert (answer["outcome"] == "approved") == should, (answer, self.balance[card])
        if should:
            self.balance[card] -= amount
            t.payments.append((record.seq, card, amount))
            assert answer["balance_cents"] == self.balance[card] >= 0  # never overdrawn online

    @rule(till=st.integers(0, TILLS - 1), card=st.integers(0, CARDS - 1), amount=amounts)
    def pay_offline(self, till: int, card: int, amount: int) -> None:
        t = self.tills[till]
        number, uid = self.cards[card]
        record = t.record("payment", self._payment(number, uid, amount, "offline"))
        t.payments.append((record.seq, card, amount))

    @rule(till=st.integers(0, TILLS - 1), pick=st.integers(0, 1_000))
    def void(self, till: int, pick: int) -> None:
        t = self.tills[till]
        if not t.payments:
            return
        seq, card, amount = t.payments[-1 - pick % min(len(t.payments), 2)]
        t.record("void", {"card": self.cards[card][0], "voids_seq": seq, "amount_cents": amount})

    @rule(till=st.integers(0, TILLS - 1))
    def sync(self, till: int) -> None:
        t = self.tills[till]
        batch, t.pending = t.pending, []
        answer = sync.sync(self.ctx, t.request(), {"records": [r.to_wire() for r in batch]})
        assert answer["last_seq"] == t.seq
        for record, result in zip(batch, answer["results"], strict=True):
            self._model_sync(t, record, result)
        t.last_batch = batch

    @precondition(lambda self: any(t.last_batch for t in self.tills))
    @rule(till=st.integers(0, TILLS - 1))
    def resend(self, till: int) -> None:
        t = self.tills[till]
        answer = sync.sync(self.ctx, t.request(), {"records": [r.to_wire() for r in t.last_batch]})
        assert {r["status"] for r in answer["results"]} <= {"already_applied"}

    # --- model -------------------------------------------------------------------

    def _payment(self, number: str, uid: str, amount: int, mode: str) -> dict:
        return {
            "card": number,
            "uid": uid,
            "amount_cents": amount,
            "tip_cents": 0,
            "mode": mode,
            "counter": next(self.counter),
            "purse_cents": 0,
        }

    def _model_sync(self, t: Till, record, result: dict) -> None:
        card = next(i for i, c in enumerate(self.cards) if c[0] == record.body["card"])
        if record.kind == "payment" and record.body["mode"] == "offline":
            assert result["status"] == "applied", result
            self.balance[card] -= record.body["amount_cents"]
            if self.balance[card] < 0:
                self.blocked[card] = True  # flagged: denied like a blocked card
        elif record.kind == "void":
            key = (t.auth.id, record.body["voids_seq"])
            booked = any(seq == record.body["voids_seq"] for seq, _c, _a in t.payments)
            if key in self.voided or not booked:
                assert result["status"] == "refused", result
            else:
                assert result["status"] == "applied", result
                self.voided.add(key)
                self.balance[card] += record.body["amount_cents"]
        else:
            assert result["status"] == "applied", result

    @invariant()
    def ledger_is_consistent(self) -> None:
        if not hasattr(self, "ctx"):
            return
        report = ledger.check(self.ctx.engine)
        assert report.ok, report.as_json()
        for index, (number, _uid) in enumerate(self.cards):
            state = cards.get(self.ctx, self.admin, number)
            assert state["balance_cents"] == self.balance[index], (index, state)

    def teardown(self) -> None:
        if hasattr(self, "ctx"):
            self.ctx.engine.dispose()


def _run(tmp_path: Path, database_url: str, max_examples: int, steps: int) -> None:
    machine = type(
        "Machine", (LedgerMachine,), {"data_root": str(tmp_path), "database_url": database_url}
    )
    machine.TestCase.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()


def test_ledger_stateful_sqlite(tmp_path):
    _run(tmp_path, "", max_examples=25, steps=25)


@pytest.mark.postgres
def test_ledger_stateful_postgres(tmp_path, postgres_url):
    _run(tmp_path, fresh_postgres_database(postgres_url), max_examples=5, steps=20)
