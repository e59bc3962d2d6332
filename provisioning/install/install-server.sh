#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Sets up a Hattingen Card server on Debian 12 (or Ubuntu 24.04) with one command:
#
#   sudo provisioning/install/install-server.sh --domain karte.example.org --admin anna
#
# the user `hcard-server`, the virtual environment /opt/hcard-server/venv with the `server`
# extra only, the settings file, the database (SQLite by default, or --database-url for
# PostgreSQL), the issuer key and the first admin (`hcard-server init`; the admin's password
# is made here and printed once), with --card-secret-file the site's card write secret (from
# `hcard-provision cards new-secret`; the server hands it to each till at enrolment, so it is
# never copied to a till by hand), with --sun-secret-file the SUN secret the balance page checks
# NTAG 424 DNA cards' links with (`hcard-provision cards new-secret --kind sun`; it stays on
# the server, the tills never get it), the server unit, the nightly backup timer, the daily float
# check timer, the libraries the PDF statements need, and Caddy in front with a TLS
# certificate from Let's Encrypt. Each step runs only when it is not already so: running it
# twice changes nothing.
#
# --root DIR (or DESTDIR=DIR) writes into another root instead of this machine (see
# install-terminal.sh); database and admin are then made at the first start by hand.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROOT=${DESTDIR:-/}
SOURCE=$REPO
DO_APT=1
DO_VENV=1
DOMAIN=""
ADMIN="admin"
DATABASE_URL=""
SECRET_FILE=""
SUN_SECRET_FILE=""
KEEP=14
PREFIX=/opt/hcard-server
USER_NAME=hcard-server
DATA_DIR=/var/lib/hcard-server

usage() {
	cat <<'EOF'
Aufruf / usage: install-server.sh [Optionen / options]

  --domain NAME        DNS-Name für Caddy mit TLS / DNS name for Caddy with TLS
                       (ohne / without: kein Caddy, Server nur auf 127.0.0.1:8080)
  --admin NAME         erster Admin / first admin (Standard/default: admin)
  --database-url URL   PostgreSQL statt SQLite / PostgreSQL instead of SQLite
                       (postgresql+psycopg://user:pass@host/db)
  --card-secret-file FILE  Kartenschreibgeheimnis (hcard-provision cards new-secret) für
                       die Kassen / card write secret, handed to each till at enrolment
  --sun-secret-file FILE  SUN-Geheimnis (cards new-secret --kind sun) für die Links der
                       NTAG-424-DNA-Karten / SUN secret the balance page checks their links with
  --keep N             Sicherungen behalten / backup generations kept (default 14)
  --root DIR           in ein anderes Wurzelverzeichnis installieren / install into another
                       root (also DESTDIR=DIR)
  --source PATH        Quellordner oder Wheel / source folder or wheel (default: this checkout)
  --no-apt             keine Systempakete / no system packages
  --no-venv            keine virtuelle Umgebung / no virtual environment
  -h, --help           diese Hilfe / this help
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--domain) DOMAIN=${2:?}; shift 2 ;;
	--admin) ADMIN=${2:?}; shift 2 ;;
	--database-url) DATABASE_URL=${2:?}; shift 2 ;;
	--card-secret-file) SECRET_FILE=${2:?}; shift 2 ;;
	--sun-secret-file) SUN_SECRET_FILE=${2:?}; shift 2 ;;
	--keep) KEEP=${2:?}; shift 2 ;;
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
[[ $DOMAIN =~ ^([a-z0-9-]+\.)+[a-z]{2,}$|^$ ]] ||
	die "ungültiger DNS-Name / invalid DNS name: $DOMAIN"
[[ $ADMIN =~ ^[a-z][a-z0-9._-]{1,31}$ ]] ||
	die "ungültiger Benutzername / invalid user name: $ADMIN"
