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
import tomllib
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
        (["--reader", "PCSC:ACR1252"], "reader must be"),
        (["--reader", "pcsc:ACR\n1252"], "control character"),
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


#: Debian 12's pcscd units (/lib/systemd/system), as its package installs them
PCSCD_UNITS = {
    "pcscd.socket": "[Unit]\nDescription=PC/SC Smart Card Daemon Activation Socket\n\n"
    "[Socket]\nListenStream=/run/pcscd/pcscd.comm\nSocketMode=0666\n\n"
    "[Install]\nWantedBy=sockets.target\n",
    "pcscd.service": "[Unit]\nDescription=PC/SC Smart Card Daemon\nRequires=pcscd.socket\n\n"
    "[Service]\nExecStart=/usr/sbin/pcscd --foreground --auto-exit $PCSCD_ARGS\n\n"
    "[Install]\nAlso=pcscd.socket\n",
}


def _with_pcscd(root: Path) -> Path:
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for name, text in PCSCD_UNITS.items():
        (units / name).write_text(text)
    return root


def test_terminal_install_for_a_pcsc_reader(tmp_path: Path):
    """`--reader pcsc:<name part>`: pcscd's socket enabled (socket activation), nfcpy's
    udev rule and module blacklist kept, no polkit rule where pcsc-lite has no polkit
    (Debian 12); the second run changes nothing."""
    root = _with_pcscd(_fake_root(tmp_path / "root"))
    args = ("--root", str(root), "--no-apt", "--no-venv", "--reader", "pcsc:ACR1252")
    first = _run("install-terminal.sh", *args)
    assert first.returncode == 0, first.stderr
    assert "changed: enable pcscd.socket" in first.stdout
    link = root / "etc/systemd/system/sockets.target.wants/pcscd.socket"
    assert os.readlink(link) == "/usr/lib/systemd/system/pcscd.socket"
    assert (root / "etc/udev/rules.d/60-hcard-nfc.rules").is_file()
    assert (root / "etc/modprobe.d/hcard-nfc.conf").is_file()
    assert not (root / "etc/polkit-1").exists()
    # Not enrolled yet: the command to do it later keeps the reader.
    assert "--enrol-code ABCD-EFGH --reader pcsc:ACR1252\n" in first.stdout
    before = _tree(root)
    second = _run("install-terminal.sh", *args)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert _tree(root) == before


def test_terminal_install_lets_the_till_user_at_a_polkit_pcscd(tmp_path: Path):
    """A pcsc-lite built with polkit (its policy file is there) lets only active local
    sessions at pcscd; a rule lets the till's user in whatever its session."""
    root = _with_pcscd(_fake_root(tmp_path / "root"))
    actions = root / "usr/share/polkit-1/actions"
    actions.mkdir(parents=True)
    (actions / "org.debian.pcsc-lite.policy").write_text("<policyconfig/>\n")
    args = ("--root", str(root), "--no-apt", "--no-venv", "--reader", "pcsc:")
    first = _run("install-terminal.sh", *args)
    assert first.returncode == 0, first.stderr
    rule = root / "etc/polkit-1/rules.d/60-hcard-pcsc.rules"
    assert rule.read_bytes() == (INSTALL / "60-hcard-pcsc.rules").read_bytes()
    assert rule.stat().st_mode & 0o777 == 0o644
    text = rule.read_text()
    for action in ("org.debian.pcsc-lite.access_pcsc", "org.debian.pcsc-lite.access_card"):
        assert f'"{action}"' in text
    assert 'subject.user == "hcard"' in text
    before = _tree(root)
    assert "nothing to do" in _run("install-terminal.sh", *args).stdout
    assert _tree(root) == before
    # An nfcpy till gets neither pcscd's socket nor the rule, even where pcscd is.
    usb = _with_pcscd(_fake_root(tmp_path / "usb"))
    shutil.copytree(actions, usb / "usr/share/polkit-1/actions")
    plain = _run("install-terminal.sh", "--root", str(usb), "--no-apt", "--no-venv")
    assert plain.returncode == 0, plain.stderr
    assert not (usb / "etc/polkit-1").exists()
    assert not (usb / "etc/systemd/system/sockets.target.wants").exists()


