"""TensorRT engines from the ONNX graphs, behind an engine cache that never loads a stale engine.

Needs NVIDIA's ``tensorrt`` Python package (JetPack's python3-libnvinfer on a Jetson, the ``tensorrt``
wheel on an x86 host with an NVIDIA GPU) and, for TensorRT 8.x INT8 calibration, ``cuda-python``.
- TensorRT 10: INT8 is explicit, from the QDQ graph (``quantize.py``); FP16 is allowed beside it.
- TensorRT 8.x (Jetson Nano): FP16, or INT8 from the FP32 graph through an entropy calibrator fed by
  the same calibration readers as ONNX Runtime's, with a calibration cache.
Every build uses one optimisation profile for the key batch (61..88 keys, 1..8 frames) and a timing
cache; engines are cached under a key of the ONNX file's sha256, the TensorRT version, the GPU and the
precision, so a changed model, upgrade or different board rebuilds instead of loading a stale engine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pianoedge.errors import PianoedgeError
from pianoedge.runtime.manifest import sha256_of

from .onnx_export import INPUTS

WORKSPACE_BYTES = 256 << 20
KEY_RANGE = (61, 88, 88)  # min, opt, max keys in a batch
FRAME_RANGE = (1, 1, 8)  # min, opt, max frames (features) or windows (head) per call


def engine_key(onnx_sha256: str, trt_version: str, gpu: str, precision: str) -> str:
    """The engine cache key: any change of model, TensorRT, GPU or precision gives a new key."""
    spec = {"onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu, "precision": precision}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def engine_path(cache_dir: Path, onnx_path: Path, trt_version: str, gpu: str, precision: str) -> Path:
    key = engine_key(sha256_of(onnx_path), trt_version, gpu, precision)
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{precision}-{key[:20]}.engine"


def profile_shapes(graph: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shape of every dynamic input of a PianoNet graph (``onnx_export.INPUTS``)."""
    ranges = {"frames": FRAME_RANGE, "batch": FRAME_RANGE, "keys": KEY_RANGE}
    shapes = {}
    for name, spec in INPUTS[graph].items():
        dims = spec[:-1]
        if any(isinstance(d, str) for d in dims):
            shapes[name] = tuple(tuple(ranges[d][i] if isinstance(d, str) else d for d in dims) for i in range(3))
    return shapes


def tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise PianoedgeError("TensorRT is not installed: on a Jetson install JetPack's python3-libnvinfer, on an x86 host "
                             "with an NVIDIA GPU `pip install tensorrt`; or use --backend ort") from None
    return trt


def gpu_name() -> str:
    from cuda.bindings import runtime as cudart  # cuda-python

    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise PianoedgeError(f"no CUDA GPU visible ({err}); TensorRT needs one")
    return props.name.decode(errors="replace").strip("\x00")


def build_engine(onnx_path: Path, graph: str, precision: str, cache_dir: Path, calibration=None) -> Path:
    """Build (or take from the cache) the engine for one graph; ``calibration``: a CalibrationDataReader for
    TensorRT 8.x implicit INT8 (ignored for QDQ graphs, which carry their own scales)."""
    trt = tensorrt()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = engine_path(cache_dir, onnx_path, trt.__version__, gpu_name(), precision)
    if path.is_file():
        return path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PianoedgeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    timing_path = cache_dir / "timing.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, False)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile_shapes(graph).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibration is not None and major < 10:
            config.int8_calibrator = entropy_calibrator(trt, calibration, cache_dir / f"{Path(onnx_path).stem}.calib")
            config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise PianoedgeError(f"TensorRT could not build an engine for {onnx_path} at {precision} (see its log above)")
    path.write_bytes(bytes(plan))
    timing_path.write_bytes(bytes(timing.serialize()))
    return path


def entropy_calibrator(trt, reader, cache_file: Path):
    """A TensorRT IInt8EntropyCalibrator2 over an onnxruntime CalibrationDataReader, with a calibration cache."""
    import numpy as np
    from cuda.bindings import runtime as cudart

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.buffers: dict[str, int] = {}

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            item = reader.get_next()
            if item is None:
                return None
            pointers = []
            for name in names:
                host = np.ascontiguousarray(item[name])
                if name not in self.buffers:
                    _, self.buffers[name] = cudart.cudaMalloc(host.nbytes * 8)  # room for the largest batch
                cudart.cudaMemcpy(self.buffers[name], host.ctypes.data, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                pointers.append(int(self.buffers[name]))
            return pointers

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache):
            cache_file.write_bytes(bytes(cache))

    return Calibrator()
