"""Torch weights as the named numpy arrays of geoseg's files, and back with every name and shape checked.

Model files (:mod:`geoseg.nn.modelfile`, :mod:`geoseg.sequence.modelfile`) and training
checkpoints (:mod:`geoseg.nn.checkpoint`) store a module's ``state_dict`` as arrays named
``<prefix><key>``.

Examples
--------
>>> import torch
>>> arrays = state_arrays(torch.nn.Linear(2, 1), "state/")
>>> sorted(arrays)
['state/bias', 'state/weight']
>>> load_state(torch.nn.Linear(2, 1), arrays, "state/", path="m.npz", what="the linear layer")
>>> load_state(torch.nn.Linear(3, 1), arrays, "state/", path="m.npz", what="the linear layer")
Traceback (most recent call last):
...
geoseg.errors.ModelFileError: m.npz: weight weight has shape (1, 2), the linear layer needs (1, 3)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from geoseg.errors import ModelFileError

__all__ = ["load_state", "state_arrays"]


def state_arrays(module: nn.Module | Mapping[str, torch.Tensor], prefix: str) -> dict[str, np.ndarray]:
    """The module's ``state_dict`` (or a state dict itself) as arrays named ``prefix + key`` (on the CPU)."""
    state = module.state_dict() if isinstance(module, nn.Module) else module
    return {prefix + k: v.detach().cpu().numpy() for k, v in state.items()}


def load_state(module: nn.Module, arrays: Mapping[str, np.ndarray], prefix: str, *, path: str | os.PathLike[str], what: str) -> None:
    """Copy the arrays named ``prefix + key`` into ``module`` (in place).

    Raises
    ------
    ModelFileError
        Names missing or unexpected, or a shape that differs from ``what`` needs; names ``path``.
    """
    state = {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not fit {what} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ModelFileError(f"{path}: weight {name} has shape {tuple(tensor.shape)}, {what} needs {tuple(expected[name].shape)}")
    module.load_state_dict(state)