def test_terminal_install_without_pcscd_says_what_to_install(tmp_path: Path):
    """--no-apt on a root without pcscd: nothing to enable, the note names the packages."""
    root = _fake_root(tmp_path / "root")
    done = _run(
        "install-terminal.sh", "--root", str(root), "--no-apt", "--no-venv", "--reader", "pcsc:"
    )
    assert done.returncode == 0, done.stderr
    assert "pcscd missing: apt-get install pcscd libccid libpcsclite1" in done.stdout
    assert not (root / "etc/systemd/system/sockets.target.wants").exists()


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


def test_server_install_takes_the_sun_secret(tmp_path: Path):
    """--sun-secret-file follows the card write secret's rules: a prepared root notes what to
    run at the first start, the same one installed is fine, a different one is refused before
    anything changes, and the secret itself is never shown."""
    root = _fake_root(tmp_path / "root")
    card = _secret_file(tmp_path / "card.hex", "ab" * 16 + "\n")
    sun = _secret_file(tmp_path / "sun.hex", "5E" * 16 + "\n")
    args = ("--root", str(root), "--no-apt", "--no-venv", "--sun-secret-file", str(sun))
    first = _run("install-server.sh", *args, "--card-secret-file", str(card))
    assert first.returncode == 0, first.stderr
    # Both notes: init takes one secret from standard input, so each gets its own run.
    assert "--card-secret-file FILE" in first.stdout
    assert "--sun-secret-file FILE" in first.stdout
    before = _tree(root)
    second = _run("install-server.sh", *args)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert _tree(root) == before
    shown = first.stdout + first.stderr + second.stdout + second.stderr
    assert "5E" * 16 not in shown
    assert "5e" * 16 not in shown

    # The same secret already installed (as `hcard-server init` writes it) is fine ...
    installed = root / "var/lib/hcard-server/card-sun-secret.hex"
    installed.parent.mkdir(parents=True)
    _secret_file(installed, "5e" * 16 + "\n")
    assert _run("install-server.sh", *args).returncode == 0
    # ... a different one is never replaced: refused before anything changes.
    other = _secret_file(tmp_path / "other.hex", "cd" * 16 + "\n")
    before = _tree(root)
    refused = _run("install-server.sh", *args[:-1], str(other))
    assert refused.returncode == 2
    assert "holds a different SUN secret, it is never replaced" in refused.stderr
    assert "card-sun-secret.hex" in refused.stderr
    assert "cd" * 16 not in refused.stdout + refused.stderr
    assert _tree(root) == before
    assert installed.read_text() == "5e" * 16 + "\n"


def test_server_install_refuses_one_secret_for_both(tmp_path: Path):
    """The SUN secret must not be the card write secret (every till holds that one and could
    then make card links that verify): the same file, the same secret in another file, or the
    one already installed as the other kind, each refused before anything changes."""
    root = _fake_root(tmp_path / "root")
    card = _secret_file(tmp_path / "card.hex", "ab" * 16 + "\n")
    same = _secret_file(tmp_path / "same.hex", "AB " * 16 + "\n")
    base = ("--root", str(root), "--no-apt", "--no-venv")
    for args in (
        ["--card-secret-file", str(card), "--sun-secret-file", str(card)],
        ["--card-secret-file", str(card), "--sun-secret-file", str(same)],
    ):
        before = _tree(root)
        done = _run("install-server.sh", *base, *args)
        assert done.returncode == 2, done.stdout
        assert "each site secret must be its own" in done.stderr
        assert "ab" * 16 not in done.stdout + done.stderr
        assert _tree(root) == before
    data = root / "var/lib/hcard-server"
    data.mkdir(parents=True)
    for installed, option in (
        ("card-write-secret.hex", "--sun-secret-file"),
        ("card-sun-secret.hex", "--card-secret-file"),
    ):
        _secret_file(data / installed, "ab" * 16 + "\n")
        before = _tree(root)
        done = _run("install-server.sh", *base, option, str(same))
        assert done.returncode == 2, done.stdout
        assert "each site secret must be its own" in done.stderr
        assert _tree(root) == before
        (data / installed).unlink()


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
        ["--sun-secret-file", "/nonexistent/secret.hex"],
        ["--sun-secret-file", "/etc/passwd"],  # readable, but no hex secret
        ["--card-secret-file", "/etc/passwd"],
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
    installed, apt and pip succeed), and the file it records to."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls"
    (stubs / "chroot").write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >>{calls}\n'
        'case "$2" in dpkg-query) exit 1 ;; esac\n'
        # `python3 -m venv DIR`: the folder the installer then writes its stamp into
        'case "$2 $3 $4" in "python3 -m venv") mkdir -p "$1$5" ;; esac\n'
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


