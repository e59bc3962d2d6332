"""NTAG 424 DNA: the cryptography both ends of the card speak, pure and checked byte for byte.

One module for the reader (the till, issuance), the server (SUN links) and the card emulator
(`hcard.terminal.card.ntag424_model`), so that no side keeps its own copy of a formula. Nothing
here does I/O: reader commands take a `transceive` callable (command APDU in, answer out).
tests/card/test_ntag424_crypto.py pins every formula to NXP's published examples (AN12196 for
authentication, secure messaging, ChangeKey and SUN; AN10922 for key diversification), so our
reader and our emulator cannot agree on a shared mistake.

Sources: NXP NT4H2421Gx (the NTAG 424 DNA datasheet); AN12196 "NTAG 424 DNA and NTAG 424 DNA
TagTamper features and hints"; AN10922 "Symmetric key diversifications".

- Key diversification (AN10922, AES-128): a card's keys from the site's master keys and its
  UID, so a card never holds a master key and one card's keys open no other card.
- AuthenticateEV2First, the reader's steps and the card's; session keys from RndA and RndB.
- Secure messaging (`SecureChannel`): CMACs truncated to their odd bytes, encryption with IVs
  from TI and the command counter; commands and answers, on both sides.
- SUN (Secure Dynamic Messaging): the card's encrypted PICCData and SDMMAC, the server's check
  of a link (`verify_sun`).
- File settings as the chip encodes them, ChangeKey's key data, the originality signature.
- Reader commands; each refusal is a named `hcard.errors.Code`.
"""

from __future__ import annotations

import hmac
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum, IntFlag
from functools import lru_cache
from typing import NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from hcard.errors import Code, HCardError

KEY_BYTES = 16
BLOCK_BYTES = 16
UID_BYTES = 7
RANDOM_BYTES = 16  # RndA, RndB
TI_BYTES = 4  # transaction identifier of a session
MAC_BYTES = 8  # a MAC as sent: the truncated CMAC
COUNTER_BYTES = 3  # SDMReadCtr, file offsets and lengths: 3 bytes, least significant first
FACTORY_KEY = bytes(KEY_BYTES)  # all five keys of a new chip
ZERO_IV = bytes(BLOCK_BYTES)


class KeyNo(IntEnum):
    """The five AES keys of the NDEF application, as the Hattingen Card uses them.

    docs/card-format.md ("NTAG 424 DNA") has the why: each holder gets only the master key it
    needs, and SUN's meta read key is the only key that is the same on every card.
    """

    APP_MASTER = 0  # changes keys and file settings: issuance only
    PURSE = 1  # reads and writes the purse
    SUN_META_READ = 2  # encrypts the link's PICCData (UID, tap counter)
    SUN_FILE_READ = 3  # keys the link's SDMMAC
    SPARE = 4  # unused; changed at issuance so that no key is left at its factory value


class FileNo(IntEnum):
    """The three files of the NDEF application (fixed sizes, the chip cannot make others)."""

    CC = 1  # capability container, 32 bytes
    NDEF = 2  # the NDEF message phones read, 256 bytes
    PROPRIETARY = 3  # 128 bytes


class CommMode(IntEnum):
    """How a file's data travels in a session (bits 1-0 of FileOption)."""

    PLAIN = 0x00
    MAC = 0x01  # data in clear, MAC appended
    FULL = 0x03  # data encrypted, MAC appended


ACCESS_FREE = 0xE  # an access condition: anybody, no authentication
ACCESS_NEVER = 0xF  # an access condition: nobody


# --- primitives ------------------------------------------------------------------------


def cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B): the chip's MAC and its key derivation function."""
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def truncate_mac(full: bytes) -> bytes:
    """MACt: the 8 odd-numbered bytes (1, 3, …, 15) of a CMAC, the MAC the chip sends."""
    return full[1::2]


