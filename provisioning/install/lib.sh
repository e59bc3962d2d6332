# shellcheck shell=bash
# Helpers shared by install-terminal.sh and install-server.sh (sourced, not run).
#
# Every helper changes a file only when its content or mode differ, and reports each change,
# so an installer built from them is idempotent: the second run prints "nothing to do" and
# leaves every byte and every modification time as it was.
#
# The caller sets ROOT (the target root, / for this machine) before sourcing, after reading its
# options; sourcing checks that ROOT exists and that we run as root, makes ROOT absolute, and
# sets R, ROOT as a path prefix ("" for /).

[ -d "$ROOT" ] || { echo "Wurzelverzeichnis fehlt / root folder missing: $ROOT" >&2; exit 2; }
ROOT=$(cd "$ROOT" && pwd)
[ "$ROOT" = / ] && R="" || R=$ROOT
# shellcheck disable=SC2034 # read by the installers that source this file
CHANGED=0

note() { printf '  %s\n' "$*"; }

changed() {
	# shellcheck disable=SC2034 # read by the installers that source this file
	CHANGED=1
	note "geändert / changed: $1"
}

die() {
	printf 'Fehler / error: %s\n' "$*" >&2
	exit 2
}

[ "$(id -u)" -eq 0 ] || die "bitte als root starten (sudo) / please run as root (sudo)"

# need_tools [COMMAND:PACKAGE...]: refuse, before anything changes, a machine that lacks a
# command the installer will run, in one sentence naming it and its Debian package (a Debian
# container, say, has no systemctl: the script used to write user and units and then stop with
# exit 127). Checks what every installer runs here, from DO_APT and DO_VENV (set by the
# caller), and the commands given.
need_tools() {
	local spec de="" en=""
	local tools=(systemctl:systemd useradd:passwd groupadd:passwd usermod:passwd "$@")
	if [ -n "$R" ]; then
		# apt and pip run inside the target root, through chroot.
		if [ "$DO_APT" -eq 1 ] || [ "$DO_VENV" -eq 1 ]; then tools+=(chroot:coreutils); fi
	else
		if [ "$DO_APT" -eq 1 ]; then tools+=(apt-get:apt dpkg-query:dpkg); fi
		if [ "$DO_APT" -eq 0 ] && [ "$DO_VENV" -eq 1 ]; then tools+=(python3:python3-venv); fi
	fi
	for spec in "${tools[@]}"; do
		command -v "${spec%%:*}" >/dev/null 2>&1 && continue
		de+="${de:+, }${spec%%:*} (Paket ${spec#*:})"
		en+="${en:+, }${spec%%:*} (package ${spec#*:})"
	done
	[ -z "$de" ] && return 0
	die "es fehlt $de; dieses Skript braucht Debian oder Raspberry Pi OS mit systemd, nichts wurde geändert / missing $en: this script needs Debian or Raspberry Pi OS with systemd; nothing was changed"
}

# readable_file OPTION FILE: refuse (before anything changes) a file option that names no
# readable file.
readable_file() {
	if [ ! -f "$2" ] || [ ! -r "$2" ]; then die "$1 nicht lesbar / not readable: $2"; fi
}

# in_root CMD...: run a command inside the target root (itself when the root is /).
in_root() {
	if [ -z "$R" ]; then "$@"; else chroot "$ROOT" "$@"; fi
}

# put SRC DEST MODE: install a file unless DEST already has this content and mode.
put() {
	local src=$1 dest=$R$2 mode=$3
	if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
		return 0
	fi
	install -D -m "$mode" "$src" "$dest"
	changed "$2"
}

# put_text DEST MODE < text
put_text() {
	local tmp
	tmp=$(mktemp)
	cat >"$tmp"
	put "$tmp" "$1" "$2"
	rm -f "$tmp"
}

# put_once DEST MODE < text: a settings file written once; the operator's later edits are kept.
put_once() {
	if [ -e "$R$1" ]; then
		cat >/dev/null
		return 0
	fi
	put_text "$1" "$2"
}

# edit_block FILE NAME < lines: keep exactly one block between marker comments in FILE, leaving
# the rest of the file as it is.
edit_block() {
	local file=$R$1 begin="# BEGIN hcard $2" end="# END hcard $2" tmp
	tmp=$(mktemp)
	if [ -f "$file" ]; then
		awk -v b="$begin" -v e="$end" '$0==b{skip=1;next} $0==e{skip=0;next} !skip' "$file" >"$tmp"
	fi
	{
		printf '%s\n' "$begin"
		cat
		printf '%s\n' "$end"
	} >>"$tmp"
	if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
		rm -f "$tmp"
		return 0
	fi
	install -D -m 0644 "$tmp" "$file"
	rm -f "$tmp"
	changed "$1"
}

