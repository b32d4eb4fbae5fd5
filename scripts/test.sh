#!/usr/bin/env bash
# The whole test suite: installs powergate with its test extras into this checkout's
# own virtualenv (.venv, or $POWERGATE_VENV), lints, type-checks, runs pytest.
# A private venv keeps PEP 668 system Pythons untouched and lets several checkouts
# be tested side by side without replacing each other's editable install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${POWERGATE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PATH="$PWD/$VENV/bin:$PATH"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
"$PY" -m ruff check agent tests bench installer
"$PY" -m mypy agent
"$PY" -m pytest -q "$@"
