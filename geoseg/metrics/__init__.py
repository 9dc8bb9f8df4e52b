"""Road extraction metrics: buffer scores (Wiedemann 1998), APLS (SpaceNet), TOPO, junctions, components, mask scores.

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
from geoseg.metrics.line_graph import graph_from_lines, join_line_ends
from geoseg.metrics.topology import GraphMetrics, graph_metrics, junction_scores, topo_scores

__all__ = [
    "AplsResult",
    "BufferScores",
    "GraphMetrics",
    "apls",
    "graph_from_lines",
    "join_line_ends",
    "binary_scores",
    "boundary_f_score",
    "graph_metrics",
    "junction_scores",
    "mask_boundary",
    "quality_from",
    "raster_buffer_scores",
    "topo_scores",
    "vector_buffer_scores",
]
