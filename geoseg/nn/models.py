"""Raster classifiers: a compact encoder–decoder baseline and the DecoupleSegNet head.

DecoupleSegNet follows Li et al., "Improving Semantic Segmentation via Decoupled Body and
Edge Supervision", ECCV 2020 (arXiv 2007.10035; official code lxtGH/DecoupleSegNets):

- a context module (ASPP) gives the feature ``F`` at the coarsest stride;
- a *flow* is predicted from ``F``: two stride-2 depthwise 3×3 conv+BN+ReLU layers squeeze
  ``F``, are upsampled back, concatenated with ``F``, and a 3×3 conv gives a 2-channel
  offset field δ; ``body = grid_sample(F, grid + δ)`` (:func:`flow_warp`);
- ``edge = F − body`` (so ``body + edge`` reconstructs ``F`` exactly), upsampled and fused
  with a projected low-level feature; a 1-channel edge map is predicted from the fusion;
- the final prediction comes from ``concat(upsampled F, edge + upsampled body)`` through a
  small conv head; a body prediction (for the body loss) comes from the upsampled body.

Where geoseg differs, for CPU-sized training on a handful of aerial tiles:

- the backbone is a small 4-stage residual encoder (stride 16, ``width``·(1, 2, 4, 8)
  channels) trained from scratch, instead of an ImageNet ResNet-101/WideResNet-38 at stride 8;
  or (``encoder: efficientnet_lite0``) EfficientNet-Lite0's blocks up to stride 16, optionally
  with ImageNet weights from an installed package (:mod:`geoseg.nn.efficientnet`); no weights
  are ever downloaded;
- the ASPP has three dilations (1, 2, 4 at stride 16) plus image pooling, and the low-level
  projection has ``width``·2 channels instead of 48;
- an optional auxiliary **centerline head** (1 channel) reads the final fused feature; it is
  supervised by buffered centerline rasters and can replace the road probability as the
  tensor-voting input.

All models take a normalised ``(N, bands, H, W)`` tensor whose sides are multiples of
:data:`geoseg.nn.arrays.STRIDE` and return a dict of logits at the input resolution: ``seg`` (N, classes, H, W)
always, ``body`` and ``edge`` for DecoupleSegNet, ``centerline`` with the centerline head.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.nn.efficientnet import EfficientNetLite0Encoder

__all__ = ["ARCHITECTURES", "ENCODERS", "BaselineNet", "DecoupleSegNet", "build_encoder", "build_model", "flow_warp"]


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _ResidualBlock(nn.Module):
    """Two 3×3 conv+BN with a (strided, projected when needed) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in, c_out, stride=stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Encoder(nn.Module):
    """Four residual stages at strides 2, 4, 8, 16 with ``width``·(1, 2, 4, 8) channels."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.stem = _conv_bn_relu(in_channels, width, stride=2)
        self.stages = nn.ModuleList()
        c_prev = width
        for i, c in enumerate(chans):
            self.stages.append(nn.Sequential(_ResidualBlock(c_prev, c, 1 if i == 0 else 2), _ResidualBlock(c, c, 1)))
            c_prev = c
        self.channels = chans

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features at strides 2, 4, 8 and 16."""
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


#: Encoders the classifiers can be built on (hyper-parameter ``encoder``).
ENCODERS = ("residual", "efficientnet_lite0")


def build_encoder(name: str, in_channels: int, width: int) -> Encoder | EfficientNetLite0Encoder:
    """The encoder called ``name``: geoseg's residual one (``width``·(1, 2, 4, 8) channels) or
    EfficientNet-Lite0's blocks (:mod:`geoseg.nn.efficientnet`; ``width`` does not apply).

    Both give features at strides 2, 4, 8 and 16 and list their channels in ``.channels``.

    Examples
    --------
    >>> build_encoder("efficientnet_lite0", 3, 16).channels
    [16, 24, 40, 112]
    """
    if name == "residual":
        return Encoder(in_channels, width)
    if name == "efficientnet_lite0":
        return EfficientNetLite0Encoder(in_channels)
    raise KeyError(f"unknown encoder {name!r} (known: {', '.join(ENCODERS)})")


