"""The centerline head's soft target (Gaussian ridge) and its soft-target cross-entropy."""

from __future__ import annotations

import numpy as np
import torch

from geoseg.nn.data import centerline_target
from geoseg.nn.losses import segmentation_losses, soft_bce


def test_centerline_target_is_a_gaussian_ridge_on_the_line() -> None:
    line = np.zeros((21, 30), np.uint8)
    line[10, :] = 1
    target = centerline_target(line, sigma_px=2.0)
    assert target.dtype == np.float32
    np.testing.assert_allclose(target[10], 1.0)
    for d in (1, 2, 4, 7):
        np.testing.assert_allclose(target[10 + d], np.exp(-0.5 * (d / 2.0) ** 2), rtol=1e-6)
        np.testing.assert_allclose(target[10 - d], target[10 + d])
    assert not centerline_target(np.zeros((5, 5)), 2.0).any()


def test_soft_bce_is_minimal_at_the_target() -> None:
    target = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0 - 1e-4])
    best = soft_bce(torch.logit(target.clamp(1e-4, 1 - 1e-4)), target)
    for shift in (-1.0, -0.2, 0.2, 1.0):
        assert soft_bce(torch.logit(target.clamp(1e-4, 1 - 1e-4)) + shift, target) > best
    valid = torch.tensor([True, True, False, False, False])
    np.testing.assert_allclose(float(soft_bce(torch.zeros(5), target, valid)), float(soft_bce(torch.zeros(2), target[:2])))


def test_centerline_head_learns_a_ridge_not_a_band() -> None:
    """Fitted alone, the head's probability falls off across the road like the target does."""
    line = np.zeros((32, 32), np.uint8)
    line[16, :] = 1
    target = torch.from_numpy(centerline_target(line, 2.0))[None]
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, 10:23] = 1
    logits = torch.zeros(1, 1, 32, 32, requires_grad=True)
    seg = torch.zeros(1, 2, 32, 32)
    opt = torch.optim.Adam([logits], lr=0.2)
    for _ in range(300):
        terms = segmentation_losses({"seg": seg, "centerline": logits}, labels, centerlines=target)
        opt.zero_grad()
        terms["centerline"].backward()
        opt.step()
    prob = torch.sigmoid(logits)[0, 0, :, 5].detach().numpy()
    assert prob[16] > 0.9 and prob[12] < 0.3 and prob[10] < 0.05
    np.testing.assert_allclose(prob, target[0, :, 5].numpy(), atol=0.05)
