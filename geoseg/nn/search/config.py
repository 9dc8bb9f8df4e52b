"""Declarative configuration of the architecture search (``geoseg search arch CONFIG.yaml``).

A YAML file validated by pydantic models with ``extra="forbid"`` (a misspelt key is an error
naming the field); ``--set key.sub=value`` overrides any field. The ``data``, ``loss``,
``optimizer`` and ``inference`` sections are those of the training config
(:mod:`geoseg.nn.config`). See ``pipelines/training/road_gas.yaml`` for a documented example.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from geoseg.configfile import load_config
from geoseg.errors import ConfigError
from geoseg.nn.config import DataConfig, InferenceConfig, LossConfig, OptimizerConfig, StrictModel
from geoseg.nn.search.ops import OP_NAMES
from geoseg.nn.search.space import DEFAULT_STRIDES, check_layout
from geoseg.shipped import resolve_file

__all__ = ["LatencyConfig", "RetrainConfig", "SearchConfig", "SearchLoopConfig", "SpaceConfig", "load_search_config"]


class SpaceConfig(StrictModel):
    """The search space: cells, their nodes and candidate operations."""

    width: int = Field(16, ge=4, le=128, description="channels at stride 4 (a cell at stride s has width*s/4)")
    strides: list[int] = Field(list(DEFAULT_STRIDES), description="stride of each cell (4, 8 or 16; non-decreasing; last 16)")
    nodes: int = Field(2, ge=1, le=4, description="intermediate nodes per cell")
    ops: list[str] = Field(list(OP_NAMES), description="candidate operations of every edge")

    @field_validator("ops")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [op for op in value if op not in OP_NAMES]
        if unknown or len(set(value)) != len(value) or len(value) < 2:
            raise ValueError(f"ops must be at least two distinct names of {', '.join(OP_NAMES)} (unknown: {unknown})")
        return value

    @model_validator(mode="after")
    def _layout(self) -> SpaceConfig:
        try:
            check_layout(self.strides, self.nodes)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class SearchLoopConfig(StrictModel):
    """First-order alternating search: weight steps on one data split, architecture steps on the other."""

    epochs: int = Field(4, ge=1)
    iterations_per_epoch: int = Field(25, ge=1, description="weight steps (and architecture steps after warm-up) per epoch")
    warmup_iterations: int = Field(20, ge=0, description="weight-only steps before architecture updates start")
    crop_px: int | None = Field(None, ge=32, multiple_of=16, description="crop side during search (default: data.crop_px; a multiple of 16)")
    batch_size: int | None = Field(None, ge=1, description="crops per search batch (default: data.batch_size)")
    weight_lr: float = Field(3e-3, gt=0, description="AdamW learning rate of the super-network weights")
    weight_decay: float = Field(1e-4, ge=0)
    arch_lr: float = Field(0.03, gt=0, description="Adam learning rate of the architecture parameters (and the GCN)")
    arch_weight_decay: float = Field(1e-3, ge=0)
    gcn: bool = Field(True, description="graph-guided communication between cells (false: ablation, cells' parameters used as they are)")
    gcn_hidden: int = Field(16, ge=1, description="hidden units of the GCN")
    gcn_gamma: float = Field(0.5, ge=0, description="weight of the GCN output added to the parameters")


class LatencyConfig(StrictModel):
    """The latency constraint and how the lookup table is measured."""

    target_ms: float | None = Field(None, gt=0, description="target latency per tile, ms (--target-ms)")
    weight: float = Field(2.0, ge=0, description="weight of the hinge max(0, E[lat]/target - 1) in the search loss")
    tile_px: int = Field(512, ge=32, multiple_of=16, description="tile side the latencies are measured for (a multiple of 16)")
    repeats: int = Field(7, ge=1, description="timed runs per measurement (median)")
    warmup: int = Field(2, ge=0, description="untimed runs before them")
    rounds: int = Field(3, ge=1, description="interleaved rounds of all timings; the median over rounds is kept")


class RetrainConfig(StrictModel):
    """Training the derived network from scratch."""

    epochs: int = Field(10, ge=1)
    iterations_per_epoch: int = Field(50, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)


class SearchConfig(StrictModel):
    """A full search: space, search loop, latency constraint, retraining."""

    schema_version: Literal[1] = 1
    description: str = ""
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads for search, timing and retraining (default: all cores)")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="auto = CUDA when available; latencies are measured there")
    data: DataConfig = Field(default_factory=DataConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    search: SearchLoopConfig = Field(default_factory=SearchLoopConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)


def load_search_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SearchConfig:
    """Read and validate a search config (``None``: the defaults), with ``--set`` overrides.

    Raises
    ------
    ConfigError
        Unreadable YAML, or a misspelt or invalid field (the message names the file and field),
        a name that is neither a file nor a shipped config (``road_gas``).
    """
    return load_config(SearchConfig, None if path is None else resolve_file(path, "training"), overrides, "search config", command="geoseg search arch")
