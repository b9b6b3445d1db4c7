#!/usr/bin/env bash
# Install MedViewer and what it needs on a fresh Debian/Ubuntu machine.
#   bash scripts/setup.sh        the application
#   bash scripts/setup.sh test   the application plus test tools (pytest, pytest-qt, ruff) and
#                                the DICOM reference tools the conformance tests run
# Python packages go into the active virtual environment ($VIRTUAL_ENV) when there is one, else
# into the project's own .venv, made here from the python3 on PATH (Debian's system Python
# refuses pip installs outside a virtual environment: PEP 668). scripts/python runs that Python.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "" | test) ;;
  *) echo "usage: bash scripts/setup.sh [test]" >&2; exit 2 ;;
esac

have_apt() { command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; }

apt_updated=""
apt_install() {  # apt_install WHAT PACKAGE...: install those not installed yet
  local what=$1 missing="" sudo="" p
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing $what:$missing"
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq || return 1
    apt_updated=1
  fi
  # shellcheck disable=SC2086  # one word per package
  $sudo apt-get install -y -qq --no-install-recommends $missing
}

# Qt's shared libraries: the first six for offscreen rendering, the rest for a real X display.
if have_apt; then
  apt_install "Qt system libraries" libgl1 libegl1 libxkbcommon0 libglib2.0-0 libfontconfig1 \
    libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
fi

# The reference tools the conformance tests compare against (skipped there when missing):
# dciodvfy (dicom3tools), dcmdump (dcmtk), dcm2niix.
if [ "${1:-}" = "test" ]; then
  if ! have_apt; then
    echo "Note: install dicom3tools, dcmtk and dcm2niix yourself; the tests that need them skip."
  elif ! apt_install "DICOM reference tools" dicom3tools dcmtk dcm2niix; then
    echo "Note: could not install dicom3tools, dcmtk and dcm2niix; the tests that need them skip."
  fi
  # The real PACS the PACS tests start themselves (tests/pacs/conftest.py, with a temporary
  # config in a private network namespace); the package's own service is not used.
  if ! have_apt; then
    echo "Note: install orthanc, orthanc-dicomweb and iproute2 yourself; the PACS tests skip without them."
  else
    had_orthanc=""
    dpkg-query -W -f='${Status}' orthanc 2>/dev/null | grep -q "ok installed" && had_orthanc=1
    if ! apt_install "PACS test server" orthanc orthanc-dicomweb iproute2; then
      echo "Note: could not install orthanc, orthanc-dicomweb and iproute2; the PACS tests skip."
    elif [ -z "$had_orthanc" ] && command -v systemctl >/dev/null 2>&1; then
      # Debian starts (and enables) the package's service on install: a PACS on every
      # interface (ports 4242, 8042) that nobody asked for. Stop it unless it was already
      # there; without systemd (containers) there is nothing to stop.
      sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      if $sudo systemctl disable --now orthanc >/dev/null 2>&1; then
        echo "Stopped and disabled the orthanc service Debian starts on install (the tests" \
          "start their own); 'systemctl enable --now orthanc' brings it back."
      fi
    fi
  fi
fi

if [ -n "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x "$VIRTUAL_ENV/bin/python" ]; then
    echo "The active virtual environment $VIRTUAL_ENV has no bin/python; deactivate it or" \
      "make it again." >&2
    exit 1
  fi
  where="the active virtual environment $VIRTUAL_ENV"
elif .venv/bin/python -m pip --version >/dev/null 2>&1 &&
     .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  where="the project's virtual environment .venv"
else
  if ! command -v python3 >/dev/null 2>&1; then
    echo "No python3 on PATH: install Python 3.11 or newer (Debian: apt-get install python3)." >&2
    exit 1
  fi
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "MedViewer needs Python 3.11 or newer; python3 is $(python3 -V 2>&1). Put a newer" \
      "python3 first on PATH, or activate a virtual environment made with one." >&2
    exit 1
  fi
  rm -rf .venv
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) apart, in pythonX.Y-venv
    rm -rf .venv
    version=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    have_apt && apt_install "Python's venv module" "python$version-venv" || true
    if ! python3 -m venv .venv; then
      rm -rf .venv
      echo "Could not make a virtual environment with $(command -v python3): install" \
        "python$version-venv, or activate a virtual environment of your own and run this again." >&2
      exit 1
    fi
  fi
  where="the project's new virtual environment .venv"
fi

extra=""
[ "${1:-}" = "test" ] && extra="[test]"
echo "Installing MedViewer${extra} into $where (a first install takes minutes: torch is large)"
scripts/python -m pip install -q --disable-pip-version-check -e ".${extra}"
