"""`hcard-card-emulator`: an NTAG21x card on the far side of nfcpy's `udp:` driver.

    hcard-card-emulator [--port 54321] [--control-port 54322] [--chip NTAG215] IMAGE

Serves the card in IMAGE (a blank, test-signed chip is created there when the
file does not exist) and writes every change back to it atomically. The wire
format is nfcpy's: one ASCII datagram per frame, `106A <hex>`; `RFOFF` means the
reader switched its field off (the tag loses power). Answers go to the address
the frame came from, because nfcpy opens a new socket for every sense; silence
is sending nothing.

nfcpy gives a READ 5 ms, so the loop does nothing but answer: no logging per
frame, the image is saved after the answer is on its way.

A second UDP socket, the control channel (JSON, loopback only), lets tests and
the demo move cards: `present` (another image in the field), `remove`,
`tear` (the card leaves after N more frames, the N+1st executed or not),
`status`. `EmulatorControl` is its client. The emulator runs as its own process:
inside the reader's process the GIL could make it miss nfcpy's 5 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from hcard.i18n import bilingual_help
from hcard.i18n import both as _
from hcard.terminal.card import image as images
from hcard.terminal.card.emulated_tag import EmulatedTag
from hcard.terminal.card.ntag import CHIPS

log = logging.getLogger("hcard.card-emulator")

BRTY = b"106A"
RFOFF = b"RFOFF"
DATAGRAM_MAX_BYTES = 4096


class Emulator:
    def __init__(self, host: str, port: int, control_port: int) -> None:
        self.frames = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.frames.bind((host, port))
        self.control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.control.bind(("127.0.0.1", control_port))
        self.tag: EmulatedTag | None = None
        self.image_path: Path | None = None
        self.frame_count = 0  # frames (commands) since the card was presented
        self.tear_at: int | None = None  # frame count after which the card leaves
        self.tear_commit = False
        self.running = True

    @property
    def port(self) -> int:
        return self.frames.getsockname()[1]

    @property
    def control_port(self) -> int:
        return self.control.getsockname()[1]

    # --- cards -----------------------------------------------------------------

    def present(self, path: Path, chip_name: str = "NTAG215") -> EmulatedTag:
        """Put the card of image `path` in the field (a blank one if the file is new)."""
        self.remove()
        if path.exists():
            card = images.load(path)
        else:
            card = images.blank(CHIPS[chip_name])
            images.save(card, path)
        self.tag, self.image_path = EmulatedTag(card), path
        self.frame_count, self.tear_at = 0, None
        return self.tag

    def remove(self) -> None:
        self._save()
        self.tag = None
        self.tear_at = None

    def _save(self) -> None:
        if self.tag is not None and self.tag.dirty and self.image_path is not None:
            images.save(self.tag.image, self.image_path)
            self.tag.dirty = False

    # --- the hot path --------------------------------------------------------------

    def on_frame(self, data: bytes, addr: tuple[str, int]) -> None:
        tag = self.tag
        if tag is None:
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
        self.frame_count += 1
        if self.tear_at is not None and self.frame_count > self.tear_at:
            if self.tear_commit:
                tag.handle(command)  # done on the chip, the answer never arrives
            self.remove()
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
        return {
            "ok": True,
            "present": self.tag is not None,
            "image": str(self.image_path) if self.image_path else None,
            "uid": self.tag.image.uid.hex() if self.tag else None,
            "chip": self.tag.image.chip.name if self.tag else None,
            "frames": self.frame_count,
        }

    def serve(self) -> None:
        sockets = [self.frames, self.control]
        while self.running:
            try:
                ready, _writable, _failed = select.select(sockets, [], [], 0.5)
            except InterruptedError:
                continue
            if self.frames in ready:
                self.on_frame(*self.frames.recvfrom(DATAGRAM_MAX_BYTES))
            if self.control in ready:
                self.on_control(*self.control.recvfrom(DATAGRAM_MAX_BYTES))
        self.remove()
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
    a reader unplugged and back.
    """

    def __init__(
        self,
        workdir: Path,
        port: int = 0,
        control_port: int = 0,
        log_path: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.workdir = workdir
        self.start_timeout_s = start_timeout_s
        self.port = port
        self.control_port = control_port
        self.log_path = log_path  # the emulator's log (stderr); None: discarded
        self.process: subprocess.Popen[str] | None = None
        self.control = EmulatorControl(0, timeout_s=start_timeout_s)
        self.start()

    @property
    def reader_path(self) -> str:
        return f"udp:127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "hcard.terminal.card.emulator", "--absent"]
        command += ["--port", str(self.port), "--control-port", str(self.control_port)]
        log = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                [*command, str(self.workdir / "blank.json")],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL if log is None else log,
                text=True,
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
        self.port, self.control_port = ports["port"], ports["control_port"]
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
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hcard-card-emulator",
        description=_("NTAG215 card emulator for nfcpy's udp: driver."),
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
        "--chip",
        choices=sorted(CHIPS),
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
        emulator = Emulator(args.host, args.port, control_port)
    except OSError as error:
        print(_("port in use") + f": {error}", file=sys.stderr)
        return 2
    try:
        tag = emulator.present(args.image, args.chip)
    except (ValueError, KeyError, OSError) as error:
        print(_("image unreadable") + f": {args.image}: {error}", file=sys.stderr)
        return 2
    log.info(
        "%s UID %s on udp:%s:%d (control %d)",
        tag.image.chip.name,
        tag.image.uid.hex(),
        args.host,
        emulator.port,
        emulator.control_port,
    )
    if args.absent:
        emulator.remove()
    signal.signal(signal.SIGTERM, _stop)
    # One line on stdout when ready: how a parent process learns the ports.
    print(json.dumps({"port": emulator.port, "control_port": emulator.control_port}), flush=True)
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
