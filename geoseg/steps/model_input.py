"""The options that every classifier step shares: which scene bands feed the model, and a scale."""

from __future__ import annotations

from pydantic import Field, field_validator

from geoseg.pipeline.step import Step

__all__ = ["ModelInputStep"]


class ModelInputStep(Step):
    """A step that feeds scene bands to a model (``mjcr_classify``, ``nn_classify``).

    The model records the scenes it was trained on (:mod:`geoseg.scene_checks`); a scene unlike
    them is refused with the ``bands`` or ``scale`` value that would fit, and neither is ever
    applied unless the user gives it.
    """

    bands: list[int] | None = Field(
        None,
        min_length=1,
        description="1-based scene bands fed to the model, in its band order (like rio's --bidx), e.g. [1, 2, 3] of an RGBN scene; "
        "default: the model's bands of a scene like its training scenes",
    )
    scale: float | None = Field(
        None, gt=0, description="factor applied to the pixel values before the model, e.g. 0.125 for 11-bit counts and a model trained on 8-bit scenes"
    )

    @field_validator("bands")
    @classmethod
    def _one_based(cls, bands: list[int] | None) -> list[int] | None:
        if bands is not None and min(bands) < 1:
            raise ValueError("band numbers start at 1")
        return bands
