#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Turns a fresh Raspberry Pi OS (Bookworm) into a Hattingen Card till.
#
#   sudo provisioning/install/install-terminal.sh --server-url https://karte.example.org
#
# What it does, each step only when it is not already so (running it twice changes nothing):
#   system packages (apt), the user `hcard`, the virtual environment /opt/hcard/venv with the
#   `app` extra only (never the server), the udev rule for the USB readers (ACR122U, Sony
#   RC-S380, PN533), the kernel-module blacklist nfcpy needs (the kernel's own NFC drivers
#   would claim the reader), optionally the UART for a PN532 HAT, the systemd unit of the
#   till, and the kiosk start on tty1.
#
# --root DIR (or DESTDIR=DIR) writes into another root instead of this machine: a Debian
# chroot made with debootstrap (apt and the venv then run inside it with chroot), or a bare
# folder for the tests (with --no-apt --no-venv). Nothing outside DIR is touched then.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROOT=${DESTDIR:-/}
SOURCE=$REPO
DO_APT=1
DO_VENV=1
UART=0
SERVER_URL=""
READER=""
ENROL_CODE=""
SECRET_FILE=""
TILL_NAME="Kasse 1"
PREFIX=/opt/hcard
USER_NAME=hcard
# Named one by one: apt_install uses --no-install-recommends. X runs without root through the
# logind session of hcard-till.service (PAMName=login), which takes pam_systemd
# (libpam-systemd) and the system bus (dbus); Xorg only recommends them.
PACKAGES=(
	python3 python3-venv python3-pip
	libusb-1.0-0
	xserver-xorg-core xserver-xorg-input-libinput xinit x11-xserver-utils
	libpam-systemd dbus
	libgl1 libgles2 libegl1 libgl1-mesa-dri libmtdev1
	fonts-dejavu-core
)
GROUPS_WANTED=(video input render dialout plugdev)

usage() {
	cat <<'EOF'
Aufruf / usage: install-terminal.sh [Optionen / options]

  --server-url URL   Adresse des Servers / the server's address (https://...)
  --reader SPEC      nfcpy-Leser / nfcpy reader (Standard/default: usb, mit/with
                     --pn532-uart: tty:AMA0:pn532)
  --pn532-uart       UART für ein PN532-HAT einrichten / set the UART up for a PN532 HAT
  --enrol-code CODE  gleich anmelden (Code aus hcard-provision terminal add) / enrol now
  --card-secret-file FILE  Schreibgeheimnis der Karten (hex), nur wenn der Server es nicht
                     hat / card write secret (hex), only if the server does not hand it out
  --name NAME        Name der Kasse / till name (Standard/default: Kasse 1)
  --root DIR         in ein anderes Wurzelverzeichnis installieren / install into another
                     root (also DESTDIR=DIR)
  --source PATH      Quellordner oder Wheel / source folder or wheel (default: this checkout)
  --no-apt           keine Systempakete / no system packages
  --no-venv          keine virtuelle Umgebung / no virtual environment
  -h, --help         diese Hilfe / this help
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--server-url) SERVER_URL=${2:?}; shift 2 ;;
	--reader) READER=${2:?}; shift 2 ;;
	--pn532-uart) UART=1; shift ;;
	--enrol-code) ENROL_CODE=${2:?}; shift 2 ;;
	--card-secret-file) SECRET_FILE=${2:?}; shift 2 ;;
	--name) TILL_NAME=${2:?}; shift 2 ;;
	--root) ROOT=${2:?}; shift 2 ;;
	--source) SOURCE=${2:?}; shift 2 ;;
	--no-apt) DO_APT=0; shift ;;
	--no-venv) DO_VENV=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; echo "unbekannte Option / unknown option: $1" >&2; exit 2 ;;
	esac
done

# shellcheck source=lib.sh
. "$HERE/lib.sh"
case $SERVER_URL in
"" | https://* | http://localhost | http://localhost[:/]* | http://127.0.0.1 | http://127.0.0.1[:/]*) ;;
*) die "Server-Adresse muss mit https:// beginnen / server URL must start with https://" ;;
esac
if [ -z "$READER" ]; then
	if [ "$UART" -eq 1 ]; then READER=tty:AMA0:pn532; else READER=usb; fi
fi
case $READER in
usb | usb:* | tty:* | udp:*) ;;
*) die "Leser muss usb, usb:..., tty:... oder udp:... sein / reader must be usb, tty:... or udp:..." ;;
esac

if [ -n "$ENROL_CODE" ]; then
	[ -n "$SERVER_URL" ] || die "--enrol-code braucht --server-url / needs --server-url"
fi
# Optional: a server set up with `install-server.sh --card-secret-file` hands the secret out at
# enrolment; one given here is passed on all the same.
if [ -n "$SECRET_FILE" ]; then
	[ -n "$ENROL_CODE" ] || die "--card-secret-file nur mit --enrol-code / only with --enrol-code"
	readable_file --card-secret-file "$SECRET_FILE"