def _encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2 (80 00 …): always at least one byte, as the chip pads."""
    missing = BLOCK_BYTES - len(data) % BLOCK_BYTES
    return data + b"\x80" + bytes(missing - 1)


def unpad(data: bytes) -> bytes | None:
    """`data` without its padding; None when there is none (decrypted with a wrong key or IV)."""
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80") or len(data) - len(stripped) >= BLOCK_BYTES:
        return None
    return stripped[:-1]


def _u24(value: int) -> bytes:
    return value.to_bytes(COUNTER_BYTES, "little")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _check_uid(uid: bytes) -> None:
    if len(uid) != UID_BYTES:
        raise ValueError("an NTAG 424 DNA UID has 7 bytes")


# --- key diversification (AN10922) -----------------------------------------------------

AN10922_AES128 = 0x01  # AN10922's diversification constant for an AES-128 key
# AN10922's diversification input is UID ‖ application ID ‖ system identifier; pretix uses
# "eu.pretix" for its AES media. Ours, with the key number in place of a DESFire AID:
SYSTEM_IDENTIFIER = b"hattingen.de/card"
_INPUT_BYTES = range(16, 32)


def diversify_aes128(master_key: bytes, diversification_input: bytes) -> bytes:
    """AN10922 §2.2: CMAC(master key, 01 ‖ M), padded to two blocks as the note does.

    The note pads 01 ‖ M with 80 00 … to 32 bytes and uses CMAC's subkey K2 (K1 when it is
    32 bytes already). For an M of 16 to 31 bytes that is exactly AES-CMAC of 01 ‖ M, so M is
    held to that range and the library's CMAC does the work.
    """
    if len(master_key) != KEY_BYTES:
        raise ValueError("an AES-128 master key has 16 bytes")
    if len(diversification_input) not in _INPUT_BYTES:
        raise ValueError("the AN10922 diversification input must have 16 to 31 bytes")
    return cmac(master_key, bytes([AN10922_AES128]) + diversification_input)


def card_key(master_key: bytes, uid: bytes, key_number: int) -> bytes:
    """Key `key_number` of the card `uid`: M = UID ‖ SYSTEM_IDENTIFIER ‖ key number."""
    _check_uid(uid)
    return diversify_aes128(master_key, uid + SYSTEM_IDENTIFIER + bytes([key_number]))


def site_key(master_key: bytes, key_number: int) -> bytes:
    """A key that is the same on every card: M = SYSTEM_IDENTIFIER ‖ key number.

    Only for SUN's meta read key: the server needs it to decrypt the UID out of a link, so
    it cannot depend on the UID.
    """
    return diversify_aes128(master_key, SYSTEM_IDENTIFIER + bytes([key_number]))


class MasterKind(bytes, Enum):
    """Which site secret a master key comes from, and so who holds it (docs/card-format.md)."""

    ADMIN = b"admin"  # keys 0 and 4: the office's issuing tool only
    PURSE = b"purse"  # key 1: every till (from the card write secret it already has)
    SUN = b"sun"  # keys 2 and 3: the server (its SUN secret) and the issuing tool


MASTER_DOMAIN = b"HCARD-424-MASTER-1\n"


def master_key(secret: bytes, kind: MasterKind) -> bytes:
    """The AES-128 master of `kind` from a site secret: HMAC-SHA256(secret, domain ‖ kind)
    cut to 16 bytes. One derivation, so the office, the tills and the server agree, and a
    secret of one kind opens nothing of another."""
    if len(secret) < KEY_BYTES:
        raise ValueError("a site secret has at least 16 bytes")
    return hmac.new(secret, MASTER_DOMAIN + kind.value, "sha256").digest()[:KEY_BYTES]


@dataclass(frozen=True)
class CardKeySet:
    """The five keys of one card, from the masters (key 2, SUN's meta read key, site-wide)."""

    keys: tuple[bytes, bytes, bytes, bytes, bytes] = field(repr=False)  # never in a log

    @classmethod
    def derive(
        cls, uid: bytes, admin_master: bytes, purse_master: bytes, sun_master: bytes
    ) -> CardKeySet:
        return cls(
            (
                card_key(admin_master, uid, KeyNo.APP_MASTER),
                card_key(purse_master, uid, KeyNo.PURSE),
                site_key(sun_master, KeyNo.SUN_META_READ),
                card_key(sun_master, uid, KeyNo.SUN_FILE_READ),
                card_key(admin_master, uid, KeyNo.SPARE),
            )
        )


# --- APDUs -----------------------------------------------------------------------------

NATIVE_CLA = 0x90  # native commands wrapped in ISO 7816-4 APDUs
ISO_CLA = 0x00
NATIVE_SW1 = 0x91
ISO_OK = 0x9000
DF_NAME = bytes.fromhex("D2760000850101")  # the NDEF application


class Ins(IntEnum):
    """Native commands (CLA 90) the reader and the model use."""

    AUTHENTICATE_EV2_FIRST = 0x71
    ADDITIONAL_FRAME = 0xAF
    GET_VERSION = 0x60
    READ_SIG = 0x3C
    GET_FILE_SETTINGS = 0xF5
    CHANGE_FILE_SETTINGS = 0x5F
    CHANGE_KEY = 0xC4
    GET_KEY_VERSION = 0x64
    READ_DATA = 0xAD
    WRITE_DATA = 0x8D
    GET_FILE_COUNTERS = 0xF6


class Status(IntEnum):
    """SW2 of a native command's answer (SW1 is 91)."""

    OPERATION_OK = 0x00
    SIGNATURE = 0x90  # Read_Sig's answer ends 91 90
    ADDITIONAL_FRAME = 0xAF
    AUTHENTICATION_ERROR = 0xAE
    PERMISSION_DENIED = 0x9D
    INTEGRITY_ERROR = 0x1E  # a MAC, a padding or a CRC did not verify
    LENGTH_ERROR = 0x7E
    PARAMETER_ERROR = 0x9E
    BOUNDARY_ERROR = 0xBE
    NO_SUCH_KEY = 0x40
    FILE_NOT_FOUND = 0xF0
    ILLEGAL_COMMAND_CODE = 0x1C
    COMMAND_ABORTED = 0xCA


def native_command(ins: int, data: bytes = b"") -> bytes:
    """The wrapped native command 90 INS 00 00 [Lc data] 00."""
    if len(data) > 255:
        raise ValueError("a short APDU carries at most 255 data bytes")
    body = bytes([len(data)]) + data if data else b""
    return bytes([NATIVE_CLA, ins, 0, 0]) + body + b"\x00"


def native_answer(data: bytes, status: Status) -> bytes:
    """The card's answer: data ‖ 91 SW2."""
    return data + bytes([NATIVE_SW1, status])


def split_answer(answer: bytes) -> tuple[bytes, int]:
    """(data, SW1SW2) of an answer APDU; CARD_UNREADABLE when there is not even a status."""
    if len(answer) < 2:
        raise HCardError(Code.CARD_UNREADABLE, status="none")
    return answer[:-2], int.from_bytes(answer[-2:], "big")


# --- AuthenticateEV2First --------------------------------------------------------------

SV_ENC = bytes.fromhex("A55A")  # label of the session encryption key's vector
SV_MAC = bytes.fromhex("5AA5")  # label of the session MAC key's vector
# Counter 0001 and length 0080 (128 bits) of the NIST SP 800-108 counter-mode derivation.
SV_COUNTER_LENGTH = bytes.fromhex("00010080")
CAPABILITIES_BYTES = 12  # PDcap2 (6) ‖ PCDcap2 (6) in the card's confirmation


@dataclass(frozen=True)
class SessionKeys:
    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)


