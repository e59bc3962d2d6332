"""An NTAG 424 DNA as a state machine: one command APDU in, one answer APDU out.

The card's side of `hcard.ntag424` around the chip's state, for the card emulator (behind
nfcpy's `udp:` driver as a Type 4A tag and behind vpcd for PC/SC, issue 12 phase 2) and for
tests. It follows NXP's NT4H2421Gx where our reader can tell the difference:

- ISOSelectFile (the NDEF application by DF name D2760000850101 or file id E110, its files
  E103/E104/E105, the MF 3F00), ISOReadBinary and ISOUpdateBinary (also by short file id)
  on files whose access needs no secure messaging;
- AuthenticateEV2First (71, then AF); ReadData and WriteData in the file's CommMode (plain,
  MAC, full); GetFileSettings, ChangeFileSettings, ChangeKey, GetKeyVersion,
  GetFileCounters; GetVersion; Read_Sig, signed with a public test key as the NTAG215
  emulator's cards are;
- SUN: on every read of the NDEF file, PICCData (UID and SDMReadCtr, encrypted) and SDMMAC
  mirrored into it as hex digits; the counter goes up once per tap (the first read after
  power-up), so all reads of one tap see the same link. A ChangeFileSettings that enables
  SDM resets the counter to 0 ("The SDMReadCtr is reset to 000000h when enabling SDM with
  ChangeFileSettings", NT4H2421Gx 9.3.1), also when SDM was on already: the next read counts 1.

Rules the datasheet leaves open until checked on a chip, chosen here: a command granted by a
key runs in the file's CommMode, one granted by free access (E) in plain; every error answer
ends the session; ISO commands leave the session's counter alone.

Not emulated: AuthenticateEV2NonFirst and LRP, SetConfiguration, GetCardUID, the delay
after failed authentications, answers split into several frames (the short APDU's limit),
and, refused with PARAMETER_ERROR, SDM's plain UID/counter mirrors, SDMENCFileData and the
read counter limit; GetVersion and Read_Sig inside a session are refused with
PERMISSION_DENIED (our reader asks them before authenticating).

Tearing: a command takes effect wholly or not at all. The emulator tears between commands as
it does the NTAG215 (the card leaves after N commands, the N+1st done or not, its answer
lost) and `power_up` is the next tap; the purse layout does not rely on a WriteData being
atomic on the chip (docs/card-format.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hcard import ntag424
from hcard.ntag424 import (
    ACCESS_FREE,
    ACCESS_NEVER,
    COUNTER_BYTES,
    DF_NAME,
    FACTORY_KEY,
    ISO_CLA,
    NATIVE_CLA,
    AccessRights,
    CommMode,
    FileNo,
    FileSettings,
    Ins,
    KeyNo,
    SdmOption,
    SdmSettings,
    SecureChannel,
    Status,
    native_answer,
)

# Public on purpose: it only ever signs emulated test cards. "HCARD_TEST_KEY_424" in ASCII.
TEST_ORIGINALITY_KEY = ec.derive_private_key(
    int.from_bytes(b"HCARD_TEST_KEY_424", "big"), ec.SECP224R1()
)
TEST_ORIGINALITY_PUBLIC_KEY_HEX = (
    TEST_ORIGINALITY_KEY.public_key()
    .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    .hex()
    .upper()
)

KEY_COUNT = len(KeyNo)
MF_ID = 0x3F00
DF_ID = 0xE110  # the NDEF application's ISO file id
FILE_IDS = {0xE103: FileNo.CC, 0xE104: FileNo.NDEF, 0xE105: FileNo.PROPRIETARY}
SELECT, READ_BINARY, UPDATE_BINARY = 0xA4, 0xB0, 0xD6
SELECT_BY_DF_NAME = 0x04
SELECT_BY_ID = (0x00, 0x02)  # P1: MF, DF or EF by id; EF under the current DF
SHORT_FILE_ID = 0x80  # P1 bit 8 of ISOReadBinary/ISOUpdateBinary: bits 5-1 are the file
READ_BINARY_MAX_BYTES = 256  # Le 00
HEADER_BYTES = 7  # ReadData/WriteData: FileNo ‖ Offset ‖ Length

# A new chip's CC file: NDEF file E104 (256 bytes, read and write free), proprietary file
# E105 (128 bytes, read with key 2, write with key 3).
FACTORY_CC = bytes.fromhex("001720010000FF0406E104010000000506E10500808283").ljust(32, b"\x00")
FACTORY_SETTINGS = {
    FileNo.CC: FileSettings(CommMode.PLAIN, AccessRights(ACCESS_FREE, 0, 0, 0), 32),
    FileNo.NDEF: FileSettings(
        CommMode.PLAIN, AccessRights(ACCESS_FREE, ACCESS_FREE, ACCESS_FREE, 0), 256
    ),
    FileNo.PROPRIETARY: FileSettings(CommMode.FULL, AccessRights(2, 3, 3, 0), 128),
}
# GetVersion: vendor NXP, NTAG, 50 pF, version 3.0, 416 bytes, ISO 14443-4; then the
# software's; then UID ‖ batch number ‖ production week and year (made up for the model).
HARDWARE_VERSION = bytes.fromhex("04040230001105")
SOFTWARE_VERSION = bytes.fromhex("04040201021105")
PRODUCTION_BATCH = bytes.fromhex("0000000000")
PRODUCTION_WEEK_YEAR = bytes.fromhex("0126")


class IsoStatus(IntEnum):
    OK = 0x9000
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    FILE_NOT_FOUND = 0x6A82
    WRONG_P1_P2 = 0x6A86
    WRONG_OFFSET = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


@dataclass
class DataFile:
    settings: FileSettings
    content: bytearray


@dataclass
class CardState:
    """What the chip keeps without power (and the emulator will save)."""

    uid: bytes
    signature: bytes  # the originality signature Read_Sig answers
    keys: list[bytes]
    key_versions: list[int]
    files: dict[int, DataFile]
    sdm_read_counter: int = 0


def factory_state(
    uid: bytes | None = None, signing_key: ec.EllipticCurvePrivateKey = TEST_ORIGINALITY_KEY
) -> CardState:
    """A chip as it leaves the factory (a random 04… UID unless given), signed with the key."""
    uid = uid or b"\x04" + secrets.token_bytes(ntag424.UID_BYTES - 1)
    contents = {FileNo.CC: FACTORY_CC}
    files: dict[int, DataFile] = {
        number: DataFile(settings, bytearray(contents.get(number, bytes(settings.size))))
        for number, settings in FACTORY_SETTINGS.items()
    }
    signature = ntag424.originality_signature(uid, signing_key)
    return CardState(uid, signature, [FACTORY_KEY] * KEY_COUNT, [0] * KEY_COUNT, files)


@dataclass(frozen=True)
class _Authentication:
    """An AuthenticateEV2First waiting for its second part."""

    key_number: int
    rnd_b: bytes


@dataclass(frozen=True)
class _Tap:
    """The SUN values of this tap: its read counter and PICCData's random padding."""

    read_counter: int
    padding: bytes


