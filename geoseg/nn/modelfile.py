"""Model files of the raster classifiers: torch weights as numpy arrays + JSON metadata.

The file is a geoseg safe model file (:mod:`geoseg.modelfile`: ``.npz`` loaded with
``allow_pickle=False``, kind ``"nn"``). Each tensor of the model's ``state_dict`` is stored
as the array ``state/<name>``; the metadata holds everything needed to apply the model to a
scene: architecture name and hyper-parameters, bands, normalisation statistics, class
names, head names, training GSD, tiling defaults, and a training summary. Nothing is ever
unpickled or executed when loading: the module is rebuilt from the architecture name and the
arrays are copied into it (shapes checked).

A training checkpoint (:mod:`geoseg.nn.checkpoint`) is the same file with the optimizer and
training state added; it loads as a model too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoseg.errors import ModelFileError
from geoseg.modelfile import read_model, save_model
from geoseg.scene_checks import TrainingScenes, ValueSummary, check_value_range, select_model_bands

if TYPE_CHECKING:
    from torch import nn

# torch and the networks are imported when a network is built or saved: a model run in
# onnxruntime (geoseg.nn.onnx_runtime) uses this module's NNModel without them

__all__ = ["KIND", "NNModel", "build_nn_model", "load_nn_model", "model_payload", "save_nn_model"]

KIND = "nn"
#: Kind of the quantized model files of `geoseg quantize` (geoseg.nn.quant.qmodelfile).
QUANTIZED_KIND = "nn-quantized"
_STATE = "state/"


@dataclass
class NNModel:
    """A raster classifier with everything needed to apply it to a scene.

    Attributes
    ----------
    module : torch.nn.Module
        The network (see :mod:`geoseg.nn.models`).
    architecture : str
        Key of :data:`geoseg.nn.models.ARCHITECTURES`.
    hyper : dict
        Constructor arguments of the architecture.
    bands : list of int
        1-based bands of a scene it reads.
    band_mean, band_std : list of float
        Normalisation statistics of those bands (raw pixel values).
    classes : list of str
        Class names of the ``seg`` output (``["background", "road"]``).
    train_gsd_m : float
        GSD the model works at, metres: the training scenes' mean GSD, or the working GSD
        they were resampled to (``data.work_gsd_m``).
    tile_px, overlap_px : int
        Tiling defaults for inference.
    resample : bool
        Inference resamples every scene to ``train_gsd_m`` (models trained at a working GSD).
    tta : bool
        Inference averages the 8 orientations of each tile by default (test-time augmentation).
    training : dict
        Summary of the training run (config, scores, scenes).
    trained_on : TrainingScenes
        Data type, data band count, band names and value range of the training scenes;
        scenes unlike them are refused (files of older versions record none of it).
    """

    module: nn.Module
    architecture: str
    hyper: dict[str, Any]
    bands: list[int]
    band_mean: list[float]
    band_std: list[float]
    classes: list[str] = field(default_factory=lambda: ["background", "road"])
    train_gsd_m: float = float("nan")
    tile_px: int = 256
    overlap_px: int = 64
    training: dict[str, Any] = field(default_factory=dict)
    resample: bool = False
    tta: bool = False
    trained_on: TrainingScenes = field(default_factory=TrainingScenes)

    @property
    def quantized(self) -> bool:
        """Whether the network runs the quantized layers of ``geoseg quantize``."""
        modules = getattr(self.module, "modules", None)  # an ONNX graph (geoseg.nn.onnx) has none: it is float
        return modules is not None and any(type(m).__name__ == "FoldedQConv2d" for m in modules())

    @property
    def heads(self) -> list[str]:
        """Probability outputs: the class names, then ``centerline`` when the model has that head."""
        return [*self.classes, *(["centerline"] if self.hyper.get("centerline_head") else [])]

    def select_bands(
        self,
        image: np.ndarray,
        source: str = "<scene>",
        model_path: str = "<model>",
        *,
        band_names: Sequence[str] = (),
        bands: Sequence[int] | None = None,
        label: str = "nn_classify",
        valid: np.ndarray | None = None,
    ) -> np.ndarray:
        """The model's bands of a raw ``(bands, rows, cols)`` scene, checked.

        ``bands`` is the user's 1-based selection (in the model's band order); without it the
        scene must have the bands the model reads and, when the file records them, as many data
        bands as the training scenes, named alike (:func:`geoseg.scene_checks.select_model_bands`).

        Raises
        ------
        InputMismatchError
            The scene's bands do not fit (the message names model and scene and what to set).
        """
        return select_model_bands(
            image, band_names, self.trained_on, self.bands, chosen=bands, source=source, model=f"the model {model_path}", label=label, valid=valid
        )

    def check_values(self, summary: ValueSummary, model_path: str, *, scale: float | None = None, label: str = "nn_classify") -> None:
        """Refuse a scene whose values (times ``scale``) are far outside the training scenes' (another bit depth or unit)."""
        check_value_range(summary, self.trained_on, scale=scale, model=f"the model {model_path}", label=label)

    @classmethod
    def from_metadata(cls, module: nn.Module, meta: dict[str, Any]) -> NNModel:
        """The model of a network and the metadata of its file (:meth:`metadata`).

        Raises
        ------
        KeyError, TypeError, ValueError
            Incomplete or inconsistent metadata (callers say which file).
        """
        return cls(
            module=module,
            architecture=str(meta["architecture"]),
            hyper=dict(meta["hyper"]),
            bands=[int(b) for b in meta["bands"]],
            band_mean=[float(v) for v in meta["band_mean"]],
            band_std=[float(v) for v in meta["band_std"]],
            classes=[str(c) for c in meta["classes"]],
            train_gsd_m=float(meta["train_gsd_m"]),
            tile_px=int(meta["tile_px"]),
            overlap_px=int(meta["overlap_px"]),
            training=dict(meta.get("training", {})),
            resample=bool(meta.get("resample", False)),
            tta=bool(meta.get("tta", False)),
            trained_on=TrainingScenes.from_json(meta.get("trained_on")),
        )

    def metadata(self) -> dict[str, Any]:
        """JSON metadata of the model file."""
        return {
            "kind": KIND,
            "architecture": self.architecture,
            "hyper": self.hyper,
            "bands": self.bands,
            "band_mean": [float(v) for v in self.band_mean],
            "band_std": [float(v) for v in self.band_std],
            "classes": self.classes,
            "heads": self.heads,
            "train_gsd_m": float(self.train_gsd_m),
            "tile_px": self.tile_px,
            "overlap_px": self.overlap_px,
            "resample": self.resample,
            "tta": self.tta,
            "training": self.training,
            "trained_on": self.trained_on.to_json(),
        }


