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
    """The module's ``state_dict`` (or a state dict itself) as arrays named ``prefix + key`` (on the CPU).

    Parameters
    ----------
    module : torch.nn.Module or mapping of str to torch.Tensor
        A module, whose ``state_dict`` is taken, or a state dict itself.
    prefix : str
        Put before every key of the state dict (e.g. ``"state/"``).

    Returns
    -------
    dict of str to numpy.ndarray
        One array per tensor, detached and copied to the CPU, named ``prefix + key``.

    Examples
    --------
    >>> state_arrays({"w": torch.tensor([1.0, 2.0])}, "p/")
    {'p/w': array([1., 2.], dtype=float32)}
    """
    state = module.state_dict() if isinstance(module, nn.Module) else module
    return {prefix + k: v.detach().cpu().numpy() for k, v in state.items()}


def load_state(module: nn.Module, arrays: Mapping[str, np.ndarray], prefix: str, *, path: str | os.PathLike[str], what: str) -> None:
    """Copy the arrays named ``prefix + key`` into ``module`` (in place).

    Arrays whose names do not start with ``prefix`` are left out. The rest must match the
    module's ``state_dict`` exactly: the same keys, each with the same shape.

    Parameters
    ----------
    module : torch.nn.Module
        The module to fill; changed in place.
    arrays : mapping of str to numpy.ndarray
        Arrays as :func:`state_arrays` makes them (other names may be present too).
    prefix : str
        Prefix of the arrays that hold the module's state.
    path : str or path-like
        The file the arrays come from, for error messages only.
    what : str
        What the module is (e.g. ``"the decouple architecture"``), for error messages only.

    Raises
    ------
    ModelFileError
        Names missing or unexpected, or a shape that differs from what ``what`` needs; the
        message names ``path``.

    Examples
    --------
    >>> arrays = {"p/weight": np.zeros((1, 2))}
    >>> load_state(torch.nn.Linear(2, 1), arrays, "p/", path="m.npz", what="a layer")
    Traceback (most recent call last):
    ...
    geoseg.errors.ModelFileError: m.npz: weights do not fit a layer (missing ['bias'], unexpected [])
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
