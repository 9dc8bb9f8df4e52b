"""Visual reports: road networks drawn over their scenes, and an HTML report of a batch.

>>> from geoseg.report import render_overlay, write_report
>>> render_overlay("sample_data/scene_a.tif", "out/scene_a.shp", max_size=512).save("a.png")  # doctest: +SKIP
>>> write_report("out/", truth="sample_data/")                                             # doctest: +SKIP
PosixPath('out/report.html')
"""

from __future__ import annotations

from geoseg.report.batch import REPORT_NAME, write_report
from geoseg.report.overlay import confidence_colour, read_preview, render_overlay, save_overlay
from geoseg.report.stats import NetworkStats, network_stats, read_network

__all__ = [
    "write_report",
    "render_overlay",
    "save_overlay",
    "read_preview",
    "confidence_colour",
    "REPORT_NAME",
    "NetworkStats",
    "network_stats",
    "read_network",
]