fi

# Everything this script runs on this machine is there, before anything changes.
if [ -z "$R" ] && [ "$DO_VENV" -eq 1 ] && [ -n "$ENROL_CODE" ]; then
	need_tools runuser:util-linux
else
	need_tools
fi

echo "Hattingen Card: Kasse einrichten / setting up a till in $ROOT"

# 1. System packages.
if [ "$DO_APT" -eq 1 ]; then apt_install "${PACKAGES[@]}"; fi

# 2. The user that runs the till; it owns nothing but its state folder (made by systemd).
system_user "$USER_NAME" /var/lib/hcard-terminal "Hattingen Card till" "${GROUPS_WANTED[@]}"

# 3. The virtual environment with the till only (`app` extra: terminal core + Kivy).
if [ "$DO_VENV" -eq 1 ]; then project_venv "$SOURCE" "$PREFIX/venv" app; fi

# 4. Readers: USB readers usable without root, kernel NFC drivers kept off them.
put "$HERE/60-hcard-nfc.rules" /etc/udev/rules.d/60-hcard-nfc.rules 0644
put "$HERE/hcard-nfc.conf" /etc/modprobe.d/hcard-nfc.conf 0644

# 5. A PN532 HAT on the Pi's UART: the PL011 UART on GPIO 14/15 (Bluetooth moved off it) and
# no login console on it.
if [ "$UART" -eq 1 ]; then
	boot=/boot/firmware
	[ -d "$R$boot" ] || boot=/boot
	edit_block "$boot/config.txt" "PN532 UART" <<'EOF'
enable_uart=1
dtoverlay=disable-bt
EOF
	console='console=(serial0|ttyAMA0|ttyS0),[0-9]+'
	if [ -f "$R$boot/cmdline.txt" ] && grep -Eq "$console" "$R$boot/cmdline.txt"; then
		sed -E -i "s/$console ?//g; s/ $//" "$R$boot/cmdline.txt"
		changed "$boot/cmdline.txt"
	fi
	for unit in hciuart.service serial-getty@ttyAMA0.service serial-getty@serial0.service; do
		mask_unit "$unit"
	done
fi

# 6. The till: its settings (written once), the kiosk session and the unit.
put_once /etc/hcard/terminal.env 0644 <<EOF
# Hattingen Card till settings (read by hcard-till.service). Written once by
# install-terminal.sh; your edits are kept. Server address and reader are stored in the
# state folder at enrolment (hcard-terminal enrol).
HCARD_TERMINAL_STATE=/var/lib/hcard-terminal
KIVY_HOME=/var/lib/hcard-terminal/kivy
EOF
put "$HERE/hcard-kiosk" "$PREFIX/bin/hcard-kiosk" 0755
put "$REPO/systemd/hcard-till.service" /etc/systemd/system/hcard-till.service 0644
enable_unit hcard-till.service

# 7. Enrol (once): the key pair is made here, on the till, and never leaves it.
state=/var/lib/hcard-terminal
if [ -n "$ENROL_CODE" ] && [ ! -e "$R$state/config.json" ]; then
	if [ -n "$R" ] || [ "$DO_VENV" -eq 0 ]; then
		note "Anmeldung übersprungen (kein Live-System) / enrolment skipped (not a live system)"
	else
		install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 "$state"
		# The secret goes in through a pipe: not on the command line, and the till's user
		# cannot read the operator's file itself.
		secret_opt=()
		[ -n "$SECRET_FILE" ] && secret_opt=(--card-secret-file -)
		cat -- "${SECRET_FILE:-/dev/null}" |
			runuser -u "$USER_NAME" -- "$PREFIX/venv/bin/hcard-terminal" --state "$state" \
				--reader "$READER" enrol --server "$SERVER_URL" --code "$ENROL_CODE" \
				--name "$TILL_NAME" "${secret_opt[@]}"
		changed "enrolled at $SERVER_URL"
	fi
fi

# 8. Apply on a running system; a prepared root picks it up at its first boot.
if live_system && [ "$CHANGED" -eq 1 ]; then
	systemctl daemon-reload
	udevadm control --reload-rules 2>/dev/null || true
	udevadm trigger --subsystem-match=usb 2>/dev/null || true
	systemctl restart hcard-till.service
fi

if [ "$CHANGED" -eq 0 ]; then
	echo "Nichts zu tun, alles eingerichtet / nothing to do, all set up."
else
	echo "Fertig / done."
	if [ "$UART" -eq 1 ]; then echo "UART: bitte neu starten / please reboot."; fi
fi
if [ ! -e "$R$state/config.json" ]; then
	echo "Noch nicht angemeldet / not enrolled yet (Code aus / code from: hcard-provision terminal add):"
	echo "  $0 --server-url https://... --enrol-code ABCD-EFGH"
fi
