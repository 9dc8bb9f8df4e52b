#!/usr/bin/env bash
# Build geoseg's sdist and wheel as a user's `python -m build` does (the wheel is built from the
# sdist, which proves the sdist complete) and install the wheel, with the repository's
# constraints, into a fresh virtual environment: what a user or a cluster worker gets.
#
#   bash tests/install/wheel_venv.sh DIR     # -> DIR/dist/geoseg-*.{whl,tar.gz}, DIR/venv
#
# Prints the venv's path last. Used by tests/run_tests.sh (CI) and, when GEOSEG_WHEEL_VENV is
# not set, by the install tests themselves (tests/install/conftest.py).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
python="${PYTHON:-python3}"

rm -rf "$out/dist" "$out/venv"
"$python" -m build --outdir "$out/dist" "$repo" >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
wheels=("$out"/dist/geoseg-*.whl)
"$python" -m venv "$out/venv"
"$out/venv/bin/python" -m pip install -q -c "$repo/constraints.txt" "${wheels[0]}" >"$out/install.log" 2>&1 || { cat "$out/install.log" >&2; exit 1; }
echo "$out/venv"
