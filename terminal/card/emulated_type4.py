"""An NTAG 424 DNA as nfcpy's `udp:` driver sees it: an ISO 14443-4 (Type 4A) tag, frame by frame.

Around `ntag424_model.Ntag424` (the chip: one APDU in, one answer out) this plays the
transport a real reader talks to, as far as nfcpy 1.0.4 (`nfc/tag/tt4.py`) and our PC/SC side
use it:

- ISO 14443-3 activation with the 7-byte UID: REQA/WUPA → ATQA `44 03`, two cascade levels,
  SAK `04` (UID not complete) then `20` (ISO 14443-4 compliant: nfcpy takes it for Type 4A);
  HLTA before RATS halts the tag until WUPA.
- RATS (`E0 <FSDI CID>`) → the ATS `06 77 77 81 02 80`: FSCI 7 (the tag takes frames of 128
  bytes), FWI 8 and SFGI 1, CID supported, one historical byte 80. The real chip says FWI 7
  (4096·2⁷/13.56 MHz ≈ 39 ms); FWI 8 (≈ 77 ms) lets nfcpy wait long enough for an emulator on
  a loaded machine. nfcpy retries a late answer with R(NAK), and the answer that was only late
  would then be read by the next command (a "block number" protocol error), so a generous
  FWT is what keeps the tap going. It only costs time when the card is gone: nfcpy gives up
  after six waits, about half a second.
- ISO-DEP (ISO 14443-4 §7.5): I-blocks with the block number the standard's PICC rules give
  (starts at 1, toggled by every I-block received and by an R(ACK) that continues chaining),
  chaining both ways (the reader's long commands are collected and acknowledged; answers
  longer than the reader's FSD − 3 go out in pieces, each sent on the reader's R(ACK)),
  R(ACK)/R(NAK) with the current block number → the last block again, R(NAK) with the other
  number (nfcpy's presence check) → R(ACK), S(DESELECT) → echoed, then HALT. A CID is echoed
  when the reader sends one; invalid blocks get silence.

`power_up()` is the field coming on (nfcpy's `RFOFF` datagram and a new sense): IDLE, and the
chip starts a new tap (no session, the next NDEF read counts). A new RATS does the same, so
DESELECT + WUPA is a new tap too, and so is REQA/WUPA in the middle of ISO-DEP: a chip in a
real field ignores them there, but over udp they mean a new reader whose predecessor never
switched the field off (killed), which must still find the card.

`apdu()` is the chip's answer without any framing, for the PC/SC side (`vpcd`), and tracks
whether the persistent state changed (`dirty`), so the emulator saves the image after the
answer is on its way (udp) or before it (vpcd).

nfcpy gives RATS 30 ms: `handle` does nothing per frame but answer (no logging).
"""

from __future__ import annotations

from enum import Enum

from hcard.terminal.card.ntag424_model import CardState, Ntag424

ATQA = bytes.fromhex("4403")  # double-size UID, bit frame anticollision (NXP's for the 424)
SAK_CASCADE = 0x04
SAK_ISO14443_4 = 0x20
REQA, WUPA = b"\x26", b"\x52"
HLTA = b"\x50\x00"
CASCADE_TAG = 0x88
SELECT_CL1, SELECT_CL2 = 0x93, 0x95
NVB_ANTICOLLISION, NVB_SELECT = 0x20, 0x70
RATS = 0xE0
# TL, T0 (TA, TB, TC present; FSCI 7 = 128 bytes), TA (bit rates), TB (FWI 8, SFGI 1),
# TC (CID supported), historical bytes: 80.
ATS = bytes.fromhex("067777810280")
FSD_BYTES = (16, 24, 32, 40, 48, 64, 96, 128, 256)  # by FSDI (RFU values: 256)
FRAME_OVERHEAD_BYTES = 3  # PCB and the two CRC bytes (not on nfcpy's udp wire, but counted)

# Protocol control bytes (ISO 14443-4 §7.1.1.1)
PCB_BLOCK_NUMBER = 0x01
PCB_NAD = 0x04
PCB_CID = 0x08
PCB_CHAINING = 0x10
PCB_NAK = 0x10  # in an R-block
I_BLOCK, I_BLOCK_MASK = 0x02, 0xE2
R_BLOCK, R_BLOCK_MASK = 0xA2, 0xE6
S_BLOCK, S_BLOCK_MASK = 0xC2, 0xC7
S_DESELECT = 0xC2
S_KIND_MASK = 0x30  # 00 DESELECT, 11 WTX


class State(Enum):
    IDLE = "idle"
    READY1 = "ready1"  # cascade level 1
    READY2 = "ready2"  # cascade level 2
    ACTIVE = "active"  # selected (ISO 14443-3), waiting for RATS
    PROTOCOL = "protocol"  # ISO 14443-4: blocks
    HALT = "halt"


def _bcc(data: bytes) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check


def _fingerprint(state: CardState) -> tuple[object, ...]:
    """What the chip keeps without power, to tell whether a command changed it."""
    files = tuple((n, f.settings, bytes(f.content)) for n, f in sorted(state.files.items()))
    return (state.sdm_read_counter, tuple(state.keys), tuple(state.key_versions), files)


