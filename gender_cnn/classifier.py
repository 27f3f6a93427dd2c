"""Small from-scratch CNNs for the gender and quality decisions (no pretrained weights exist offline).

conv-BN-ReLU blocks with a strided conv per stage, global average pooling and a single logit.
Dropout is active only in ``train()`` mode; inference entry points call ``eval()`` (the original
left dropout on at inference, so its predictions were random).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 128)
FORMAT_VERSION = 1


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Binary classifier: x [B, 3, h, w] normalised float -> logits [B].

    Stem (stride 2), then per stage a 3x3 conv and a stride-2 3x3 conv, so a 128x128 input ends at
    4x4 before pooling. Global average pooling makes it work for any input size (the quality crop is
    64x128).
    """

    def __init__(self, channels: Sequence[int] = DEFAULT_CHANNELS, dropout: float = 0.3) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must list at least one stage width")
        layers: list[nn.Module] = [_conv_bn_relu(3, channels[0], stride=2)]
        c_prev = channels[0]
        for c in channels:
            layers.append(_conv_bn_relu(c_prev, c, stride=1))
            layers.append(_conv_bn_relu(c, c, stride=2))
            c_prev = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_prev, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x)).squeeze(1)


def build_classifier(config: dict) -> SmallCNN:
    """Rebuild the network from the plain-dict config stored in a model file."""
    return SmallCNN(channels=tuple(int(c) for c in config["channels"]), dropout=float(config["dropout"]))
