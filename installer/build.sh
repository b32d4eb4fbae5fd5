#!/usr/bin/env bash
# Builds dist/powergate-setup-<version>.exe on Linux (or anywhere with makensis):
#   1. the project's wheel;
#   2. the win_amd64 wheels of every dependency, for Python 3.11 and 3.12, so the
#      installer sets up a private virtualenv offline, from the bundle;
#   3. makensis with installer/powergate.nsi.
# Usage: bash installer/build.sh   (needs: python3 with pip, makensis from Debian's nsis)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')"
PAYLOAD="$ROOT/build/installer/payload"
rm -rf "$PAYLOAD" && mkdir -p "$PAYLOAD/wheels" "$ROOT/dist"

python3 -m pip wheel --quiet --no-deps --wheel-dir "$PAYLOAD/wheels" "$ROOT"
# pip evaluates environment markers (tzdata on Windows, python-xlib on Linux...) for the
# machine it runs on; uv resolves for Windows itself, so the bundle has what Windows needs.
python3 -m pip install --quiet --disable-pip-version-check uv
for PY in 3.11 3.12; do
  python3 -m uv pip compile "$ROOT/pyproject.toml" --quiet --no-header --no-annotate \
    --python-platform x86_64-pc-windows-msvc --python-version "$PY" -o "$PAYLOAD/requirements-$PY.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --platform win_amd64 --implementation cp --python-version "$PY" \
    --dest "$PAYLOAD/wheels" -r "$PAYLOAD/requirements-$PY.txt"
done
cp "$ROOT/assets/icons/powergate.ico" "$PAYLOAD/powergate.ico"
cp "$ROOT/installer/stop_agent.py" "$PAYLOAD/stop_agent.py"

makensis -V2 -DVERSION="$VERSION" -DPAYLOAD="$PAYLOAD" -DOUTFILE="$ROOT/dist/powergate-setup-$VERSION.exe" "$ROOT/installer/powergate.nsi"
echo "built dist/powergate-setup-$VERSION.exe"
