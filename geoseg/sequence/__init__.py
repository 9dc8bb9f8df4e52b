"""One-pass object segmentation and tracking through image sequences (OVS-Net style).

See docs/SEQUENCES.md. Main entry points: :func:`run_sequence` (pipeline → GeoDataFrame of
per-frame polygons with track ids), :func:`geoseg.sequence.infer.segment_sequence`,
:func:`geoseg.sequence.train.train_sequence_model`, :func:`geoseg.sequence.io.read_frames`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_sequence"]


def run_sequence(*args: Any, **kwargs: Any) -> Any:
    """Run a sequence pipeline; see :func:`geoseg.pipeline.sequence.run_sequence` (imported lazily: torch)."""
    from geoseg.pipeline.sequence import run_sequence as _run

    return _run(*args, **kwargs)
