"""A wheel-installed geoseg in a fresh virtual environment, for the install tests.

``GEOSEG_WHEEL_VENV`` names a venv that ``tests/install/wheel_venv.sh`` made (``tests/run_tests.sh``
builds it once for these tests and the QGIS tests); without it the fixture builds one here
(about a minute: ``python -m build``, then ``pip install`` of the wheel with the constraints).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "install" / "wheel_venv.sh"


@dataclass(frozen=True)
class WheelVenv:
    """A venv with geoseg installed from its wheel, and the folder of that wheel and sdist."""

    venv: Path
    dist: Path

    @property
    def geoseg(self) -> Path:
        return self.venv / "bin" / "geoseg"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: object, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        """``geoseg ARGS`` of the venv in ``cwd``, as a user's shell runs it (no PYTHONPATH)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["OMP_NUM_THREADS"] = "1"
        result = subprocess.run([str(self.geoseg), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"geoseg {' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    """geoseg installed from its freshly built wheel into a fresh venv."""
    given = os.environ.get("GEOSEG_WHEEL_VENV")
    if given:
        venv = Path(given)
        if not (venv / "bin" / "geoseg").is_file():
            pytest.fail(f"GEOSEG_WHEEL_VENV={given} has no bin/geoseg (make it with {BUILD_SCRIPT} DIR)")
        return WheelVenv(venv, venv.parent / "dist")
    where = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(["bash", str(BUILD_SCRIPT), str(where)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} failed:\n{built.stderr[-4000:]}")
    return WheelVenv(where / "venv", where / "dist")