def model_payload(model: NNModel) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata of ``model``'s file (also the model part of a training checkpoint).

    Imports torch (through :mod:`geoseg.nn.state`).

    Parameters
    ----------
    model : NNModel
        A model whose module is a torch module.

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        The module's ``state_dict`` on the CPU, each tensor named ``state/<key>``.
    metadata : dict of str to Any
        :meth:`NNModel.metadata`.
    """
    from geoseg.nn.state import state_arrays

    return state_arrays(model.module, _STATE), model.metadata()


def save_nn_model(path: str | os.PathLike[str], model: NNModel) -> Path:
    """Write a model file atomically (``.npz``); training checkpoints are :mod:`geoseg.nn.checkpoint`'s.

    Parameters
    ----------
    path : str or path-like
        Destination, conventionally ending in ``.npz`` (kept as given).
    model : NNModel
        The model to save (its module a torch module).

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    OutputWriteError
        The file cannot be written.
    ModelFileError
        The metadata is not JSON-serialisable (e.g. a non-JSON value in ``model.training``).
    """
    return save_model(path, *model_payload(model))


def build_nn_model(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> NNModel:
    """The model of a file's ``arrays`` and metadata (as :func:`geoseg.modelfile.load_model` returns them).

    The network is rebuilt from the architecture name and hyper-parameters (this imports
    torch), the ``state/`` arrays are copied into it with names and shapes checked, and it is
    put in evaluation mode.

    Parameters
    ----------
    path : pathlib.Path
        The file the contents come from, for error messages only.
    arrays : dict of str to numpy.ndarray
        The file's arrays.
    meta : dict of str to Any
        The file's metadata (:meth:`NNModel.metadata`).

    Returns
    -------
    NNModel

    Raises
    ------
    ModelFileError
        Unknown architecture, incomplete or inconsistent metadata (bands, statistics and
        input channels that disagree), or weights that do not fit; names ``path``.
    """
    from geoseg.nn.models import ARCHITECTURES, build_model
    from geoseg.nn.state import load_state

    try:
        arch = meta["architecture"]
        if arch not in ARCHITECTURES:
            raise ModelFileError(f"{path}: unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
        hyper = dict(meta["hyper"])
        module = build_model(arch, **hyper)
        load_state(module, arrays, _STATE, path=path, what=f"the {arch} architecture")
        module.eval()
        model = NNModel.from_metadata(module, meta)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: incomplete or inconsistent nn model file ({exc!r})") from exc
    if len(model.bands) != hyper.get("in_channels") or len(model.band_mean) != len(model.bands) or len(model.band_std) != len(model.bands):
        raise ModelFileError(f"{path}: bands, statistics and input channels disagree")
    return model


def load_nn_model(path: str | os.PathLike[str]) -> NNModel:
    """Read a model file written by :func:`save_nn_model`, or a quantized one (nothing in it is executed).

    Parameters
    ----------
    path : str or path-like
        The model file (a training checkpoint loads too).

    Returns
    -------
    NNModel
        The classifier, its network in evaluation mode.

    Raises
    ------
    ModelFileError
        Not a geoseg nn model file (pickles are refused unread), or weights that do not
        fit the architecture it names. The message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from geoseg.errors import ModelFileError
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "roads.npz").write_text("not a model")
    ...     try:
    ...         load_nn_model(Path(tmp) / "roads.npz")
    ...     except ModelFileError as exc:
    ...         print(str(exc).split(": ", 1)[1])
    not a geoseg model file (it looks like text; model files are the .npz files written by geoseg train)
    """
    model: NNModel = read_model(path, (KIND, QUANTIZED_KIND))
    return model
