#!/usr/bin/env bash
# QGIS plugin tests (tests_qgis/) in Debian's QGIS, run by .ci/run via tests/run_tests.sh.
# Installs QGIS (python3-qgis, qgis-providers) and pytest for /usr/bin/python3 when missing
# (needs root and Debian's package mirrors), then runs the tests under /usr/bin/python3 against
# the geoseg executable named by GEOSEG_EXECUTABLE (tests/run_tests.sh: the wheel-installed one),
# else the one on PATH. Exit code = test result.
set -euo pipefail
cd "$(dirname "$0")/.."

QGIS_PYTHON=/usr/bin/python3

missing=()
"$QGIS_PYTHON" -c "import qgis.core" >/dev/null 2>&1 || missing+=(python3-qgis qgis-providers)
"$QGIS_PYTHON" -c "import pytest" >/dev/null 2>&1 || missing+=(python3-pytest)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "qgis_tests: installing ${missing[*]} needs root (apt-get)" >&2
        exit 1
    fi
    echo "qgis_tests: installing ${missing[*]} ..." >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ -z "${GEOSEG_EXECUTABLE:-}" ]; then
    GEOSEG_EXECUTABLE="$(command -v geoseg || true)"
fi
if [ -z "$GEOSEG_EXECUTABLE" ]; then
    echo "qgis_tests: no geoseg executable on PATH (install geoseg first, or set GEOSEG_EXECUTABLE)" >&2
    exit 1
fi
export GEOSEG_EXECUTABLE

QT_QPA_PLATFORM=offscreen "$QGIS_PYTHON" -m pytest tests_qgis -q "$@"
