"""The networks of the built-in models, written for audiokit from the papers and the original
architectures (parameter names follow the official checkpoints so they load as they are).

This module imports torch: import it only where torch is known to be installed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GE2ESpeakerEncoder(nn.Module):
    """GE2E speaker encoder (Wan et al. 2018) as trained by Resemblyzer: 3-layer LSTM over
    40-band power mel frames, the last layer's final hidden state → linear → ReLU → L2 norm.

    `mels [shape=(B, frames, 40)]` → `(B, 256)`, unit length, non-negative.
    """

    def __init__(self, n_mels: int = 40, hidden: int = 256, layers: int = 3, dim: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, dim)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = F.relu(self.linear(hidden[-1]))
        # An all-zero vector (ReLU killed every unit) stays zero instead of becoming NaN.
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(torch.finfo(raw.dtype).tiny)


class _ConvPair(nn.Module):
    """Two 3×3 convolutions, each followed by batch norm and ReLU, then 2-D average pooling."""

    def __init__(self, channels_in: int, channels_out: int, pool: tuple[int, int]):
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, self.pool) if self.pool != (1, 1) else x


class Cnn14(nn.Module):
    """PANNs CNN14 (Kong et al. 2020) from the log-mel input on: batch norm over mel bands, six
    convolution pairs (64…2048 channels), mean over frequency, max + mean over time, then the
    2048-unit `fc1` with ReLU, whose output is the embedding. `fc_audioset` (527 AudioSet
    classes) is kept only so the official checkpoint loads strictly.

    `logmel [shape=(B, frames, 64)]` → `(B, 2048)`.
    """

    widths = (64, 128, 256, 512, 1024, 2048)

    def __init__(self, n_mels: int = 64, classes: int = 527):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = (1,) + self.widths
        for i in range(6):
            pool = (2, 2) if i < 5 else (1, 1)
            self.add_module(f"conv_block{i + 1}", _ConvPair(channels[i], channels[i + 1], pool))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, classes)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        # (B, T, M) → normalise each mel band with bn0, which sees bands as its channels.
        x = self.bn0(logmel.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        x = x.unsqueeze(1)  # (B, 1, T, M)
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x)
        x = x.mean(dim=3)  # over frequency → (B, 2048, T')
        x = x.max(dim=2).values + x.mean(dim=2)
        return F.relu(self.fc1(x))


__all__ = ["Cnn14", "GE2ESpeakerEncoder"]
