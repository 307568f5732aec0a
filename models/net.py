"""PianoNet: one convolutional trunk over the whole strip, per-key pooling, and a small temporal head.

Per frame, the trunk turns the grey strip (H x W, ``data.STRIP_SIZE``: the canonical 884x106 and
``data.FRONT_MARGIN_PX`` rows in front of the keys), its difference from the keyboard at rest and its
difference from the strip a context frame before (motion: a key's edge moving a pixel as it goes
down) into features along the keyboard (C x W/2): a stem halves them and adds learnt full-resolution maps (a press shows in 1-2 px: a
key's front edge dropping, a gap widening), strided convolutions then fold its height. Each key
averages the feature columns of its own span (``key_pool``), so all 88 keys share the convolutions. The head
looks at a key's features over ``CONTEXT`` recent frames, about 1/30 s apart at any frame rate (a
press is a motion; ``data.context_stride``), and says, for the newest frame: key down, onset, offset
(logits) and velocity (0..1 of 127). The runtime runs the trunk once per frame and keeps the recent
features, so a frame costs one trunk pass whatever the context.

Two heads share the trunk (``HEADS``): the live one is causal (no added latency), the offline one also
sees ``AHEAD`` context frames after the frame it labels (a press that stays down, a finger that lifts
again), for files, where latency is free. A model trained before the offline head has the live one only.
Host only (torch).
"""
from __future__ import annotations

import torch
from torch import nn

from pianoedge.errors import PianoedgeError

from .data import context_span

CONTEXT = 5  # frames the head sees: the newest and four before it, ``context_stride`` apart (causal: no look-ahead latency)
AHEAD = 2  # context frames the offline head sees after the frame it labels
HEADS = {"live": 0, "offline": AHEAD}  # each head's look-ahead in context frames
FEATURES = 48
STEM_MAPS = 10  # full-resolution maps the stem adds to the halved strip and its difference from the keyboard at rest
OUTPUTS = ("frame", "onset", "offset", "velocity")


