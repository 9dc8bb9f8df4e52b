#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
# 1. installs geoseg and its test dependencies (torch pinned to the CPU build by constraints.txt),
# 2. runs the main test suite,
# 3. runs the QGIS plugin tests in Debian's QGIS (installed by .ci/qgis_tests.sh when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt -e ".[test]"
python3 -m pytest -q "$@"
if [ -f .ci/qgis_tests.sh ]; then
    bash .ci/qgis_tests.sh
fi
