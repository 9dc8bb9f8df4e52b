"""The one-pass network: mask-guided attention, head shapes, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoseg.errors import ModelFileError
from geoseg.modelfile import save_model
from geoseg.sequence.model import MaskGuidedAttention, OVSNet
from geoseg.sequence.modelfile import SequenceModel, load_sequence_model, save_sequence_model


def test_mask_guided_attention_shapes_and_locality():
    torch.manual_seed(0)
    mga = MaskGuidedAttention(8)
    feat = torch.randn(2, 8, 12, 12)
    prior = torch.zeros(2, 1, 48, 48)
    prior[:, :, 8:20, 8:20] = 1  # the object: cells 2..4 of the 12 x 12 grid
    with torch.no_grad():
        out_prior = mga(feat, prior)
        out_zero = mga(feat, torch.zeros_like(prior))
    assert out_prior.shape == (2, 8, 12, 12)
    diff = (out_prior - out_zero).abs().sum(1)  # (2, 12, 12)
    inside = diff[:, 2:5, 2:5]
    far = diff[:, 8:, 8:]  # beyond the reach of the two 3x3 convolutions
    assert inside.min() > 1e-3
    assert float(far.abs().max()) == 0.0


def test_ovsnet_heads_and_mask_head_shapes():
    net = OVSNet(widths=(8, 12, 16), embed_dim=6).eval()
    with torch.no_grad():
        feats = net.features(torch.randn(2, 3, 64, 96))
        assert feats["heat"].shape == (2, 1, 16, 24) and feats["size"].shape == (2, 2, 16, 24)
        assert feats["embed"].shape == (2, 6, 16, 24)
        assert torch.allclose(feats["embed"].norm(dim=1), torch.ones(2, 16, 24), atol=1e-5)
        prior = torch.zeros(3, 1, 64, 96)
        mask, b1, b2 = net.masks(feats, torch.tensor([0, 1, 1]), prior)
    assert mask.shape == (3, 1, 64, 96) and b1.shape == (3, 1, 32, 48) and b2.shape == (3, 1, 16, 24)


def test_model_file_round_trip_and_refusals(tmp_path):
    net = OVSNet(widths=(8, 12, 16), embed_dim=6).eval()
    model = SequenceModel(net, {"in_channels": 3, "widths": [8, 12, 16], "embed_dim": 6}, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], {"x": 1})
    path = save_sequence_model(tmp_path / "m.npz", model)
    back = load_sequence_model(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.module.features(x)["heat"], net.features(x)["heat"])
    assert back.band_mean == [1.0, 2.0, 3.0] and back.training == {"x": 1}
    save_model(tmp_path / "other.npz", {"a": np.zeros(2)}, {"kind": "nn"})
    with pytest.raises(ModelFileError, match="other.npz"):
        load_sequence_model(tmp_path / "other.npz")
    arrays = {f"state/{k}": v.numpy() for k, v in net.state_dict().items()}
    arrays["state/enc1.0.0.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    save_model(tmp_path / "bad.npz", arrays, model.metadata())
    with pytest.raises(ModelFileError, match="shape"):
        load_sequence_model(tmp_path / "bad.npz")