#: what a PC/SC till needs from Debian: pcscd with the CCID driver and the library pyscard
#: loads, and what pip needs to build pyscard (PyPI has no Linux wheel of it)
PCSC_PACKAGES = (
    "pcscd",
    "libccid",
    "libpcsclite1",
    "gcc",
    "libc6-dev",
    "python3-dev",
    "swig",
    "libpcsclite-dev",
)


def _asked(calls: Path) -> tuple[list[str], str]:
    """The packages apt was asked to install and what pip was asked to install."""
    lines = calls.read_text().splitlines()
    install = next(line for line in lines if " apt-get install " in line)
    pip = next(line for line in lines if "/venv/bin/pip install" in line)
    return install.split("--no-install-recommends")[1].split(), pip.split()[-1]


def test_a_pcsc_till_asks_apt_for_pcscd_and_pip_for_pyscard(tmp_path: Path):
    """Only a PC/SC reader brings pcscd, the CCID driver and pyscard's build (the `pcsc`
    extra); an nfcpy till gets none of them. An enrolled PC/SC till run again without
    --reader keeps them (its reader is in its config.json). apt and pip run in the target
    root through chroot; a stand-in chroot records what is asked."""
    path, calls = _apt_stub(tmp_path)
    cases = [(["--reader", "pcsc:ACR1252"], None), ([], None), ([], "pcsc:OMNIKEY 5022")]
    for number, (args, enrolled) in enumerate(cases):
        root = _fake_root(tmp_path / f"root{number}")
        if enrolled is not None:
            state = root / "var/lib/hcard-terminal"
            state.mkdir(parents=True)
            (state / "config.json").write_text(f'{{\n  "reader": "{enrolled}"\n}}')
        calls.unlink(missing_ok=True)
        done = _run("install-terminal.sh", "--root", str(root), *args, path=path)
        assert done.returncode == 0, done.stdout + done.stderr
        packages, pip = _asked(calls)
        pcsc = bool(args) or enrolled is not None
        for package in PCSC_PACKAGES:
            assert (package in packages) == pcsc, (package, packages)
        assert pip == ("/opt/hcard/src[app,pcsc]" if pcsc else "/opt/hcard/src[app]")
        assert (root / "opt/hcard/src/pyproject.toml").is_file()


def test_the_pcsc_extra_is_pyscard_and_the_till_needs_it_only_for_pcsc():
    """The installer's `pcsc` extra exists and holds pyscard; `terminal` and `app` (every
    till) do without it, the office's `provisioning` keeps it."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert [r.split(">")[0] for r in extras["pcsc"]] == ["pyscard"]
    for extra in ("terminal", "app"):
        assert not any("pyscard" in r or "pcsc" in r for r in extras[extra]), extra
    assert "hattingen-card[terminal,pcsc]" in extras["provisioning"]


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


@pytest.mark.parametrize("packages", [PDF_PACKAGES, PCSC_PACKAGES], ids=["pdf", "pcsc"])
def test_the_packages_are_debians_names(packages: tuple[str, ...]):
    """The names as this Debian's apt knows them (a misspelt one would only fail on the
    server or the till, at the first install). Skipped where apt has no package lists (a slim
    container before `apt-get update`)."""
    if shutil.which("apt-cache") is None:
        pytest.skip("no apt-cache here")
    if subprocess.run(["apt-cache", "show", "python3"], capture_output=True).returncode != 0:
        pytest.skip("no apt package lists here (apt-get update)")
    for package in packages:
        shown = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", package],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 0, (package, shown.stderr)
        assert f"Package: {package}\n" in shown.stdout
