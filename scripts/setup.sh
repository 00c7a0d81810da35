#!/usr/bin/env bash
# Create .venv and install Yuyue into it (with the test tools when called with "test").
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Yuyue needs Python 3.11 or newer as '$PYTHON' (set PYTHON=... to choose another)." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian ships venv separately.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$PYTHON" -m venv .venv
  fi
fi

extras=""
[ "${1:-}" = "test" ] && extras="[test]"
stamp=".venv/.installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # The venv's own pip and setuptools come from the Python that made it, often years old and
  # past published advisories: bring them up to date before anything else is installed.
  .venv/bin/python -m pip install --quiet --upgrade pip 'setuptools>=78.1.1'
  .venv/bin/python -m pip install --quiet -e ".$extras"
  touch "$stamp"
fi

# Chart labels are Chinese: a CJK font keeps them from turning into boxes. Without one the
# charts are drawn in English (and the test of the Chinese chart fails).
if ! fc-list 2>/dev/null | grep -qi "noto sans cjk\|wenquanyi"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk fontconfig >/dev/null) \
      || echo "note: could not install fonts-noto-cjk; charts will be drawn in English" >&2
  else
    echo "note: no CJK font: as root, run apt-get install fonts-noto-cjk (charts are drawn in English until then)" >&2
  fi
fi
