"""Batches: many scenes through one pipeline, each failure isolated, each output atomic."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.errors import ConfigError, GeosegError
from geoseg.pipeline.outputs import output_paths, write_outputs

if TYPE_CHECKING:
    from geoseg.pipeline.pipeline import Pipeline

__all__ = ["SceneReport", "run_batch", "ProgressCallback"]

log = logging.getLogger("geoseg.batch")

#: Called after each scene with (scenes done, scenes total, the scene's report).
ProgressCallback = Callable[[int, int, "SceneReport"], None]


@dataclass
class SceneReport:
    """What happened to one scene of a batch."""

    input: str
    status: str  # "done" or "failed"
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _check_stems(inputs: Sequence[Path]) -> None:
    counts = Counter(p.stem for p in inputs)
    clashes = sorted(stem for stem, n in counts.items() if n > 1)
    if clashes:
        detail = "; ".join(f"{stem}: " + ", ".join(str(p) for p in inputs if p.stem == stem) for stem in clashes)
        raise ConfigError(f"inputs would write the same output name ({detail}); rename them or run them in separate batches")


def run_batch(
    pipeline: Pipeline,
    inputs: Sequence[str | Path],
    outdir: str | Path,
    *,
    fmt: str = "shp",
    progress: ProgressCallback | None = None,
) -> list[SceneReport]:
    """Run ``pipeline`` on every input and write ``OUTDIR/<input stem>.<ext>``.

    A scene that fails is reported (``status="failed"`` with the error message) and the
    batch goes on with the others; nothing partial is left for it.

    Parameters
    ----------
    pipeline : Pipeline
        A bound pipeline (all parameters set).
    inputs : sequence of path
        Scene files.
    outdir : path
        Output folder (created if needed).
    fmt : {"shp", "gpkg", "geojson"}
        Vector output format.
    progress : callable, optional
        Called after each scene.

    Returns
    -------
    list of SceneReport
        One per input, in input order.
    """
    paths = [Path(p) for p in inputs]
    _check_stems(paths)
    out = Path(outdir)
    steps = pipeline.steps  # validates everything before the first scene
    outputs = pipeline.output_layers()
    output_paths(outputs, out, "x", fmt)  # fails early on a bad format
    reports: list[SceneReport] = []
    for path in paths:
        start = time.perf_counter()
        try:
            result = pipeline.run(path, _steps=steps)
            written = write_outputs(result, outputs, out, path.stem, fmt)
            report = SceneReport(str(path), "done", [str(p) for p in written], warnings=result.warnings)
        except GeosegError as exc:
            report = SceneReport(str(path), "failed", error=str(exc))
            log.error("%s", exc)
            log.debug("traceback", exc_info=True)
        except Exception as exc:  # noqa: BLE001 - a batch must go on; the error is reported
            report = SceneReport(str(path), "failed", error=f"{path}: unexpected {type(exc).__name__}: {exc}")
            log.error("%s", report.error, exc_info=log.isEnabledFor(logging.DEBUG))
        report.seconds = round(time.perf_counter() - start, 3)
        reports.append(report)
        if progress is not None:
            progress(len(reports), len(paths), report)
    return reports