# apt_install PKG...: install the packages that are missing in the target root.
apt_install() {
	local pkg missing=()
	for pkg in "$@"; do
		# shellcheck disable=SC2016 # ${Status} is dpkg-query's format, not a shell variable
		in_root dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	in_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	in_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	changed "apt: ${missing[*]}"
}

# system_user NAME HOME COMMENT [GROUP...]: a system user with its own group, no login, no
# home folder of its own (systemd's StateDirectory= makes it), member of the given groups.
system_user() {
	local name=$1 home=$2 comment=$3 group
	shift 3
	local prefix_opt=()
	[ -n "$R" ] && prefix_opt=(--prefix "$ROOT")
	for group in "$name" "$@"; do
		if ! grep -q "^$group:" "$R/etc/group"; then
			groupadd "${prefix_opt[@]}" --system "$group"
			changed "group $group"
		fi
	done
	if ! grep -q "^$name:" "$R/etc/passwd"; then
		useradd "${prefix_opt[@]}" --system --gid "$name" --home-dir "$home" \
			--no-create-home --shell /usr/sbin/nologin --comment "$comment" "$name"
		changed "user $name"
	fi
	for group in "$@"; do
		if ! awk -F: -v g="$group" -v u="$name" \
			'$1==g{n=split($4,m,",");for(i=1;i<=n;i++)if(m[i]==u)f=1} END{exit !f}' \
			"$R/etc/group"; then
			usermod "${prefix_opt[@]}" --append --groups "$group" "$name"
			changed "$name in group $group"
		fi
	done
}

# project_venv SOURCE VENV EXTRA: a virtual environment with this project and one extra. The
# source (a checkout or a wheel) is copied into the root beside the venv so a chroot can
# install it; a stamp of the source's content skips the whole step when nothing changed.
project_venv() {
	local source=$1 venv=$2 extra=$3 stamp target src_dir
	src_dir=$(dirname "$venv")/src
	if [ -f "$source" ]; then
		stamp=$(sha256sum <"$source" | cut -d' ' -f1)
	elif [ -f "$source/pyproject.toml" ]; then
		stamp=$(cd "$source" && find hcard server terminal provisioning docs pyproject.toml README.md \
			-type f -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum |
			cut -d' ' -f1)
	else
		die "Quelle weder Wheel noch Projektordner / source is neither a wheel nor a project: $source"
	fi
	stamp="$extra $stamp"
	[ "$(cat "$R$venv/.hcard-source" 2>/dev/null)" = "$stamp" ] && return 0
	[ -x "$R$venv/bin/python" ] || in_root python3 -m venv "$venv"
	rm -rf "$R$src_dir"
	mkdir -p "$R$src_dir"
	if [ -f "$source" ]; then
		cp "$source" "$R$src_dir/"
		target="$src_dir/$(basename "$source")[${extra}]"
	else
		tar -C "$source" -cf - --exclude='__pycache__' hcard server terminal provisioning docs \
			pyproject.toml README.md | tar -C "$R$src_dir" -xf -
		target="${src_dir}[${extra}]"
	fi
	in_root "$venv/bin/pip" install -q --disable-pip-version-check --upgrade "$target"
	printf '%s\n' "$stamp" >"$R$venv/.hcard-source"
	changed "$venv ($extra)"
}

# enable_unit UNIT [TARGET]: enable a unit (offline, works in a prepared root too).
enable_unit() {
	local unit=$1 target=${2:-multi-user.target}
	[ -L "$R/etc/systemd/system/$target.wants/$unit" ] && return 0
	systemctl --root="$ROOT" --quiet enable "$unit"
	changed "enable $unit"
}

# mask_unit UNIT: never start UNIT.
mask_unit() {
	[ "$(readlink "$R/etc/systemd/system/$1" 2>/dev/null)" = /dev/null ] && return 0
	systemctl --root="$ROOT" --quiet mask "$1"
	changed "mask $1"
}

# live_system: true when installing onto this running machine (not into a prepared root).
live_system() {
	[ -z "$R" ] && [ -d /run/systemd/system ]
}
