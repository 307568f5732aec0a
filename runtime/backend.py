"""Inference backends: strips in, per-key posteriors out. ONNX Runtime here (no torch, ever).

A backend runs PianoNet's graphs: ``features`` (strips + the keyboard at rest + the strips a context
frame before them + the key pooling matrix -> per-key features, all keys in one batch) and a head (each key's features over ``context``
frames, ``context_stride`` apart, and for the ``offline`` head a few more after the frame it labels
-> P(down), P(onset), P(offset), velocity 0..1). The ``live`` head adds no latency; the offline one
delays each frame's posteriors by its look-ahead. ``KeyStream`` runs ``features`` once per frame and
keeps the results its head will read, and the strips its next frames read as the frame before;
``take_posteriors`` batches frames. Both first match each strip's light to the rest view's
(``data.match_light``).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from pianoedge.errors import PianoedgeError
from pianoedge.models.data import black_flags, context_span, context_stride, key_pool, match_light, motion_batches

from .manifest import HEAD_GRAPHS, MANIFEST, Artifact, load_artifact


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
            self._sessions = {graph: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                              for graph, path in artifact.files.items()}
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise PianoedgeError(f"cannot load the '{artifact.name}' model ({exc}); export it again (pianoedge export)") from None

    @classmethod
    def named(cls, name: str = "ort", manifest=MANIFEST, threads: int = 1) -> OrtBackend:
        return cls(load_artifact(name, manifest), threads)

    def key_features(self, strips: np.ndarray, rest: np.ndarray, pool: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """(N, H, W) uint8 strips, (H, W) uint8 rest view, (keys, W) pooling and (N, H, W) uint8 the strips a
        context frame before them -> (N, keys, F) float32."""
        inputs = {"strips": strips, "rest": rest[None], "key_pool": pool, "previous": previous}
        session = self._sessions["features"]
        return session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})[0]  # graphs from before motion lack ``previous``

    def head(self, windows: np.ndarray, black: np.ndarray, name: str = "live") -> np.ndarray:
        """(B, window, keys, F) features -> (B, keys, 4) from head ``name``: P(down), P(onset), P(offset), velocity 0..1."""
        session = self._sessions[HEAD_GRAPHS[name]]
        return session.run(None, {"features": np.ascontiguousarray(windows, np.float32), "black": black})[0]


def _frames(backend, fps: float, head: str) -> tuple[int, int, int]:
    """Head ``head``'s window at ``fps``: (frames before the labelled one, frames after it, the stride between
    context frames)."""
    stride = context_stride(fps, backend.artifact.context_fps)
    return context_span(backend.context, stride) - 1, backend.artifact.look_ahead(head) * stride, stride


def strip_features(backend, strips: np.ndarray, rest: np.ndarray, pool: np.ndarray, stride: int, chunk: int = 64) -> np.ndarray:
    """(N, keys, F) features of consecutive strips, each light-matched and read with the one ``stride``
    frames before it (``data.motion_batches``), in batches of ``chunk``."""
    return np.concatenate([backend.key_features(batch, rest, pool, before)
                           for batch, before in motion_batches(strips, rest, stride, chunk)])


def take_posteriors(backend, strips: np.ndarray, rest: np.ndarray, num_keys: int, lowest: int, fps: float,
                    chunk: int = 64, head: str = "live") -> np.ndarray:
    """(frames, keys, 4) posteriors from head ``head`` for a whole clip filmed at ``fps``, as ``KeyStream``
    gives them frame by frame (the first frames reuse the first frame as their past, the last the last
    frame as their future)."""
    width = strips.shape[2]
    pool, black = key_pool(num_keys, lowest, width), black_flags(num_keys, lowest)
    past, ahead, stride = _frames(backend, fps, head)
    feats = strip_features(backend, strips, rest, pool, stride, chunk)
    feats = np.concatenate([np.repeat(feats[:1], past, axis=0), feats, np.repeat(feats[-1:], ahead, axis=0)])
    windows = np.lib.stride_tricks.sliding_window_view(feats, past + ahead + 1, axis=0)[..., ::stride].transpose(0, 3, 1, 2)
    return np.concatenate([backend.head(windows[i : i + chunk], black, head) for i in range(0, len(windows), chunk)])


class KeyStream:
    """Inference for one keyboard filmed at ``fps``, frame by frame: each strip's key features join the
    recent frames' (the first frame stands in for the frames before it) and head ``head`` reads its
    window among them. The live head answers for the newest frame; the offline head for the frame its
    look-ahead (``delay`` frames) before it, and ``flush`` gives the frames still owed at the end.
    Answers carry their frame's time. The window, the times owed and the recent strips are one
    attribute, replaced whole: a signal between two frames (shutdown) never leaves them out of step."""

    def __init__(self, backend, rest: np.ndarray, num_keys: int, lowest: int, fps: float, head: str = "live"):
        self.backend, self.rest, self.head = backend, rest, head
        self.pool, self.black = key_pool(num_keys, lowest, rest.shape[1]), black_flags(num_keys, lowest)
        past, self.delay, self.stride = _frames(backend, fps, head)
        self.span = past + self.delay + 1
        # (window of features, times of the frames not yet answered, the last ``stride`` light-matched strips)
        self._state: tuple[np.ndarray, tuple, tuple] | None = None

    def posteriors(self, strip: np.ndarray, time: float | None = None) -> tuple[np.ndarray, float | None] | None:
        """((keys, 4) posteriors, time) of the frame ``delay`` frames before this one, filmed at ``time``
        (None while there is none)."""
        matched = match_light(strip, self.rest)[None]  # a new array: the strip may sit in the warp's buffer, reused next frame
        recent = (matched,) * self.stride if self._state is None else self._state[2]
        features = self.backend.key_features(matched, self.rest, self.pool, recent[0])
        recent = recent[1:] + (matched,)
        if self._state is None:
            window, owed = np.repeat(features[None], self.span - self.delay, axis=1), (time,)
        else:
            window, owed, _ = self._state
            window, owed = np.concatenate([window, features[None]], axis=1)[:, -self.span :], owed + (time,)
        if window.shape[1] < self.span:
            self._state = (window, owed, recent)
            return None
        answer = (self._answer(window), owed[0])
        self._state = (window, owed[1:], recent)
        return answer

    def flush(self) -> list[tuple[np.ndarray, float | None]]:
        """(posteriors, time) of the frames still owed (the last frame standing in for the frames after it)."""
        out = []
        while self._state is not None and self._state[1]:
            window, owed, recent = self._state
            window = np.concatenate([window, window[:, -1:]], axis=1)[:, -self.span :]
            if window.shape[1] == self.span:
                out.append((self._answer(window), owed[0]))
                owed = owed[1:]
            self._state = (window, owed, recent)
        return out

    def _answer(self, window: np.ndarray) -> np.ndarray:
        return self.backend.head(window[:, :: self.stride], self.black, self.head)[0]


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