def rotate_left(data: bytes) -> bytes:
    """RndA', RndB': the random number rotated left by one byte."""
    return data[1:] + data[:1]


def session_vector(label: bytes, rnd_a: bytes, rnd_b: bytes) -> bytes:
    """SV1/SV2: label ‖ 00 01 00 80 ‖ RndA[15..14] ‖ (RndA[13..8] ⊕ RndB[15..10]) ‖
    RndB[9..0] ‖ RndA[7..0] (the datasheet counts bytes from the last: RndA[15] comes first)."""
    return (
        label
        + SV_COUNTER_LENGTH
        + rnd_a[0:2]
        + _xor(rnd_a[2:8], rnd_b[0:6])
        + rnd_b[6:16]
        + rnd_a[8:16]
    )


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> SessionKeys:
    """SesAuthENCKey and SesAuthMACKey: CMAC(K, SV1) and CMAC(K, SV2)."""
    return SessionKeys(
        cmac(key, session_vector(SV_ENC, rnd_a, rnd_b)),
        cmac(key, session_vector(SV_MAC, rnd_a, rnd_b)),
    )


def authenticate_command(key_number: int) -> bytes:
    """Part 1 of the reader: 90 71 00 00 02 KeyNo LenCap=00 00 (no PCDcap2)."""
    return native_command(Ins.AUTHENTICATE_EV2_FIRST, bytes([key_number, 0]))


def authenticate_proof(key: bytes, rnd_a: bytes, challenge: bytes) -> tuple[bytes, bytes]:
    """Part 2 of the reader: (the APDU carrying E(K, RndA ‖ RndB'), RndB) from E(K, RndB)."""
    if len(challenge) != RANDOM_BYTES:
        raise HCardError(Code.CARD_UNREADABLE, step="authentication challenge")
    rnd_b = _decrypt(key, ZERO_IV, challenge)
    proof = _encrypt(key, ZERO_IV, rnd_a + rotate_left(rnd_b))
    return native_command(Ins.ADDITIONAL_FRAME, proof), rnd_b


def authenticate_finish(
    key: bytes, key_number: int, rnd_a: bytes, rnd_b: bytes, confirmation: bytes
) -> SecureChannel:
    """Check the card's E(K, TI ‖ RndA' ‖ PDcap2 ‖ PCDcap2) and open the session.

    The card proves its key by returning our fresh RndA rotated: any other RndA' is an answer
    recorded in an earlier session and played back (CARD_AUTH_REPLAYED).
    """
    if len(confirmation) != 2 * BLOCK_BYTES:
        raise HCardError(Code.CARD_UNREADABLE, step="authentication confirmation")
    plain = _decrypt(key, ZERO_IV, confirmation)
    if not hmac.compare_digest(plain[TI_BYTES : TI_BYTES + RANDOM_BYTES], rotate_left(rnd_a)):
        raise HCardError(Code.CARD_AUTH_REPLAYED)
    return SecureChannel(session_keys(key, rnd_a, rnd_b), plain[:TI_BYTES], key_number)


def card_challenge(key: bytes, rnd_b: bytes) -> bytes:
    """Part 1 of the card: E(K, RndB)."""
    return _encrypt(key, ZERO_IV, rnd_b)


def card_check_proof(key: bytes, rnd_b: bytes, proof: bytes) -> bytes | None:
    """Part 2 of the card: RndA out of E(K, RndA ‖ RndB'), None when RndB' is not this
    authentication's: the reader has another key, or plays back an old proof."""
    if len(proof) != 2 * RANDOM_BYTES:
        return None
    plain = _decrypt(key, ZERO_IV, proof)
    if not hmac.compare_digest(plain[RANDOM_BYTES:], rotate_left(rnd_b)):
        return None
    return plain[:RANDOM_BYTES]


def card_confirmation(key: bytes, ti: bytes, rnd_a: bytes) -> bytes:
    """Part 2 of the card's answer: E(K, TI ‖ RndA' ‖ PDcap2 ‖ PCDcap2), capabilities zero."""
    return _encrypt(key, ZERO_IV, ti + rotate_left(rnd_a) + bytes(CAPABILITIES_BYTES))


# --- secure messaging ------------------------------------------------------------------

IV_COMMAND = bytes.fromhex("A55A")
IV_ANSWER = bytes.fromhex("5AA5")


