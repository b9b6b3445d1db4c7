#!/usr/bin/env bash
# Install MedViewer and what it needs on a fresh Debian/Ubuntu machine.
#   bash scripts/setup.sh        the application
#   bash scripts/setup.sh test   the application plus test tools (pytest, pytest-qt, ruff)
set -euo pipefail
cd "$(dirname "$0")/.."

# Qt's shared libraries: the first six for offscreen rendering, the rest for a real X display.
QT_LIBS="libgl1 libegl1 libxkbcommon0 libglib2.0-0 libfontconfig1 libdbus-1-3
         libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0"
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $QT_LIBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "Installing Qt system libraries:$missing"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends $missing
  fi
fi

extra=""
[ "${1:-}" = "test" ] && extra="[test]"
python3 -m pip install -q --disable-pip-version-check -e ".${extra}"
