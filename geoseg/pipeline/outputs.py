"""Writing a scene's results to files: ``OUTDIR/<stem>.<ext>``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoseg.errors import ConfigError
from geoseg.pipeline.engine import RunResult
from geoseg.pipeline.step import layer_kind
from geoseg.raster import write_raster
from geoseg.vector import FORMATS, write_network

__all__ = ["output_paths", "write_outputs"]


def _raster_name(stem: str, layer: str, outputs: list[str]) -> str:
    rasters = [o for o in outputs if layer_kind(o) == "raster"]
    alone = len(rasters) == 1 and "network" not in outputs
    return f"{stem}.tif" if alone else f"{stem}_{layer}.tif"


def output_paths(outputs: list[str], outdir: Path, stem: str, fmt: str) -> list[Path]:
    """The files a scene's outputs will be written to (main network file first)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ext = FORMATS[fmt][0]
    paths: list[Path] = []
    if "network" in outputs:
        paths.append(outdir / f"{stem}{ext}")
        if "nodes" in outputs and fmt != "gpkg":
            paths.append(outdir / f"{stem}_nodes{ext}")
    paths += [outdir / _raster_name(stem, o, outputs) for o in outputs if layer_kind(o) == "raster"]
    return paths


def _as_written(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    return array


def write_outputs(result: RunResult, outputs: list[str], outdir: Path, stem: str, fmt: str) -> list[Path]:
    """Write the chosen layers of ``result``; each file atomically.

    Masks and centerlines are written as uint8 0/255 GeoTIFFs, probabilities and other
    float layers as float32, networks as vector files in ``fmt`` (nodes beside them when
    ``nodes`` is among ``outputs``).
    """
    written: list[Path] = []
    for layer in outputs:
        if layer == "nodes":
            continue
        if layer == "network":
            edges, nodes = result.frames()
            written += write_network(edges, nodes if "nodes" in outputs else None, outdir / f"{stem}{FORMATS[fmt][0]}", fmt=fmt)
        else:
            written.append(write_raster(outdir / _raster_name(stem, layer, outputs), _as_written(result.layers[layer]), result.geo))
    return written
