"""The till as the Pi's kiosk session starts it: `hcard-terminal app --fullscreen`
(provisioning/install/hcard-kiosk), on a real enrolled terminal under Xvfb."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.app import START_TIMEOUT_S, AppDriver

pytestmark = pytest.mark.gui


def test_kiosk_command_starts_the_till_and_shows_the_reader_before_any_tap(
    app_display, enrolled_terminal, card_emulator, tmp_path
):
    control = tmp_path / "control.sock"
    env = {
        **os.environ,
        "DISPLAY": app_display,
        "KIVY_NO_ARGS": "1",
        "KIVY_HOME": str(tmp_path / "kivy"),
        "SDL_AUDIODRIVER": "dummy",
        "HCARD_APP_CONTROL": str(control),
        "HCARD_TERMINAL_STATE": str(enrolled_terminal.state_dir),
    }
    # The kiosk's line, with this checkout's venv for /opt/hcard/venv; the state folder
    # comes from the environment, as on the Pi (default /var/lib/hcard-terminal).
    kiosk = [str(Path(sys.executable).parent / "hcard-terminal"), "app", "--fullscreen"]
    with (tmp_path / "app.out").open("wb") as out:
        process = subprocess.Popen(kiosk, env=env, stdout=out, stderr=subprocess.STDOUT)
    app = AppDriver(process, control, tmp_path)
    try:
        app.wait(lambda s: s.get("ready"), "the app to be ready", START_TIMEOUT_S)
        # No card has been tapped: the core opened the reader at start.
        state = app.wait(
            lambda s: s["texts"]["status.reader"].startswith("✓"), "the reader in the status bar"
        )
        assert state["screen"] == "amount"
    finally:
        app.stop()
    assert process.returncode == 0, app.log()
