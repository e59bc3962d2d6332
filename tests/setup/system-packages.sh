#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only when one is missing:
# PostgreSQL (the second engine), Xvfb + Mesa (the Kivy app), shellcheck and systemd
# (checking the install script and units), Pango, HarfBuzz and DejaVu fonts (PDF
# statements), Chromium (the browser tests drive Debian's own build through Playwright;
# Playwright's own browser download cannot work here: `playwright install` is never run),
# pcscd with vsmartcard's virtual reader (the PC/SC tests play cards behind it) and what
# pip needs to build pyscard, which has no Linux wheel: swig, libpcsclite-dev, a C compiler
# and Python's headers. The Makefile runs this before the venv's pip install.
# CI runs as root with apt; a developer who is not root is told what to install.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v Xvfb >/dev/null || need+=(xvfb xauth)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] || need+=(libgl1-mesa-dri libgl1 libegl1)
ldconfig -p | grep -q libmtdev.so.1 || need+=(libmtdev1)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v systemd-analyze >/dev/null || need+=(systemd)
# WeasyPrint (settlement statements as PDF) renders with Pango, in DejaVu
ldconfig -p | grep -q libpangoft2-1.0.so.0 || need+=(libpango-1.0-0 libpangoft2-1.0-0)
ldconfig -p | grep -q libharfbuzz-subset.so.0 || need+=(libharfbuzz-subset0)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# the browser tests (tests/browser), at the path their conftest launches
[ -x /usr/bin/chromium ] || need+=(chromium)
# PC/SC: pcscd and vpcd for the tests (tests/fixtures/pcsc.py), the build of pyscard
command -v pcscd >/dev/null || [ -x /usr/sbin/pcscd ] || need+=(pcscd)
[ -e /etc/reader.conf.d/vpcd ] || need+=(vsmartcard-vpcd)
command -v swig >/dev/null || need+=(swig)
[ -e /usr/include/PCSC/winscard.h ] || need+=(libpcsclite-dev)
command -v cc >/dev/null || need+=(gcc)
# the power-cut tests compile their tracer (tests/powercut/shim.c) with cc against libc's headers
[ -e /usr/include/dlfcn.h ] || need+=(libc6-dev)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || need+=(python3-dev)

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Bitte installieren / please install: sudo apt-get install ${need[*]}" >&2
  exit 0
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