def _block(cin: int, cout: int, stride: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


INPUTS = 3  # the strip, its difference from the keyboard at rest, and its difference from a context frame before (motion)


BLOCK_CHANNELS = (12, 16, 24, 24)  # the trunk's four blocks at width 1 (``Trunk``'s ``width`` multiplies them)


class Trunk(nn.Module):
    """(B, INPUTS, H, W) strips, their difference from the keyboard at rest and from the strip a context
    frame before (uint8 range) -> (B, FEATURES, W // 2) features along the keyboard (H and W even).
    ``width`` multiplies the blocks' channels (``BLOCK_CHANNELS``)."""

    def __init__(self, height: int, width: int = 1):
        super().__init__()
        stem = nn.Conv2d(INPUTS, 2 + STEM_MAPS, 4, stride=2, padding=1, bias=False)  # linear: halves the strip, adds detail maps
        channels = (2 + STEM_MAPS, *(c * width for c in BLOCK_CHANNELS))
        self.convs = nn.Sequential(stem, *(_block(cin, cout, (2, 1)) for cin, cout in zip(channels, channels[1:])))
        rows = height // 2
        for _ in BLOCK_CHANNELS:
            rows = (rows + 1) // 2
        self.mix = nn.Sequential(nn.Conv1d(channels[-1] * rows, FEATURES, 1), nn.ReLU(inplace=True),
                                 nn.Conv1d(FEATURES, FEATURES, 5, padding=2), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x / 255.0)
        b, c, h, w = x.shape
        return self.mix(x.reshape(b, c * h, w))


class Head(nn.Module):
    """(B, CONTEXT + ahead, keys, FEATURES) per-key features + (keys,) black flags -> (B, keys, 4) outputs for
    the window's frame ``ahead`` frames before its last."""

    def __init__(self, ahead: int = 0):
        super().__init__()
        self.ahead = ahead
        self.mlp = nn.Sequential(nn.Linear((CONTEXT + ahead) * FEATURES + 1, 96), nn.ReLU(inplace=True), nn.Linear(96, len(OUTPUTS)))

    def forward(self, features: torch.Tensor, black: torch.Tensor) -> torch.Tensor:
        b, t, k, c = features.shape
        x = features.permute(0, 2, 1, 3).reshape(b, k, t * c)
        x = torch.cat([x, black.reshape(1, k, 1).expand(b, k, 1)], dim=2)
        out = self.mlp(x)
        return torch.cat([out[..., :3], torch.sigmoid(out[..., 3:])], dim=2)


class PianoNet(nn.Module):
    """The trunk (``width`` times ``BLOCK_CHANNELS``), the live head (``head``) and, unless ``offline`` is
    False, the offline head (``offline``)."""

    def __init__(self, height: int, offline: bool = True, width: int = 1):
        super().__init__()
        self.height, self.width = height, width
        self.trunk = Trunk(height, width)
        self.head = Head(HEADS["live"])
        self.offline = Head(HEADS["offline"]) if offline else None

    def heads(self) -> dict[str, Head]:
        """The heads this model has, by name (``HEADS``)."""
        return {name: head for name, head in (("live", self.head), ("offline", self.offline)) if head is not None}

    def strip_features(self, strips: torch.Tensor, rest: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """(N, H, W) strips, (N or 1, H, W) the keyboard at rest and (N, H, W) the strips a context frame
        before each (``data.context_stride``; the strips themselves when there is none) -> (N, FEATURES, W // 2)
        the trunk's features along the keyboard.

        The rest view (the bare keyboard, ``data.rest_view``) makes what changed stand out whatever the
        piano, its light or the camera; the frame before, what is moving (a key's edge shifting a
        pixel as it goes down, a finger falling)."""
        strips = strips.float()
        previous = strips if previous is None else previous.float()
        return self.trunk(torch.stack([strips - 127.5, strips - rest.float().expand_as(strips), strips - previous], dim=1))

    @staticmethod
    def pooled(features: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        """(N, FEATURES, W // 2) features along the keyboard and (keys, W) the keys' spans (``key_pool``) ->
        (N, keys, FEATURES): each key's average over its span."""
        half = pool.reshape(pool.shape[0], -1, 2).sum(dim=2)  # the spans on the trunk's half-width columns
        return torch.einsum("ncw,kw->nkc", features, half)

    def key_features(self, strips: torch.Tensor, rest: torch.Tensor, pool: torch.Tensor,
                     previous: torch.Tensor | None = None) -> torch.Tensor:
        """``strip_features`` pooled per key (``pooled``): (N, keys, FEATURES)."""
        return self.pooled(self.strip_features(strips, rest, previous), pool)

    def clip_maps(self, clips: torch.Tensor, rest: torch.Tensor, lead: int = 0) -> torch.Tensor:
        """(B, lead + L, H, W) consecutive strips and (B, H, W) rest views -> (B, L, FEATURES, W // 2)
        ``strip_features`` of the last L, each read with the strip ``lead`` frames before it (a context
        frame: ``lead`` is the stride; 0: no motion seen)."""
        b, total, h, w = clips.shape
        length = total - lead
        rest = rest[:, None].expand(b, length, h, w).reshape(b * length, h, w)
        frames = clips[:, lead:].reshape(b * length, h, w)
        previous = clips[:, :length].reshape(b * length, h, w) if lead else None
        features = self.strip_features(frames, rest, previous)
        return features.reshape(b, length, *features.shape[1:])

    def clip_features(self, clips: torch.Tensor, rest: torch.Tensor, pool: torch.Tensor, lead: int = 0) -> torch.Tensor:
        """``clip_maps`` pooled per key: (B, L, keys, FEATURES)."""
        return self.pooled_clips(self.clip_maps(clips, rest, lead), pool)

    @classmethod
    def pooled_clips(cls, maps: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        """(B, L, FEATURES, W // 2) ``clip_maps`` -> (B, L, keys, FEATURES), each key's average over its span."""
        b, length = maps.shape[:2]
        return cls.pooled(maps.flatten(0, 1), pool).reshape(b, length, pool.shape[0], -1)

    def run_head(self, name: str, feats: torch.Tensor, black: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """(B, L, keys, F) features of consecutive frames -> (B, n, keys, 4): the head ``name``'s outputs for
        every frame with its whole window in the clip (from frame ``context_span(CONTEXT, stride) - 1`` to the
        one ``ahead * stride`` frames before the last), window frames ``stride`` apart (``data.context_stride``)."""
        head = self.heads()[name]
        b, _, keys, _ = feats.shape
        frames = CONTEXT + head.ahead
        windows = feats.unfold(1, context_span(frames, stride), 1)[..., ::stride].permute(0, 1, 4, 2, 3)  # (B, n, frames, keys, F)
        n = windows.shape[1]
        return head(windows.reshape(b * n, frames, keys, -1), black).reshape(b, n, keys, len(OUTPUTS))

    def forward(self, clips: torch.Tensor, rest: torch.Tensor, pool: torch.Tensor, black: torch.Tensor, stride: int = 1,
                head: str = "live", lead: int = 0) -> torch.Tensor:
        """(B, lead + L, H, W) consecutive strips and (B, H, W) rest views -> (B, n, keys, 4): ``run_head`` on
        the features of the last L (``clip_features``)."""
        return self.run_head(head, self.clip_features(clips, rest, pool, lead), black, stride)


def grown_stem(state: dict[str, torch.Tensor], net: PianoNet) -> dict[str, torch.Tensor]:
    """``state`` as it is, or, from a model without the stem (runs 1-14, trained on the strip at half size),
    the same model with one that does what it saw: the stem starts as a 2x2 average of the strip and its
    difference, its added maps with zero weight in the first block (to be learnt from there)."""
    if "trunk.convs.0.weight" in state:
        return state
    grown = {k: v for k, v in state.items() if not k.startswith("trunk.convs.")}
    for key, value in state.items():
        if key.startswith("trunk.convs."):
            index, rest = key[len("trunk.convs."):].split(".", 1)
            grown[f"trunk.convs.{int(index) + 1}.{rest}"] = value
    stem = net.trunk.convs[0].weight.detach().clone()
    stem[:2] = 0.0
    for channel in range(2):
        stem[channel, channel, 1:3, 1:3] = 0.25
    first = grown["trunk.convs.1.0.weight"]
    grown["trunk.convs.0.weight"] = stem
    grown["trunk.convs.1.0.weight"] = torch.cat([first, first.new_zeros(first.shape[0], STEM_MAPS, *first.shape[2:])], dim=1)
    return grown


def grown_front(state: dict[str, torch.Tensor], net: PianoNet) -> dict[str, torch.Tensor]:
    """``state`` as it is, or, from a model trained on a strip with fewer rows in front of the keys (runs
    up to 27: none), the same model reading ``net``'s strip: the trunk's height mix gives the new rows zero
    weight, to be learnt from there."""
    old, want = state["trunk.mix.0.weight"], net.trunk.mix[0].weight
    if old.shape == want.shape:
        return state
    channels = net.trunk.convs[-1][0].out_channels
    old_rows, rows = old.shape[1] // channels, want.shape[1] // channels
    if old_rows > rows:
        raise PianoedgeError(f"these weights read a taller strip than this version's models ({old_rows} trunk rows, not {rows}): "
                             "use the pianoedge version they were trained with")
    grown = old.new_zeros(want.shape)
    for channel in range(channels):  # the trunk's rows run from the keys' back end to the front: new ones come last
        grown[:, channel * rows:channel * rows + old_rows] = old[:, channel * old_rows:(channel + 1) * old_rows]
    return {**state, "trunk.mix.0.weight": grown}


def grown_motion(state: dict[str, torch.Tensor], net: PianoNet) -> dict[str, torch.Tensor]:
    """``state`` as it is, or, from a model that did not see motion (runs up to 28: the strip and its
    difference from the rest view only), the same model with the motion input at zero weight in the
    stem, to be learnt from there."""
    stem = state["trunk.convs.0.weight"]
    if stem.shape[1] == INPUTS:
        return state
    grown = stem.new_zeros(net.trunk.convs[0].weight.shape)
    grown[:, : stem.shape[1]] = stem
    return {**state, "trunk.convs.0.weight": grown}


def trunk_width(state: dict[str, torch.Tensor]) -> int:
    """The trunk width (``PianoNet``'s ``width``) of a state dict, from its last block's channels."""
    blocks = [v for k, v in state.items() if k.startswith("trunk.convs.") and k.endswith(".0.weight") and v.ndim == 4]
    return blocks[-1].shape[0] // BLOCK_CHANNELS[-1]


def widened(net: PianoNet, width: int, seed: int = 0) -> PianoNet:
    """``net`` with its trunk's blocks ``width / net.width`` times as wide, computing the same function
    (Net2Net): each channel is copied, and the next layer splits each weight it had on it between the
    copies at random shares that sum to one, so that the copies learn apart from there. Batch-norm
    statistics are copied with their channels."""
    if width < net.width or width % net.width:
        raise PianoedgeError(f"a trunk of width {net.width} cannot become width {width}: it widens only to a multiple of its "
                             f"width (give --width {2 * net.width}, or leave it out to keep {net.width})")
    times, generator = width // net.width, torch.Generator().manual_seed(seed)

    def split(weight: torch.Tensor, channels: int) -> torch.Tensor:
        """(O, channels * group, *k) -> (O, times * channels * group, *k): the input channels copied (channel-major
        groups, as the trunk flattens rows into the mix), each weight split between its copies."""
        shaped = weight.reshape(weight.shape[0], 1, channels, -1, *weight.shape[2:])
        shares = torch.rand((weight.shape[0], times, channels, shaped.shape[3]) + (1,) * (weight.ndim - 2), generator=generator) + 0.5
        return (shaped * shares / shares.sum(dim=1, keepdim=True)).reshape(weight.shape[0], -1, *weight.shape[2:])

    state = net.state_dict()
    blocks = len(BLOCK_CHANNELS)
    for block in range(1, blocks + 1):
        prefix = f"trunk.convs.{block}."
        for key in [k for k in state if k.startswith(prefix) and k != prefix + "1.num_batches_tracked"]:
            state[key] = state[key].repeat(times, *([1] * (state[key].ndim - 1)))  # the block's channels, copied
        if block > 1:
            state[prefix + "0.weight"] = split(state[prefix + "0.weight"], BLOCK_CHANNELS[block - 2] * net.width)
    state["trunk.mix.0.weight"] = split(state["trunk.mix.0.weight"], BLOCK_CHANNELS[-1] * net.width)
    grown = PianoNet(net.height, net.offline is not None, width)
    grown.load_state_dict(state)
    return grown.train(net.training)
