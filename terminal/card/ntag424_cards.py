"""NTAG 424 DNA cards made without a reader: for tests, the demo and benchmarks.

Each function runs the till's or the office's own code (`Ntag424Session`) over the chip
model (`Ntag424(state).handle`) on a copy of the state, so a card made here holds byte for
byte what issuance and a purse write put on a real chip.
"""

from __future__ import annotations

import copy

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import signed
from hcard.terminal.card.model import CardKeys, Purse
from hcard.terminal.card.ntag424_model import CardState, Ntag424
from hcard.terminal.card.ntag424_session import Ntag424Secrets, Ntag424Session


def _session(state: CardState) -> Ntag424Session:
    chip = Ntag424(state)
    return Ntag424Session(state.uid, chip.handle, lambda: True)


def issued_state(
    state: CardState,
    card_number: str,
    issuer_key: Ed25519PrivateKey,
    sun_base_url: str,
    secrets: Ntag424Secrets,
) -> CardState:
    """A copy of `state` issued as card `card_number` (signed with `issuer_key`)."""
    issued = copy.deepcopy(state)
    signature = signed.sign_card(issuer_key, card_number, issued.uid)
    _session(issued).issue(card_number, signature, sun_base_url, secrets)
    return issued


def with_purse(
    state: CardState, purse: Purse, terminal_key: Ed25519PrivateKey, keys: CardKeys
) -> CardState:
    """A copy of an issued card's `state` after a till tap that wrote `purse` (signed with
    `terminal_key`): a read with `keys`, then the write into the older slot. The tap counts
    (SDMReadCtr goes up by one), and `purse.counter` must be at least the card's next."""
    written = copy.deepcopy(state)
    session = _session(written)
    session.read(keys)
    session.write_purse(purse, terminal_key)
    return written
