#!/usr/bin/env bash
# Inspects a built installer: a Windows PE32 (NSIS) executable that contains the
# powergate wheel, and a wheel set complete for Python 3.11 and 3.12 on win_amd64
# (every dependency resolves offline from the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
EXE="$(ls dist/powergate-setup-*.exe | tail -1)"
PAYLOAD="build/installer/payload"
file "$EXE" | tee /dev/stderr | grep -q "PE32 executable" || { echo "not a PE32 executable" >&2; exit 1; }
file "$EXE" | grep -q "Nullsoft Installer" || { echo "not an NSIS installer" >&2; exit 1; }
LISTING="$(7z l "$EXE")"
echo "$LISTING" | grep -Eq 'wheels[\\/]powergate-[0-9.]+-py3-none-any\.whl' || { echo "the powergate wheel is not inside" >&2; exit 1; }
echo "$LISTING" | grep -q "stop_agent.py" || { echo "stop_agent.py is not inside" >&2; exit 1; }
for PY in 3.11 3.12; do
  # Resolve powergate for Windows, offline, from the bundle alone (uv evaluates the
  # Windows markers; pip would use this Linux machine's).
  python3 -m uv pip install --quiet --dry-run --no-index --find-links "$PAYLOAD/wheels" \
    --python-platform x86_64-pc-windows-msvc --python-version "$PY" --only-binary :all: \
    --target "build/installer/check-$PY" powergate
  echo "wheel set complete for Python $PY on win_amd64"
done
echo "installer OK: $EXE ($(du -h "$EXE" | cut -f1))"
