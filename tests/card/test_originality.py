"""The READ_SIG check against NXP's published NTAG21x key, with a real chip's answer."""

from __future__ import annotations

from hcard.terminal.card import originality

# UID and READ_SIG answer of a real NTAG21x, as published with an open-source
# originality verifier's tests; it verifies under NXP's key from AN11350.
REAL_UID = bytes.fromhex("04ab87f2ca1190")
REAL_SIG = bytes.fromhex("67b1750bcceb1174f9a33bf20e0226551a6366939b31f949848c3c087350fa90")


def test_real_ntag_signature_verifies_under_nxp_key():
    assert originality.signature_ok(REAL_UID, REAL_SIG, originality.NXP_PUBLIC_KEY_HEX)


def test_any_change_breaks_it():
    assert not originality.signature_ok(REAL_UID[:-1] + b"\x91", REAL_SIG)
    assert not originality.signature_ok(REAL_UID, REAL_SIG[:-1] + b"\x91")
    assert not originality.signature_ok(REAL_UID, bytes(32))
    assert not originality.signature_ok(REAL_UID, REAL_SIG[:31])
    assert not originality.signature_ok(REAL_UID, REAL_SIG, originality.TEST_PUBLIC_KEY_HEX)


def test_emulated_cards_verify_only_under_the_test_key():
    uid = bytes.fromhex("04010203040506")
    signature = originality.sign_with_test_key(uid)
    assert originality.signature_ok(uid, signature, originality.TEST_PUBLIC_KEY_HEX)
    assert not originality.signature_ok(uid, signature, originality.NXP_PUBLIC_KEY_HEX)
