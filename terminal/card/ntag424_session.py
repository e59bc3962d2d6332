"""One tap of an NTAG 424 DNA: the `CardSession` of the second card type, and its issuance.

The reader backend (nfcpy's Type 4A tag, PC/SC) gives a UID and a `transceive` (command APDU
in, answer APDU out, `TagIOError` when the card does not answer); everything else is here,
on top of `hcard.ntag424`'s reader commands. docs/card-format.md ("NTAG 424 DNA") has the
layout (`layout424`) and the why.

A tap, seven exchanges: select the application; ReadData of file 02 in plain (NDEF message
with the issuer record, the two slot heads; this read is the tap SUN counts); Read_Sig
(NXP's originality signature, before the session: the chip refuses it inside one);
AuthenticateEV2First with key 1 (two exchanges); ReadData of file 03 (the slot signatures,
encrypted and MAC'd) and GetFileCounters (the tap counter, encrypted). Then the checks the
NTAG215 makes (`checks`). A purse write adds two WriteData in the same session: the head
into file 02, the signature into file 03.

Issuance (`issue`) needs more secrets than the `CardSession.format_new_card` signature has
room for (the admin secret for keys 0 and 4, the SUN secret for keys 2 and 3), so it is a
method of its own and `format_new_card` refuses with a pointer to it. Before a number is
bound to a tag, the office asks `require_ntag424` (GetVersion: is it a 424 at all?) and
`require_issuable` (can `issue` complete it?). A till's tap asks neither: GetVersion costs
three round trips, and a tag that is no 424 of ours fails the tap anyway (at the select, the
originality signature or the key-1 authentication).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import cardnumber, ntag424
from hcard.errors import Code, HCardError
from hcard.ntag424 import FACTORY_KEY, CardKeySet, CommMode, FileNo, KeyNo, MasterKind
from hcard.terminal.card import checks, layout, layout424
from hcard.terminal.card.model import CardKeys, CardView, Purse, TagIOError

CHIP_NAME = "NTAG424DNA"
Transceive = Callable[[bytes], bytes]
# Issuance changes key 1 last: a card a till accepts (key 1 is ours) is a card whose
# issuance went through, with no factory key 0 left behind a torn issuance.
_KEYS_BEFORE_MASTER = (KeyNo.SPARE, KeyNo.SUN_FILE_READ, KeyNo.SUN_META_READ)
# GetVersion's first frame (hardware): vendor NXP, type NTAG, major version 30h, the NTAG 424
# DNA's (an NTAG 413 DNA has 10h; a MIFARE DESFire has type 01h). Bytes 2 (subtype: 50 pF,
# TagTamper) and 4-6 (minor version, storage size, protocol) are not checked.
NXP_VENDOR = 0x04
NTAG_TYPE = 0x04
NTAG424_MAJOR_VERSION = 0x30
_VENDOR_AT, _TYPE_AT, _MAJOR_AT = 0, 1, 3


def is_ntag424_version(hardware: bytes) -> bool:
    """True when GetVersion's hardware frame is an NXP NTAG 424 DNA's."""
    return (
        len(hardware) > _MAJOR_AT
        and hardware[_VENDOR_AT] == NXP_VENDOR
        and hardware[_TYPE_AT] == NTAG_TYPE
        and hardware[_MAJOR_AT] == NTAG424_MAJOR_VERSION
    )


def purse_key(write_secret: bytes, uid: bytes) -> bytes:
    """Key 1 of card `uid`, as every till derives it from the card write secret."""
    master = ntag424.master_key(write_secret, MasterKind.PURSE)
    return ntag424.card_key(master, uid, KeyNo.PURSE)


@dataclass(frozen=True)
class Ntag424Secrets:
    """The three site secrets issuance needs (hex files parsed by `hcard.cardsecret`).

    write_secret: the card write secret every till has (key 1, the purse);
    sun_secret: the server's SUN secret (keys 2 and 3, the link);
    admin_secret: the office's, for issuing only (keys 0 and 4).
    """

    write_secret: bytes = field(repr=False)  # secrets: never in a log
    sun_secret: bytes = field(repr=False)
    admin_secret: bytes = field(repr=False)

    def card_keys(self, uid: bytes) -> CardKeySet:
        return CardKeySet.derive(
            uid,
            ntag424.master_key(self.admin_secret, MasterKind.ADMIN),
            ntag424.master_key(self.write_secret, MasterKind.PURSE),
            ntag424.master_key(self.sun_secret, MasterKind.SUN),
        )


class Ntag424Session:
    """A `CardSession` over a transceive function (command APDU in, answer APDU out)."""

    def __init__(self, uid: bytes, transceive: Transceive, is_present: Callable[[], bool]) -> None:
        self._uid = bytes(uid)
        self._transceive = transceive
        self._is_present = is_present
        self._view: CardView | None = None
        self._channel: ntag424.SecureChannel | None = None  # the key-1 session of `read`
        self._write_slot = 0

    @property
    def uid(self) -> bytes:
        return self._uid

    @property
    def chip(self) -> str:
        return CHIP_NAME

    def _exchange(self, apdu: bytes) -> bytes:
        """One command to the card; a card that does not answer is the cashier's "tap again"."""
        try:
            return self._transceive(apdu)
        except TagIOError as error:
            raise HCardError(Code.CARD_UNREADABLE, reason=str(error)) from error

    def _checked_uid(self) -> bytes:
        if len(self._uid) != ntag424.UID_BYTES:
            # A chip configured for random IDs (or not a 424 at all): its keys are per UID.
            raise HCardError(Code.CARD_UNREADABLE, reason=f"UID of {len(self._uid)} bytes")
        return self._uid

    # --- reading -------------------------------------------------------------------------

    def read(self, keys: CardKeys) -> CardView:
        self._view, self._channel = None, None
        uid, exchange = self._checked_uid(), self._exchange
        ntag424.select_application(exchange)
        ndef = ntag424.read_data(
            exchange, None, FileNo.NDEF, 0, layout424.NDEF_FILE_BYTES, CommMode.PLAIN
        )
        signature = ntag424.read_signature(exchange)
        if not ntag424.originality_ok(uid, signature, keys.originality_424_key_hex):
            raise HCardError(Code.CARD_NOT_GENUINE)
        channel = ntag424.authenticate_card(
            exchange, KeyNo.PURSE, purse_key(keys.write_secret, uid)
        )
        signatures = ntag424.read_data(
            exchange,
            channel,
            FileNo.PROPRIETARY,
            0,
            layout424.PROPRIETARY_FILE_BYTES,
            CommMode.FULL,
        )
        tap_counter = ntag424.get_file_counters(exchange, channel, FileNo.NDEF)
        ntag424.require_newer_counter(tap_counter, keys.last_tap_counter(uid))
        url, record = checks.issued(layout424.parse_ndef_file, ndef, uid, keys.issuer_public)
        choice = checks.purse_choice(
            layout424.raw_slots(ndef, signatures), uid, record.card_number, keys.terminal_keys
        )
        self._write_slot = choice.write_slot
        self._channel = channel
        self._view = checks.card_view(record, uid, CHIP_NAME, url, choice, tap_counter)
        return self._view

    # --- writing -------------------------------------------------------------------------

    def write_purse(self, purse: Purse, key: Ed25519PrivateKey) -> None:
        """`CardSession.write_purse`, in the session of `read`: the head into file 02 (plain,
        as the file is), then the signature into file 03 (encrypted). A card that leaves
        between or during the two keeps a slot whose signature fails, ignored by the next
        read; the other slot still holds the last good purse. Every failure carries
        `written="unknown"`: no command precedes the first write, so whatever fails may
        have reached the card."""
        view, channel = self._view, self._channel
        if view is None or channel is None:
            raise RuntimeError("read() the card before writing its purse")
        checks.require_next_counter(view, purse)
        raw = layout.encode_slot(purse, view.uid, view.card_number, key)
        head, signature = raw[: layout424.HEAD_BYTES], raw[layout424.HEAD_BYTES :]
        slot = self._write_slot
        try:
            ntag424.write_data(
                self._exchange,
                channel,
                FileNo.NDEF,
                layout424.SLOT_HEAD_OFFSETS[slot],
                head,
                CommMode.PLAIN,
            )
            ntag424.write_data(
                self._exchange,
                channel,
                FileNo.PROPRIETARY,
                layout424.SLOT_SIGNATURE_OFFSETS[slot],
                signature,
                CommMode.FULL,
            )
        except HCardError as error:
            self._view, self._channel = None, None  # the card's session state is unknown
            error.details.setdefault("written", "unknown")
            raise
        # The slot just written is now the newest; the next write goes to the other.
        self._write_slot = 1 - slot
        self._view = checks.after_write(view, purse)

    # --- issuance ------------------------------------------------------------------------

    def format_new_card(
        self, card_number: str, issuer_signature: bytes, url: str, write_secret: bytes
    ) -> None:
        raise NotImplementedError(
            "an NTAG 424 DNA is issued with Ntag424Session.issue(card_number, "
            "issuer_signature, sun_base_url, Ntag424Secrets(...)): its keys need the SUN and "
            "admin secrets too"
        )

    def require_ntag424(self) -> None:
        """GetVersion (three exchanges, outside any session): the tag is an NXP NTAG 424 DNA.

        CARD_NOT_GENUINE when it answers as another chip or refuses the command (a phone, a
        bank card, a DESFire); CARD_UNREADABLE when it does not answer (lay it on again).
        For issuance, before anything is bound: a till's tap does not ask (module docstring).
        """
        try:
            hardware, _software, _production = ntag424.get_version(self._exchange)
        except HCardError as error:
            if "status" not in error.details:
                raise  # no answer at all: unreadable, not refused
            raise HCardError(
                Code.CARD_NOT_GENUINE, reason="GetVersion refused", status=error.details["status"]
            ) from None
        if not is_ntag424_version(hardware):
            raise HCardError(
                Code.CARD_NOT_GENUINE, reason="not an NTAG 424 DNA", hardware=hardware.hex()
            )

    def require_issuable(self, secrets: Ntag424Secrets) -> None:
        """`issue` can complete this card: CARD_AUTH_FAILED (a 424 of another system) if not.

        Every key must have the factory's version (00) and the factory's zero key, or our
        version (`layout424.KEY_VERSION`) and our key for this UID: `issue` authenticates
        key 0 by its version, changes keys 2-4 from the zero key (ChangeKey needs the old key)
        and keeps keys already at our version. A system that changed key 0 and left key 1
        alone reads as blank at a till's checks; this tells it apart before the server binds
        a number to it. Select, GetKeyVersion (no authentication needed) of the five keys and
        an authentication with each: 16 exchanges, for issuance only.
        """
        keys = secrets.card_keys(self._checked_uid()).keys
        ntag424.select_application(self._exchange)
        ours = [self._key_is_ours(KeyNo(number)) for number in KeyNo]
        for number in KeyNo:
            expected = keys[number] if ours[number] else FACTORY_KEY
            try:
                ntag424.authenticate(self._exchange, number, expected)
            except HCardError as error:
                if error.code is Code.CARD_AUTH_FAILED:
                    error.details.update(key_number=int(number), key_ours=ours[number])
                raise

    def issue(
        self,
        card_number: str,
        issuer_signature: bytes,
        sun_base_url: str,
        secrets: Ntag424Secrets,
    ) -> None:
        """Issue the card: files, SUN, then all five keys; restartable after any tear.

        A new chip, a card torn half way through an earlier issuance, or one issued already
        (its purse is then cleared, as `TagSession.format_new_card` does): GetKeyVersion
        tells which keys are ours (version 1) and which still the factory's (0), and every
        other step writes the same bytes again. Order: file 03's settings and its zeros,
        file 02 (SUN link template, issuer record, empty slot heads) and its SUN settings,
        the capability container read-only for phones, keys 4, 3, 2, then key 0 (ends the
        session; a new one with the new key 0), key 1 last. `sun_base_url`: `https://<host>`
        of the balance page; the link is `<base>/k?p=…&m=…`.

        File 02's settings are written only when GetFileSettings shows others: the chip
        resets the tap counter (SDMReadCtr) to 0 whenever ChangeFileSettings enables SUN, so
        a card issued again with the same settings keeps its counter. With other settings
        (another balance-page host, a new layout) it starts again at 0, below what tills
        (`tap_counters`) and the server (`cards.sun_counter`) saw: tills refuse it
        (`card_counter_backwards`) and its links are stale (410) until it passes those. That
        is no loss in issuance, which writes again only a tag of the number being written
        (torn, or not yet saved as done: never in use); a card in use is never issued again
        (docs/card-format.md, "Issuance").
        """
        uid = self._checked_uid()
        if not cardnumber.is_valid(card_number):
            raise ValueError(f"not a Hattingen Card number: {card_number!r}")
        if len(issuer_signature) != layout.SIGNATURE_BYTES:
            raise ValueError("an issuer signature has 64 bytes")
        ndef = layout424.ndef_file(
            sun_base_url, layout.IssuerRecord(card_number, uid, issuer_signature)
        )
        keys = secrets.card_keys(uid).keys
        self._view, self._channel = None, None
        exchange = self._exchange
        ntag424.select_application(exchange)
        ours = [self._key_is_ours(KeyNo(number)) for number in KeyNo]
        master = keys[KeyNo.APP_MASTER] if ours[KeyNo.APP_MASTER] else FACTORY_KEY
        channel = ntag424.authenticate(exchange, KeyNo.APP_MASTER, master)
        ntag424.change_file_settings(
            exchange, channel, FileNo.PROPRIETARY, layout424.PURSE_FILE_SETTINGS
        )
        empty = bytes(layout424.PROPRIETARY_FILE_BYTES)
        ntag424.write_data(exchange, channel, FileNo.PROPRIETARY, 0, empty, CommMode.FULL)
        area = layout424.MESSAGE_AREA_BYTES
        for start, end in ((0, area), (area, layout424.NDEF_FILE_BYTES)):
            part = ndef.content[start:end]
            ntag424.write_data(exchange, channel, FileNo.NDEF, start, part, CommMode.PLAIN)
        settings = ndef.settings()
        if ntag424.get_file_settings(exchange, FileNo.NDEF, channel) != settings:
            ntag424.change_file_settings(exchange, channel, FileNo.NDEF, settings)
        ntag424.write_data(
            exchange,
            channel,
            FileNo.CC,
            layout424.CC_NDEF_WRITE_ACCESS_OFFSET,
            layout424.CC_READ_ONLY,
            CommMode.PLAIN,
        )
        version = layout424.KEY_VERSION
        for number in _KEYS_BEFORE_MASTER:
            if not ours[number]:
                ntag424.change_key(exchange, channel, number, keys[number], version)
        if not ours[KeyNo.APP_MASTER]:
            ntag424.change_key(exchange, channel, KeyNo.APP_MASTER, keys[KeyNo.APP_MASTER], version)
            channel = ntag424.authenticate(exchange, KeyNo.APP_MASTER, keys[KeyNo.APP_MASTER])
        if not ours[KeyNo.PURSE]:
            ntag424.change_key(exchange, channel, KeyNo.PURSE, keys[KeyNo.PURSE], version)

    def _key_is_ours(self, number: KeyNo) -> bool:
        """True when key `number` has our version (issued), False when the factory's (00)."""
        version = ntag424.get_key_version(self._exchange, number)
        if version not in (0, layout424.KEY_VERSION):
            raise HCardError(Code.CARD_AUTH_FAILED, key_number=int(number), key_version=version)
        return version == layout424.KEY_VERSION

    # --- the end of a tap ----------------------------------------------------------------

    def wait_removed(self, timeout_s: float) -> bool:
        return checks.wait_removed(self._is_present, timeout_s)

    def close(self) -> None:
        self._view, self._channel = None, None
