"""Fixtures of the sequence tests: a tiny sequence model trained once (about 15-30 s on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.sequence.modelfile import SequenceModel, save_sequence_model
from geoseg.sequence.synthetic import SequenceSample, make_sequence, synthetic_background
from geoseg.sequence.train import load_sequence_train_config, train_sequence_model

torch.set_num_threads(1)  # 2 shared cores: one torch thread avoids oversubscription

#: Tiny training run: 64 x 64 frames, 250 iterations (the network is fully convolutional, tests use 96 x 96).
TINY = ["frame_size=64", "iterations=250", "n_sequences=8", "widths=[8,16,24]", "lr=0.006", "max_queries=2"]


@pytest.fixture(scope="session")
def tiny_model() -> SequenceModel:
    torch.manual_seed(0)
    return train_sequence_model(load_sequence_train_config(None, TINY))


@pytest.fixture(scope="session")
def tiny_model_file(tiny_model: SequenceModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sequence_model(tmp_path_factory.mktemp("seqmodel") / "tiny.ovs.npz", tiny_model)


@pytest.fixture(scope="session")
def two_object_sequence() -> SequenceSample:
    """8 frames, 96 x 96, two objects that stay in view (held aside from training: other seeds)."""
    return make_sequence(synthetic_background(96, 96, seed=4243), 8, n_objects=2, seed=100, leave_and_return=0)