def _u24(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _iso_answer(status: IsoStatus, data: bytes = b"") -> bytes:
    return data + status.to_bytes(2, "big")


def _native_data(apdu: bytes) -> bytes:
    """The data of `90 INS 00 00 [Lc data] [00]`; ValueError when malformed."""
    if apdu[2:4] != b"\x00\x00":
        raise ValueError("P1 and P2 must be 00")
    if len(apdu) <= 5:
        return b""
    size = apdu[4]
    if size == 0 or len(apdu) not in (5 + size, 6 + size) or apdu[5 + size :] not in (b"", b"\0"):
        raise ValueError("Lc does not fit the command")
    return apdu[5 : 5 + size]


def _iso_parts(apdu: bytes) -> tuple[bytes, int]:
    """(data, Le) of an ISO 7816-4 short APDU (Le 0 when absent or 00: the most)."""
    if len(apdu) <= 5:
        return b"", apdu[4] if len(apdu) == 5 else 0
    size = apdu[4]
    if len(apdu) not in (5 + size, 6 + size):
        raise ValueError("Lc does not fit the command")
    return apdu[5 : 5 + size], apdu[5 + size] if len(apdu) == 6 + size else 0


def _valid_condition(condition: int) -> bool:
    return condition < KEY_COUNT or condition in (ACCESS_FREE, ACCESS_NEVER)


class Ntag424:
    """The chip in a reader's field. `handle` answers one command; `power_up` is a new tap."""

    def __init__(
        self, state: CardState, random_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> None:
        self.state = state
        self._random = random_bytes
        self._handlers: dict[int, Callable[[bytes], bytes]] = {
            Ins.AUTHENTICATE_EV2_FIRST: self._authenticate,
            Ins.ADDITIONAL_FRAME: self._additional_frame,
            Ins.GET_VERSION: self._get_version,
            Ins.READ_SIG: self._read_sig,
            Ins.GET_FILE_SETTINGS: self._get_file_settings,
            Ins.CHANGE_FILE_SETTINGS: self._change_file_settings,
            Ins.CHANGE_KEY: self._change_key,
            Ins.GET_KEY_VERSION: self._get_key_version,
            Ins.READ_DATA: self._read_data,
            Ins.WRITE_DATA: self._write_data,
            Ins.GET_FILE_COUNTERS: self._get_file_counters,
        }
        self.power_up()

    def power_up(self) -> None:
        """Field on: nothing selected, no session, the next read of the NDEF file a new tap."""
        self._leave_application()
        self._tap: _Tap | None = None

    def _leave_application(self) -> None:
        """Back at PICC level: no application or file selected, no session."""
        self._application = False
        self._file: int | None = None  # the EF ISOReadBinary/ISOUpdateBinary work on
        self._session: SecureChannel | None = None
        self._authentication: _Authentication | None = None
        self._frames: list[bytes] = []  # GetVersion frames still to send

    @property
    def authenticated_key(self) -> int | None:
        """The key number of the session, None outside one."""
        return self._session.key_number if self._session else None

    def handle(self, apdu: bytes) -> bytes:
        """The answer APDU to one command APDU."""
        if len(apdu) < 4:
            return _iso_answer(IsoStatus.WRONG_LENGTH)
        if apdu[0] == NATIVE_CLA:
            return self._native(apdu)
        if apdu[0] == ISO_CLA:
            return self._iso(apdu)
        return _iso_answer(IsoStatus.CLA_NOT_SUPPORTED)

    # --- native commands ---------------------------------------------------------------

    def _native(self, apdu: bytes) -> bytes:
        ins = apdu[1]
        if ins != Ins.ADDITIONAL_FRAME:
            self._authentication, self._frames = None, []
        try:
            data = _native_data(apdu)
        except ValueError:
            return self._refuse(Status.LENGTH_ERROR)
        handler = self._handlers.get(ins)
        return handler(data) if handler else self._refuse(Status.ILLEGAL_COMMAND_CODE)

    def _refuse(self, status: Status) -> bytes:
        """An error answer; it ends the session."""
        self._session, self._authentication = None, None
        return native_answer(b"", status)

    def _answer(self, data: bytes, mode: CommMode) -> bytes:
        """A successful answer in `mode`, counted in the session if there is one."""
        if self._session is not None:
            data = self._session.seal(data, mode)
        return native_answer(data, Status.OPERATION_OK)

    def _open(self, ins: int, header: bytes, body: bytes, mode: CommMode) -> bytes | None:
        """A command's data in `mode` (PLAIN outside a session), None when it does not verify."""
        return self._session.open(ins, header, body, mode) if self._session else body

    def _grant(self, *conditions: int, mode: CommMode) -> CommMode | None:
        """The CommMode of a command allowed under one of `conditions`, None if refused."""
        if self._session is not None and self._session.key_number in conditions:
            return mode
        return CommMode.PLAIN if ACCESS_FREE in conditions else None

    def _data_file(self, file_no: int) -> DataFile | None:
        return self.state.files.get(file_no) if self._application else None

    # authentication

    def _authenticate(self, data: bytes) -> bytes:
        if not self._application:
            return self._refuse(Status.PERMISSION_DENIED)
        if len(data) < 2 or len(data) != 2 + data[1]:
            return self._refuse(Status.LENGTH_ERROR)
        if data[0] >= KEY_COUNT:
            return self._refuse(Status.NO_SUCH_KEY)
        self._session = None
        rnd_b = self._random(ntag424.RANDOM_BYTES)
        self._authentication = _Authentication(data[0], rnd_b)
        challenge = ntag424.card_challenge(self.state.keys[data[0]], rnd_b)
        return native_answer(challenge, Status.ADDITIONAL_FRAME)

    def _additional_frame(self, data: bytes) -> bytes:
        if self._authentication is not None:
            return self._finish_authentication(self._authentication, data)
        if self._frames:
            frame = self._frames.pop(0)
            return native_answer(
                frame, Status.ADDITIONAL_FRAME if self._frames else Status.OPERATION_OK
            )
        return self._refuse(Status.COMMAND_ABORTED)

    def _finish_authentication(self, pending: _Authentication, proof: bytes) -> bytes:
        self._authentication = None
        if len(proof) != 2 * ntag424.RANDOM_BYTES:
            return self._refuse(Status.LENGTH_ERROR)
        key = self.state.keys[pending.key_number]
        rnd_a = ntag424.card_check_proof(key, pending.rnd_b, proof)
        if rnd_a is None:
            return self._refuse(Status.AUTHENTICATION_ERROR)
        ti = self._random(ntag424.TI_BYTES)
        keys = ntag424.session_keys(key, rnd_a, pending.rnd_b)
        self._session = SecureChannel(keys, ti, pending.key_number)
        return native_answer(ntag424.card_confirmation(key, ti, rnd_a), Status.OPERATION_OK)

    # chip information

    def _get_version(self, data: bytes) -> bytes:
        if data:
            return self._refuse(Status.LENGTH_ERROR)
        if self._session is not None:
            return self._refuse(Status.PERMISSION_DENIED)
        production = self.state.uid + PRODUCTION_BATCH + PRODUCTION_WEEK_YEAR
        self._frames = [SOFTWARE_VERSION, production]
        return native_answer(HARDWARE_VERSION, Status.ADDITIONAL_FRAME)

    def _read_sig(self, data: bytes) -> bytes:
        if data != b"\x00":
            return self._refuse(Status.PARAMETER_ERROR)
        if self._session is not None:
            return self._refuse(Status.PERMISSION_DENIED)
        return native_answer(self.state.signature, Status.SIGNATURE)

    def _get_key_version(self, data: bytes) -> bytes:
        header, body = data[:1], data[1:]
        if not header or header[0] >= KEY_COUNT:
            return self._refuse(Status.NO_SUCH_KEY)
        mode = CommMode.MAC if self._session else CommMode.PLAIN
        opened = self._open(Ins.GET_KEY_VERSION, header, body, mode)
        if opened is None:
            return self._refuse(Status.INTEGRITY_ERROR)
        if opened:
            return self._refuse(Status.LENGTH_ERROR)
        return self._answer(bytes([self.state.key_versions[header[0]]]), mode)

    # keys and settings

    def _change_key(self, data: bytes) -> bytes:
        header, body = data[:1], data[1:]
        session = self._session
        if session is None or session.key_number != KeyNo.APP_MASTER:
            return self._refuse(Status.PERMISSION_DENIED)
        if not header or header[0] >= KEY_COUNT:
            return self._refuse(Status.NO_SUCH_KEY)
        key_number = header[0]
        plain = session.open(Ins.CHANGE_KEY, header, body, CommMode.FULL)
        current = self.state.keys[key_number]
        changed = plain and ntag424.card_new_key(plain, key_number, session.key_number, current)
        if not changed:
            return self._refuse(Status.INTEGRITY_ERROR)
        self.state.keys[key_number], self.state.key_versions[key_number] = changed
        if key_number == session.key_number:
            self._session = None  # its key is gone: the answer has no MAC
            return native_answer(b"", Status.OPERATION_OK)
        return self._answer(b"", CommMode.MAC)

    def _get_file_settings(self, data: bytes) -> bytes:
        header, body = data[:1], data[1:]
        file = self._data_file(header[0]) if header else None
        if file is None:
            return self._refuse(Status.FILE_NOT_FOUND)
        mode = CommMode.MAC if self._session else CommMode.PLAIN
        opened = self._open(Ins.GET_FILE_SETTINGS, header, body, mode)
        if opened is None:
            return self._refuse(Status.INTEGRITY_ERROR)
        if opened:
            return self._refuse(Status.LENGTH_ERROR)
        return self._answer(file.settings.answer_data(), mode)

    def _change_file_settings(self, data: bytes) -> bytes:
        header, body = data[:1], data[1:]
        file = self._data_file(header[0]) if header else None
        if file is None:
            return self._refuse(Status.FILE_NOT_FOUND)
        mode = self._grant(file.settings.access.change, mode=CommMode.FULL)
        if mode is None:
            return self._refuse(Status.PERMISSION_DENIED)
        plain = self._open(Ins.CHANGE_FILE_SETTINGS, header, body, mode)
        if plain is None:
            return self._refuse(Status.INTEGRITY_ERROR)
        try:
            settings = FileSettings.from_change_data(plain, file.settings.size)
        except ValueError:
            return self._refuse(Status.PARAMETER_ERROR)
        if not _emulated(header[0], settings):
            return self._refuse(Status.PARAMETER_ERROR)
        file.settings = settings
        if settings.sdm is not None:
            # Enabling SDM resets SDMReadCtr (datasheet 9.3.1); the next read counts from it.
            self.state.sdm_read_counter = 0
            self._tap = None
        return self._answer(b"", mode)

    # data

    def _read_data(self, data: bytes) -> bytes:
        header, body = data[:HEADER_BYTES], data[HEADER_BYTES:]
        file = self._data_file(header[0]) if len(header) == HEADER_BYTES else None
        if file is None:
            return self._refuse(Status.FILE_NOT_FOUND)
        access = file.settings.access
        mode = self._grant(access.read, access.read_write, mode=file.settings.comm_mode)
        if mode is None:
            return self._refuse(Status.PERMISSION_DENIED)
        opened = self._open(Ins.READ_DATA, header, body, mode)
        if opened is None:
            return self._refuse(Status.INTEGRITY_ERROR)
        span = _span(file, _u24(header[1:4]), _u24(header[4:7]))
        if opened or span is None:
            return self._refuse(Status.LENGTH_ERROR if opened else Status.BOUNDARY_ERROR)
        return self._answer(self._content(file)[span], mode)

    def _write_data(self, data: bytes) -> bytes:
        header, body = data[:HEADER_BYTES], data[HEADER_BYTES:]
        file = self._data_file(header[0]) if len(header) == HEADER_BYTES else None
        if file is None:
            return self._refuse(Status.FILE_NOT_FOUND)
        access = file.settings.access
        mode = self._grant(access.write, access.read_write, mode=file.settings.comm_mode)
        if mode is None:
            return self._refuse(Status.PERMISSION_DENIED)
        plain = self._open(Ins.WRITE_DATA, header, body, mode)
        if plain is None:
            return self._refuse(Status.INTEGRITY_ERROR)
        length = _u24(header[4:7])
        if length == 0 or len(plain) != length:
            return self._refuse(Status.LENGTH_ERROR)
        span = _span(file, _u24(header[1:4]), length)
        if span is None:
            return self._refuse(Status.BOUNDARY_ERROR)
        file.content[span] = plain
        return self._answer(b"", mode)

    def _get_file_counters(self, data: bytes) -> bytes:
        header, body = data[:1], data[1:]
        file = self._data_file(header[0]) if header else None
        if file is None or file.settings.sdm is None:
            return self._refuse(Status.FILE_NOT_FOUND if file is None else Status.PARAMETER_ERROR)
        mode = self._grant(file.settings.sdm.counter_read, mode=CommMode.FULL)
        if mode is None:
            return self._refuse(Status.PERMISSION_DENIED)
        opened = self._open(Ins.GET_FILE_COUNTERS, header, body, mode)
        if opened is None:
            return self._refuse(Status.INTEGRITY_ERROR)
        if opened:
            return self._refuse(Status.LENGTH_ERROR)
        counter = self.state.sdm_read_counter.to_bytes(COUNTER_BYTES, "little")
        return self._answer(counter + bytes(2), mode)

    # --- SUN ---------------------------------------------------------------------------

    def _content(self, file: DataFile) -> bytes:
        """The file as a reader sees it now: with this tap's SUN mirrored into it."""
        sdm = file.settings.sdm
        if sdm is None:
            return bytes(file.content)
        tap = self._this_tap()
        content = bytearray(file.content)
        uid, keys = self.state.uid, self.state.keys
        if sdm.picc_data_offset is not None:
            picc = ntag424.encrypt_picc_data(
                keys[sdm.meta_read], uid, tap.read_counter, tap.padding
            )
            _put(content, sdm.picc_data_offset, ntag424.mirror_ascii(picc))
        if sdm.mac_offset is not None and sdm.mac_input_offset is not None:
            mac_input = bytes(content[sdm.mac_input_offset : sdm.mac_offset])
            mac = ntag424.sdm_mac(keys[sdm.file_read], uid, tap.read_counter, mac_input)
            _put(content, sdm.mac_offset, ntag424.mirror_ascii(mac))
        return bytes(content)

    def _this_tap(self) -> _Tap:
        """This tap's SUN values; the read counter goes up at the tap's first read."""
        if self._tap is None:
            self.state.sdm_read_counter += 1
            padding = self._random(ntag424.PICC_DATA_PADDING_BYTES)
            self._tap = _Tap(self.state.sdm_read_counter, padding)
        return self._tap

    # --- ISO 7816-4 commands -------------------------------------------------------------

    def _iso(self, apdu: bytes) -> bytes:
        try:
            data, le = _iso_parts(apdu)
        except ValueError:
            return _iso_answer(IsoStatus.WRONG_LENGTH)
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == SELECT:
            return self._select(p1, data)
        if ins == READ_BINARY:
            return self._read_binary(p1, p2, le or READ_BINARY_MAX_BYTES)
        if ins == UPDATE_BINARY:
            return self._update_binary(p1, p2, data)
        return _iso_answer(IsoStatus.INS_NOT_SUPPORTED)

    def _select(self, p1: int, data: bytes) -> bytes:
        if p1 == SELECT_BY_DF_NAME:
            return self._select_application() if data == DF_NAME else self._not_found()
        if p1 not in SELECT_BY_ID or len(data) != 2:
            return _iso_answer(IsoStatus.WRONG_P1_P2)
        file_id = int.from_bytes(data, "big")
        if file_id == MF_ID:
            self._leave_application()
            return _iso_answer(IsoStatus.OK)
        if file_id == DF_ID:
            return self._select_application()
        if file_id not in FILE_IDS or not self._application:
            return self._not_found()
        self._file = FILE_IDS[file_id]
        return _iso_answer(IsoStatus.OK)

    def _select_application(self) -> bytes:
        """Selecting the application ends any session, as on the chip."""
        self._application, self._file = True, None
        self._session, self._authentication = None, None
        return _iso_answer(IsoStatus.OK)

    def _not_found(self) -> bytes:
        return _iso_answer(IsoStatus.FILE_NOT_FOUND)

    def _iso_file(self, p1: int, p2: int) -> tuple[DataFile | None, int]:
        """The file and offset of ISOReadBinary/ISOUpdateBinary; a short file id selects."""
        if p1 & SHORT_FILE_ID:
            file = self._data_file(p1 & 0x1F)
            self._file = p1 & 0x1F if file else self._file
            return file, p2
        file = self._data_file(self._file) if self._file is not None else None
        return file, (p1 << 8 | p2) & 0x7FFF

    def _plain_access(self, file: DataFile, *conditions: int) -> bool:
        """ISO commands have no secure messaging: allowed only where the access is plain."""
        return self._grant(*conditions, mode=file.settings.comm_mode) is CommMode.PLAIN

    def _read_binary(self, p1: int, p2: int, length: int) -> bytes:
        file, offset = self._iso_file(p1, p2)
        if file is None:
            return self._not_found()
        if not self._plain_access(file, file.settings.access.read, file.settings.access.read_write):
            return _iso_answer(IsoStatus.SECURITY_STATUS_NOT_SATISFIED)
        if offset >= file.settings.size:
            return _iso_answer(IsoStatus.WRONG_OFFSET)
        return _iso_answer(IsoStatus.OK, self._content(file)[offset : offset + length])

    def _update_binary(self, p1: int, p2: int, data: bytes) -> bytes:
        file, offset = self._iso_file(p1, p2)
        if file is None:
            return self._not_found()
        access = file.settings.access
        if not self._plain_access(file, access.write, access.read_write):
            return _iso_answer(IsoStatus.SECURITY_STATUS_NOT_SATISFIED)
        if not data or offset + len(data) > file.settings.size:
            return _iso_answer(IsoStatus.WRONG_LENGTH)
        file.content[offset : offset + len(data)] = data
        return _iso_answer(IsoStatus.OK)


def _span(file: DataFile, offset: int, length: int) -> slice | None:
    """The bytes ReadData/WriteData address (length 0: to the end), None outside the file."""
    size = file.settings.size
    end = size if length == 0 else offset + length
    return slice(offset, end) if offset < end <= size else None


def _put(content: bytearray, offset: int, data: bytes) -> None:
    content[offset : offset + len(data)] = data


PICC_DATA_MIRROR_BYTES = 2 * ntag424.BLOCK_BYTES  # hex digits in the file
MAC_MIRROR_BYTES = 2 * ntag424.MAC_BYTES
_NOT_EMULATED = SdmOption.ENC_FILE_DATA | SdmOption.READ_COUNTER_LIMIT


def _emulated(file_no: int, settings: FileSettings) -> bool:
    """Settings the chip takes and the model plays: valid access conditions, and SDM only on
    the NDEF file, with encrypted PICCData and/or SDMMAC mirrored as hex inside the file."""
    access = settings.access
    conditions = [access.read, access.write, access.read_write, access.change]
    sdm = settings.sdm
    if sdm is not None:
        conditions += [sdm.meta_read, sdm.file_read, sdm.counter_read]
    if not all(_valid_condition(c) for c in conditions):
        return False
    return sdm is None or (
        file_no == FileNo.NDEF
        and bool(sdm.options & SdmOption.ASCII)
        and not sdm.options & _NOT_EMULATED
        and _picc_data_emulated(sdm, settings.size)
        and _mac_emulated(sdm, settings.size)
    )


def _picc_data_emulated(sdm: SdmSettings, size: int) -> bool:
    """Encrypted PICCData with UID and counter inside the file, or no mirror at all."""
    mirrors = sdm.options & (SdmOption.UID | SdmOption.READ_COUNTER)
    if sdm.picc_data_offset is None:
        return sdm.meta_read == ACCESS_NEVER and not mirrors
    both = mirrors == SdmOption.UID | SdmOption.READ_COUNTER
    return both and sdm.picc_data_offset + PICC_DATA_MIRROR_BYTES <= size


def _mac_emulated(sdm: SdmSettings, size: int) -> bool:
    """SDMMAC inside the file, over bytes before it; or no MAC."""
    if sdm.mac_offset is None or sdm.mac_input_offset is None:
        return sdm.mac_offset is None
    return sdm.mac_input_offset <= sdm.mac_offset <= size - MAC_MIRROR_BYTES