@dataclass
class SecureChannel:
    """One authenticated session, the same on both sides: keys, TI, key number, CmdCtr.

    CmdCtr counts the commands answered in the session (plain ones too). A command's MAC and
    IV use the counter as it is; the answer's use the counter after the command (CmdCtr + 1).
    """

    keys: SessionKeys = field(repr=False)
    ti: bytes
    key_number: int
    cmd_counter: int = 0

    def _counter(self, counter: int) -> bytes:
        return counter.to_bytes(2, "little")

    def command_mac(self, ins: int, header: bytes, data: bytes) -> bytes:
        """MACt over Cmd ‖ CmdCtr ‖ TI ‖ CmdHeader ‖ CmdData."""
        message = bytes([ins]) + self._counter(self.cmd_counter) + self.ti + header + data
        return truncate_mac(cmac(self.keys.mac, message))

    def answer_mac(self, status: int, data: bytes) -> bytes:
        """MACt over RC ‖ CmdCtr + 1 ‖ TI ‖ RespData."""
        message = bytes([status]) + self._counter(self.cmd_counter + 1) + self.ti + data
        return truncate_mac(cmac(self.keys.mac, message))

    def _iv(self, label: bytes, counter: int) -> bytes:
        """E(SesAuthENCKey, label ‖ TI ‖ CmdCtr ‖ 00…00)."""
        return _encrypt(self.keys.enc, ZERO_IV, label + self.ti + self._counter(counter) + bytes(8))

    def encrypt_command(self, plain: bytes) -> bytes:
        return _encrypt(self.keys.enc, self._iv(IV_COMMAND, self.cmd_counter), pad(plain))

    def decrypt_command(self, cipher: bytes) -> bytes | None:
        if not cipher or len(cipher) % BLOCK_BYTES:
            return None
        return unpad(_decrypt(self.keys.enc, self._iv(IV_COMMAND, self.cmd_counter), cipher))

    def encrypt_answer(self, plain: bytes) -> bytes:
        return _encrypt(self.keys.enc, self._iv(IV_ANSWER, self.cmd_counter + 1), pad(plain))

    def decrypt_answer(self, cipher: bytes) -> bytes | None:
        if not cipher or len(cipher) % BLOCK_BYTES:
            return None
        return unpad(_decrypt(self.keys.enc, self._iv(IV_ANSWER, self.cmd_counter + 1), cipher))

    # the reader's side

    def wrap(self, ins: int, header: bytes, data: bytes, mode: CommMode) -> bytes:
        """The command APDU in `mode`: data in clear, MAC'd, or encrypted and MAC'd."""
        if mode is CommMode.PLAIN:
            return native_command(ins, header + data)
        if mode is CommMode.FULL and data:
            data = self.encrypt_command(data)
        return native_command(ins, header + data + self.command_mac(ins, header, data))

    def unwrap(self, body: bytes, mode: CommMode) -> bytes:
        """The data of the card's successful answer (91 00) in `mode`, its MAC checked."""
        if mode is not CommMode.PLAIN:
            data, mac = body[:-MAC_BYTES], body[-MAC_BYTES:]
            expected = self.answer_mac(Status.OPERATION_OK, data)
            if len(body) < MAC_BYTES or not hmac.compare_digest(mac, expected):
                raise HCardError(Code.CARD_MAC_INVALID)
            body = data
        if mode is CommMode.FULL and body:
            plain = self.decrypt_answer(body)
            if plain is None:
                raise HCardError(Code.CARD_MAC_INVALID)
            body = plain
        self.cmd_counter += 1
        return body

    # the card's side

    def open(self, ins: int, header: bytes, body: bytes, mode: CommMode) -> bytes | None:
        """The data of a command in `mode` (MAC checked, decrypted); None when it does not
        verify, which the card answers with INTEGRITY_ERROR."""
        if mode is CommMode.PLAIN:
            return body
        data, mac = body[:-MAC_BYTES], body[-MAC_BYTES:]
        if len(body) < MAC_BYTES or not hmac.compare_digest(
            mac, self.command_mac(ins, header, data)
        ):
            return None
        if mode is CommMode.FULL and data:
            return self.decrypt_command(data)
        return data

    def seal(self, data: bytes, mode: CommMode) -> bytes:
        """The data of the card's answer 91 00 in `mode`; counts the command."""
        if mode is CommMode.FULL and data:
            data = self.encrypt_answer(data)
        if mode is not CommMode.PLAIN:
            data += self.answer_mac(Status.OPERATION_OK, data)
        self.cmd_counter += 1
        return data


# --- SUN: Secure Dynamic Messaging -----------------------------------------------------

PICC_DATA_TAG = 0x80 | 0x40 | UID_BYTES  # PICCDataTag: UID and SDMReadCtr mirrored, UID 7 bytes
SV_SDM_ENC = bytes.fromhex("C33C")
SV_SDM_MAC = bytes.fromhex("3CC3")
PICC_DATA_PADDING_BYTES = BLOCK_BYTES - 1 - UID_BYTES - COUNTER_BYTES  # random, 5 bytes


@dataclass(frozen=True)
class PiccData:
    """What a tap's link tells about the card: its UID and its read counter (SDMReadCtr)."""

    uid: bytes
    read_counter: int


def mirror_ascii(data: bytes) -> bytes:
    """Bytes as the chip mirrors them into a URL: upper-case hex digits."""
    return data.hex().upper().encode("ascii")


def encrypt_picc_data(meta_read_key: bytes, uid: bytes, read_counter: int, padding: bytes) -> bytes:
    """The card's PICCData: E(K_SDMMetaRead, PICCDataTag ‖ UID ‖ SDMReadCtr ‖ 5 random bytes)."""
    _check_uid(uid)
    plain = bytes([PICC_DATA_TAG]) + uid + _u24(read_counter)
    if len(padding) != PICC_DATA_PADDING_BYTES:
        raise ValueError("PICCData is padded with 5 random bytes")
    return _encrypt(meta_read_key, ZERO_IV, plain + padding)


def decrypt_picc_data(meta_read_key: bytes, encrypted: bytes) -> PiccData:
    """UID and SDMReadCtr out of a link's PICCData; SUN_INVALID when it is not ours (a wrong
    key decrypts to another PICCDataTag)."""
    if len(encrypted) != BLOCK_BYTES:
        raise HCardError(Code.SUN_INVALID)
    plain = _decrypt(meta_read_key, ZERO_IV, encrypted)
    if plain[0] != PICC_DATA_TAG:
        raise HCardError(Code.SUN_INVALID)
    counter_at = 1 + UID_BYTES
    counter = int.from_bytes(plain[counter_at : counter_at + COUNTER_BYTES], "little")
    return PiccData(plain[1:counter_at], counter)