def _up(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BaselineNet(nn.Module):
    """Compact U-Net-like encoder–decoder: the encoder plus three skip-connected decoder stages."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 16, centerline_head: bool = False, encoder: str = "residual") -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, in_channels, width)
        c = self.encoder.channels
        self.decoders = nn.ModuleList([_conv_bn_relu(c[3] + c[2], c[2]), _conv_bn_relu(c[2] + c[1], c[1]), _conv_bn_relu(c[1] + c[0], c[0])])
        self.classifier = nn.Conv2d(c[0], num_classes, 1)
        self.centerline = nn.Conv2d(c[0], 1, 1) if centerline_head else None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits at the input resolution: ``seg`` and optionally ``centerline``."""
        f1, f2, f3, f4 = self.encoder(x)
        y = f4
        for dec, skip in zip(self.decoders, (f3, f2, f1)):
            y = dec(torch.cat([_up(y, skip.shape[-2:]), skip], dim=1))
        out = {"seg": _up(self.classifier(y), x.shape[-2:])}
        if self.centerline is not None:
            out["centerline"] = _up(self.centerline(y), x.shape[-2:])
        return out


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, dilated 3×3 branches and image pooling, then 1×1."""

    def __init__(self, c_in: int, c_out: int, dilations: tuple[int, ...] = (2, 4)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_relu(c_in, c_out, kernel=1)] + [_conv_bn_relu(c_in, c_out, dilation=d) for d in dilations])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1, bias=False), nn.ReLU(inplace=True))
        self.project = _conv_bn_relu(c_out * (len(dilations) + 2), c_out, kernel=1)

    def forward(self, x: Tensor) -> Tensor:
        parts = [b(x) for b in self.branches]
        parts.append(self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(parts, dim=1))


def flow_warp(feature: Tensor, flow: Tensor) -> Tensor:
    """Warp a feature map by a flow field (offsets in pixels), bilinearly.

    Parameters
    ----------
    feature : Tensor
        ``(N, C, H, W)``.
    flow : Tensor
        ``(N, 2, H, W)``: x (column) and y (row) offsets in pixels of where each output pixel
        samples ``feature``.

    Returns
    -------
    Tensor
        ``(N, C, H, W)``; a zero flow returns ``feature`` unchanged.
    """
    # Pixel indices built from the flow tensor itself (not from Python sizes), so that a traced
    # or exported graph (ONNX) follows the input's size instead of the size it was traced at.
    ones = torch.ones_like(flow[:, :1])
    rows = torch.cumsum(ones, dim=2) - 1  # (N, 1, H, W): the row index of each pixel
    cols = torch.cumsum(ones, dim=3) - 1
    # pixels to normalised [-1, 1] units (align_corners=True: the side spans size - 1 pixels)
    y_span = torch.clamp(rows.amax(dim=(2, 3), keepdim=True), min=1.0)
    x_span = torch.clamp(cols.amax(dim=(2, 3), keepdim=True), min=1.0)
    gx = (cols + flow[:, :1]) * (2.0 / x_span) - 1.0
    gy = (rows + flow[:, 1:]) * (2.0 / y_span) - 1.0
    grid = torch.cat([gx, gy], dim=1).permute(0, 2, 3, 1)
    return F.grid_sample(feature, grid, mode="bilinear", padding_mode="border", align_corners=True)


class SqueezeBodyEdge(nn.Module):
    """Decouple a feature into body (flow-warped) and edge (residual) parts."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            _conv_bn_relu(channels, channels, stride=2, groups=channels),
            _conv_bn_relu(channels, channels, stride=2, groups=channels),
        )
        self.flow = nn.Conv2d(2 * channels, 2, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(body, edge)`` with ``body + edge == x``."""
        squeezed = _up(self.down(x), x.shape[-2:])
        flow = self.flow(torch.cat([x, squeezed], dim=1))
        body = flow_warp(x, flow)
        return body, x - body


class DecoupleSegNet(nn.Module):
    """DecoupleSegNet (Li et al., ECCV 2020) on a compact encoder; see the module docstring."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 16, centerline_head: bool = False, encoder: str = "residual") -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, in_channels, width)
        c = self.encoder.channels
        ctx = 4 * width
        fine = 2 * width
        self.aspp = _ASPP(c[3], ctx)
        self.squeeze_body_edge = SqueezeBodyEdge(ctx)
        self.project_fine = _conv_bn_relu(c[1], fine, kernel=1)
        self.edge_fusion = _conv_bn_relu(ctx + fine, ctx, kernel=1)
        self.edge_out = nn.Sequential(_conv_bn_relu(ctx, fine), nn.Conv2d(fine, 1, 1))
        self.body_out = nn.Sequential(_conv_bn_relu(ctx, fine), nn.Conv2d(fine, num_classes, 1))
        self.final = nn.Sequential(_conv_bn_relu(2 * ctx, ctx), _conv_bn_relu(ctx, ctx), nn.Conv2d(ctx, num_classes, 1))
        self.centerline = nn.Sequential(_conv_bn_relu(2 * ctx, fine), nn.Conv2d(fine, 1, 1)) if centerline_head else None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits at the input resolution: ``seg``, ``body``, ``edge`` (and ``centerline``)."""
        _, f2, _, f4 = self.encoder(x)
        context = self.aspp(f4)
        body, edge = self.squeeze_body_edge(context)
        fine_size = f2.shape[-2:]
        edge = self.edge_fusion(torch.cat([_up(edge, fine_size), self.project_fine(f2)], dim=1))
        body_fine = _up(body, fine_size)
        fused = torch.cat([_up(context, fine_size), edge + body_fine], dim=1)
        size = x.shape[-2:]
        out = {
            "seg": _up(self.final(fused), size),
            "body": _up(self.body_out(body_fine), size),
            "edge": _up(self.edge_out(edge), size),
        }
        if self.centerline is not None:
            out["centerline"] = _up(self.centerline(fused), size)
        return out


#: Architecture names (as in model files and training configs) and their classes.
ARCHITECTURES: dict[str, type[nn.Module]] = {"baseline": BaselineNet, "decouple": DecoupleSegNet}


def build_model(architecture: str, **hyper: Any) -> nn.Module:
    """Instantiate an architecture by name with its hyper-parameters.

    Parameters
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES`.
    **hyper
        ``in_channels``, ``num_classes``, ``width``, ``centerline_head``, ``encoder``
        (:data:`ENCODERS`; baseline and decouple only).

    Raises
    ------
    KeyError
        Unknown architecture.
    """
    return ARCHITECTURES[architecture](**hyper)


def _gas_net(**hyper: Any) -> nn.Module:
    """A network found by the architecture search (``geoseg search arch``; :mod:`geoseg.nn.search`).

    Imported lazily: the search package builds on this module.
    """
    from geoseg.nn.search.space import GASNet

    return GASNet(**hyper)


ARCHITECTURES["gas"] = _gas_net  # type: ignore[assignment]
