"""Road extraction metrics: buffer scores (Wiedemann 1998), APLS (SpaceNet) and mask scores.

Algorithms on arrays, shapely geometries and networkx graphs; no file I/O.
"""

from __future__ import annotations

from geoseg.metrics.apls import AplsResult, apls
from geoseg.metrics.buffer import (
    BufferScores,
    quality_from,
    raster_buffer_scores,
    vector_buffer_scores,
)
from geoseg.metrics.iou import binary_scores, boundary_f_score, mask_boundary

__all__ = [
    "AplsResult",
    "BufferScores",
    "apls",
    "binary_scores",
    "boundary_f_score",
    "mask_boundary",
    "quality_from",
    "raster_buffer_scores",
    "vector_buffer_scores",
]
