"""The payment state machine: one table (`hcard.terminal.states.TRANSITIONS`), enforced.

Every allowed move is made on a real journal; every other pair of states is refused with
`STATE_TRANSITION_REFUSED` and changes nothing. The check is code, not an `assert`: it holds
under `python -O` too. docs/terminal.md shows the same table.
"""

import itertools
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard.errors import Code, HCardError
from hcard.records import RecordKind
from hcard.terminal import journal as jr
from hcard.terminal.states import START, TRANSITIONS, State, check_start, check_transition

CARD = "9276000000000016"
TERMINAL_ID = 7
DOCS = Path(__file__).parents[2] / "docs" / "terminal.md"

ALLOWED = sorted((a, b) for a, nexts in TRANSITIONS.items() for b in nexts)
REFUSED = sorted((a, b) for a, b in itertools.product(State, State) if b not in TRANSITIONS[a])


def _paths() -> dict[State, tuple[State, ...]]:
    """The shortest way from a start state to each state, through the table only."""
    paths = {state: (state,) for state in START}
    queue = deque(START)
    while queue:
        state = queue.popleft()
        for following in sorted(TRANSITIONS[state]):
            if following not in paths:
                paths[following] = (*paths[state], following)
                queue.append(following)
    return paths


PATHS = _paths()


def test_the_table_names_every_state_and_each_is_reachable():
    assert set(TRANSITIONS) == set(State)
    assert set(PATHS) == set(State)
    assert frozenset({State.INTENT, State.APPROVED}) == START


@pytest.fixture
def journal(tmp_path):
    journal = jr.Journal(tmp_path / "journal.sqlite", TERMINAL_ID, Ed25519PrivateKey.generate())
    yield journal
    journal.close()


def _payment(counter: int) -> dict:
    return {
        "card": CARD,
        "uid": "04a1b2c3d4e5f6",
        "amount_cents": 100,
        "tip_cents": 0,
        "mode": "offline",
        "counter": counter,
        "purse_cents": 1_000,
    }


def _record_in(journal: jr.Journal, state: State) -> int:
    """A new payment record brought to `state` through allowed moves; its seq."""
    first, *moves = PATHS[state]
    counter = journal.last_seq() + 1
    record = journal.append(
        RecordKind.PAYMENT, _payment(counter), state=first, day="d", created_s=0.0
    )
    for move in moves:
        journal.set_state(record.seq, move)
    assert journal.entry(record.seq).state == state
    return record.seq


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_every_allowed_transition_is_made(journal, current, new):
    check_transition(1, current, new)  # the pure check agrees
    seq = _record_in(journal, current)
    if new == State.FINAL:
        assert journal.finish(seq) == 1  # shown: numbered in the same commit
    else:
        journal.set_state(seq, new)
    assert journal.entry(seq).state == new


@pytest.mark.parametrize(("current", "new"), REFUSED)
def test_every_other_transition_is_refused_and_changes_nothing(journal, current, new):
    with pytest.raises(HCardError) as pure:
        check_transition(1, current, new)
    assert pure.value.code == Code.STATE_TRANSITION_REFUSED
    seq = _record_in(journal, current)
    before = journal.entry(seq)
    with pytest.raises(HCardError) as refused:
        journal.set_state(seq, new, outcome={"outcome": "approved"}, card_written=True)
    assert refused.value.code == Code.STATE_TRANSITION_REFUSED
    assert refused.value.details == {"seq": seq, "state": current, "to": new}
    assert journal.entry(seq) == before  # rolled back: no state, outcome or number


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (State.APPROVED, State.VOIDED),  # never shown: cancelled, not voided
        (State.INTENT, State.CANCELLED),  # approved (with the outcome) first
        (State.VOIDED, State.VOIDED),  # voided twice
        (State.CANCELLED, State.VOIDED),
        (State.DECLINED, State.CANCELLED),
    ],
)
def test_a_refused_void_appends_no_void_record(journal, current, new):
    seq = _record_in(journal, current)
    last = journal.last_seq()
    with pytest.raises(HCardError) as refused:
        journal.void(
            seq,
            {"card": CARD, "voids_seq": seq, "amount_cents": 100},
            day="d",
            created_s=0.0,
            state=new,
        )
    assert refused.value.code == Code.STATE_TRANSITION_REFUSED
    assert journal.last_seq() == last
    assert journal.entry(seq).state == current
    assert journal.verify() is None


@pytest.mark.parametrize("current", [State.DECLINED, State.CANCELLED, State.VOIDED])
def test_finish_refuses_what_cannot_become_final(journal, current):
    seq = _record_in(journal, current)
    with pytest.raises(HCardError) as refused:
        journal.finish(seq)
    assert refused.value.code == Code.STATE_TRANSITION_REFUSED


def test_void_and_day_close_records_have_no_state_to_move(journal):
    seq = _record_in(journal, State.FINAL)
    void = journal.void(
        seq,
        {"card": CARD, "voids_seq": seq, "amount_cents": 100},
        day="d",
        created_s=0.0,
        state=State.VOIDED,
    )
    for state in State:
        with pytest.raises(HCardError):
            journal.set_state(void.seq, state)
    with pytest.raises(HCardError):  # a seq that does not exist
        journal.set_state(99, State.FINAL)


@pytest.mark.parametrize(
    ("kind", "state", "allowed"),
    [
        *((RecordKind.PAYMENT, state, state in START) for state in State),
        *((RecordKind.TOPUP_REQUEST, state, state in START) for state in State),
        (RecordKind.PAYMENT, None, False),
        (RecordKind.VOID, None, True),
        (RecordKind.VOID, State.CANCELLED, False),
        (RecordKind.DAY_CLOSE, None, True),
        (RecordKind.DAY_CLOSE, State.FINAL, False),
    ],
)
def test_records_start_only_in_a_start_state(kind, state, allowed):
    if allowed:
        check_start(kind, state)
    else:
        with pytest.raises(HCardError) as refused:
            check_start(kind, state)
        assert refused.value.code == Code.STATE_TRANSITION_REFUSED


def test_a_refused_start_appends_nothing(journal):
    with pytest.raises(HCardError):
        journal.append(RecordKind.PAYMENT, _payment(1), state=State.FINAL, day="d", created_s=0)
    assert journal.last_seq() == 0


def test_refused_under_python_O_too():
    script = (
        "import sys\n"
        "from hcard.errors import HCardError\n"
        "from hcard.terminal.states import State, check_transition\n"
        "try:\n"
        "    check_transition(1, State.VOIDED, State.FINAL)\n"
        "except HCardError as exc:\n"
        "    print(sys.flags.optimize, exc.code)\n"
    )
    run = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True)
    assert run.stdout.split() == ["1", Code.STATE_TRANSITION_REFUSED], run.stderr


def test_docs_show_the_same_table():
    """docs/terminal.md's state table: one row per state, its `may become` column the table."""
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]*) \|$", DOCS.read_text("utf-8"), re.M)
    documented = {
        State(name): frozenset(State(word) for word in re.findall(r"`(\w+)`", nexts))
        for name, nexts in rows
    }
    assert documented == dict(TRANSITIONS)
