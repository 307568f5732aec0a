"""PianoNet to ONNX: two named graphs with dynamic frame and key batches, checked, simplified, and
verified against PyTorch. Host only (torch, onnx, onnxslim).

- ``pianonet_features.onnx``: ``strips`` (frames, H, W) uint8, ``rest`` (1, H, W) uint8, ``key_pool``
  (keys, W) float32, ``previous`` (frames, H, W) uint8 (each strip's context frame before it) ->
  ``features`` (frames, keys, F): the trunk over the whole strip, all keys at once.
- ``pianonet_head.onnx``: ``features`` (batch, context, keys, F), ``black`` (keys,) -> ``posteriors``
  (batch, keys, 4): P(down), P(onset), P(offset) and velocity 0..1 (the sigmoids are in the graph).
- ``pianonet_offline.onnx``: the same for the offline head, whose window is ``AHEAD`` frames longer
  (written when the model has one).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from pianoedge.models.data import STRIP_SIZE, black_flags, key_pool
from pianoedge.models.net import AHEAD, CONTEXT, FEATURES, PianoNet
from pianoedge.runtime.manifest import HEAD_GRAPHS

OPSET = 17
FILES = {"features": "pianonet_features.onnx", "head": "pianonet_head.onnx", "offline": "pianonet_offline.onnx"}
INPUTS = {
    "features": {"strips": ["frames", STRIP_SIZE[1], STRIP_SIZE[0], "uint8"], "rest": [1, STRIP_SIZE[1], STRIP_SIZE[0], "uint8"],
                 "key_pool": ["keys", STRIP_SIZE[0], "float32"], "previous": ["frames", STRIP_SIZE[1], STRIP_SIZE[0], "uint8"]},
    "head": {"features": ["batch", CONTEXT, "keys", FEATURES, "float32"], "black": ["keys", "float32"]},
    "offline": {"features": ["batch", CONTEXT + AHEAD, "keys", FEATURES, "float32"], "black": ["keys", "float32"]},
}


class _Features(nn.Module):
    def __init__(self, net: PianoNet):
        super().__init__()
        self.net = net

    def forward(self, strips, rest, pool, previous):
        return self.net.key_features(strips, rest, pool, previous)


class _Head(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features, black):
        out = self.head(features, black)
        return torch.cat([torch.sigmoid(out[..., :3]), out[..., 3:]], dim=2)


def export_onnx(net: PianoNet, out_dir: str | Path) -> dict[str, Path]:
    """Write the model's graphs (FP32) into ``out_dir``; returns {graph: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    w, h = STRIP_SIZE
    strips = torch.zeros(2, h, w, dtype=torch.uint8)
    rest = torch.zeros(1, h, w, dtype=torch.uint8)
    pool = torch.from_numpy(key_pool(88, 21, w))
    black = torch.from_numpy(black_flags(88, 21))
    jobs = {"features": (_Features(net), (strips, rest, pool, strips), ["strips", "rest", "key_pool", "previous"], ["features"],
                         {"strips": {0: "frames"}, "key_pool": {0: "keys"}, "previous": {0: "frames"}, "features": {0: "frames", 1: "keys"}})}
    for name, head in net.heads().items():
        feats = torch.zeros(2, CONTEXT + head.ahead, 88, FEATURES)
        jobs[HEAD_GRAPHS[name]] = (_Head(head), (feats, black), ["features", "black"], ["posteriors"],
                                   {"features": {0: "batch", 2: "keys"}, "black": {0: "keys"}, "posteriors": {0: "batch", 1: "keys"}})
    paths = {}
    for graph, (module, args, inputs, outputs, dynamic) in jobs.items():
        path = out_dir / FILES[graph]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
        simplify(path)
        paths[graph] = path
    net.eval()  # the exporter restores the wrappers' training flag, which reaches the shared net
    return paths


def simplify(path: Path) -> None:
    """Check, simplify with onnxslim (constant folding, dead nodes, fused shapes), check again, in place."""
    import onnxslim

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    slim = onnxslim.slim(model)
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, str(path))


@torch.no_grad()
def torch_posteriors(net: PianoNet, strips: np.ndarray, rest: np.ndarray, num_keys: int, lowest: int, fps: float,
                     head: str = "live") -> np.ndarray:
    """The PyTorch reference for ``runtime.backend.take_posteriors`` on the same frames."""
    from pianoedge.models.data import TakeData
    from pianoedge.models.train import posteriors

    take = TakeData("parity", strips, rest, {}, [], lowest, num_keys, fps)
    return posteriors(net.eval(), take, head=head)
