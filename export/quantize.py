"""INT8: static QDQ quantisation with ``onnxruntime.quantization``, calibrated on real canonical strips.

The QDQ graphs are the form TensorRT consumes too (explicit quantisation): symmetric QInt8 activations
and weights (every zero point 0), per-channel weights, biases left in float, only the inputs of Conv,
Gemm and MatMul quantised, opset 17. Calibration inputs come from takes in the CONTRACTS layout (studio
takes, or a user's own recordings of their piano and light): frames for the features graph, and for
the head the FP32 features of consecutive frames, as the runtime feeds it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

from pianoedge.models.data import TakeData, black_flags, context_stride, key_pool, match_light
from pianoedge.runtime.backend import OrtBackend, strip_features
from pianoedge.runtime.manifest import HEAD_GRAPHS

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
QUANTISED_OPS = ("Conv", "Gemm", "MatMul")
CALIBRATION_FRAMES = 48  # per graph: enough for stable ranges, small enough for the histogram methods


class StripReader(CalibrationDataReader):
    """Inputs of the features graph: single frames spread over the calibration takes, each with the frame
    a context stride before it (``data.context_stride`` at ``context_fps``)."""

    def __init__(self, takes: list[TakeData], context_fps: float | None, count: int = CALIBRATION_FRAMES, seed: int = 0):
        rng = np.random.default_rng(seed)
        self._items = []
        for i in range(count):
            data = takes[i % len(takes)]
            frame = int(rng.integers(len(data.strips)))
            pool = key_pool(data.num_keys, data.lowest, data.strips.shape[2])
            before = max(frame - context_stride(data.fps, context_fps), 0)
            strips, previous = (match_light(data.strips[f : f + 1], data.rest) for f in (frame, before))  # as the runtime feeds the graph
            self._items.append({"strips": strips, "rest": data.rest[None], "key_pool": pool, "previous": previous})
        self._iter = iter(self._items)

    def get_next(self) -> dict | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._items)


class WindowReader(CalibrationDataReader):
    """Inputs of a head graph: each key's FP32 features over its window of consecutive frames (``context``
    frames, and the head's look-ahead after them)."""

    def __init__(self, fp32: OrtBackend, takes: list[TakeData], count: int = CALIBRATION_FRAMES, seed: int = 0, head: str = "live"):
        rng = np.random.default_rng(seed)
        c = fp32.context + fp32.artifact.look_ahead(head)
        self._items = []
        for i in range(count):
            data = takes[i % len(takes)]
            start = int(rng.integers(max(len(data.strips) - c, 0) + 1))
            pool = key_pool(data.num_keys, data.lowest, data.strips.shape[2])
            stride = context_stride(data.fps, fp32.artifact.context_fps)
            lead = min(start, stride)  # the frames before the window that its first frames are read with
            feats = strip_features(fp32, data.strips[start - lead : start + c], data.rest, pool, stride)[lead:]
            feats = np.concatenate([np.repeat(feats[:1], c - len(feats), axis=0), feats])  # a take shorter than the context
            self._items.append({"features": feats[None].astype(np.float32), "black": black_flags(data.num_keys, data.lowest)})
        self._iter = iter(self._items)

    def get_next(self) -> dict | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._items)


def quantize_graph(fp32_path: Path, out_path: Path, reader: CalibrationDataReader, method: str) -> Path:
    """One FP32 graph -> its QDQ INT8 twin (shape-inferred first, as onnxruntime recommends)."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTISED_OPS), per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=METHODS[method],
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                       # Q/DQ only on these ops' inputs (TensorRT's placement), none on their outputs
                                       "OpTypesToExcludeOutputQuantization": list(QUANTISED_OPS)})
    return out_path


def quantize_int8(fp32: OrtBackend, takes: list[TakeData], out_dir: Path, method: str, suffix: str = ".int8") -> dict[str, Path]:
    """Every PianoNet graph to INT8 QDQ, calibrated on ``takes``; returns {graph: path}.

    Only takes of the most common keyboard size calibrate: the histogram methods need every sample of a
    tensor to have one shape, and the key count is a tensor dimension (the ranges do not depend on it)."""
    out_dir = Path(out_dir)
    sizes = [t.num_keys for t in takes]
    takes = [t for t in takes if t.num_keys == max(set(sizes), key=sizes.count)]
    readers = {"features": StripReader(takes, fp32.artifact.context_fps)}
    readers.update({HEAD_GRAPHS[head]: WindowReader(fp32, takes, head=head) for head in fp32.artifact.heads})
    paths = {}
    for graph, reader in readers.items():
        source = fp32.artifact.files[graph]
        paths[graph] = quantize_graph(source, out_dir / source.name.replace(".onnx", f"{suffix}.onnx"), reader, method)
    return paths
