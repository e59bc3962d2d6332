"""`make demo` (python -m hcard.provisioning.demo) on this machine: server, card emulator with
demo cards issued through the provisioning path, the Kivy till enrolled with its code, under
Xvfb; the scripted walk-through pays online, offline and syncs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

TIMEOUT_S = 240


def _demo(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "hcard.provisioning.demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            "0",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        check=False,
    )


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


def test_the_menu_answers_and_quits(tmp_path: Path):
    done = _demo(tmp_path, stdin="b\n1\nr\no\nb\no\nb\nq\n")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Karte 1 liegt auf / card 1 on the reader" in out
    assert "Server aus: die Kasse zahlt offline" in out
    assert "? (Server aus / server off)" in out
    assert "Server an / server on" in out
    assert out.count("50,00\xa0€") == 3  # at the start, by `b`, by `b` after the restart
