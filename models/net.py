"""PianoNet: one convolutional trunk over the whole strip, per-key pooling, and a small temporal head.

Per frame, the trunk turns the grey strip (H x W) into features along the keyboard (C x W); each key
averages the columns of its own span (``key_pool``), so all 88 keys share the convolutions. The head
looks at a key's features over ``CONTEXT`` recent frames, about 1/30 s apart at any frame rate (a
press is a motion; ``data.context_stride``), and says, for the newest frame: key down, onset, offset
(logits) and velocity (0..1 of 127). The runtime runs the trunk once per frame and keeps the recent
features, so a frame costs one trunk pass whatever the context.
Host only (torch).
"""
from __future__ import annotations

import torch
from torch import nn

from .data import context_span

CONTEXT = 5  # frames the head sees: the newest and four before it, ``context_stride`` apart (causal: no look-ahead latency)
FEATURES = 48
OUTPUTS = ("frame", "onset", "offset", "velocity")


def _block(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Trunk(nn.Module):
    """(B, 2, H, W) strips and their difference from the keyboard at rest (uint8 range) -> (B, FEATURES, W)
    features along the keyboard."""

    def __init__(self, height: int):
        super().__init__()
        self.convs = nn.Sequential(_block(2, 12, (2, 1)), _block(12, 16, (2, 1)), _block(16, 24, (2, 1)), _block(24, 24, (2, 1)))
        rows = height
        for _ in range(4):
            rows = (rows + 1) // 2
        self.mix = nn.Sequential(nn.Conv1d(24 * rows, FEATURES, 1), nn.ReLU(inplace=True),
                                 nn.Conv1d(FEATURES, FEATURES, 5, padding=2), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x / 255.0)
        b, c, h, w = x.shape
        return self.mix(x.reshape(b, c * h, w))


class Head(nn.Module):
    """(B, CONTEXT, keys, FEATURES) per-key features + (keys,) black flags -> (B, keys, 4) outputs."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(CONTEXT * FEATURES + 1, 96), nn.ReLU(inplace=True), nn.Linear(96, len(OUTPUTS)))

    def forward(self, features: torch.Tensor, black: torch.Tensor) -> torch.Tensor:
        b, t, k, c = features.shape
        x = features.permute(0, 2, 1, 3).reshape(b, k, t * c)
        x = torch.cat([x, black.reshape(1, k, 1).expand(b, k, 1)], dim=2)
        out = self.mlp(x)
        return torch.cat([out[..., :3], torch.sigmoid(out[..., 3:])], dim=2)


class PianoNet(nn.Module):
    def __init__(self, height: int):
        super().__init__()
        self.trunk = Trunk(height)
        self.head = Head()

    def key_features(self, strips: torch.Tensor, rest: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        """(N, H, W) strips and (N or 1, H, W) the keyboard at rest -> (N, keys, FEATURES).

        The rest view (median of frames spread over time: moving hands fade) makes what changed
        stand out whatever the piano, its light or the camera."""
        strips = strips.float()
        x = torch.stack([strips - 127.5, strips - rest.float().expand_as(strips)], dim=1)
        return torch.einsum("ncw,kw->nkc", self.trunk(x), pool)

    def forward(self, clips: torch.Tensor, rest: torch.Tensor, pool: torch.Tensor, black: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """(B, L, H, W) consecutive strips and (B, H, W) rest views -> (B, L - span + 1, keys, 4): outputs
        for every frame that has a full context behind it, its frames ``stride`` apart (``data.context_stride``)
        over ``context_span`` frames."""
        b, length, h, w = clips.shape
        rest = rest[:, None].expand(b, length, h, w).reshape(b * length, h, w)
        feats = self.key_features(clips.reshape(b * length, h, w), rest, pool).reshape(b, length, pool.shape[0], -1)
        windows = feats.unfold(1, context_span(CONTEXT, stride), 1)[..., ::stride].permute(0, 1, 4, 2, 3)  # (B, n, C, keys, F)
        n = windows.shape[1]
        out = self.head(windows.reshape(b * n, CONTEXT, pool.shape[0], -1), black)
        return out.reshape(b, n, pool.shape[0], len(OUTPUTS))
