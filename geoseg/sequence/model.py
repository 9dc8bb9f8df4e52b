"""A compact one-pass network for object segmentation through image sequences.

After OVS-Net (Xu et al., "One-pass video object segmentation", arXiv 1905.10064): one
forward pass per frame gives detection, instance segmentation and re-identification, and a
*mask-guided attention* module injects an object's prior mask into multi-scale features so
the mask head resolves the object's boundary with multi-level feature fusion.

Architecture (:class:`OVSNet`):

- shared encoder: three stride-2 convolution stages (features at 1/2, 1/4, 1/8) and a
  top-down fusion to 1/4 (``p4``), computed **once per frame**;
- detector head on ``p4`` (CenterNet-style, Zhou et al. arXiv 1904.07850): an object-centre
  heatmap and the log half-size of the box at each centre;
- embedding head on ``p4``: an L2-normalised per-pixel embedding; an object's embedding is the
  embedding map pooled over its mask or box (used for re-identification by
  :mod:`geoseg.sequence.track`);
- mask head, run per object query on the shared features: :class:`MaskGuidedAttention` at
  1/8, 1/4 and 1/2 turns the query's prior (the track's previous mask moved to where the
  object is now, or the detector's box) into a spatial attention over the features; a
  decoder fuses the attended levels top-down, predicts object boundaries at 1/4 and 1/2 and
  fuses those boundary maps into the final mask logits (multi-scale boundary fusion).

What differs from the paper: OVS-Net builds on a Mask R-CNN-style detector with RoI-aligned
mask heads and a ResNet backbone pretrained on ImageNet/COCO and fine-tuned on DAVIS; here the
network is a few tens of thousands of parameters trained from scratch on generated
sequences on a CPU, the detector is anchor-free (centre heatmap), the mask head works on the
whole (small) frame instead of RoIs, and the attention's exact layer layout is our own (the
paper gives the idea - prior mask as attention, multi-scale boundary and feature fusion - not
a layer list we could verify).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskGuidedAttention", "OVSNet", "build_ovsnet"]

#: Total stride of the network: input sizes are padded to a multiple of it.
STRIDE = 8


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(min(4, cout), cout), nn.ReLU(inplace=True))


class MaskGuidedAttention(nn.Module):
    """Prior mask as a spatial attention over a feature map.

    The prior (``(Q, 1, H, W)``, values in 0..1) is resampled to the feature grid and encoded
    by a 3x3 convolution; a gate computed from features and encoded prior multiplies the
    features and the encoded prior is added. Both convolutions are local (3x3), so a prior
    changes the attended features only at and around where it is non-zero.

    Parameters
    ----------
    channels : int
        Channels of the feature map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.prior_enc = nn.Conv2d(1, channels, 3, padding=1)
        self.gate = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, feat: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """Attend ``feat`` (``(Q, C, h, w)``) with ``prior`` (``(Q, 1, H, W)``); returns ``(Q, C, h, w)``."""
        p = F.adaptive_avg_pool2d(prior, (feat.shape[-2], feat.shape[-1])) if prior.shape[-2:] != feat.shape[-2:] else prior
        pe = F.relu(self.prior_enc(p))
        attention = torch.sigmoid(self.gate(torch.cat([feat, pe], dim=1)))
        return feat * attention + pe


class OVSNet(nn.Module):
    """Shared encoder with detector, embedding and mask-guided mask heads (see module docstring).

    Parameters
    ----------
    in_channels : int
        Input bands.
    widths : tuple of int
        Channels at 1/2, 1/4 and 1/8.
    embed_dim : int
        Embedding size.
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, int, int] = (16, 24, 32), embed_dim: int = 16) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.enc1 = nn.Sequential(_conv(in_channels, c1, 2), _conv(c1, c1))
        self.enc2 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2))
        self.enc3 = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3))
        self.lateral = nn.Conv2d(c3, c2, 1)
        self.p4 = _conv(c2, c2)
        self.heat = nn.Sequential(_conv(c2, c2), nn.Conv2d(c2, 1, 1))
        self.size = nn.Sequential(_conv(c2, c2), nn.Conv2d(c2, 2, 1))
        self.embed = nn.Sequential(_conv(c2, c2), nn.Conv2d(c2, embed_dim, 1))
        self.mga3, self.mga2, self.mga1 = MaskGuidedAttention(c3), MaskGuidedAttention(c2), MaskGuidedAttention(c1)
        self.dec3 = _conv(c3, c2)
        self.dec2 = _conv(2 * c2, c2)
        self.dec1 = _conv(c2 + c1, c1)
        self.boundary2 = nn.Conv2d(c2, 1, 1)
        self.boundary1 = nn.Conv2d(c1, 1, 1)
        self.mask_out = nn.Sequential(_conv(c1 + 2, c1), nn.Conv2d(c1, 1, 1))
        heat_logits = self.heat[-1]
        assert isinstance(heat_logits, nn.Conv2d) and heat_logits.bias is not None
        nn.init.constant_(heat_logits.bias, -2.2)  # CenterNet's prior for rare centres

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shared pass of a batch ``(B, C, H, W)`` (H, W multiples of :data:`STRIDE`).

        Returns
        -------
        dict
            ``f1``, ``f2``, ``f3`` (encoder levels), ``heat`` (centre logits at 1/4),
            ``size`` (log half width/height in input pixels at 1/4), ``embed`` (unit
            embeddings at 1/4).
        """
        f1 = self.enc1(image)
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)
        p4 = self.p4(f2 + F.interpolate(self.lateral(f3), size=f2.shape[-2:], mode="nearest"))
        return {
            "f1": f1,
            "f2": f2,
            "f3": f3,
            "heat": self.heat(p4),
            "size": self.size(p4),
            "embed": F.normalize(self.embed(p4), dim=1),
        }

    def masks(self, feats: dict[str, torch.Tensor], index: torch.Tensor, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask head for ``Q`` object queries.

        Parameters
        ----------
        feats : dict
            Output of :meth:`features`.
        index : torch.Tensor
            ``(Q,)`` batch index of each query's image.
        prior : torch.Tensor
            ``(Q, 1, H, W)`` prior masks at input resolution.

        Returns
        -------
        mask, boundary1, boundary2 : torch.Tensor
            Mask logits ``(Q, 1, H, W)``; boundary logits at 1/2 and 1/4.
        """
        a3 = self.mga3(feats["f3"][index], prior)
        a2 = self.mga2(feats["f2"][index], prior)
        a1 = self.mga1(feats["f1"][index], prior)
        d2 = self.dec2(torch.cat([F.interpolate(self.dec3(a3), size=a2.shape[-2:], mode="bilinear", align_corners=False), a2], 1))
        b2 = self.boundary2(d2)
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=a1.shape[-2:], mode="bilinear", align_corners=False), a1], 1))
        b1 = self.boundary1(d1)
        b2_up = F.interpolate(b2, size=a1.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.mask_out(torch.cat([d1, torch.sigmoid(b1), torch.sigmoid(b2_up)], 1))
        return F.interpolate(logits, size=prior.shape[-2:], mode="bilinear", align_corners=False), b1, b2


def build_ovsnet(**hyper: Any) -> OVSNet:
    """Build an :class:`OVSNet` from JSON hyper-parameters (lists become tuples)."""
    kwargs = dict(hyper)
    if "widths" in kwargs:
        kwargs["widths"] = tuple(int(w) for w in kwargs["widths"])
    return OVSNet(**kwargs)