class EmulatedType4:
    """The NTAG 424 DNA in a reader's field: `handle` answers one frame, `apdu` one APDU."""

    def __init__(self, state: CardState) -> None:
        self.image = state
        self.chip = Ntag424(state)
        self.dirty = False  # the state changed since the image was last saved
        uid = state.uid
        self._cl1 = bytes([CASCADE_TAG]) + uid[0:3]
        self._cl1 += bytes([_bcc(self._cl1)])
        self._cl2 = uid[3:7] + bytes([_bcc(uid[3:7])])
        self.power_up()

    @property
    def uid(self) -> bytes:
        return self.image.uid

    # --- power and activation --------------------------------------------------------

    def power_up(self) -> None:
        """Field on: IDLE, and the chip starts a new tap."""
        self.state = State.IDLE
        self.chip.power_up()
        self._reset_protocol()

    def _reset_protocol(self) -> None:
        self._block_number = 1  # the PICC's current block number (rule C)
        self._max_answer_bytes = FSD_BYTES[-1] - FRAME_OVERHEAD_BYTES
        self._command = bytearray()  # chained command parts received so far
        self._pending = b""  # answer parts still to send (response chaining)
        self._last_block = b""  # for retransmission on R(ACK)/R(NAK) with our number

    def handle(self, frame: bytes) -> bytes | None:
        """The answer to one reader frame, or None for silence."""
        if not frame:
            return None
        state = self.state
        if frame == WUPA or (frame == REQA and state is not State.HALT):
            if state is State.PROTOCOL:  # a new reader without RFOFF (its process killed):
                self.power_up()  # take it as a new tap; no PCB is 26 or 52
            self.state = State.READY1
            return ATQA
        if state is State.PROTOCOL:
            return self._block(frame)
        if state is State.READY1:
            return self._select(frame, SELECT_CL1, self._cl1, SAK_CASCADE, State.READY2)
        if state is State.READY2:
            return self._select(frame, SELECT_CL2, self._cl2, SAK_ISO14443_4, State.ACTIVE)
        if state is State.ACTIVE:
            return self._rats(frame)
        return None  # IDLE or HALT: only REQA/WUPA wake the tag

    def _select(
        self, frame: bytes, level: int, cascade: bytes, sak: int, next_state: State
    ) -> bytes | None:
        if frame == bytes([level, NVB_ANTICOLLISION]):
            return cascade
        if frame == bytes([level, NVB_SELECT]) + cascade:
            self.state = next_state
            return bytes([sak])
        self.state = State.IDLE
        return None

    def _rats(self, frame: bytes) -> bytes | None:
        if frame == HLTA:
            self.state = State.HALT
            return None
        if len(frame) != 2 or frame[0] != RATS:
            self.state = State.IDLE
            return None
        self.chip.power_up()  # a new ISO-DEP activation: a new tap
        self._reset_protocol()
        self._max_answer_bytes = FSD_BYTES[min(frame[1] >> 4, 8)] - FRAME_OVERHEAD_BYTES
        self.state = State.PROTOCOL
        return ATS

    # --- ISO-DEP blocks ----------------------------------------------------------------

    def _block(self, frame: bytes) -> bytes | None:
        pcb = frame[0]
        prologue = 2 if pcb & PCB_CID else 1
        if len(frame) < prologue:
            return None
        cid = frame[1:2] if pcb & PCB_CID else b""
        if pcb & I_BLOCK_MASK == I_BLOCK and not pcb & PCB_NAD:
            return self._i_block(pcb, cid, frame[prologue:])
        if pcb & R_BLOCK_MASK == R_BLOCK and len(frame) == prologue:
            return self._r_block(pcb, cid)
        if pcb & S_BLOCK_MASK == S_BLOCK and pcb & S_KIND_MASK == 0 and len(frame) == prologue:
            self.state = State.HALT  # S(DESELECT): answered, then halted
            return bytes([S_DESELECT | (pcb & PCB_CID)]) + cid
        return None  # invalid block (or NAD, WTX from the reader): ignored

    def _send(self, block: bytes) -> bytes:
        self._last_block = block
        return block

    def _i_block(self, pcb: int, cid: bytes, information: bytes) -> bytes:
        self._block_number ^= 1  # rule D: every I-block received toggles it
        self._pending = b""
        self._command += information
        if pcb & PCB_CHAINING:  # more to come: acknowledge this part
            return self._send(bytes([R_BLOCK | (pcb & PCB_CID) | self._block_number]) + cid)
        command, self._command = bytes(self._command), bytearray()
        self._pending = self.apdu(command)
        return self._next_part(pcb & PCB_CID, cid)

    def _next_part(self, cid_bit: int, cid: bytes) -> bytes:
        room = self._max_answer_bytes - len(cid)
        part, self._pending = self._pending[:room], self._pending[room:]
        chaining = PCB_CHAINING if self._pending else 0
        return self._send(bytes([I_BLOCK | chaining | cid_bit | self._block_number]) + cid + part)

    def _r_block(self, pcb: int, cid: bytes) -> bytes | None:
        ours = pcb & PCB_BLOCK_NUMBER == self._block_number
        if ours:  # rule 11: the last block again
            return self._last_block or None
        if pcb & PCB_NAK:  # rule 12: R(NAK) with the other number (presence check)
            return bytes([R_BLOCK | (pcb & PCB_CID) | self._block_number]) + cid
        if self._pending:  # rule 13: the reader wants the next part of a chained answer
            self._block_number ^= 1
            return self._next_part(pcb & PCB_CID, cid)
        return None

    # --- the chip ------------------------------------------------------------------------

    def apdu(self, command: bytes) -> bytes:
        """The chip's answer APDU; `dirty` when the command changed what it keeps."""
        before = _fingerprint(self.image)
        answer = self.chip.handle(command)
        if not self.dirty and _fingerprint(self.image) != before:
            self.dirty = True
        return answer
