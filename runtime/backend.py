"""Inference backends: strips in, per-key posteriors out. ONNX Runtime here (no torch, ever).

A backend runs PianoNet's two graphs: ``features`` (strips + the keyboard at rest + the key pooling
matrix -> per-key features, all keys in one batch) and ``head`` (each key's features over the last
``context`` frames, ``context_stride`` apart -> P(down), P(onset), P(offset), velocity 0..1). Live, the
runtime runs ``features`` once per frame and keeps the results its head will read; offline,
``take_posteriors`` batches frames.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from pianoedge.errors import PianoedgeError
from pianoedge.models.data import black_flags, context_span, context_stride, key_pool

from .manifest import MANIFEST, Artifact, load_artifact


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Tuned for a small model on an edge CPU: full graph optimisation, one thread per op unless asked."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # a small model: the arena's reserve costs memory and buys nothing measurable
    return options


class OrtBackend:
    """PianoNet on ONNX Runtime (CPU), FP32 or INT8 (QDQ) alike."""

    def __init__(self, artifact: Artifact, threads: int = 1):
        self.artifact = artifact
        self.context = artifact.context
        options = session_options(threads)
        try:
            self._features = ort.InferenceSession(str(artifact.files["features"]), options, providers=["CPUExecutionProvider"])
            self._head = ort.InferenceSession(str(artifact.files["head"]), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise PianoedgeError(f"cannot load the '{artifact.name}' model ({exc}); export it again (pianoedge export)") from None

    @classmethod
    def named(cls, name: str = "ort", manifest=MANIFEST, threads: int = 1) -> OrtBackend:
        return cls(load_artifact(name, manifest), threads)

    def key_features(self, strips: np.ndarray, rest: np.ndarray, pool: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 strips, (H, W) uint8 rest view, (keys, W) pooling -> (N, keys, F) float32."""
        return self._features.run(None, {"strips": strips, "rest": rest[None], "key_pool": pool})[0]

    def head(self, windows: np.ndarray, black: np.ndarray) -> np.ndarray:
        """(B, context, keys, F) features -> (B, keys, 4): P(down), P(onset), P(offset), velocity 0..1."""
        return self._head.run(None, {"features": np.ascontiguousarray(windows, np.float32), "black": black})[0]


def _span(backend, fps: float) -> tuple[int, int]:
    """(frames from the oldest context frame to the newest, inclusive; the stride between them) at ``fps``."""
    stride = context_stride(fps, backend.artifact.context_fps)
    return context_span(backend.context, stride), stride


def take_posteriors(backend, strips: np.ndarray, rest: np.ndarray, num_keys: int, lowest: int, fps: float,
                    chunk: int = 64) -> np.ndarray:
    """(frames, keys, 4) posteriors for a whole clip filmed at ``fps``, as the live runtime would give them
    frame by frame (the first frames reuse the first frame as their past)."""
    width = strips.shape[2]
    pool, black = key_pool(num_keys, lowest, width), black_flags(num_keys, lowest)
    span, stride = _span(backend, fps)
    feats = np.concatenate([backend.key_features(strips[i : i + chunk], rest, pool) for i in range(0, len(strips), chunk)])
    feats = np.concatenate([np.repeat(feats[:1], span - 1, axis=0), feats])
    windows = np.lib.stride_tricks.sliding_window_view(feats, span, axis=0)[..., ::stride].transpose(0, 3, 1, 2)
    return np.concatenate([backend.head(windows[i : i + chunk], black) for i in range(0, len(windows), chunk)])


class KeyStream:
    """Live inference for one keyboard filmed at ``fps``, frame by frame: each strip's key features join
    the recent frames' (the first frame stands in for the frames before it) and the head reads its
    context frames among them."""

    def __init__(self, backend, rest: np.ndarray, num_keys: int, lowest: int, fps: float):
        self.backend, self.rest = backend, rest
        self.pool, self.black = key_pool(num_keys, lowest, rest.shape[1]), black_flags(num_keys, lowest)
        self.span, self.stride = _span(backend, fps)
        self._window: np.ndarray | None = None

    def posteriors(self, strip: np.ndarray) -> np.ndarray:
        """(keys, 4) posteriors of the newest frame."""
        features = self.backend.key_features(strip[None], self.rest, self.pool)
        if self._window is None:
            self._window = np.repeat(features[None], self.span, axis=1)
        else:
            self._window = np.concatenate([self._window[:, 1:], features[None]], axis=1)
        return self.backend.head(self._window[:, :: self.stride], self.black)[0]


def frame_latency_ms(backend, strips: np.ndarray, rest: np.ndarray, num_keys: int, lowest: int,
                     warmup: int = 20) -> np.ndarray:
    """Milliseconds per live frame for all keys (``KeyStream.posteriors``, as ``run`` does), for each of
    ``strips`` after ``warmup`` untimed frames; monotonic clock."""
    import time

    stream = KeyStream(backend, rest, num_keys, lowest, 30.0)
    times = []
    for i in range(warmup + len(strips)):
        start = time.perf_counter()
        stream.posteriors(strips[i % len(strips)])
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return np.array(times)


def open_backend(name: str | None = None, manifest=MANIFEST, threads: int = 1):
    """The backend called ``name`` (CONTRACTS ``--backend``), or the manifest's default: the fastest artifact
    whose accuracy it records. ``torch`` (the eager reference) needs the host extra."""
    from .manifest import read_manifest

    if name == "torch":
        from dataclasses import asdict

        from pianoedge.export.exporter import TorchBackend  # host only
        from pianoedge.models.train import load_thresholds, load_weights

        return TorchBackend(load_weights(), asdict(load_thresholds()))
    chosen = name or read_manifest(manifest)["default"]
    artifact = load_artifact(chosen, manifest)
    if artifact.backend != "ort":
        raise PianoedgeError(f"backend '{chosen}' ({artifact.backend}) cannot run in this build; use --backend ort or ort-int8")
    return OrtBackend(artifact, threads)
