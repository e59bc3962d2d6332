"""`make demo` (`PYTHONPATH=tests python -m demo`, tests/demo/) on this machine: server, card
emulator with demo cards issued through the provisioning path, the Kivy till enrolled with its
code, under Xvfb; the scripted walk-through pays online, offline and syncs; `--server-only` is
the throwaway server alone. What keeps two demos apart: the demo folder is held for a demo's
lifetime, and the port a demo just left is free again. And that the demo, with its fixed
passwords, is no part of the installed package or of `hcard-server`."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import demo
import pytest
import requests
import sepaxml
import xmlschema
from demo import month as demo_month
from fixtures.web import PageClient

from hcard.provisioning.staff import StaffClient
from hcard.server import cli as server_cli

pytestmark = pytest.mark.slow  # minutes on one worker: started first (conftest.py)

TESTS = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240
BUSY = "Eine andere Demo läuft schon"
PAIN_001_001_09 = f"{sepaxml.__path__[0]}/schemas/pain.001.001.09.xsd"


def _env() -> dict[str, str]:
    """No display (the demo starts its own Xvfb), `tests/` on the path as `make demo` sets it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(TESTS)
    return env


def _demo_command(folder: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "demo",
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


def _server_demo(folder: Path) -> subprocess.Popen[str]:
    """`--server-only`: the throwaway server alone, under folder/server."""
    return subprocess.Popen(
        _demo_command(folder, "--server-only"),
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
    assert "4. NTAG 424 DNA: Bezahlt" in out
    # 50,00 − 12,50 and 20,00 − 8,00, booked on the server after the sync; 5,00 − 2,00 online
    # with the NTAG 424 DNA.
    assert "37,50\xa0€" in out
    assert "12,00\xa0€" in out
    assert "3,00\xa0€" in out
    shots = tmp_path / "demo" / "screenshots"
    for name in ("0-start", "1-payment", "2-offline", "3-synced", "4-ntag424"):
        png = shots / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # The till was enrolled through the real path: its own key, 0600, in its state folder.
    key = tmp_path / "demo" / "terminal" / "terminal.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "demo" / "cards" / "print.csv").read_text().count("\n") == 4


@pytest.mark.gui
def test_the_menu_answers_and_quits_and_the_running_demo_is_left_alone(tmp_path: Path):
    """The interactive demo, as `make demo` runs it. While it runs: the merchant login it
    printed works, and neither the README's `--script` nor `--server-only` (both in the
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
        assert "eiscafe / kugel-und-waffel" in start, start
        url = re.search(r"Server: +(http://127\.0\.0\.1:\d+)/openapi\.json", start)
        assert url, start
        merchant = StaffClient(url.group(1))
        merchant.login("eiscafe", "kugel-und-waffel")
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
        server_demo = _server_demo(folder)
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


def test_the_server_only_demo_serves_the_demo_data_and_holds_the_demo_folder(tmp_path: Path):
    """`--server-only` (what `hcard-server demo` was) serves from .demo/server with the
    logins it prints, the merchant, a working enrolment code and three funded cards;
    `make demo`'s start (which empties .demo) and a second `--server-only` are refused while
    it runs, and leave it alone."""
    first = _server_demo(tmp_path / ".demo")
    try:
        start = _read_until(first, "läuft bis Strg-C / running until Ctrl-C")
        assert "eiscafe / kugel-und-waffel" in start
        assert "admin / hattingen-demo" in start
        url = re.search(r"Server: +(http://127\.0\.0\.1:\d+)/openapi\.json", start)
        assert url, start
        assert re.search(r"enrolment code: [A-Z0-9]{4}-[A-Z0-9]{4}  \(Kasse 1\)", start), start
        for amount in ("50,00", "20,00", "5,00"):
            assert f" {amount}\xa0€" in start, start
        staff = StaffClient(url.group(1))
        staff.login("admin", "hattingen-demo")
        [shop] = [m for m in staff.merchants() if m["name"] == "Eiscafé am Untermarkt"]
        # "Kasse 1" waits for the till with the printed code; last month's till is enrolled
        terminals = {t["name"]: t["status"] for t in staff.terminals(int(shop["id"]))}
        assert terminals["Kasse 1"] == "pending"
        merchant = StaffClient(url.group(1))
        merchant.login("eiscafe", "kugel-und-waffel")
        assert merchant.request("GET", "/v1/me")["role"] == "merchant"
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
        second = _server_demo(tmp_path / ".demo")
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


def test_the_demo_seeds_last_month_and_settles_it(tmp_path: Path):
    """Issues 10 and 11: a newcomer finds the month before settled, in the office's pages and
    the merchant portal, and can cancel it to close it again step by step. Several merchants
    with their holder and structured address, cards and a month of payments, voids and till
    top-ups, booked in the previous calendar month: the run has a transfer for each merchant
    and a bank file that validates; the printed command cancels it, and the month settles
    again."""
    first, _last = demo_month.previous_month(dt.datetime.now(demo_month.LOCAL).date())
    month = f"{first:%Y-%m}"
    server = _server_demo(tmp_path / ".demo")
    try:
        start = _read_until(server, "läuft bis Strg-C / running until Ctrl-C")
        seeded = re.search(
            r"last month (\d{4}-\d\d): (\d+) Händler / merchants, (\d+) Zahlungen / payments, "
            r"(\d+) Stornos / voids, (\d+) Aufladungen",
            start,
        )
        assert seeded, start
        assert seeded.group(1) == month
        merchants, payments, voids, topups = (int(seeded.group(i)) for i in range(2, 6))
        assert merchants >= 4
        assert payments >= 60
        assert voids >= 1
        assert topups >= 1
        office = re.search(r"Büro / office: +(http://127\.0\.0\.1:\d+)/office/ ", start)
        assert office, start
        url = office.group(1)
        assert f"{url}/portal/" in start
        assert "buero / stadtmarketing-demo" in start
        settled = re.search(r"settled: \S+/office/settlement/runs/(\d+)", start)
        assert settled, start
        staff = StaffClient(url)
        staff.login("admin", "hattingen-demo")
        [run] = staff.request("GET", "/v1/settlement/runs")
        assert run["run_id"] == int(settled.group(1))
        run = staff.request("GET", f"/v1/settlement/runs/{run['run_id']}")
        lines = run["lines"]
        assert len(lines) == merchants
        assert all(line["outcome"] == "transfer" for line in lines)  # none held back
        assert all(line["payments_cents"] > 0 for line in lines)
        assert sum(line["voids_cents"] > 0 for line in lines) >= 1
        assert sum(line["topups_cents"] > 0 for line in lines) >= 1
        # the merchant portal shows the statement; the acceptance list the listed shops
        eiscafe = PageClient(url)
        eiscafe.login("eiscafe", "kugel-und-waffel")
        assert f"/portal/statements/{run['run_id']}.pdf" in eiscafe.get("/portal/statements").text
        places = requests.get(f"{url}/v1/acceptance-points", timeout=30).json()["acceptance_points"]
        assert {"Eiscafé am Untermarkt", "Bäckerei Schulte"} <= {p["name"] for p in places}
        # the printed command cancels the run; the month settles again, and its bank file is
        # valid pain.001.001.09 with every holder's structured address
        command = re.search(r"^ +(\S*hcard-server settle cancel .*)$", start, re.MULTILINE)
        assert command, start
        cancelled = subprocess.run(
            shlex.split(command.group(1)), capture_output=True, text=True, timeout=120, check=False
        )
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        again = staff.request("POST", "/v1/settlement/runs", {"month": month})
        assert again["transfers"] == merchants
        assert again["files"] == [1]
        xml = requests.get(
            f"{url}/v1/settlement/runs/{again['run_id']}/files/1",
            headers={"Authorization": f"Bearer {staff.token}"},
            timeout=30,
        )
        assert xml.status_code == 200, xml.text
        xmlschema.XMLSchema(PAIN_001_001_09).validate(xml.text)
        ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
        creditors = ET.fromstring(xml.content).findall(".//p:CdtTrfTxInf/p:Cdtr", ns)
        names = {c.findtext("p:Nm", namespaces=ns) for c in creditors}
        assert {"Eiscafe am Untermarkt GmbH", "Baeckerei Schulte GbR"} <= names
        for creditor in creditors:
            address = creditor.find("p:PstlAdr", ns)
            assert address is not None
            assert address.findtext("p:TwnNm", namespaces=ns) == "Hattingen"
            assert address.findtext("p:StrtNm", namespaces=ns)
        assert staff.request("GET", "/v1/ledger/check")["ok"]
    finally:
        server.terminate()
        server.wait(timeout=30)


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
    assert demo.port_free(_time_wait_port())
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not demo.port_free(listener.getsockname()[1])


def test_the_demo_is_not_installed_and_the_server_has_no_demo_command(capsys):
    """Fixed demo passwords must not land on a production server or an office PC."""
    assert importlib.util.find_spec("hcard.provisioning.demo") is None
    assert Path(demo.__file__).resolve().is_relative_to(TESTS)
    with pytest.raises(SystemExit) as refused:
        server_cli.main(["demo"])
    assert refused.value.code == 2
    assert "invalid choice: 'demo'" in capsys.readouterr().err