def sdm_session_keys(file_read_key: bytes, uid: bytes, read_counter: int) -> SessionKeys:
    """SesSDMFileReadENCKey, SesSDMFileReadMACKey: CMAC(K_SDMFileRead, SV1 / SV2), where
    SV = label ‖ 00 01 00 80 ‖ UID ‖ SDMReadCtr (one block when both are mirrored)."""
    _check_uid(uid)
    tail = SV_COUNTER_LENGTH + uid + _u24(read_counter)
    return SessionKeys(
        cmac(file_read_key, SV_SDM_ENC + tail), cmac(file_read_key, SV_SDM_MAC + tail)
    )


def sdm_mac(file_read_key: bytes, uid: bytes, read_counter: int, mac_input: bytes = b"") -> bytes:
    """SDMMAC: MACt(SesSDMFileReadMACKey, the file's bytes from SDMMACInputOffset to
    SDMMACOffset), empty when the two offsets are the same."""
    session = sdm_session_keys(file_read_key, uid, read_counter)
    return truncate_mac(cmac(session.mac, mac_input))


def _is_newer(read_counter: int, last_seen: int | None) -> bool:
    return last_seen is None or read_counter > last_seen


def verify_sun(
    picc_hex: str,
    mac_hex: str,
    meta_read_key: bytes,
    file_read_key: Callable[[bytes], bytes],
    mac_input: bytes = b"",
    last_counter: int | None = None,
) -> PiccData:
    """Check a link's PICCData and SDMMAC, as the balance page gets them; the tap they tell of.

    `file_read_key(uid)` gives the card's SDM file read key (it is diversified from the UID,
    known only after decrypting). SUN_INVALID for a link that does not verify (forged,
    altered, another system's); SUN_STALE for a genuine link whose counter is not above
    `last_counter`: an old link, copied or replayed, that shows no balance.
    """
    try:
        encrypted, mac = bytes.fromhex(picc_hex), bytes.fromhex(mac_hex)
    except ValueError:
        raise HCardError(Code.SUN_INVALID) from None
    picc = decrypt_picc_data(meta_read_key, encrypted)
    expected = sdm_mac(file_read_key(picc.uid), picc.uid, picc.read_counter, mac_input)
    if not hmac.compare_digest(mac, expected):
        raise HCardError(Code.SUN_INVALID)
    if not _is_newer(picc.read_counter, last_counter):
        raise HCardError(Code.SUN_STALE, read_counter=picc.read_counter, last_seen=last_counter)
    return picc


def require_newer_counter(read_counter: int, last_seen: int | None) -> None:
    """A tap's SDMReadCtr must be above every counter seen before: the chip counts every read
    and never back, so a lower or equal one is a saved and restored card, or its recording."""
    if not _is_newer(read_counter, last_seen):
        raise HCardError(
            Code.CARD_COUNTER_BACKWARDS, read_counter=read_counter, last_seen=last_seen
        )


# --- file settings ---------------------------------------------------------------------

FILE_OPTION_SDM = 0x40
STANDARD_DATA_FILE = 0x00  # FileType of all three files


class SdmOption(IntFlag):
    """SDMOptions: what the chip mirrors into the NDEF file."""

    UID = 0x80
    READ_COUNTER = 0x40
    READ_COUNTER_LIMIT = 0x20
    ENC_FILE_DATA = 0x10
    ASCII = 0x01


@dataclass(frozen=True)
class AccessRights:
    """Access conditions: a key number 0-4, ACCESS_FREE or ACCESS_NEVER."""

    read: int
    write: int
    read_write: int
    change: int

    def encode(self) -> bytes:
        """RW ‖ Change, Read ‖ Write: a nibble each."""
        return bytes([self.read_write << 4 | self.change, self.read << 4 | self.write])

    @classmethod
    def decode(cls, data: bytes) -> AccessRights:
        return cls(data[1] >> 4, data[1] & 0xF, data[0] >> 4, data[0] & 0xF)


@dataclass(frozen=True)
class SdmSettings:
    """Secure Dynamic Messaging of the NDEF file: what is mirrored where, under which keys.

    Offsets are byte positions in the file; which of them exist depends on the options and
    the keys (`_offset_fields`), as in the datasheet's ChangeFileSettings.
    """

    options: SdmOption
    meta_read: int  # key of PICCData's encryption; ACCESS_FREE: UID/counter in clear
    file_read: int  # key of SDMMAC; ACCESS_NEVER: no MAC
    counter_read: int  # SDMCtrRet: who may read the counter (GetFileCounters)
    uid_offset: int | None = None
    counter_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    counter_limit: int | None = None

    def encode(self) -> bytes:
        """SDMOptions ‖ SDMAccessRights ‖ the offsets present, 3 bytes each."""
        rights = bytes([0xF0 | self.counter_read, self.meta_read << 4 | self.file_read])
        fields = _offset_fields(self.options, self.meta_read, self.file_read)
        return bytes([self.options]) + rights + b"".join(_u24(self._offset(f)) for f in fields)

    def _offset(self, name: str) -> int:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"SDM settings need {name}")
        return int(value)

    @classmethod
    def decode(cls, data: bytes) -> SdmSettings:
        """The settings from SDMOptions on; ValueError when the length does not fit them."""
        if len(data) < 3:
            raise ValueError("SDM settings too short")
        if data[0] & ~_ALL_SDM_OPTIONS:
            raise ValueError("SDM settings: RFU option bits set")
        options, meta_read, file_read = SdmOption(data[0]), data[2] >> 4, data[2] & 0xF
        fields = _offset_fields(options, meta_read, file_read)
        if len(data) != 3 + COUNTER_BYTES * len(fields):
            raise ValueError("SDM settings of the wrong length")
        at = {name: 3 + COUNTER_BYTES * i for i, name in enumerate(fields)}

        def offset(name: str) -> int | None:
            start = at.get(name)
            return None if start is None else int.from_bytes(data[start : start + 3], "little")

        return cls(
            options,
            meta_read,
            file_read,
            data[1] & 0xF,
            uid_offset=offset("uid_offset"),
            counter_offset=offset("counter_offset"),
            picc_data_offset=offset("picc_data_offset"),
            mac_input_offset=offset("mac_input_offset"),
            enc_offset=offset("enc_offset"),
            enc_length=offset("enc_length"),
            mac_offset=offset("mac_offset"),
            counter_limit=offset("counter_limit"),
        )


