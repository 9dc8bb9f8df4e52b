"""Model files of the sequence model: torch weights as numpy arrays + JSON metadata.

Same safe format as :mod:`geoseg.nn.modelfile` (:mod:`geoseg.modelfile`: ``.npz`` read with
``allow_pickle=False``), kind ``"ovs-sequence"``: each tensor of the state dict is the array
``state/<name>``; the metadata holds the hyper-parameters, the per-band normalisation, the
inference defaults and a training summary. Loading rebuilds :class:`~geoseg.sequence.model.OVSNet`
from the hyper-parameters and copies the arrays in (names and shapes checked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoseg.errors import InputMismatchError, ModelFileError
from geoseg.modelfile import read_model, save_model
from geoseg.nn.state import load_state, state_arrays
from geoseg.sequence.model import OVSNet, build_ovsnet

__all__ = ["KIND", "SequenceModel", "build_sequence_model", "load_sequence_model", "save_sequence_model"]

KIND = "ovs-sequence"
_STATE = "state/"


@dataclass
class SequenceModel:
    """The sequence network and what is needed to apply it.

    Attributes
    ----------
    module : OVSNet
        The network.
    hyper : dict
        Constructor arguments of :class:`OVSNet`.
    band_mean, band_std : list of float
        Normalisation of the input bands (raw pixel values).
    training : dict
        Summary of the training run.
    """

    module: OVSNet
    hyper: dict[str, Any]
    band_mean: list[float]
    band_std: list[float]
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        """Bands the model reads."""
        return int(self.hyper.get("in_channels", 3))

    def normalise(self, image: np.ndarray, source: str = "<frame>") -> torch.Tensor:
        """``(bands, H, W)`` raw pixels to a normalised float tensor ``(1, bands, H, W)``.

        Raises
        ------
        InputMismatchError
            The frame has fewer bands than the model reads.
        """
        if image.shape[0] < self.in_channels:
            raise InputMismatchError(f"{source}: the sequence model reads {self.in_channels} band(s), the frame has {image.shape[0]}")
        x = image[: self.in_channels].astype(np.float32)
        mean = np.asarray(self.band_mean, np.float32)[:, None, None]
        std = np.asarray(self.band_std, np.float32)[:, None, None]
        return torch.from_numpy((x - mean) / std)[None]

    def metadata(self) -> dict[str, Any]:
        """JSON metadata of the model file."""
        return {
            "kind": KIND,
            "architecture": "ovsnet",
            "hyper": self.hyper,
            "band_mean": [float(v) for v in self.band_mean],
            "band_std": [float(v) for v in self.band_std],
            "training": self.training,
        }


def save_sequence_model(path: str | os.PathLike[str], model: SequenceModel) -> Path:
    """Write ``model`` to ``path`` (atomic, safe format)."""
    return save_model(path, state_arrays(model.module, _STATE), model.metadata())


def load_sequence_model(path: str | os.PathLike[str]) -> SequenceModel:
    """Read a model file written by :func:`save_sequence_model` (nothing in it is executed).

    Raises
    ------
    ModelFileError
        Not a sequence model file, or weights that do not fit; the message names the file.
    """
    model: SequenceModel = read_model(path, (KIND,))
    return model


def build_sequence_model(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> SequenceModel:
    """The model of a sequence model file's arrays and metadata (the registered builder of its kind).

    Raises
    ------
    ModelFileError
        Incomplete metadata, or weights that do not fit; names ``path``.
    """
    try:
        hyper = dict(meta["hyper"])
        module = build_ovsnet(**hyper)
        load_state(module, arrays, _STATE, path=path, what="the OVSNet architecture")
        module.eval()
        model = SequenceModel(module, hyper, [float(v) for v in meta["band_mean"]], [float(v) for v in meta["band_std"]],
                              dict(meta.get("training", {})))  # fmt: skip
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: incomplete or inconsistent sequence model file ({exc!r})") from exc
    if len(model.band_mean) != model.in_channels or len(model.band_std) != model.in_channels:
        raise ModelFileError(f"{path}: band statistics and input channels disagree")
    return model
