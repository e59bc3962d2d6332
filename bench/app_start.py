"""Till app start-up: time to the ready screen and resident memory, against a bare Kivy window.

Under Xvfb (software OpenGL) a bare Kivy window alone costs well over 100 MB,
so the figure that says what the till adds is the difference, measured in the
same run on the same display: `rss_over_bare_mb`. The app runs as a till runs:
an enrolled terminal (real server on loopback, real journal, sync agent, the
card emulator as its reader), `python -m hcard.terminal.app` at 800x480.

"Ready" is the first frame after the app started (its `on_start` plus one
clock tick), the same point the bare window reports; time runs from process
spawn, so Python and Kivy import time are included. RSS is read from /proc one
second after ready. Median of `--runs` runs each, after one warm-up run.
Targets: `ready_s` ≤ 2, `rss_over_bare_mb` ≤ 60.

    .venv/bin/python bench/app_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from hcard.terminal import config as terminal_config
from hcard.terminal.app.headless import virtual_display
from hcard.terminal.card.emulator import EmulatorProcess
from hcard.terminal.card.originality import TEST_PUBLIC_KEY_HEX

SIZE = "800x480"
SETTLE_S = 1.0
ADMIN_PASSWORD = "bench-admin-password"

BARE_WINDOW = """from kivy.config import Config
Config.set("graphics", "width", "800")
Config.set("graphics", "height", "480")
from kivy.app import App
from kivy.clock import Clock
from kivy.uix.label import Label

class Bare(App):
    def build(self):
        return Label(text="0,00 €", font_size=76)
    def on_start(self):
        Clock.schedule_once(lambda _dt: print("ready", flush=True))

Bare().run()
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    cli = [sys.executable, "-m", "hcard.server.cli"]
    common = ["--data-dir", str(data_dir), "--database-url", f"sqlite:///{data_dir / 'h.db'}"]
    env = {**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    subprocess.run([*cli, "init", *common], env=env, check=True, capture_output=True)
    ready = data_dir / "port"
    with (data_dir / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [*cli, "serve", *common, "--port", "0", "--ready-file", str(ready)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip():
            url = f"http://127.0.0.1:{ready.read_text().strip()}"
            try:
                requests.get(f"{url}/v1/health", timeout=5).raise_for_status()
                return server, url
            except requests.RequestException:
                pass
        time.sleep(0.05)
    stop(server)
    raise RuntimeError("server did not start")


def enrol(url: str, state_dir: Path, reader_path: str) -> None:
    staff = requests.Session()
    login = staff.post(
        f"{url}/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    login.raise_for_status()
    staff.headers["Authorization"] = f"Bearer {login.json()['token']}"
    merchant = staff.post(
        f"{url}/v1/merchants",
        json={"name": "Bench-Café", "iban": "DE89370400440532013000"},
        timeout=30,
    )
    merchant.raise_for_status()
    terminal = staff.post(
        f"{url}/v1/merchants/{merchant.json()['id']}/terminals", json={"name": "Kasse"}, timeout=30
    )
    terminal.raise_for_status()
    terminal_config.enrol(
        terminal_config.TerminalState(state_dir),
        url,
        terminal.json()["code"],
        reader=reader_path,
        originality_key=TEST_PUBLIC_KEY_HEX,
    )


def measure_bare(env: dict[str, str], script: Path) -> tuple[float, float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # Kivy may print its own lines first
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError("bare window did not start")
        ready_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        return ready_s, rss_mb(process.pid)
    finally:
        stop(process)


def app_ready(control: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(control))
            sock.sendall(b'{"op": "state"}\n')
            answer = sock.makefile("rb").readline()
    except OSError:
        return False
    return bool(answer) and json.loads(answer)["result"].get("ready", False)


def measure_app(env: dict[str, str], state_dir: Path, control: Path) -> tuple[float, float]:
    control.unlink(missing_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "hcard.terminal.app", "--state-dir", str(state_dir), "--size", SIZE],
        env={**env, "HCARD_APP_CONTROL": str(control)},
    )
    try:
        while not app_ready(control):
            if process.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError("app did not start")
            time.sleep(0.01)
        ready_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        return ready_s, rss_mb(process.pid)
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcard-bench-app-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "server").mkdir()
        server, url = start_server(tmp / "server")
        emulator = EmulatorProcess(tmp)
        try:
            state_dir = tmp / "terminal"
            enrol(url, state_dir, emulator.reader_path)
            with virtual_display() as display:
                env = {
                    **os.environ,
                    "DISPLAY": display,
                    "KIVY_NO_ARGS": "1",
                    "KIVY_NO_CONSOLELOG": "1",
                    "KIVY_HOME": str(tmp / "kivy"),
                    "SDL_AUDIODRIVER": "dummy",
                }
                control = tmp / "control.sock"
                script = tmp / "bare_window.py"  # a file: Kivy's App looks up its source
                script.write_text(BARE_WINDOW)
                measure_bare(env, script)  # warm-up: caches, Kivy's first-run config
                measure_app(env, state_dir, control)
                bare, app = [], []
                for _ in range(args.runs):
                    bare.append(measure_bare(env, script))
                    app.append(measure_app(env, state_dir, control))
        finally:
            emulator.stop()
            stop(server)

    def median(runs: list[tuple[float, float]], index: int) -> float:
        return statistics.median(run[index] for run in runs)

    for name, runs in (("bare", bare), ("app", app)):
        for ready_s, rss in runs:
            print(f"{name}: ready {ready_s:.3f} s, rss {rss:.1f} MB")
    result = {
        "ready_s": round(median(app, 0), 3),
        "rss_mb": round(median(app, 1), 1),
        "bare_ready_s": round(median(bare, 0), 3),
        "bare_rss_mb": round(median(bare, 1), 1),
    }
    result["rss_over_bare_mb"] = round(result["rss_mb"] - result["bare_rss_mb"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
