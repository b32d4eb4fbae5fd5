#!/usr/bin/env bash
# The whole test suite, the README's test command: brings the Debian packages the
# tests drive for real, installs powergate with its test extras into this checkout's
# own virtualenv (.venv, or $POWERGATE_VENV), lints, type-checks, runs pytest.
# A private venv keeps PEP 668 system Pythons untouched and lets several checkouts
# be tested side by side without replacing each other's editable install.
#
# Debian packages: as root (or with passwordless sudo) the missing ones are installed;
# otherwise one line says which are missing and how to install them, and the tests
# that need them are skipped with that reason (everything else still runs).
# Arguments go to pytest (e.g. `bash scripts/test.sh tests/test_cli.py -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Test-only system packages, one list (helpers: add yours here).
APT_PACKAGES="build-essential redis-server wrk xvfb trayer xdotool x11-utils dbus dbus-x11 libgirepository1.0-dev libcairo2-dev pkg-config gir1.2-gtk-3.0 desktop-file-utils chromium chromium-driver nsis p7zip-full file debootstrap"

missing=""
if command -v dpkg >/dev/null 2>&1; then
  for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  missing="${missing# }"
else
  missing="$APT_PACKAGES"  # not Debian: whatever is installed is used, the rest skipped
fi

as_root=""
if [ "$(id -u)" = 0 ]; then
  as_root="yes"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo"
fi

if [ -n "$missing" ] && [ -n "$as_root" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$as_root" = sudo ] && SUDO="sudo -n"
  echo "test.sh: installing Debian packages: $missing"
  log="$(mktemp)"
  if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
    echo "test.sh: could not install Debian packages ($(grep -E '^(E|W):' "$log" | tail -1)); install them with: apt-get install -y --no-install-recommends $missing" >&2
    exit 1
  fi
  rm -f "$log"
  missing=""
fi

if [ -n "$missing" ]; then
  echo "test.sh: missing Debian packages: $missing -- install them with: sudo apt-get install -y --no-install-recommends $missing (tests that need them are skipped)"
  export POWERGATE_TEST_SYSTEM=optional
else
  export POWERGATE_TEST_SYSTEM=required  # everything is installed: a missing tool is a failure, not a skip
fi

# PyGObject (the tray's GTK backend) builds against Debian's GTK headers: only with them.
extras="test"
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then
  extras="test,tray-gtk"
fi

PY="$(python3 scripts/bootstrap.py --extras "$extras")"
VENV_BIN="$(dirname "$PY")"
export PATH="$VENV_BIN:$PATH"
# The real model server of tests/real: from a cached wheel, or built once in the background
# while the other tests run (scripts/llama_cpp_wheel.sh); the real-model tests run last.
. scripts/llama_cpp_wheel.sh
llama_cpp_start "$PY"
"$PY" -m ruff check agent tests bench installer scripts
"$PY" -m mypy agent
"$PY" -m pytest -q -m "${POWERGATE_PYTEST_MARK:-not real}" "$@"  # the fresh-machine test narrows it
llama_cpp_wait
rc=0
"$PY" -m pytest -q -m real "$@" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 5 ]  # 5: the arguments selected no real-model test