_ALL_SDM_OPTIONS = 0xF1  # bits 3-1 of SDMOptions are RFU


def _offset_fields(options: SdmOption, meta_read: int, file_read: int) -> tuple[str, ...]:
    """The offset fields ChangeFileSettings carries for these options and keys, in order."""
    fields: list[str] = []
    if meta_read == ACCESS_FREE:
        fields += ["uid_offset"] if options & SdmOption.UID else []
        fields += ["counter_offset"] if options & SdmOption.READ_COUNTER else []
    elif meta_read != ACCESS_NEVER:
        fields.append("picc_data_offset")
    if file_read != ACCESS_NEVER:
        fields.append("mac_input_offset")
        fields += ["enc_offset", "enc_length"] if options & SdmOption.ENC_FILE_DATA else []
        fields.append("mac_offset")
    if options & SdmOption.READ_COUNTER_LIMIT:
        fields.append("counter_limit")
    return tuple(fields)


@dataclass(frozen=True)
class FileSettings:
    comm_mode: CommMode
    access: AccessRights
    size: int
    sdm: SdmSettings | None = None

    def _option_and_rights(self) -> bytes:
        option = self.comm_mode | (FILE_OPTION_SDM if self.sdm else 0)
        return bytes([option]) + self.access.encode()

    def change_data(self) -> bytes:
        """ChangeFileSettings' data: FileOption ‖ AccessRights ‖ [SDM settings]."""
        return self._option_and_rights() + (self.sdm.encode() if self.sdm else b"")

    def answer_data(self) -> bytes:
        """GetFileSettings' answer: FileType ‖ FileOption ‖ AccessRights ‖ FileSize ‖ [SDM]."""
        option_and_rights = self._option_and_rights()
        sdm = self.sdm.encode() if self.sdm else b""
        return bytes([STANDARD_DATA_FILE]) + option_and_rights + _u24(self.size) + sdm

    @classmethod
    def from_change_data(cls, data: bytes, size: int) -> FileSettings:
        """ChangeFileSettings' data for a file of `size` bytes; ValueError when malformed."""
        if len(data) < 3:
            raise ValueError("file settings too short")
        return cls._decode(data[0], data[1:3], size, data[3:])

    @classmethod
    def from_answer(cls, data: bytes) -> FileSettings:
        """GetFileSettings' answer; ValueError when malformed."""
        if len(data) < 7 or data[0] != STANDARD_DATA_FILE:
            raise ValueError("not the settings of a standard data file")
        return cls._decode(data[1], data[2:4], int.from_bytes(data[4:7], "little"), data[7:])

    @classmethod
    def _decode(cls, option: int, rights: bytes, size: int, rest: bytes) -> FileSettings:
        if option & ~(FILE_OPTION_SDM | CommMode.FULL) or option & CommMode.FULL == 0x02:
            raise ValueError("file settings: unknown FileOption bits")
        comm_mode = CommMode(option & CommMode.FULL)
        has_sdm = bool(option & FILE_OPTION_SDM)
        if not has_sdm and rest:
            raise ValueError("file settings too long")
        sdm = SdmSettings.decode(rest) if has_sdm else None
        return cls(comm_mode, AccessRights.decode(rights), size, sdm)


# --- ChangeKey ---------------------------------------------------------------------------


def crc32_nk(data: bytes) -> bytes:
    """CRC32 as ChangeKey carries it: IEEE 802.3 without the final inversion, LSB first."""
    return (zlib.crc32(data) ^ 0xFFFFFFFF).to_bytes(4, "little")


def change_key_data(
    key_number: int, new_key: bytes, version: int, old_key: bytes, auth_key_number: int
) -> bytes:
    """ChangeKey's key data before encryption.

    The key of the session itself goes as NewKey ‖ KeyVer; any other key as
    (NewKey ⊕ OldKey) ‖ KeyVer ‖ CRC32(NewKey): the card recovers the new key only with the
    right old one, and the CRC tells it when the old key was wrong.
    """
    if key_number == auth_key_number:
        return new_key + bytes([version])
    return _xor(new_key, old_key) + bytes([version]) + crc32_nk(new_key)


