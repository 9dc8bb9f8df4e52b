"""Steps that build and clean the vector road network."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from geoseg.pipeline.step import Step, StepContext, ceil_px
from geoseg.raster import GeoInfo
from geoseg.road.centerlines import width_from_histogram
from geoseg.road.connect import clean_network
from geoseg.road.network import dissolve_degree2, simplify_graph, skeleton_to_graph
from geoseg.steps.road_width import WIDTH_STATS_BYTES_PER_PIXEL, width_partial, width_stats_halo_px

__all__ = ["RoadNetwork", "ConnectNetwork"]


class RoadNetwork(Step):
    """Topological road network from a thin centerline raster (nodes at junctions and ends).

    Each edge's ``saliency`` is the mean of the tensor-voting saliency along it when the
    pipeline has it, else of the road probability; its ``confidence`` (0-1, the same scale
    for every scene) is the mean of the non-maximum suppression's confidence, else of the
    road probability.
    """

    type_name = "road_network"
    takes = ("centerline",)
    gives = ("network",)
    uses_if_present = ("saliency", "confidence", "probability", "centerline_offset")
    vectorizer = True

    simplify_m: float = Field(0.5, ge=0, description="Douglas-Peucker tolerance in metres (0 keeps every pixel vertex)")

    def halo_px(self, geo: GeoInfo) -> int:
        """Tracing looks at the 8 neighbours; a margin keeps junction blobs whole at tile borders."""
        return 3

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Trace the centerline pixels into edges between junction and end nodes."""
        saliency = layers.get("saliency", layers.get("probability"))
        confidence = layers.get("confidence", layers.get("probability"))
        return {"network": skeleton_to_graph(layers["centerline"], saliency=saliency, confidence=confidence, offsets=layers.get("centerline_offset"))}

    def finalize(self, network: Any, ctx: StepContext) -> Any:
        """Merge edges through degree-2 nodes and simplify (once, on the stitched network)."""
        graph = dissolve_degree2(network)
        return simplify_graph(graph, ctx.px(self.simplify_m)) if self.simplify_m > 0 else graph


class ConnectNetwork(Step):
    """Fitting-based connection and cleaning: junctions merged, gaps closed, spurs pruned.

    Lengths scale with the road width, estimated from the road mask (or the probability
    > 0.5) when an earlier step gives one, else taken from ``road_width_m``.
    """

    type_name = "connect_network"
    takes = ("network",)
    gives = ("network",)
    stats_bytes_per_pixel = WIDTH_STATS_BYTES_PER_PIXEL

    road_width_m: float | None = Field(None, gt=0, description="typical road width in metres; default: measured on the mask")
    fallback_road_width_m: float = Field(7.0, gt=0, description="road width used when there is no mask to measure it on")
    max_road_width_m: float = Field(40.0, gt=0, description="upper bound of the measured road width (bounds the halo)")
    max_gap_m: float | None = Field(None, ge=0, description="longest gap bridged between collinear ends; default: max_gap_factor x road width")
    max_gap_factor: float = Field(2.0, ge=0, description="longest gap as a multiple of the road width (when max_gap_m is not set)")
    max_angle_deg: float = Field(30.0, ge=0, le=90, description="how far the fitted directions of two ends may disagree")
    spur_length_m: float | None = Field(None, ge=0, description="dangling edges shorter than this are pruned; default: the road width")
    junction_radius_m: float | None = Field(None, ge=0, description="junction nodes closer than this merge into one; default: the road width")
    extend_to_border: bool = Field(True, description="extend ends that head out of the image to its border")
    simplify_m: float = Field(0.5, ge=0, description="Douglas-Peucker tolerance in metres")

    def halo_px(self, geo: GeoInfo) -> int:
        """Connection looks as far as the longest gap."""
        gap_m = self.max_gap_m if self.max_gap_m is not None else self.max_gap_factor * self.max_road_width_m
        return ceil_px(geo.metres_to_pixels(gap_m))

    def statistics_inputs(self) -> tuple[str, ...]:
        """The road mask (or probability) whose width sets the scales, unless given."""
        return () if self.road_width_m is not None else ("mask", "probability")

    def stats_halo_px(self, geo: GeoInfo) -> int:
        """Measuring a width sees half the widest road around each pixel (:func:`width_stats_halo_px`)."""
        return width_stats_halo_px(geo, self.max_road_width_m)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> Any:
        """Road-width histogram of the tile's core."""
        return width_partial(layers, ctx)

    def fit(self, partials: list[Any]) -> Step:
        """Keep the scene's road-width histogram."""
        return self.with_fitted(histograms=partials)

    def _road_width_px(self, ctx: StepContext) -> float:
        if self.road_width_m is not None:
            return ctx.px(self.road_width_m)
        return width_from_histogram(self.fitted("histograms"), ctx.px(self.fallback_road_width_m), ctx.px(self.max_road_width_m))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Clean the network (see :func:`geoseg.road.connect.clean_network`)."""
        width = self._road_width_px(ctx)
        opt = {
            "spur_length_px": None if self.spur_length_m is None else ctx.px(self.spur_length_m),
            "junction_radius_px": None if self.junction_radius_m is None else ctx.px(self.junction_radius_m),
        }
        graph = clean_network(
            layers["network"],
            road_width_px=width,
            max_gap_px=ctx.px(self.max_gap_m) if self.max_gap_m is not None else self.max_gap_factor * width,
            max_angle_deg=self.max_angle_deg,
            shape=ctx.geo.height_width if self.extend_to_border else None,
            simplify_tolerance_px=ctx.px(self.simplify_m),
            **opt,
        )
        return {"network": graph}
