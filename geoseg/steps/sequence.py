"""Sequence step: objects segmented and tracked through all the frames of a sequence pipeline.

The step of ``kind: sequence`` pipelines (``pipelines/sequence_objects.yaml``): takes the
``frames`` layer (the whole sequence, read by :mod:`geoseg.pipeline.sequence`), gives the
``objects`` features layer: one (Multi)Polygon per object and frame, with its track id, in the
frames' CRS. The algorithm (OVS-Net style, arXiv 1905.10064) is
:func:`geoseg.sequence.infer.segment_sequence`; this step only loads the model file and the
optional first-frame masks, and turns the masks into polygons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field, PrivateAttr

from geoseg.errors import InputMismatchError
from geoseg.pipeline.step import Step, StepContext
from geoseg.sequence.io import Frame
from geoseg.sequence.track import TrackingParams
from geoseg.steps.model_cache import load_cached

if TYPE_CHECKING:  # torch is imported when a sequence runs, not when the step registry is listed
    import geopandas as gpd

    from geoseg.sequence.infer import InferenceParams, ObjectMask
    from geoseg.sequence.modelfile import SequenceModel

__all__ = ["SegmentSequence", "masks_to_frame"]

#: Columns of the ``objects`` layer (``time`` only when some frame carries an acquisition tag).
OBJECT_COLUMNS = ("frame", "track_id", "time", "score", "area_px", "source")


class SegmentSequence(Step):
    """Segment and track objects through the frames; gives the ``objects`` features layer.

    Examples
    --------
    >>> step = SegmentSequence(model="cars.ovs.npz", score_threshold=0.4)
    >>> step.inputs(), step.outputs(), step.inference_params().score_threshold
    (('frames',), ('objects',), 0.4)
    """

    type_name: ClassVar[str] = "segment_sequence"
    takes: ClassVar[tuple[str, ...]] = ("frames",)
    gives: ClassVar[tuple[str, ...]] = ("objects",)
    new_layers: ClassVar[dict[str, str]] = {"objects": "features"}

    model: str = Field(description="sequence model file (geoseg train sequence ... -o FILE)")
    first_masks: str | None = Field(None, description="label raster of frame 0 (values = track ids): semi-supervised mode")
    score_threshold: float = Field(0.3, ge=0, description="smallest centre-heatmap score of a detection")
    mask_threshold: float = Field(0.5, gt=0, lt=1, description="mask probability threshold")
    min_area_px: int = Field(8, ge=0, description="smallest object mask kept (pixels)")
    max_coast: int = Field(2, ge=0, description="frames a track is propagated without a detection")
    discover: bool = Field(True, description="start tracks from new detections (false: only first_masks objects)")
    memory_frames: int = Field(30, ge=0, description="frames a lost track is remembered for re-identification")
    reid_similarity: float = Field(0.6, ge=-1, le=1, description="smallest embedding cosine similarity to re-identify a lost track")
    gate_px: float = Field(24.0, gt=0, description="largest centre jump (pixels/frame) of a tracked object")

    _loaded: SequenceModel | None = PrivateAttr(default=None)

    def with_model(self, model: SequenceModel) -> SegmentSequence:
        """A copy that runs ``model`` (already loaded) instead of reading the file ``model``."""
        copy = self.model_copy()
        copy._loaded = model
        return copy

    def inference_params(self) -> InferenceParams:
        """The step's fields as the settings of :func:`~geoseg.sequence.infer.segment_sequence`."""
        from geoseg.sequence.infer import InferenceParams

        tracking = TrackingParams(memory_frames=self.memory_frames, reid_similarity=self.reid_similarity, gate_px=self.gate_px)
        return InferenceParams(
            score_threshold=self.score_threshold,
            mask_threshold=self.mask_threshold,
            min_area_px=self.min_area_px,
            max_coast=self.max_coast,
            discover=self.discover,
            tracking=tracking,
        )

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Segment ``layers["frames"]`` (a list of :class:`~geoseg.sequence.io.Frame`)."""
        from geoseg.sequence.infer import segment_sequence
        from geoseg.sequence.modelfile import load_sequence_model

        frames: list[Frame] = layers["frames"]
        model = self._loaded if self._loaded is not None else load_cached(self.model, load_sequence_model)
        first = _first_masks(self.first_masks, frames)
        results = segment_sequence(model, [fr.array for fr in frames], first_masks=first, params=self.inference_params())
        return {"objects": masks_to_frame(results, frames)}


def _first_masks(path: str | None, frames: Sequence[Frame]) -> np.ndarray | None:
    if not path:
        return None
    from geoseg.raster import read_raster

    labels = read_raster(path).array[0]
    if not frames or labels.shape != frames[0].array.shape[1:]:
        size = frames[0].array.shape[1:] if frames else "(no frames)"
        raise InputMismatchError(f"{path}: first-frame masks {labels.shape} do not match the frame size {size}")
    return labels.astype(np.int64)


def _polygon(mask: np.ndarray, transform: Any) -> Any:
    import rasterio.features
    from shapely.geometry import MultiPolygon, shape

    polys = [shape(geom) for geom, value in rasterio.features.shapes(mask.astype(np.uint8), mask=mask, transform=transform) if value]
    return MultiPolygon(polys)


def masks_to_frame(results: Sequence[Sequence[ObjectMask]], frames: Sequence[Frame]) -> gpd.GeoDataFrame:
    """Per-frame object masks (:func:`geoseg.sequence.infer.segment_sequence`) as polygons in the frames' CRS.

    Parameters
    ----------
    results : sequence of sequence of ObjectMask
        The objects found in each frame, in the order of ``frames``.
    frames : sequence of Frame
        The frames (their index, time, source and georeferencing are used).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per object and frame: ``frame`` (0-based), ``track_id``, [``time``], ``score``,
        ``area_px``, ``source`` and a MultiPolygon; pixel coordinates for frames without
        georeferencing.
    """
    import geopandas as gpd

    with_time = any(fr.time for fr in frames)
    columns = [c for c in OBJECT_COLUMNS if with_time or c != "time"]
    rows = []
    for objs, fr in zip(results, frames):
        for o in objs:
            row: dict[str, Any] = {"frame": int(fr.index), "track_id": int(o.track_id), "time": fr.time or ""}
            row.update(score=round(float(o.score), 4), area_px=int(o.mask.sum()), source=fr.source, geometry=_polygon(o.mask, fr.geo.transform))
            rows.append({c: row[c] for c in [*columns, "geometry"]})
    crs = frames[0].geo.crs if frames and frames[0].geo.georeferenced else None
    frame = (
        gpd.GeoDataFrame(rows, columns=[*columns, "geometry"], geometry="geometry", crs=crs)
        if rows
        else gpd.GeoDataFrame({c: [] for c in columns}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    )
    return frame.astype({"frame": "int64", "track_id": "int64", "area_px": "int64"})