def card_new_key(
    data: bytes, key_number: int, auth_key_number: int, current_key: bytes
) -> tuple[bytes, int] | None:
    """The card's side of `change_key_data`: (new key, version), None when malformed or the
    CRC does not match (the reader's old key is not this card's)."""
    if key_number == auth_key_number:
        if len(data) != KEY_BYTES + 1:
            return None
        return data[:KEY_BYTES], data[KEY_BYTES]
    if len(data) != KEY_BYTES + 1 + 4:
        return None
    new_key = _xor(data[:KEY_BYTES], current_key)
    if not hmac.compare_digest(crc32_nk(new_key), data[KEY_BYTES + 1 :]):
        return None
    return new_key, data[KEY_BYTES]


# --- originality signature -------------------------------------------------------------

# NXP's public key for NTAG 424 DNA's originality signature (secp224r1, uncompressed point),
# as AN12196 gives it for the asymmetric originality check.
NXP_ORIGINALITY_KEY_HEX = (
    "048A9B380AF2EE1B98DC417FECC263F8449C7625CECE82D9B916C992DA209D6842"
    "2B81EC20B65A66B5102A61596AF3379200599316A00A1410"
)
ORIGINALITY_SIGNATURE_BYTES = 56  # r ‖ s, 28 bytes each
_SCALAR_BYTES = ORIGINALITY_SIGNATURE_BYTES // 2
# The 7-byte UID is the signed value itself, not hashed: handed to ECDSA as a "prehashed"
# SHA-224 digest, left-padded with zeros to its 28 bytes (the same integer).
_ORIGINALITY_ECDSA = ec.ECDSA(utils.Prehashed(hashes.SHA224()))


def _originality_digest(uid: bytes) -> bytes:
    _check_uid(uid)
    return uid.rjust(_SCALAR_BYTES, b"\x00")