[[ $KEEP =~ ^[1-9][0-9]*$ ]] || die "--keep muss eine Zahl ab 1 sein / must be a number from 1"
case $DATABASE_URL in
"") DATABASE_URL="sqlite:///$DATA_DIR/hcard.db" ;;
postgresql*://*) ;;
*) die "nur PostgreSQL-URLs / only PostgreSQL URLs: postgresql+psycopg://..." ;;
esac
[[ $DATABASE_URL == *$'\n'* ]] && die "URL mit Zeilenumbruch / URL with a line break"
# The site secrets, refused here before anything changes (`hcard-server init` checks them
# again, by the same rules, in server/card_secret.py): a file that cannot be read, that is no
# hex of at least 16 bytes, that differs from the one already installed (never replaced:
# issued cards need it), or that is the other secret (each must be its own: a SUN secret the
# tills hold as their card write secret would let any till make card links that verify).
INSTALLED_SECRET=$DATA_DIR/card-write-secret.hex
INSTALLED_SUN_SECRET=$DATA_DIR/card-sun-secret.hex
# secret_text FILE: the secret as init stores it (lower-case hex, no blanks).
secret_text() { tr -d ' \t\r\n' <"$1" | tr 'A-F' 'a-f'; }
# check_secret OPTION FILE INSTALLED WORDS_DE WORDS_EN
check_secret() {
	readable_file "$1" "$2"
	[[ $(secret_text "$2") =~ ^([0-9a-f][0-9a-f]){16,}$ ]] ||
		die "$1: $4 ungültig (hex, mindestens 16 Bytes) / $5 invalid (hex, at least 16 bytes)"
	if [ -e "$R$3" ] && [ "$(secret_text "$2")" != "$(secret_text "$R$3")" ]; then
		die "$3 enthält ein anderes $4, es wird nie ersetzt / holds a different $5, it is never replaced"
	fi
}
if [ -n "$SECRET_FILE" ]; then
	check_secret --card-secret-file "$SECRET_FILE" "$INSTALLED_SECRET" \
		Kartenschreibgeheimnis "card write secret"
fi
if [ -n "$SUN_SECRET_FILE" ]; then
	check_secret --sun-secret-file "$SUN_SECRET_FILE" "$INSTALLED_SUN_SECRET" \
		SUN-Geheimnis "SUN secret"
fi
# Each secret given against the other one, given now or else installed.
if [ -n "$SECRET_FILE$SUN_SECRET_FILE" ]; then
	write_secret=${SECRET_FILE:-$R$INSTALLED_SECRET}
	sun_secret=${SUN_SECRET_FILE:-$R$INSTALLED_SUN_SECRET}
	if [ -e "$write_secret" ] && [ -e "$sun_secret" ] &&
		[ "$(secret_text "$write_secret")" = "$(secret_text "$sun_secret")" ]; then
		die "Kartenschreibgeheimnis und SUN-Geheimnis sind gleich, jedes muss ein eigenes sein / card write secret and SUN secret are the same; each site secret must be its own"
	fi
fi

# Everything this script runs on this machine is there, before anything changes.
if [ -z "$R" ] && [ "$DO_VENV" -eq 1 ]; then need_tools runuser:util-linux; else need_tools; fi

echo "Hattingen Card: Server einrichten / setting up the server in $ROOT"

# 1. System packages: Python, sqlite3 for a look at the database, and the libraries and a font
# WeasyPrint needs for the merchants' PDF statements (Pango, HarfBuzz's subsetter, DejaVu).
if [ "$DO_APT" -eq 1 ]; then
	packages=(python3 python3-venv sqlite3 libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0
		fonts-dejavu-core)
	[ -n "$DOMAIN" ] && packages+=(caddy)
	[[ $DATABASE_URL == postgres* ]] && packages+=(postgresql-client)
	apt_install "${packages[@]}"
fi

# 2. The user that runs the server and owns its state (database, issuer key).
system_user "$USER_NAME" "$DATA_DIR" "Hattingen Card server"

# 3. The virtual environment with the server only.
if [ "$DO_VENV" -eq 1 ]; then project_venv "$SOURCE" "$PREFIX/venv" server; fi

# 4. Settings: read by systemd (as root) before it starts the server, so the file stays root's
# alone (mode 0600) and may hold a PostgreSQL password.
put_once /etc/hcard-server/server.env 0600 <<EOF
# Hattingen Card server settings (read by hcard-server.service, the backup and the float
# check). Written once by install-server.sh; your edits are kept.
HCARD_DATA_DIR=$DATA_DIR
HCARD_DATABASE_URL=$DATABASE_URL
HCARD_BACKUP_KEEP=$KEEP
EOF

# 5. Units: the server, the nightly backup and the daily float check (a difference fails the
# check's unit: `systemctl --failed`).
for unit in hcard-server.service hcard-server-backup.service hcard-server-backup.timer \
	hcard-server-float-check.service hcard-server-float-check.timer; do
	put "$REPO/systemd/$unit" "/etc/systemd/system/$unit" 0644
done
enable_unit hcard-server.service
enable_unit hcard-server-backup.timer timers.target
enable_unit hcard-server-float-check.timer timers.target

