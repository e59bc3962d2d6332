"""The install scripts run into a temporary root (`--root`), twice: the first run writes what a
till or a server needs, the second changes nothing (every file's bytes, mode and mtime stay).

apt and the virtual environment are left out (`--no-apt --no-venv`): they need a Raspberry Pi
OS root and the network; everything else runs for real, including useradd/groupadd
(`--prefix`) and `systemctl --root enable/mask`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "provisioning" / "install"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="useradd --prefix and the installers need root (CI runs as root)"
)


def _fake_root(root: Path) -> Path:
    """A root with the account files of a fresh Raspberry Pi OS and its boot partition."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (etc / "group").write_text("root:x:0:\ntty:x:5:\nvideo:x:44:\nnogroup:x:65534:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\ntty:*::\nvideo:*::\nnogroup:*::\n")
    (etc / "shadow").chmod(0o640)
    (etc / "gshadow").chmod(0o640)
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (boot / "cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=6c586e13-02 rootfstype=ext4 rootwait\n"
    )
    (boot / "config.txt").write_text("[all]\ndtparam=audio=on\ncamera_auto_detect=1\n")
    return root


def _tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """path → (sha256 or link target, mode, mtime_ns) of everything under root."""
    state = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        if path.is_symlink():
            digest = "-> " + os.readlink(path)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = "dir"
        state[str(path.relative_to(root))] = (digest, stat.st_mode, stat.st_mtime_ns)
    return state


