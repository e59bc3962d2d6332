"""Static checks of the deployment: shellcheck on every shell script, `systemd-analyze verify`
on every unit, and the properties the units promise (hardening, no network wait for the till).
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.camt import statement

from hcard.server.settings import SettlementSettings

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted(p for p in (ROOT / "systemd").iterdir() if p.suffix in {".service", ".timer"})
SKIP_DIRS = {".git", ".venv", "build", "node_modules", ".demo", "hattingen_card.egg-info"}


def _shell_scripts() -> list[Path]:
    """Every file in the repository that is a shell script, by suffix or by shebang."""
    found = []
    for path in ROOT.rglob("*"):
        if not path.is_file() or SKIP_DIRS & set(path.relative_to(ROOT).parts):
            continue
        if path.suffix == ".sh":
            found.append(path)
            continue
        with path.open("rb") as handle:
            head = handle.readline(64)
        if head.startswith(b"#!") and any(s in head for s in (b"sh\n", b"bash", b"/sh ")):
            found.append(path)
    return sorted(found)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; `make test` installs it (tests/setup)")
    return path


def test_the_install_scripts_are_found():
    names = {p.name for p in _shell_scripts()}
    assert {"install-terminal.sh", "install-server.sh", "lib.sh", "hcard-kiosk"} <= names


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path):
    done = subprocess.run(
        [_need("shellcheck"), "--external-sources", "--severity=style", str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _exec_paths(unit: Path) -> set[str]:
    """The programs a unit starts (first word of each Exec*= line)."""
    paths = set()
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec") and value:
            paths.add(value.lstrip("-@:+!").split()[0])
    return paths


def test_systemd_analyze_verify(tmp_path: Path):
    """Every unit passes `systemd-analyze verify`. The programs they start live on the target
    machine, not here, so each one that is missing here is replaced by a stub at a path
    inside tmp_path; nothing else in the units is changed."""
    analyze = _need("systemd-analyze")
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    for unit in UNITS:
        text = unit.read_text()
        for program in _exec_paths(unit):
            if Path(program).exists():
                continue
            stub = tmp_path / "stubs" / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
            text = text.replace(program, str(stub))
        (units_dir / unit.name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in units_dir.iterdir())],
        capture_output=True,
        text=True,
        check=False,
    )
    # Warnings about the host's own units (this container's) are not ours.
    ours = [line for line in done.stderr.splitlines() if "hcard" in line]
    assert done.returncode == 0, done.stderr
    assert not ours, done.stderr


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(
        "\n".join(
            line
            for line in (ROOT / "systemd" / name).read_text().splitlines()
            # systemd allows repeated keys (SystemCallFilter=, After=); keep the first.
            if not line.startswith(("SystemCallFilter=~", "After=getty"))
        )
    )
    return parser


@pytest.mark.parametrize(
    "name",
    [
        "hcard-server.service",
        "hcard-server-backup.service",
        "hcard-server-float-check.service",
        "hcard-till.service",
    ],
)
def test_services_are_hardened(name: str):
    service = _unit(name)["Service"]
    assert service["User"].startswith("hcard")
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["StateDirectory"]
    assert service["CapabilityBoundingSet"] == ""


def test_till_restarts_and_never_waits_for_the_network():
    unit = _unit("hcard-till.service")
    text = (ROOT / "systemd" / "hcard-till.service").read_text()
    assert unit["Service"]["Restart"] == "on-failure"
    assert "network-online" not in text
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert unit["Unit"]["Conflicts"] == "getty@tty1.service"


def test_server_listens_on_loopback_only():
    exec_start = _unit("hcard-server.service")["Service"]["ExecStart"]
    assert "--host 127.0.0.1" in exec_start
    caddy = (ROOT / "provisioning" / "install" / "Caddyfile").read_text()
    assert "reverse_proxy 127.0.0.1:8080" in caddy


def test_backup_timer_catches_up_after_downtime():
    timer = _unit("hcard-server-backup.timer")["Timer"]
    assert timer["Persistent"] == "true"
    assert timer["OnCalendar"]


def _next_elapses(calendar: str) -> list[dt.datetime]:
    """When `OnCalendar=calendar` fires next, twice, by systemd's own reading of it."""
    done = subprocess.run(
        [_need("systemd-analyze"), "calendar", "--iterations=2", calendar],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )
    found = re.findall(
        r"(?:Next elapse|Iter\. #2): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", done.stdout
    )
    return [dt.datetime.fromisoformat(when) for when in found]


