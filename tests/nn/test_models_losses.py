"""Models and losses: body + edge decoupling, shapes, and a tiny overfit."""

from __future__ import annotations

import pytest
import torch

from geoseg.nn.arrays import IGNORE_INDEX
from geoseg.nn.losses import balanced_bce, boundary_band, ohem_cross_entropy, segmentation_losses
from geoseg.nn.models import BaselineNet, DecoupleSegNet, SqueezeBodyEdge, build_model, flow_warp


def test_body_plus_edge_reconstructs_the_feature() -> None:
    torch.manual_seed(0)
    sbe = SqueezeBodyEdge(8).eval()
    x = torch.randn(2, 8, 16, 20)
    body, edge = sbe(x)
    assert torch.allclose(body + edge, x, atol=1e-6)
    assert edge.abs().mean() > 1e-4  # a learnt, non-zero flow: the body is a warped copy, not x


def test_flow_warp_moves_features_by_the_flow() -> None:
    x = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 1, 5, 6)
    assert torch.allclose(flow_warp(x, torch.zeros(1, 2, 5, 6)), x, atol=1e-5)
    flow = torch.zeros(1, 2, 5, 6)
    flow[:, 0] = 1.0  # sample one column to the right
    shifted = flow_warp(x, flow)
    assert torch.allclose(shifted[..., :-1], x[..., 1:], atol=1e-4)


@pytest.mark.parametrize("cls", [BaselineNet, DecoupleSegNet])
def test_outputs_at_input_resolution(cls: type) -> None:
    model = cls(in_channels=4, num_classes=2, width=4, centerline_head=True).eval()
    out = model(torch.randn(1, 4, 64, 96))
    assert out["seg"].shape == (1, 2, 64, 96)
    assert out["centerline"].shape == (1, 1, 64, 96)
    if cls is DecoupleSegNet:
        assert out["body"].shape == (1, 2, 64, 96) and out["edge"].shape == (1, 1, 64, 96)


def test_boundary_band_is_the_mask_border() -> None:
    labels = torch.zeros(1, 20, 20, dtype=torch.long)
    labels[0, 5:15, 5:15] = 1
    band = boundary_band(labels, radius_px=1)[0]
    assert band[5, 5] == 1 and band[4, 10] == 1 and band[10, 5] == 1  # inside and outside the border
    assert band[10, 10] == 0 and band[0, 0] == 0  # deep inside, far outside
    assert band.sum() == 12 * 12 - 8 * 8


def test_ohem_keeps_hard_pixels_only() -> None:
    labels = torch.zeros(1, 1, 100, dtype=torch.long)
    logits = torch.zeros(1, 2, 1, 100)
    logits[0, 0, 0, :90] = 10.0  # 90 easy pixels (p(true) ~ 1)
    logits[0, 1, 0, 90:] = 10.0  # 10 hard, wrong pixels
    loss = ohem_cross_entropy(logits, labels, threshold=0.7, min_kept_fraction=0.01)
    assert loss.item() == pytest.approx(10.0, abs=1e-3)  # the mean over the hard ones only
    labels[0, 0, 95:] = IGNORE_INDEX
    assert ohem_cross_entropy(logits, labels, threshold=0.7, min_kept_fraction=0.01).item() == pytest.approx(10.0, abs=1e-3)


def test_balanced_bce_weights_classes_equally() -> None:
    target = torch.tensor([1.0] + [0.0] * 9)
    # equally wrong on every pixel: the one positive counts as much as the nine negatives
    pos_only = balanced_bce(torch.tensor([-2.0] + [-20.0] * 9), target)
    neg_only = balanced_bce(torch.tensor([20.0] + [2.0] * 9), target)
    assert pos_only.item() == pytest.approx(neg_only.item(), rel=1e-4)


def test_losses_decrease_on_a_tiny_overfit() -> None:
    torch.manual_seed(0)
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 28:36, :] = 1
    labels[1, :, 10:18] = 1
    image = torch.randn(2, 3, 64, 64) * 0.3 + labels[:, None].float()
    centerlines = torch.zeros(2, 64, 64)
    centerlines[:, 31:33, :] = 1
    model = build_model("decouple", in_channels=3, num_classes=2, width=8, centerline_head=True)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    history = []
    for _ in range(40):
        terms = segmentation_losses(model(image), labels, centerlines=centerlines)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert set(first) == {"seg", "body", "edge", "edge_attention", "centerline", "total"}
    for key in ("seg", "body", "edge", "centerline", "total"):
        assert last[key] < 0.6 * first[key], key
    model.eval()
    with torch.no_grad():
        pred = model(image)["seg"].argmax(1)
    assert (pred == labels).float().mean() > 0.95