def originality_signature(uid: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 56 bytes a chip with this UID answers to Read_Sig, signed with `private_key`
    (NXP's at the factory; a test key for emulated cards)."""
    r, s = utils.decode_dss_signature(
        private_key.sign(_originality_digest(uid), _ORIGINALITY_ECDSA)
    )
    return r.to_bytes(_SCALAR_BYTES, "big") + s.to_bytes(_SCALAR_BYTES, "big")


@lru_cache(maxsize=8)
def originality_public_key(public_key_hex: str) -> ec.EllipticCurvePublicKey:
    """The originality key from its hex (an uncompressed secp224r1 point); ValueError when it
    is not one. Cached: every tap checks against the same key."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP224R1(), bytes.fromhex(public_key_hex)
        )
    except (ValueError, TypeError):
        raise ValueError("not a secp224r1 public key (hex)") from None


def originality_ok(
    uid: bytes, signature: bytes, public_key_hex: str = NXP_ORIGINALITY_KEY_HEX
) -> bool:
    """True when `signature` is an originality signature of `uid` under the key."""
    if len(signature) != ORIGINALITY_SIGNATURE_BYTES:
        return False
    public = originality_public_key(public_key_hex)
    r = int.from_bytes(signature[:_SCALAR_BYTES], "big")
    s = int.from_bytes(signature[_SCALAR_BYTES:], "big")
    try:
        public.verify(
            utils.encode_dss_signature(r, s), _originality_digest(uid), _ORIGINALITY_ECDSA
        )
    except InvalidSignature:
        return False
    return True


# --- reader commands ---------------------------------------------------------------------

Transceive = Callable[[bytes], bytes]
_REFUSALS = {
    NATIVE_SW1 << 8 | Status.AUTHENTICATION_ERROR: Code.CARD_AUTH_FAILED,
    NATIVE_SW1 << 8 | Status.PERMISSION_DENIED: Code.CARD_AUTH_FAILED,
    NATIVE_SW1 << 8 | Status.INTEGRITY_ERROR: Code.CARD_MAC_INVALID,
}


def _refuse(status: int) -> NoReturn:
    """The named refusal of a card's error status; the card has ended any session."""
    raise HCardError(_REFUSALS.get(status, Code.CARD_UNREADABLE), status=f"{status:04X}")


def _expect(answer: bytes, status: Status) -> bytes:
    data, sw = split_answer(answer)
    if sw != NATIVE_SW1 << 8 | status:
        _refuse(sw)
    return data


def _command(
    transceive: Transceive,
    channel: SecureChannel | None,
    ins: int,
    header: bytes,
    data: bytes = b"",
    mode: CommMode = CommMode.PLAIN,
) -> bytes:
    """One native command, in the session `channel` (None: outside any), its answer's data."""
    if channel is None:
        if mode is not CommMode.PLAIN:
            raise ValueError(f"{mode.name} needs a session")
        return _expect(transceive(native_command(ins, header + data)), Status.OPERATION_OK)
    answer = transceive(channel.wrap(ins, header, data, mode))
    return channel.unwrap(_expect(answer, Status.OPERATION_OK), mode)


def select_application(transceive: Transceive) -> None:
    """ISOSelectFile of the NDEF application by its DF name (ends any session)."""
    select = bytes([ISO_CLA, 0xA4, 0x04, 0x0C, len(DF_NAME)]) + DF_NAME + b"\x00"
    _data, sw = split_answer(transceive(select))
    if sw != ISO_OK:
        raise HCardError(Code.CARD_UNREADABLE, status=f"{sw:04X}")


def authenticate(
    transceive: Transceive, key_number: int, key: bytes, rnd_a: bytes | None = None
) -> SecureChannel:
    """AuthenticateEV2First with `key`: the session, or CARD_AUTH_FAILED (the card does not
    have this key) or CARD_AUTH_REPLAYED (its answer is not for our RndA)."""
    rnd_a = rnd_a or os.urandom(RANDOM_BYTES)
    challenge = _expect(transceive(authenticate_command(key_number)), Status.ADDITIONAL_FRAME)
    proof, rnd_b = authenticate_proof(key, rnd_a, challenge)
    confirmation = _expect(transceive(proof), Status.OPERATION_OK)
    return authenticate_finish(key, key_number, rnd_a, rnd_b, confirmation)


def authenticate_card(transceive: Transceive, key_number: int, key: bytes) -> SecureChannel:
    """`authenticate`, telling a card that still has its factory key (CARD_FACTORY_KEYS: never
    issued) from one with a key that is not ours (CARD_AUTH_FAILED)."""
    try:
        return authenticate(transceive, key_number, key)
    except HCardError as refused:
        if refused.code is not Code.CARD_AUTH_FAILED:
            raise
        try:
            authenticate(transceive, key_number, FACTORY_KEY)
        except HCardError as second:
            raise (refused if second.code is Code.CARD_AUTH_FAILED else second) from None
        raise HCardError(Code.CARD_FACTORY_KEYS, key_number=key_number) from None


def read_data(
    transceive: Transceive,
    channel: SecureChannel | None,
    file_no: int,
    offset: int,
    length: int,
    mode: CommMode,
) -> bytes:
    """ReadData: `length` bytes from `offset`, in the file's CommMode (PLAIN outside a session)."""
    header = bytes([file_no]) + _u24(offset) + _u24(length)
    data = _command(transceive, channel, Ins.READ_DATA, header, mode=mode)
    if len(data) != length:
        raise HCardError(Code.CARD_UNREADABLE, step="read data", length=len(data))
    return data


def write_data(
    transceive: Transceive,
    channel: SecureChannel | None,
    file_no: int,
    offset: int,
    data: bytes,
    mode: CommMode,
) -> None:
    """WriteData: `data` at `offset`, in the file's CommMode."""
    header = bytes([file_no]) + _u24(offset) + _u24(len(data))
    _command(transceive, channel, Ins.WRITE_DATA, header, data, mode)


def get_file_settings(
    transceive: Transceive, file_no: int, channel: SecureChannel | None = None
) -> FileSettings:
    """GetFileSettings (MAC'd in a session)."""
    mode = CommMode.MAC if channel else CommMode.PLAIN
    answer = _command(transceive, channel, Ins.GET_FILE_SETTINGS, bytes([file_no]), mode=mode)
    try:
        return FileSettings.from_answer(answer)
    except ValueError:
        raise HCardError(Code.CARD_UNREADABLE, step="file settings") from None


def change_file_settings(
    transceive: Transceive, channel: SecureChannel, file_no: int, settings: FileSettings
) -> None:
    """ChangeFileSettings (encrypted), in a session with the file's change key."""
    header = bytes([file_no])
    _command(
        transceive, channel, Ins.CHANGE_FILE_SETTINGS, header, settings.change_data(), CommMode.FULL
    )


def change_key(
    transceive: Transceive,
    channel: SecureChannel,
    key_number: int,
    new_key: bytes,
    version: int,
    old_key: bytes = FACTORY_KEY,
) -> None:
    """ChangeKey (encrypted), in a session with the application master key.

    Changing the session's own key ends the session: the card answers without a MAC and
    `channel` must not be used again.
    """
    data = change_key_data(key_number, new_key, version, old_key, channel.key_number)
    apdu = channel.wrap(Ins.CHANGE_KEY, bytes([key_number]), data, CommMode.FULL)
    body = _expect(transceive(apdu), Status.OPERATION_OK)
    if key_number != channel.key_number:
        channel.unwrap(body, CommMode.MAC)
    elif body:
        raise HCardError(Code.CARD_UNREADABLE, step="change key")


def get_key_version(
    transceive: Transceive, key_number: int, channel: SecureChannel | None = None
) -> int:
    """GetKeyVersion (MAC'd in a session): 00 on a new chip."""
    mode = CommMode.MAC if channel else CommMode.PLAIN
    answer = _command(transceive, channel, Ins.GET_KEY_VERSION, bytes([key_number]), mode=mode)
    if len(answer) != 1:
        raise HCardError(Code.CARD_UNREADABLE, step="key version")
    return answer[0]


def get_file_counters(transceive: Transceive, channel: SecureChannel, file_no: int) -> int:
    """GetFileCounters (encrypted): the SDMReadCtr of the NDEF file."""
    answer = _command(
        transceive, channel, Ins.GET_FILE_COUNTERS, bytes([file_no]), mode=CommMode.FULL
    )
    if len(answer) != COUNTER_BYTES + 2:
        raise HCardError(Code.CARD_UNREADABLE, step="file counters")
    return int.from_bytes(answer[:COUNTER_BYTES], "little")


def read_signature(transceive: Transceive) -> bytes:
    """Read_Sig outside a session: the 56-byte originality signature (answer ends 91 90)."""
    signature = _expect(transceive(native_command(Ins.READ_SIG, b"\x00")), Status.SIGNATURE)
    if len(signature) != ORIGINALITY_SIGNATURE_BYTES:
        raise HCardError(Code.CARD_UNREADABLE, step="read signature")
    return signature


def get_version(transceive: Transceive) -> tuple[bytes, bytes, bytes]:
    """GetVersion outside a session: (hardware, software, production) in its three frames."""
    frames = [_expect(transceive(native_command(Ins.GET_VERSION)), Status.ADDITIONAL_FRAME)]
    frames.append(
        _expect(transceive(native_command(Ins.ADDITIONAL_FRAME)), Status.ADDITIONAL_FRAME)
    )
    frames.append(_expect(transceive(native_command(Ins.ADDITIONAL_FRAME)), Status.OPERATION_OK))
    return frames[0], frames[1], frames[2]
