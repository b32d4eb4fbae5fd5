#!/usr/bin/env bash
# The whole test suite: installs powergate with its test extras, lints, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
python3 -m ruff check agent tests bench installer
python3 -m mypy agent
python3 -m pytest -q "$@"