def _run(script: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None if path is None else {**os.environ, "PATH": path}
    return subprocess.run(
        ["bash", str(INSTALL / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def _path_without(folder: Path, *missing: str) -> str:
    """A PATH of one folder linking every command of this PATH except `missing`: a machine
    without them (as a Debian container has no systemctl)."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for command in Path(directory).iterdir():
            link = folder / command.name
            if command.name in missing or link.is_symlink() or command.is_dir():
                continue
            if os.access(command, os.X_OK):
                link.symlink_to(command)
    return str(folder)


def test_terminal_install_writes_what_a_till_needs_and_is_idempotent(tmp_path: Path):
    root = _fake_root(tmp_path / "root")
    args = ("--root", str(root), "--no-apt", "--no-venv", "--pn532-uart")
    first = _run("install-terminal.sh", *args, "--server-url", "https://karte.example.org")
    assert first.returncode == 0, first.stderr
    assert "changed" in first.stdout
    before = _tree(root)

    second = _run("install-terminal.sh", *args, "--server-url", "https://karte.example.org")
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert _tree(root) == before

    # The user, in the groups that reach display, input, UART and USB readers.
    passwd = (root / "etc/passwd").read_text()
    assert "hcard:x:" in passwd
    assert ":/var/lib/hcard-terminal:/usr/sbin/nologin" in passwd
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",")
        for line in (root / "etc/group").read_text().splitlines()
    }
    for group in ("video", "input", "render", "dialout", "plugdev"):
        assert "hcard" in groups[group], group
    # The readers and the modules that would steal them.
    rules = (root / "etc/udev/rules.d/60-hcard-nfc.rules").read_text()
    for vendor, product in [("072f", "2200"), ("054c", "06c1"), ("054c", "06c3"), ("04cc", "2533")]:
        line = next(
            r for r in rules.splitlines() if f'"{vendor}", ATTRS{{idProduct}}=="{product}"' in r
        )
        assert 'SUBSYSTEM=="usb"' in line
        assert 'GROUP="plugdev", MODE="0660", TAG+="uaccess"' in line
    blacklist = (root / "etc/modprobe.d/hcard-nfc.conf").read_text().split("\n")
    for module in ("pn533_usb", "pn533", "port100", "nfc"):
        assert f"blacklist {module}" in blacklist
    # UART for the PN532 HAT: enabled, Bluetooth off it, no console on it; the rest kept.
    config = (root / "boot/firmware/config.txt").read_text()
    assert config.startswith("[all]\ndtparam=audio=on\ncamera_auto_detect=1\n")
    assert config.count("enable_uart=1") == 1
    assert "dtoverlay=disable-bt" in config
    cmdline = (root / "boot/firmware/cmdline.txt").read_text()
    assert cmdline == "console=tty1 root=PARTUUID=6c586e13-02 rootfstype=ext4 rootwait\n"
    for unit in ("hciuart.service", "serial-getty@ttyAMA0.service"):
        assert os.readlink(root / "etc/systemd/system" / unit) == "/dev/null"
    # The kiosk: unit installed and enabled, session script executable.
    unit = root / "etc/systemd/system/hcard-till.service"
    assert unit.read_bytes() == (REPO / "systemd/hcard-till.service").read_bytes()
    assert (root / "etc/systemd/system/multi-user.target.wants/hcard-till.service").is_symlink()
    assert os.access(root / "opt/hcard/bin/hcard-kiosk", os.X_OK)
    assert (
        "HCARD_TERMINAL_STATE=/var/lib/hcard-terminal"
        in (root / "etc/hcard/terminal.env").read_text()
    )


def test_terminal_install_keeps_the_operators_settings(tmp_path: Path):
    root = _fake_root(tmp_path / "root")
    args = ("--root", str(root), "--no-apt", "--no-venv")
    assert _run("install-terminal.sh", *args).returncode == 0
    env = root / "etc/hcard/terminal.env"
    env.write_text(env.read_text() + "KIVY_LOG_LEVEL=debug\n")
    # Nothing else was asked for: no UART changes.
    assert "enable_uart" not in (root / "boot/firmware/config.txt").read_text()
    again = _run("install-terminal.sh", *args)
    assert again.returncode == 0, again.stderr
    assert "KIVY_LOG_LEVEL=debug" in env.read_text()
    assert "nothing to do" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server-url", "http://karte.example.org"], "https://"),
        (["--server-url", "http://localhost.example.org"], "https://"),
        (["--reader", "pcsc"], "reader must be"),
        (["--frobnicate"], "unknown option"),
        (["--enrol-code", "ABCD-EFGH"], "needs --server-url"),
        (
            [
                "--enrol-code",
                "ABCD-EFGH",
                "--server-url",
                "https://karte.example.org",
                "--card-secret-file",
                "/nonexistent/secret.hex",
            ],
            "not readable",
        ),
        (["--card-secret-file", "/etc/passwd"], "only with --enrol-code"),
    ],
)
def test_terminal_install_refuses_bad_input_and_touches_nothing(tmp_path, args, message):
    root = _fake_root(tmp_path / "root")
    before = _tree(root)
    done = _run("install-terminal.sh", "--root", str(root), "--no-apt", "--no-venv", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert _tree(root) == before


def test_terminal_install_enrols_without_a_secret_file(tmp_path: Path):
    """The server hands the card write secret out at enrolment, so --enrol-code alone is
    enough; one given with --card-secret-file is accepted too. (A prepared root skips the
    enrolment itself: the till's key pair is made on the till.)"""
    secret = tmp_path / "secret.hex"
    secret.write_text("ab" * 16 + "\n")
    for extra in ([], ["--card-secret-file", str(secret)]):
        root = _fake_root(tmp_path / f"root{len(extra)}")
        args = ("--root", str(root), "--no-apt", "--no-venv", "--enrol-code", "ABCD-EFGH")
        args += ("--server-url", "https://karte.example.org", *extra)
        first = _run("install-terminal.sh", *args)
        assert first.returncode == 0, first.stderr
        assert "enrolment skipped" in first.stdout
        before = _tree(root)
        second = _run("install-terminal.sh", *args)
        assert second.returncode == 0, second.stderr
        assert _tree(root) == before
        assert "ab" * 16 not in first.stdout + second.stdout


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_server_install_takes_the_card_write_secret(tmp_path: Path):
    root = _fake_root(tmp_path / "root")
    secret = _secret_file(tmp_path / "secret.hex", "AB" * 16 + "\n")
    args = ("--root", str(root), "--no-apt", "--no-venv", "--card-secret-file", str(secret))
    first = _run("install-server.sh", *args)
    assert first.returncode == 0, first.stderr
    # A prepared root does not run init: the note says how to bring the secret in later.
    assert "--card-secret-file FILE" in first.stdout
    before = _tree(root)
    second = _run("install-server.sh", *args)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert _tree(root) == before
    assert "AB" * 16 not in first.stdout + second.stdout + first.stderr

    # The same secret already installed (as `hcard-server init` writes it) is fine ...
    installed = root / "var/lib/hcard-server/card-write-secret.hex"
    installed.parent.mkdir(parents=True)
    _secret_file(installed, "ab" * 16 + "\n")
    assert _run("install-server.sh", *args).returncode == 0
    # ... a different one is never replaced: refused before anything changes.
    other = _secret_file(tmp_path / "other.hex", "cd" * 16 + "\n")
    before = _tree(root)
    refused = _run("install-server.sh", *args[:-1], str(other))
    assert refused.returncode == 2
    assert "never replaced" in refused.stderr
    assert "cd" * 16 not in refused.stdout + refused.stderr
    assert _tree(root) == before
    assert installed.read_text() == "ab" * 16 + "\n"


def test_server_install_writes_units_caddy_and_settings_and_is_idempotent(tmp_path: Path):
    root = _fake_root(tmp_path / "root")
    caddyfile = root / "etc/caddy/Caddyfile"
    caddyfile.parent.mkdir(parents=True)
    # What Debian's caddy package ships: replaced by the site import.
    caddyfile.write_text(":80 {\n\troot * /usr/share/caddy\n\tfile_server\n}\n")
    args = ("--root", str(root), "--no-apt", "--no-venv", "--domain", "karte.hattingen.de")
    first = _run("install-server.sh", *args, "--keep", "30")
    assert first.returncode == 0, first.stderr
    before = _tree(root)
    second = _run("install-server.sh", *args, "--keep", "30")
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert _tree(root) == before

    assert "hcard-server:x:" in (root / "etc/passwd").read_text()
    env = root / "etc/hcard-server/server.env"
    assert env.stat().st_mode & 0o777 == 0o600
    settings = env.read_text()
    assert "HCARD_DATABASE_URL=sqlite:////var/lib/hcard-server/hcard.db" in settings
    assert "HCARD_BACKUP_KEEP=30" in settings
    system = root / "etc/systemd/system"
    for unit in (
        "hcard-server.service",
        "hcard-server-backup.service",
        "hcard-server-backup.timer",
        "hcard-server-float-check.service",
        "hcard-server-float-check.timer",
    ):
        assert (system / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    assert (system / "multi-user.target.wants/hcard-server.service").is_symlink()
    for timer in ("hcard-server-backup.timer", "hcard-server-float-check.timer"):
        link = system / "timers.target.wants" / timer
        assert os.readlink(link) == f"/etc/systemd/system/{timer}"
    assert (
        caddyfile.read_text()
        == "# BEGIN hcard site\nimport /etc/caddy/hcard.caddy\n# END hcard site\n"
    )
    site = (root / "etc/caddy/hcard.caddy").read_text()
    assert "\nkarte.hattingen.de {\n" in site
    assert "example.org" not in site


def test_server_install_with_postgresql_and_without_caddy(tmp_path: Path):
    root = _fake_root(tmp_path / "root")
    url = "postgresql+psycopg://hcard:geheim@db.example.org/hcard"
    done = _run(
        "install-server.sh", "--root", str(root), "--no-apt", "--no-venv", "--database-url", url
    )
    assert done.returncode == 0, done.stderr
    assert f"HCARD_DATABASE_URL={url}\n" in (root / "etc/hcard-server/server.env").read_text()
    assert not (root / "etc/caddy").exists()
    assert "geheim" not in done.stdout + done.stderr


def test_server_install_adds_to_an_operators_caddyfile(tmp_path: Path):
    root = _fake_root(tmp_path / "root")
    caddyfile = root / "etc/caddy/Caddyfile"
    caddyfile.parent.mkdir(parents=True)
    own = "shop.example.org {\n\treverse_proxy 127.0.0.1:9000\n}\n"
    caddyfile.write_text(own)
    args = ("--root", str(root), "--no-apt", "--no-venv", "--domain", "karte.hattingen.de")
    assert _run("install-server.sh", *args).returncode == 0
    assert _run("install-server.sh", *args).returncode == 0
    assert caddyfile.read_text() == own + (
        "# BEGIN hcard site\nimport /etc/caddy/hcard.caddy\n# END hcard site\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--domain", "karte example.org"],
        ["--database-url", "mysql://x@y/z"],
        ["--keep", "0"],
        ["--admin", "Robert'); DROP"],
        ["--card-secret-file", "/nonexistent/secret.hex"],
    ],
)
def test_server_install_refuses_bad_input(tmp_path, args):
    root = _fake_root(tmp_path / "root")
    before = _tree(root)
    done = _run("install-server.sh", "--root", str(root), "--no-apt", "--no-venv", *args)
    assert done.returncode == 2, done.stdout
    assert "Fehler / error" in done.stderr
    assert _tree(root) == before


@pytest.mark.parametrize("script", ["install-terminal.sh", "install-server.sh"])
def test_a_machine_without_systemd_is_refused_before_anything_changes(tmp_path, script):
    """It used to write packages, user, venv and units and then stop with `systemctl: command
    not found` (exit 127). Now what the script needs is checked first, and said."""
    root = _fake_root(tmp_path / "root")
    before = _tree(root)
    path = _path_without(tmp_path / "bin", "systemctl")
    done = _run(script, "--root", str(root), "--no-apt", "--no-venv", path=path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "systemctl (Paket systemd)" in done.stderr
    assert "systemctl (package systemd)" in done.stderr
    assert "nichts wurde geändert" in done.stderr
    assert "nothing was changed" in done.stderr
    assert "command not found" not in done.stderr
    assert _tree(root) == before


def _apt_stub(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose `chroot` records what the installer asks of it (nothing counts as
    installed, apt succeeds), and the file it records to."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls"
    (stubs / "chroot").write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >>{calls}\n'
        'case "$2" in dpkg-query) exit 1 ;; esac\n'
        "exit 0\n"
    )
    (stubs / "chroot").chmod(0o755)
    return f"{stubs}{os.pathsep}{os.environ['PATH']}", calls


def test_the_till_asks_apt_for_what_the_rootless_kiosk_needs(tmp_path: Path):
    """X runs without root through a logind session (PAMName=login): that takes pam_systemd
    (libpam-systemd) and the system bus (dbus), which Xorg only recommends, and apt_install
    uses --no-install-recommends. apt runs in the target root through chroot; a stand-in
    chroot records what is asked (nothing counts as installed)."""
    root = _fake_root(tmp_path / "root")
    path, calls = _apt_stub(tmp_path)
    done = _run("install-terminal.sh", "--root", str(root), "--no-venv", path=path)
    assert done.returncode == 0, done.stdout + done.stderr
    install = next(line for line in calls.read_text().splitlines() if " install " in line)
    assert f"{root} env DEBIAN_FRONTEND=noninteractive apt-get install" in install
    assert "--no-install-recommends" in install
    packages = install.split("--no-install-recommends")[1].split()
    for package in (
        "libpam-systemd",  # pam_systemd: the logind session that lets X run without root
        "dbus",  # the system bus logind is reached over
        "xserver-xorg-core",
        "xserver-xorg-input-libinput",
        "xinit",
        "python3-venv",
        "libusb-1.0-0",
    ):
        assert package in packages, (package, packages)


#: what WeasyPrint needs on Debian 12 / Ubuntu 24.04 for the merchants' PDF statements (its
#: documentation's list: Pango, its FreeType backend, HarfBuzz's subsetter), and a font
PDF_PACKAGES = ("libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0", "fonts-dejavu-core")


def test_the_server_asks_apt_for_what_the_pdf_statements_need(tmp_path: Path):
    """Issue 10's statements are PDFs made by WeasyPrint, which loads Pango and HarfBuzz
    at run time (pip cannot install them) and needs a font; apt_install uses
    --no-install-recommends, so each is named. apt runs in the target root through chroot; a
    stand-in chroot records what is asked."""
    root = _fake_root(tmp_path / "root")
    path, calls = _apt_stub(tmp_path)
    done = _run("install-server.sh", "--root", str(root), "--no-venv", path=path)
    assert done.returncode == 0, done.stdout + done.stderr
    install = next(line for line in calls.read_text().splitlines() if " install " in line)
    assert f"{root} env DEBIAN_FRONTEND=noninteractive apt-get install" in install
    assert "--no-install-recommends" in install
    packages = install.split("--no-install-recommends")[1].split()
    for package in ("python3", "python3-venv", "sqlite3", *PDF_PACKAGES):
        assert package in packages, (package, packages)
    assert "caddy" not in packages  # no --domain, no Caddy


def test_the_pdf_packages_are_debians_names():
    """The names as this Debian's apt knows them (a misspelt one would only fail on the
    server, at the first install). Skipped where apt has no package lists (a slim container
    before `apt-get update`)."""
    if shutil.which("apt-cache") is None:
        pytest.skip("no apt-cache here")
    if subprocess.run(["apt-cache", "show", "python3"], capture_output=True).returncode != 0:
        pytest.skip("no apt package lists here (apt-get update)")
    for package in PDF_PACKAGES:
        shown = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", package],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 0, (package, shown.stderr)
        assert f"Package: {package}\n" in shown.stdout
