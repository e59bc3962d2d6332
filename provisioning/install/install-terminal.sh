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
#   till, and the kiosk start on tty1. With a PC/SC reader (--reader pcsc: or pcsc:<part of
#   its name>, e.g. pcsc:ACR1252): pcscd with Debian's CCID driver, and pyscard (the `pcsc`
#   extra) in the venv.
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
# A PC/SC reader (--reader pcsc:...): pcscd, started by its socket (pcscd.socket, enabled by
# the package and here), with libccid, the driver of the CCID readers sold today (ACS
# ACR1252U, Identiv uTrust 3700 F, HID OMNIKEY 5022/5427); libpcsclite1 is the library
# pyscard loads. PyPI has no Linux wheel of pyscard (only Windows and macOS ones; piwheels
# serves 32-bit Pi OS only), so pip builds it: a C compiler, the Python headers, swig and
# libpcsclite-dev. All of them only for a PC/SC reader: an nfcpy till needs none.
PCSC_PACKAGES=(
	pcscd libccid libpcsclite1
	gcc libc6-dev python3-dev swig libpcsclite-dev
)

usage() {
	cat <<'EOF'
Aufruf / usage: install-terminal.sh [Optionen / options]

  --server-url URL   Adresse des Servers / the server's address (https://...)
  --reader SPEC      Leser / reader: nfcpy (Standard/default: usb, mit/with
                     --pn532-uart: tty:AMA0:pn532) oder/or PC/SC: pcsc: (der erste / the
                     first) oder/or pcsc:NAME (Teil des Lesernamens / part of the reader's
                     name, z. B./e.g. pcsc:ACR1252); PC/SC bringt pcscd und pyscard mit /
                     installs pcscd and pyscard
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
state=/var/lib/hcard-terminal
# Without --reader, an enrolled till keeps its reader's kind: the reader is stored in its
# config.json at enrolment (a later run does not enrol again), and a PC/SC till run again
# without --reader must not lose pcscd and pyscard.
PCSC=0
if [ -z "$READER" ] && grep -Eq '"reader": *"pcsc:' "$R$state/config.json" 2>/dev/null; then
	PCSC=1
fi
if [ -z "$READER" ]; then
	if [ "$UART" -eq 1 ]; then READER=tty:AMA0:pn532; else READER=usb; fi
fi
case $READER in
usb | usb:* | tty:* | udp:*) ;;
pcsc:*) PCSC=1 ;;
*) die "Leser muss usb, usb:..., tty:..., udp:... oder pcsc:... sein / reader must be usb, tty:..., udp:... or pcsc:..." ;;
esac
[[ $READER == *[[:cntrl:]]* ]] && die "Leser mit Steuerzeichen / reader with a control character"

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
if [ "$DO_APT" -eq 1 ]; then
	if [ "$PCSC" -eq 1 ]; then PACKAGES+=("${PCSC_PACKAGES[@]}"); fi
	apt_install "${PACKAGES[@]}"
fi

# 2. The user that runs the till; it owns nothing but its state folder (made by systemd).
system_user "$USER_NAME" /var/lib/hcard-terminal "Hattingen Card till" "${GROUPS_WANTED[@]}"

# 3. The virtual environment with the till only (`app` extra: terminal core + Kivy; `pcsc`:
# pyscard, for a PC/SC reader).
extras=app
if [ "$PCSC" -eq 1 ]; then extras=app,pcsc; fi
if [ "$DO_VENV" -eq 1 ]; then project_venv "$SOURCE" "$PREFIX/venv" "$extras"; fi

# 4. Readers: nfcpy's USB readers usable without root, kernel NFC drivers kept off them (both
# stay on a PC/SC till: harmless there, and ready if it gets an nfcpy reader).
put "$HERE/60-hcard-nfc.rules" /etc/udev/rules.d/60-hcard-nfc.rules 0644
put "$HERE/hcard-nfc.conf" /etc/modprobe.d/hcard-nfc.conf 0644
# A PC/SC reader is pcscd's (root, through libccid); the till talks to pcscd through its socket.
# Who may: Debian 12's pcsc-lite (1.9.9-2, also Raspberry Pi OS Bookworm's) is built without
# polkit (no org.debian.pcsc-lite.policy, pcscd not linked with libpolkit) and pcscd.socket
# has SocketMode=0666, so every local user may, `hcard` too, with no group. The till's unit
# (User=hcard, ProtectSystem=strict) can still connect: a read-only mount does not forbid
# connecting to a socket. A pcsc-lite built with polkit (its policy file is there) lets only
# active local sessions in by default; the till's kiosk session is one (PAMName=login on tty1),
# but a rule lets `hcard` in whatever the session, as pcsc-lite's README.polkit shows.
if [ "$PCSC" -eq 1 ]; then
	if [ -e "$R/usr/lib/systemd/system/pcscd.socket" ] || [ -e "$R/lib/systemd/system/pcscd.socket" ]; then
		enable_unit pcscd.socket sockets.target
	else
		note "pcscd fehlt / pcscd missing: apt-get install ${PCSC_PACKAGES[*]:0:3}"
	fi
	if [ -e "$R/usr/share/polkit-1/actions/org.debian.pcsc-lite.policy" ]; then
		put "$HERE/60-hcard-pcsc.rules" /etc/polkit-1/rules.d/60-hcard-pcsc.rules 0644
	fi
fi

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
	if [ "$PCSC" -eq 1 ]; then systemctl start pcscd.socket; fi
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
	reader_opt=""
	[ "$READER" = usb ] || reader_opt=" --reader $(printf '%q' "$READER")"
	echo "  $0 --server-url https://... --enrol-code ABCD-EFGH$reader_opt"
fi
