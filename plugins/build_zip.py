"""Build the QGIS plugin ZIP (``Plugins > Manage and Install Plugins > Install from ZIP``).

    python plugins/build_zip.py                 # -> dist/geoseg_qgis_plugin.zip
    python plugins/build_zip.py --out my.zip

The archive holds the top folder ``geoseg/`` with the plugin's files, without ``__pycache__``,
compiled or hidden files. It is deterministic: files in sorted order, fixed timestamps and
permissions, so building twice gives byte-identical archives.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import List, Optional

PLUGIN_DIR = Path(__file__).resolve().parent / "qgis" / "geoseg"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "dist" / "geoseg_qgis_plugin.zip"
#: Timestamp of every entry (the earliest a ZIP can hold), for reproducible archives.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def plugin_files(plugin_dir: Path = PLUGIN_DIR) -> List[Path]:
    """The files to ship, sorted: no ``__pycache__``, compiled or hidden files."""
    files = []
    for path in sorted(plugin_dir.rglob("*")):
        parts = path.relative_to(plugin_dir).parts
        if not path.is_file() or "__pycache__" in parts or any(part.startswith(".") for part in parts):
            continue
        if path.suffix in {".pyc", ".pyo"}:
            continue
        files.append(path)
    return files


def build_zip(out: Path = DEFAULT_OUT, plugin_dir: Path = PLUGIN_DIR) -> Path:
    """Write the plugin archive to ``out`` (its folder is created) and return ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files(plugin_dir):
            name = (Path(plugin_dir.name) / path.relative_to(plugin_dir)).as_posix()
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            archive.writestr(info, path.read_bytes())
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"archive to write (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    print(build_zip(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