def test_float_check_runs_every_day_and_a_difference_fails_its_unit(tmp_path: Path):
    """Issue 10: the float check, daily. Its timer fires once a day and catches a missed
    morning up; the service runs `hcard-server settle float-check` as a oneshot whose exit
    status counts (no `-` prefix, no SuccessExitStatus=), so a difference (exit 1) fails the
    unit and shows in `systemctl --failed`. The unit's own command line, run here on a fresh
    database with the environment server.env gives it: exit 1 with no bank statement yet,
    exit 0 once a statement that matches the ledger is imported."""
    timer = _unit("hcard-server-float-check.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    first, second = _next_elapses(timer["Timer"]["OnCalendar"])
    assert second - first == dt.timedelta(days=1)
    service = _unit("hcard-server-float-check.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"] == "/etc/hcard-server/server.env"
    assert "SuccessExitStatus" not in service
    exec_start = service["ExecStart"]
    assert exec_start == "/opt/hcard-server/venv/bin/hcard-server settle float-check"

    venv = Path(sys.executable).parent
    argv = [str(venv / Path(exec_start.split()[0]).name), *exec_start.split()[1:]]
    env = {**os.environ, "HCARD_DATA_DIR": str(tmp_path)}
    env.pop("HCARD_DATABASE_URL", None)
    subprocess.run(
        [str(venv / "hcard-server"), "init", "--admin-user", "buero"],
        env={**env, "HCARD_ADMIN_PASSWORD": "float-check-test"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    failed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    report = json.loads(failed.stdout)
    assert [d["name"] for d in report["differences"]] == ["no_statement"]
    camt = tmp_path / "camt053.xml"
    camt.write_bytes(statement(SettlementSettings().operator_iban, [], closing_cents=0))
    subprocess.run(
        [str(venv / "hcard-server"), "settle", "import", str(camt), "--user", "buero"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    passed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert json.loads(passed.stdout)["ok"]


def test_caddy_site_is_valid_as_installed(tmp_path: Path):
    """The example site, with the domain install-server.sh puts in, through `caddy validate`
    (which loads and provisions the config without serving). Caddy is not installed by the
    test set-up: its Debian package starts a web server on port 80 where systemd runs."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy not installed (apt-get install caddy to run this check)")
    site = (ROOT / "provisioning" / "install" / "Caddyfile").read_text()
    assert "\nkarte.example.org {\n" in site  # what install-server.sh replaces
    site = site.replace("\nkarte.example.org {\n", "\nkarte.hattingen.de {\n")
    site = site.replace("/var/log/caddy/", f"{tmp_path}/")
    (tmp_path / "hcard.caddy").write_text(site)
    (tmp_path / "Caddyfile").write_text(f"import {tmp_path}/hcard.caddy\n")
    done = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")],
        capture_output=True,
        text=True,
        check=False,
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr


def _our_commands() -> list[list[str]]:
    """Every command line the units and the kiosk session run from our venvs."""
    lines = []
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.startswith("Exec") and "/venv/bin/" in value:
                lines.append(value)
    kiosk = (ROOT / "provisioning" / "install" / "hcard-kiosk").read_text()
    lines += [line.removeprefix("exec ") for line in kiosk.splitlines() if "/venv/bin/" in line]
    return [line.split() for line in lines]


@pytest.mark.parametrize("argv", _our_commands(), ids=lambda argv: " ".join(argv[:3]))
def test_the_commands_in_units_exist_with_these_options(argv: list[str]):
    """The units name commands and options of other parts (server CLI, till app): each
    option must still be in the command's own help, so a rename cannot break a deployment
    silently. The venv path on the target is this checkout's .venv here."""
    program = Path(sys.executable).parent / Path(argv[0]).name
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("--")), len(argv))
    done = subprocess.run(
        [str(program), *argv[1:first_option], "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for option in (arg for arg in argv[first_option:] if arg.startswith("--")):
        assert option in done.stdout, f"{option} is not an option of {' '.join(argv[:3])}"


@pytest.mark.parametrize(
    ("script", "command", "options"),
    [
        (
            "install-server.sh",
            ["hcard-server", "init"],
            ["--admin-user", "--card-secret-file", "--sun-secret-file"],
        ),
        ("install-terminal.sh", ["hcard-terminal"], ["--state", "--reader"]),
        (
            "install-terminal.sh",
            ["hcard-terminal", "enrol"],
            ["--server", "--code", "--name", "--card-secret-file"],
        ),
    ],
)
def test_the_commands_the_installers_run_have_these_options(script, command, options):
    text = (ROOT / "provisioning" / "install" / script).read_text()
    for option in options:
        assert f"{option} " in text, f"{script} no longer uses {option}"
    program = Path(sys.executable).parent / command[0]
    done = subprocess.run(
        [str(program), *command[1:], "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for option in options:
        assert option in done.stdout, f"{option} is not an option of {' '.join(command)}"


@pytest.mark.parametrize(
    ("script", "shown"),
    [
        ("install-server.sh", ["--card-secret-file FILE", "--sun-secret-file FILE"]),
        ("install-terminal.sh", ["--reader SPEC", "pcsc:", "pcsc:NAME", "pcscd", "pyscard"]),
    ],
)
def test_the_installers_help_lists_their_options(script: str, shown: list[str]):
    """`--help` needs neither root nor a target: it is the first place an operator looks."""
    done = subprocess.run(
        ["bash", str(ROOT / "provisioning" / "install" / script), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    for text in shown:
        assert text in done.stdout, text


def test_a_second_init_for_the_sun_secret_changes_nothing_else(tmp_path: Path):
    """install-server.sh pipes each secret into its own run of `hcard-server init` (init reads
    one secret from standard input at most). What it relies on, with the server's own code:
    the second run, for the SUN secret, leaves database rows, issuer key, admin and card
    write secret as they are; a third run changes nothing at all."""
    venv = Path(sys.executable).parent
    env = {
        **os.environ,
        "HCARD_DATA_DIR": str(tmp_path),
        "HCARD_ADMIN_PASSWORD": "kw7-Lauf2-aendert-nix",
    }
    env.pop("HCARD_DATABASE_URL", None)

    def init(option: str | None, secret: str) -> None:
        subprocess.run(
            [str(venv / "hcard-server"), "init", "--admin-user", "anna"]
            + ([option, "-"] if option else []),
            input=secret,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )

    def state() -> dict[str, object]:
        with sqlite3.connect(tmp_path / "hcard.db") as db:
            tables = [
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            rows = {
                table: db.execute(f'SELECT * FROM "{table}"').fetchall()
                for table in tables
                if not table.startswith("sqlite_")
            }
        files = {
            path.name: path.read_bytes()
            for path in tmp_path.iterdir()
            if path.suffix in {".key", ".hex"}
        }
        return {"rows": rows, "files": files}

    init("--card-secret-file", "ab" * 16)
    first = state()
    assert "anna" in repr(first["rows"])
    assert {"issuer.key", "card-write-secret.hex"} <= set(first["files"])  # type: ignore[arg-type]
    init("--sun-secret-file", "5e" * 16)
    second = state()
    assert second["rows"] == first["rows"]
    files = dict(second["files"])  # type: ignore[call-overload]
    assert files.pop("card-sun-secret.hex") == ("5e" * 16 + "\n").encode()
    assert files == first["files"]
    assert (tmp_path / "card-sun-secret.hex").stat().st_mode & 0o777 == 0o600
    init(None, "")
    assert state() == second