# 6. Caddy in front, with TLS. Debian's packaged Caddyfile (a static page on :80) is replaced;
# a Caddyfile the operator wrote gets one import line added.
if [ -n "$DOMAIN" ]; then
	site=$(mktemp)
	sed "s/^karte\.example\.org {/$DOMAIN {/" "$HERE/Caddyfile" >"$site"
	put "$site" /etc/caddy/hcard.caddy 0644
	rm -f "$site"
	caddyfile=$R/etc/caddy/Caddyfile
	if [ -f "$caddyfile" ] && grep -q '^:80 {' "$caddyfile" && grep -q '/usr/share/caddy' "$caddyfile"; then
		printf '' >"$caddyfile"
	fi
	edit_block /etc/caddy/Caddyfile "site" <<'EOF'
import /etc/caddy/hcard.caddy
EOF
fi

# 7. Database, issuer key, first admin and the site secrets: once, on this machine. A secret
# goes in through a pipe (`-`): the server's user cannot read the operator's file.
if [ -n "$R" ] || [ "$DO_VENV" -eq 0 ]; then
	note "Datenbank und Admin beim ersten Start anlegen / create database and admin at first start:"
	note "  systemd-run --wait --pty -p User=$USER_NAME -p StateDirectory=hcard-server \\"
	note "    -p EnvironmentFile=/etc/hcard-server/server.env $PREFIX/venv/bin/hcard-server init --admin-user $ADMIN"
	if [ -n "$SECRET_FILE" ]; then
		note "dann das Kartenschreibgeheimnis dort übernehmen / then install the card write secret there:"
		note "  $0 --card-secret-file FILE"
	fi
	if [ -n "$SUN_SECRET_FILE" ]; then
		note "dann das SUN-Geheimnis dort übernehmen / then install the SUN secret there:"
		note "  $0 --sun-secret-file FILE"
	fi
else
	# Each secret goes in through its own run of init: init reads at most one secret from
	# standard input. A second run changes nothing else (the database is migrated already,
	# the issuer key is loaded, not made, and an existing admin is left as it is).
	pending=()
	if [ -n "$SECRET_FILE" ] && [ ! -e "$INSTALLED_SECRET" ]; then pending+=(--card-secret-file); fi
	if [ -n "$SUN_SECRET_FILE" ] && [ ! -e "$INSTALLED_SUN_SECRET" ]; then pending+=(--sun-secret-file); fi
	if [ ! -e "$DATA_DIR/issuer.key" ] && [ ${#pending[@]} -eq 0 ]; then pending=(none); fi
	fresh=0
	[ -e "$DATA_DIR/issuer.key" ] || fresh=1
	[ ${#pending[@]} -eq 0 ] || install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 "$DATA_DIR"
	# Only used when the admin is new; init leaves an existing admin as it is.
	password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
	for option in "${pending[@]}"; do
		case $option in
		--card-secret-file) file=$SECRET_FILE secret_opt=("$option" -) ;;
		--sun-secret-file) file=$SUN_SECRET_FILE secret_opt=("$option" -) ;;
		*) file=/dev/null secret_opt=() ;;
		esac
		secret_text "$file" |
			runuser -u "$USER_NAME" -- env HCARD_DATA_DIR="$DATA_DIR" HCARD_DATABASE_URL="$DATABASE_URL" \
				HCARD_ADMIN_PASSWORD="$password" "$PREFIX/venv/bin/hcard-server" init --admin-user "$ADMIN" \
				"${secret_opt[@]}"
		if [ "$fresh" -eq 1 ]; then
			fresh=0
			changed "database, issuer key, admin $ADMIN"
			echo "Erster Admin / first admin: $ADMIN  Passwort / password: $password"
			echo "(nur jetzt angezeigt / shown only now; bitte nach der Anmeldung ändern / change it)"
		fi
		case $option in
		--card-secret-file) changed "card write secret $INSTALLED_SECRET" ;;
		--sun-secret-file) changed "SUN secret $INSTALLED_SUN_SECRET" ;;
		esac
	done
fi

# 8. Apply on a running system.
if live_system && [ "$CHANGED" -eq 1 ]; then
	systemctl daemon-reload
	systemctl restart hcard-server.service
	systemctl start hcard-server-backup.timer hcard-server-float-check.timer
	if [ -n "$DOMAIN" ]; then systemctl reload-or-restart caddy.service; fi
fi

if [ "$CHANGED" -eq 0 ]; then
	echo "Nichts zu tun, alles eingerichtet / nothing to do, all set up."
else
	echo "Fertig / done: ${DOMAIN:+https://$DOMAIN/ }(127.0.0.1:8080)"
	echo "Issuer-Schlüssel einmal offline sichern / back the issuer key up once, offline:"
	echo "  $DATA_DIR/issuer.key"
fi
