#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
# 1. installs geoseg for development (editable) with its test dependencies (torch pinned to the
#    CPU build by constraints.txt),
# 2. builds the sdist and wheel and installs the wheel into a fresh venv, as a user does
#    (tests/install/wheel_venv.sh; GEOSEG_WHEEL_VENV set beforehand reuses a venv),
# 3. lints geoseg/ with ruff, checks its format (ruff format) and type-checks it with mypy, then runs the main test suite and the
#    docstring examples (tests/install/ runs every shipped pipeline and training config by
#    name through that venv, from folders that hold only a scene and a model),
# 4. runs the QGIS plugin tests in Debian's QGIS (installed by .ci/qgis_tests.sh when missing):
#    the plugin installed from its zip, running the wheel-installed geoseg.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt -e ".[test]"
if [ -z "${GEOSEG_WHEEL_VENV:-}" ]; then
    wheel_dir="$(mktemp -d)"
    trap 'rm -rf "$wheel_dir"' EXIT
    echo "building the wheel and installing it into a fresh venv in $wheel_dir ..." >&2
    GEOSEG_WHEEL_VENV="$(bash tests/install/wheel_venv.sh "$wheel_dir" | tail -n 1)"
    export GEOSEG_WHEEL_VENV
fi
python3 -m ruff check geoseg  # lint rules: pyproject.toml [tool.ruff]
python3 -m ruff format --check geoseg  # one code format (ruff's, line length 160)
python3 -m mypy              # type check of geoseg/: pyproject.toml [tool.mypy]
python3 -m pytest -q "$@"
if [ -f .ci/qgis_tests.sh ]; then
    GEOSEG_EXECUTABLE="$GEOSEG_WHEEL_VENV/bin/geoseg" bash .ci/qgis_tests.sh
fi
