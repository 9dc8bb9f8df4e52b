"""Training checkpoints of every mode: a model file plus what :func:`geoseg.nn.fit.fit` needs to continue.

A checkpoint is a geoseg safe model file (:mod:`geoseg.modelfile`, nothing unpickled): the
mode's model as it stands (so an ``nn`` checkpoint also loads as a model), plus

- ``module/<name>/<key>`` arrays: other modules of the mode (a mean teacher's student, a
  quantization-aware copy, an architecture's parameters);
- ``optim/<name>/<index>/<key>`` arrays and their parameter groups: optimizer states;
- ``best/<key>`` arrays: the tracked module's weights at the best epoch;
- a ``checkpoint`` metadata entry: the mode, the :class:`~geoseg.nn.fit.FitState` (epochs done,
  best score, history) and the mode's own JSON state (a self-training round, a searched
  genotype, a random generator's state).

Examples
--------
>>> import tempfile, torch
>>> from geoseg.nn.fit import FitState
>>> net = torch.nn.Linear(2, 1)
>>> opt = torch.optim.AdamW(net.parameters())
>>> path = tempfile.mkdtemp() + "/run.ckpt.npz"
>>> _ = save_checkpoint(path, "demo", FitState(epoch=3), modules={"net": net}, optimizers={"net": opt})
>>> ck = read_checkpoint(path, "demo")
>>> ck.state.epoch, ck.load_module("net", torch.nn.Linear(2, 1)) is None
(3, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoseg.errors import ModelFileError
from geoseg.modelfile import load_model, save_model
from geoseg.nn.fit import FitState
from geoseg.nn.state import load_state, state_arrays

__all__ = ["CHECKPOINT_KIND", "Checkpoint", "read_checkpoint", "save_checkpoint"]

#: Model kind of a checkpoint that carries no model file of its own.
CHECKPOINT_KIND = "checkpoint"
_MODULE = "module/"
_OPTIM = "optim/"
_BEST = "best/"


def save_checkpoint(
    path: str | os.PathLike[str],
    mode: str,
    state: FitState,
    *,
    model: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None,
    modules: Mapping[str, nn.Module | Mapping[str, torch.Tensor]] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination (``.npz``).
    mode : str
        The training mode; :func:`read_checkpoint` refuses a checkpoint of another mode.
    state : FitState
        Progress of the running fit.
    model : (arrays, metadata), optional
        The mode's model file contents (see :func:`geoseg.nn.modelfile.model_payload`).
    modules, optimizers : mapping, optional
        Further modules (or their state dicts) and optimizers by name.
    extra : mapping, optional
        The mode's own JSON-serialisable state.
    """
    arrays, meta = (dict(model[0]), dict(model[1])) if model is not None else ({}, {"kind": CHECKPOINT_KIND})
    for name, module in (modules or {}).items():
        arrays.update(state_arrays(module, f"{_MODULE}{name}/"))
    groups = {}
    for name, optimizer in (optimizers or {}).items():
        optim_state = optimizer.state_dict()
        for idx, entries in optim_state["state"].items():
            for key, value in entries.items():
                arrays[f"{_OPTIM}{name}/{idx}/{key}"] = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
        groups[name] = optim_state["param_groups"]
    if state.best_state is not None:
        arrays.update({_BEST + k: v.detach().cpu().numpy() for k, v in state.best_state.items()})
    meta["checkpoint"] = {"mode": mode, "fit": state.to_json(), "optimizers": groups, "extra": dict(extra or {})}
    return save_model(path, arrays, meta, compress=False)


@dataclass
class Checkpoint:
    """A checkpoint read back: its state, and the arrays to restore modules and optimizers from.

    Attributes
    ----------
    path : Path
    arrays : dict of str to ndarray
        All arrays of the file (the model's included).
    metadata : dict
        The file's metadata (the model's, with the ``checkpoint`` entry).
    state : FitState
        The fit's progress, best weights included.
    extra : dict
        The mode's own state.
    """

    path: Path
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]
    state: FitState
    extra: dict[str, Any]

    def load_module(self, name: str, module: nn.Module) -> None:
        """Copy the stored weights of module ``name`` into ``module`` (names and shapes checked)."""
        load_state(module, self.arrays, f"{_MODULE}{name}/", path=self.path, what=f"this run's {name}")

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Restore the stored state of optimizer ``name`` into ``optimizer`` (built as in training)."""
        groups = self.metadata["checkpoint"]["optimizers"].get(name)
        if groups is None:
            raise ModelFileError(f"{self.path}: holds no state of the optimizer {name!r}")
        prefix = f"{_OPTIM}{name}/"
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in self.arrays.items():
            if key.startswith(prefix):
                idx, entry = key[len(prefix) :].split("/", 1)
                state.setdefault(int(idx), {})[entry] = torch.from_numpy(np.array(value))
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ModelFileError(f"{self.path}: the stored {name} optimizer state does not fit this run ({exc})") from exc


def read_checkpoint(path: str | os.PathLike[str], mode: str) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` for ``mode``.

    Raises
    ------
    ModelFileError
        Not a geoseg file, a model file that is not a checkpoint, or a checkpoint of another
        training mode; the message names the file.
    """
    path = Path(path)
    arrays, meta = load_model(path)
    entry = meta.get("checkpoint")
    if not isinstance(entry, dict) or "fit" not in entry:
        raise ModelFileError(
            f"{path}: not a training checkpoint (no training state); give the checkpoint file (--checkpoint of the earlier run), not the final model"
        )
    if entry.get("mode") != mode:
        raise ModelFileError(f"{path}: a checkpoint of training mode {entry.get('mode')!r}, this run is {mode!r}")
    best = {k[len(_BEST) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(_BEST)}
    return Checkpoint(path, arrays, meta, FitState.from_json(entry["fit"], best or None), dict(entry.get("extra", {})))
