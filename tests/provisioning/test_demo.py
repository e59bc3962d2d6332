"""`make demo` (python -m hcard.provisioning.demo) on this machine: server, card emulator with
demo cards issued through the provisioning path, the Kivy till enrolled with its code, under
Xvfb; the scripted walk-through pays online, offline and syncs. And what keeps two demos apart:
the demo folder is held for a demo's lifetime, and the port a demo just left is free again."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hcard.provisioning import demo
from hcard.provisioning.staff import StaffClient

TIMEOUT_S = 240
BUSY = "Eine andere Demo läuft schon"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def _demo_command(folder: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hcard.provisioning.demo",
        "--dir",
        str(folder),
        "--port",
        "0",
        *args,
    ]


def _demo(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        _demo_command(tmp_path / "demo", *args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=_env(),
        check=False,
    )


def _server_demo(cwd: Path) -> subprocess.Popen[str]:
    """`hcard-server demo` in `cwd`: its throwaway server under cwd/.demo/server."""
    return subprocess.Popen(
        [sys.executable, "-m", "hcard.server.cli", "demo", "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never came: {''.join(seen)}")


@pytest.mark.gui
def test_scripted_walk_through_pays_online_offline_and_syncs(tmp_path: Path):
    done = _demo(tmp_path, "--script")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "1. Zahlung / payment: Bezahlt" in out
    assert "2. Offline: Bezahlt" in out
    assert "Offline: wird später übertragen" in out
    assert "3. Sync: alles übertragen" in out
    # 50,00 − 12,50 and 20,00 − 8,00, booked on the server after the sync.
    assert "37,50\xa0€" in out
    assert "12,00\xa0€" in out
    shots = tmp_path / "demo" / "screenshots"
    for name in ("0-start", "1-payment", "2-offline", "3-synced"):
        png = shots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # The till was enrolled through the real path: its own key, 0600, in its state folder.
    key = tmp_path / "demo" / "terminal" / "terminal.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "demo" / "cards" / "print.csv").read_text().count("\n") == 4


@pytest.mark.gui
def test_the_menu_answers_and_quits_and_the_running_demo_is_left_alone(tmp_path: Path):
    """The interactive demo, as `make demo` runs it. While it runs: the merchant login it
    printed works, and neither the README's `--script` nor `hcard-server demo` (both in the
    same .demo folder) may delete what it is using."""
    folder = tmp_path / ".demo"
    process = subprocess.Popen(
        _demo_command(folder),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        start = _read_until(process, "Befehle / commands:")
        assert "eiscafe / eiscafe-demo" in start, start
        url = re.search(r"Server: +(http://127\.0\.0\.1:\d+)/docs", start)
        assert url, start
        merchant = StaffClient(url.group(1))
        merchant.login("eiscafe", "eiscafe-demo")
        assert merchant.request("GET", "/v1/me")["role"] == "merchant"
        assert [m["name"] for m in merchant.merchants()] == ["Eiscafé am Untermarkt"]

        in_use = [folder / "app.sock", folder / "server" / "hcard.db", folder / "cards"]
        assert all(path.exists() for path in in_use)
        script = subprocess.run(
            _demo_command(folder, "--script"),
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
            check=False,
        )
        assert script.returncode != 0
        assert BUSY in script.stderr
        assert "Another demo is running" in script.stderr
        server_demo = _server_demo(tmp_path)
        assert server_demo.wait(timeout=60) != 0
        assert server_demo.stdout is not None
        assert BUSY in server_demo.stdout.read()
        assert all(path.exists() for path in in_use)

        out, _ = process.communicate("b\n1\nr\no\nb\no\nb\nq\n", timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, start + out
    assert "Karte 1 liegt auf / card 1 on the reader" in out
    assert "Server aus: die Kasse zahlt offline" in out
    assert "? (Server aus / server off)" in out
    assert "Server an / server on" in out
    assert (start + out).count("50,00\xa0€") == 3  # at the start, by `b`, by `b` after restart


def test_a_running_server_demo_holds_the_demo_folder(tmp_path: Path):
    """`hcard-server demo` serves from .demo/server; `make demo`'s start (which empties
    .demo) and a second `hcard-server demo` are refused while it runs, and leave it alone."""
    first = _server_demo(tmp_path)
    try:
        start = _read_until(first, "hcard-server: http://")
        assert "eiscafe / eiscafe-demo" in start
        database = tmp_path / ".demo" / "server" / "hcard.db"
        assert database.exists()

        make_demo = subprocess.run(
            _demo_command(tmp_path / ".demo", "--script"),
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
            check=False,
        )
        assert make_demo.returncode != 0
        assert BUSY in make_demo.stderr, make_demo.stderr
        second = _server_demo(tmp_path)
        assert second.wait(timeout=60) != 0
        assert second.stdout is not None
        message = second.stdout.read()
        assert BUSY in message
        assert "Another demo is running" in message
        assert database.exists()
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=30)


def _time_wait_port() -> int:
    """A loopback port whose last connection waits in TIME-WAIT, its listener gone: what
    the demo server leaves behind for a minute after `q`."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as `hcard-server serve`
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first, so its end goes to TIME-WAIT
        client.recv(1)
        client.close()
    time.sleep(0.1)
    # The port really is not clean: a plain bind fails.
    with socket.socket() as plain, pytest.raises(OSError, match="in use"):
        plain.bind(("127.0.0.1", port))
    return port


def test_a_port_left_in_time_wait_is_free_a_listening_one_is_taken():
    assert demo._port_free(_time_wait_port())
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not demo._port_free(listener.getsockname()[1])
