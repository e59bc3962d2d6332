"""`hcard-card-emulator`: an NTAG21x or NTAG 424 DNA card behind nfcpy's `udp:` driver or PC/SC.

    hcard-card-emulator [--port 54321] [--control-port 54322] [--chip NTAG215] IMAGE
    hcard-card-emulator --vpcd 127.0.0.1:35963 [--control-port N] [--chip NTAG424DNA] IMAGE

Serves the card in IMAGE (a blank, test-signed chip is created there when the
file does not exist; `--chip` says which) and writes every change back to it
atomically. The image's format says the chip (`image.load`): an NTAG21x plays
`EmulatedTag`, an NTAG 424 DNA `EmulatedType4` (a Type 4A tag).

Two ways to reach a reader:
- udp (default): nfcpy's wire format, one ASCII datagram per frame, `106A <hex>`;
  `RFOFF` means the reader switched its field off (the tag loses power). Answers
  go to the address the frame came from, because nfcpy opens a new socket for
  every sense; silence is sending nothing.
- vpcd (`--vpcd HOST:PORT`, `--vpcd-port N` for 127.0.0.1): a card in the field is
  a TCP connection to vsmartcard's virtual reader in pcscd, closed when the card
  leaves; the reader's APDUs arrive there (`hcard.terminal.card.vpcd` has the
  protocol and the PC/SC byte conventions). When pcscd goes away the card stays
  "in the field" and the connection is made again once vpcd listens.

nfcpy gives a READ 5 ms, so the loop does nothing but answer: no logging per
frame, the image is saved after the answer is on its way.

A second UDP socket, the control channel (JSON, loopback only), lets tests and
the demo move cards: `present` (another image in the field), `remove`,
`tear` (the card leaves after N more commands, the N+1st executed or not; a
command is a frame on udp, an APDU on vpcd), `status`, `quit`. `EmulatorControl`
is its client. The emulator runs as its own process: inside the reader's process
the GIL could make it miss nfcpy's 5 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hcard.i18n import bilingual_help
from hcard.i18n import both as _
from hcard.terminal.card import image as images
from hcard.terminal.card import vpcd
from hcard.terminal.card.emulated_tag import EmulatedTag
from hcard.terminal.card.emulated_type4 import EmulatedType4
from hcard.terminal.card.ntag import CHIPS
from hcard.terminal.card.ntag424_model import CardState

log = logging.getLogger("hcard.card-emulator")

BRTY = b"106A"
RFOFF = b"RFOFF"
DATAGRAM_MAX_BYTES = 4096
CHIP_NAMES = (*sorted(CHIPS), images.CHIP_424)
RECONNECT_S = 0.2  # vpcd mode: how often a card in the field tries to reach vpcd again
# vpcd mode: a card put down again waits this long after the last one left. pcscd polls vpcd
# every 0.4 s; when vpcd dropped the old card outside a poll (a reader's command to it failed)
# and the new one were there by the next poll, pcscd would see no change, keep the slot
# "absent" and never power the new card up. One poll in between shows the slot empty.
VPCD_REMOVAL_GAP_S = 0.6
SELECT_S = 0.5
# Set by EmulatorProcess: the emulator's stdin is a pipe from its parent, and its end (the
# parent died, even by kill -9) ends the emulator. An orphan would keep its card on a vpcd
# slot, where the next test's card waits behind it.
PARENT_PIPE_ENV = "HCARD_EMULATOR_PARENT_PIPE"

Tag = EmulatedTag | EmulatedType4


def _has_service_name(port: int) -> bool:
    try:
        socket.getservbyport(port)
    except OSError:
        return False
    return True


def _frame_socket(host: str, port: int) -> socket.socket:
    """The UDP socket nfcpy's driver sends frames to. For port 0 a free port without a name
    in /etc/services: nfcpy 1.0.4 turns the port of `udp:host:port` into a service name
    (getnameinfo without NI_NUMERICSERV) and then fails on int('fido') for port 60179."""
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        if port or not _has_service_name(sock.getsockname()[1]):
            return sock
        sock.close()


class Emulator:
    """The card emulator: its sockets, the card in the field, the tear counter.

    `vpcd_address` None: frames from nfcpy's udp driver on `host:port`; otherwise the
    card goes to vpcd at that (host, port) and no frame socket is opened.
    """

    def __init__(
        self,
        host: str,
        port: int,
        control_port: int,
        vpcd_address: tuple[str, int] | None = None,
    ) -> None:
        self.vpcd_address = vpcd_address
        self.frames: socket.socket | None = None
        if vpcd_address is None:
            self.frames = _frame_socket(host, port)
        self.control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.control.bind(("127.0.0.1", control_port))
        self.tag: Tag | None = None
        self.image_path: Path | None = None
        self.link: vpcd.VpcdConnection | None = None  # vpcd mode: the card on the reader
        self.card: vpcd.StorageCard | vpcd.IsoDepCard | None = None  # vpcd mode: its adapter
        self.next_connect_s = 0.0
        self.removed_s = -VPCD_REMOVAL_GAP_S  # vpcd mode: when the last card left (monotonic)
        self.frame_count = 0  # commands since the card was presented (frames or APDUs)
        self.tear_at: int | None = None  # command count after which the card leaves
        self.tear_commit = False
        self.running = True
        self.parent_pipe: int | None = None  # a file descriptor whose end means "quit"

    @property
    def port(self) -> int | None:
        return self.frames.getsockname()[1] if self.frames else None

    @property
    def control_port(self) -> int:
        return self.control.getsockname()[1]

    # --- cards -----------------------------------------------------------------

    def present(self, path: Path, chip_name: str = "NTAG215") -> Tag:
        """Put the card of image `path` in the field (a blank `chip_name` if the file is new)."""
        self.remove()
        if path.exists():
            card = images.load(path)
        else:
            card = (
                images.blank424()
                if chip_name == images.CHIP_424
                else images.blank(CHIPS[chip_name])
            )
            images.save(card, path)
        tag: Tag = EmulatedType4(card) if isinstance(card, CardState) else EmulatedTag(card)
        self.tag, self.image_path = tag, path
        self.frame_count, self.tear_at = 0, None
        if self.vpcd_address is not None:
            self.card = vpcd.card_for(tag)
            self.next_connect_s = self.removed_s + VPCD_REMOVAL_GAP_S
            if time.monotonic() >= self.next_connect_s:
                self._connect()
        return tag

    def remove(self) -> None:
        self._save()
        self._disconnect()
        self.tag, self.card = None, None
        self.tear_at = None

    def _save(self) -> None:
        if self.tag is not None and self.tag.dirty and self.image_path is not None:
            images.save(self.tag.image, self.image_path)
            self.tag.dirty = False

    # --- vpcd ----------------------------------------------------------------------

    def _connect(self) -> None:
        """Put the card on vpcd's reader; when vpcd does not listen, try again later."""
        assert self.vpcd_address is not None
        try:
            self.link = vpcd.VpcdConnection.open(*self.vpcd_address)
        except OSError:
            self.link = None
            self.next_connect_s = time.monotonic() + RECONNECT_S
            return
        if self.card is not None:
            self.card.power_up()  # a new tap until vpcd powers it up itself

    def _disconnect(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None
            self.removed_s = time.monotonic()

    def on_vpcd(self) -> None:
        link, card = self.link, self.card
        assert link is not None
        assert card is not None
        messages = link.receive()
        if messages is None:
            self._lost()
            return
        for message in messages:
            if self.link is not link:
                return  # torn off or lost at an earlier message
            if len(message) == 1:
                answer = vpcd.control_answer(card, message[0])
                if answer is not None:
                    self._send(link, answer)
            elif message:
                self.on_apdu(link, card, message)

    def _lost(self) -> None:
        """vpcd closed the connection (pcscd went away): the card stays in the field and
        goes back on the reader once vpcd listens again."""
        self._disconnect()
        self.next_connect_s = time.monotonic() + RECONNECT_S

    def _send(self, link: vpcd.VpcdConnection, payload: bytes) -> None:
        try:
            link.send(payload)
        except OSError:
            self._lost()

    def on_apdu(
        self, link: vpcd.VpcdConnection, card: vpcd.StorageCard | vpcd.IsoDepCard, apdu: bytes
    ) -> None:
        tag = self.tag
        assert tag is not None
        if vpcd.reader_answers(apdu):
            self._send(link, card.transmit(apdu))
            return
        if self._torn(lambda: card.transmit(apdu)):
            return
        answer = card.transmit(apdu)
        if tag.dirty:
            self._save()  # before the answer: no timing to keep here, and what a reader saw
        self._send(link, answer)  # done is on disk

    def _torn(self, execute: Callable[[], object]) -> bool:
        """Count one command (a frame on udp, an APDU on vpcd); past the tear point the card
        leaves instead of answering, after `execute` with `commit` (done on the chip, the
        answer never arrives). The one tearing rule of both stacks."""
        self.frame_count += 1
        if self.tear_at is None or self.frame_count <= self.tear_at:
            return False
        if self.tear_commit:
            execute()
        self.remove()
        return True

    # --- the hot path (udp) --------------------------------------------------------

    def on_frame(self, data: bytes, addr: tuple[str, int]) -> None:
        tag = self.tag
        if tag is None or self.frames is None:
            return  # no card in the field: silence
        if data.startswith(RFOFF):
            tag.power_up()  # the field went off: next time the tag starts from scratch
            self._save()
            return
        parts = data.split()
        if len(parts) != 2 or parts[0] != BRTY:
            return
        try:
            command = bytes.fromhex(parts[1].decode("ascii"))
        except ValueError:
            return
        if self._torn(lambda: tag.handle(command)):
            return
        answer = tag.handle(command)
        if answer:
            self.frames.sendto(BRTY + b" " + answer.hex().encode("ascii"), addr)
        if tag.dirty:
            self._save()

    # --- control channel -----------------------------------------------------------

    def on_control(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self.control_command(json.loads(data))
        except (ValueError, KeyError, TypeError, OSError) as error:
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        self.control.sendto(json.dumps(reply).encode(), addr)

    def control_command(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "present":
            self.present(Path(request["image"]), request.get("chip", "NTAG215"))
        elif op == "remove":
            self.remove()
        elif op == "tear":
            after = int(request["after"])
            if after < 0:
                raise ValueError("after must be >= 0")
            self.tear_at = self.frame_count + after
            self.tear_commit = bool(request.get("commit", False))
        elif op == "quit":
            self.running = False
        elif op != "status":
            raise ValueError(f"unknown op {op!r}")
        return self.status()

    def status(self) -> dict[str, Any]:
        """`frames` counts commands: frames on udp, APDUs on vpcd. `connected`: vpcd mode, the
        card is on vpcd's reader (False while pcscd is away); udp mode: a card is present."""
        tag = self.tag
        return {
            "ok": True,
            "mode": "udp" if self.vpcd_address is None else "vpcd",
            "present": tag is not None,
            "connected": tag is not None and (self.vpcd_address is None or self.link is not None),
            "image": str(self.image_path) if self.image_path else None,
            "uid": tag.image.uid.hex() if tag else None,
            "chip": images.chip_name(tag.image) if tag else None,
            "frames": self.frame_count,
        }

    def serve(self) -> None:
        while self.running:
            sockets: list[Any] = [self.control]
            if self.frames is not None:
                sockets.append(self.frames)
            if self.link is not None:
                sockets.append(self.link)
            if self.parent_pipe is not None:
                sockets.append(self.parent_pipe)
            waiting = self.tag is not None and self.vpcd_address is not None and not self.link
            timeout_s = SELECT_S
            if waiting:
                timeout_s = min(SELECT_S, max(0.0, self.next_connect_s - time.monotonic()))
            try:
                ready, _writable, _failed = select.select(sockets, [], [], timeout_s)
            except InterruptedError:
                continue
            if self.frames is not None and self.frames in ready:
                self.on_frame(*self.frames.recvfrom(DATAGRAM_MAX_BYTES))
            if self.link is not None and self.link in ready:
                self.on_vpcd()
            if self.control in ready:
                self.on_control(*self.control.recvfrom(DATAGRAM_MAX_BYTES))
            if self.parent_pipe is not None and self.parent_pipe in ready:
                self.running = bool(os.read(self.parent_pipe, DATAGRAM_MAX_BYTES))
            if (
                self.tag is not None
                and self.vpcd_address is not None
                and self.link is None
                and time.monotonic() >= self.next_connect_s
            ):
                self._connect()
        self.remove()
        if self.frames is not None:
            self.frames.close()
        self.control.close()


class EmulatorControl:
    """Client of the control channel, for tests, benchmarks and the demo."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> None:
        self.address = (host, port)
        self.timeout_s = timeout_s

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout_s)
            sock.sendto(json.dumps({"op": op, **args}).encode(), self.address)
            reply = json.loads(sock.recv(DATAGRAM_MAX_BYTES))
        if not reply.get("ok"):
            raise RuntimeError(f"card emulator refused {op}: {reply.get('error')}")
        return reply

    def present(self, image_path: Path | str, chip: str = "NTAG215") -> dict[str, Any]:
        return self.request("present", image=str(image_path), chip=chip)

    def remove(self) -> dict[str, Any]:
        return self.request("remove")

    def tear(self, after: int, commit: bool = False) -> dict[str, Any]:
        return self.request("tear", after=after, commit=commit)

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def quit(self) -> dict[str, Any]:
        return self.request("quit")


class EmulatorProcess:
    """`hcard-card-emulator` as a child process on loopback (tests, bench, demo).

    Ports 0 pick free ones. Starts with no card in the field; `stop()` then
    `start()` brings it back on the same ports, which to nfcpy's udp driver is
    a reader unplugged and back (behind vpcd: the card taken off and put back).

    `vpcd_port` (e.g. `vpcd.VPCD_PORT + slot`) puts the cards on vsmartcard's
    virtual reader in pcscd instead; `reader_path` is then that reader's
    `pcsc:Virtual PCD 00 0N`.
    """

    def __init__(
        self,
        workdir: Path,
        port: int = 0,
        control_port: int = 0,
        log_path: Path | None = None,
        start_timeout_s: float = 30.0,
        vpcd_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.start_timeout_s = start_timeout_s
        self.port = port
        self.control_port = control_port
        self.vpcd_port = vpcd_port
        self.log_path = log_path  # the emulator's log (stderr); None: discarded
        self.process: subprocess.Popen[str] | None = None
        self.control = EmulatorControl(0, timeout_s=start_timeout_s)
        self.start()

    @property
    def reader_path(self) -> str:
        if self.vpcd_port is not None:
            return "pcsc:" + vpcd.reader_name(self.vpcd_port - vpcd.VPCD_PORT)
        return f"udp:127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "hcard.terminal.card.emulator", "--absent"]
        command += ["--control-port", str(self.control_port)]
        if self.vpcd_port is None:
            command += ["--port", str(self.port)]
        else:
            command += ["--vpcd", f"127.0.0.1:{self.vpcd_port}"]
        log = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                [*command, str(self.workdir / "blank.json")],
                stdin=subprocess.PIPE,  # closed when we end, however: the emulator ends too
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL if log is None else log,
                text=True,
                env={**os.environ, PARENT_PIPE_ENV: "1"},
            )
        finally:
            if log is not None:
                log.close()  # the child has its own copy
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the emulator's "ready" line
        if not line:
            self.process.wait()
            raise RuntimeError(f"card emulator did not start (exit {self.process.returncode})")
        ports = json.loads(line)
        self.control_port = ports["control_port"]
        if self.vpcd_port is None:
            self.port = ports["port"]
        self.control = EmulatorControl(self.control_port, timeout_s=self.start_timeout_s)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.start_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.process = None


def _address(text: str) -> tuple[str, int]:
    """`--vpcd`: HOST:PORT, or PORT on 127.0.0.1 (ValueError: argparse names the option)."""
    host, _colon, port = text.rpartition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(text)
    return host or "127.0.0.1", number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hcard-card-emulator",
        description=_("NTAG21x and NTAG 424 DNA card emulator for nfcpy's udp: driver and PC/SC."),
    )
    parser.add_argument(
        "image",
        type=Path,
        help=_("memory image (JSON; missing: a blank card)"),
    )
    parser.add_argument("--host", default="127.0.0.1", help=_("listen address") + " (127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=54321,
        help=_("UDP port for nfcpy (0: any free one)"),
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=None,
        help=_("control port (port+1; 0: any free one)"),
    )
    parser.add_argument(
        "--vpcd",
        type=_address,
        metavar="HOST:PORT",
        default=None,
        help=_("put the card on vsmartcard's virtual reader in pcscd instead of udp")
        + f" (127.0.0.1:{vpcd.VPCD_PORT})",
    )
    parser.add_argument(
        "--chip",
        choices=CHIP_NAMES,
        default="NTAG215",
        help=_("chip of a new image") + " (NTAG215)",
    )
    parser.add_argument(
        "--absent",
        action="store_true",
        help=_("start with no card in the field"),
    )
    args = bilingual_help(parser).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    control_port = args.control_port
    if control_port is None:
        control_port = args.port + 1 if args.port else 0
    try:
        emulator = Emulator(args.host, args.port, control_port, args.vpcd)
    except OSError as error:
        print(_("port in use") + f": {error}", file=sys.stderr)
        return 2
    try:
        tag = emulator.present(args.image, args.chip)
    except (ValueError, KeyError, OSError) as error:
        print(_("image unreadable") + f": {args.image}: {error}", file=sys.stderr)
        return 2
    where = f"udp:{args.host}:{emulator.port}"
    if args.vpcd is not None:
        where = "vpcd:{}:{}".format(*args.vpcd)
    log.info(
        "%s UID %s on %s (control %d)",
        images.chip_name(tag.image),
        tag.image.uid.hex(),
        where,
        emulator.control_port,
    )
    if args.absent:
        emulator.remove()
    if os.environ.get(PARENT_PIPE_ENV) == "1":
        emulator.parent_pipe = sys.stdin.fileno()
    signal.signal(signal.SIGTERM, _stop)
    # One line on stdout when ready: how a parent process learns the ports.
    ready = {"port": emulator.port, "control_port": emulator.control_port, "vpcd": args.vpcd}
    print(json.dumps(ready), flush=True)
    try:
        emulator.serve()
    except (KeyboardInterrupt, _StopRequestError):
        emulator.remove()  # saves the image
    return 0


class _StopRequestError(Exception):
    """SIGTERM: leave select() at once instead of at its next timeout."""


def _stop(*_: object) -> None:
    raise _StopRequestError


if __name__ == "__main__":
    sys.exit(main())
