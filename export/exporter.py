"""``pianoedge export``: trained PianoNet -> verified ONNX FP32 and INT8 (and TensorRT engines where present),
each evaluated with the ``pianoedge eval`` metrics and timed, listed in ``manifest.json``. Host only.
"""
from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import torch

from pianoedge.errors import PianoedgeError
from pianoedge.models.data import CONTEXT_FPS, TakeData
from pianoedge.models.net import CONTEXT, HEADS, PianoNet
from pianoedge.models.train import evaluate, load_takes_list, load_thresholds, load_weights
from pianoedge.runtime.backend import OrtBackend, frame_latency_ms, take_posteriors
from pianoedge.runtime.manifest import Artifact, file_entry, heads_with_graphs, write_manifest
from pianoedge.takes import find_takes

from . import onnx_export, quantize

PARITY = 1e-4  # FP32 ONNX against PyTorch, on probabilities
INT8_TOLERANCE = 0.005  # an INT8 artifact is the default only if its onset F1 is within 0.5 points of FP32
MAX_CALIBRATION_TAKES = 12
LATENCY_FRAMES = 200


class TorchBackend:
    """PyTorch eager, one thread, behind the runtime's backend interface: the reference in every table."""

    def __init__(self, net: PianoNet, decoder: dict | None = None):
        torch.set_num_threads(1)  # like the ONNX Runtime sessions: one core per stream
        self.net, self.context = net.eval(), CONTEXT
        self.artifact = Artifact("torch", "torch", "fp32", {}, onnx_export.STRIP_SIZE, CONTEXT, decoder or {}, {}, CONTEXT_FPS,
                                 {name: head.ahead for name, head in net.heads().items()})

    @torch.no_grad()
    def key_features(self, strips, rest, pool, previous):
        return self.net.key_features(torch.from_numpy(strips), torch.from_numpy(rest)[None], torch.from_numpy(pool),
                                     torch.from_numpy(previous)).numpy()

    @torch.no_grad()
    def head(self, windows, black, name: str = "live"):
        out = self.net.heads()[name](torch.from_numpy(np.array(windows, np.float32)), torch.from_numpy(black))
        return torch.cat([torch.sigmoid(out[..., :3]), out[..., 3:]], dim=2).numpy()


def spread_takes(folders: list[Path], limit: int) -> list:
    takes = [t for folder in folders for t in find_takes(folder)]
    if not takes:
        raise PianoedgeError(f"no takes (NAME.mp4 + NAME.mid) in {', '.join(map(str, folders))}")
    return [takes[int(i)] for i in np.unique(np.linspace(0, len(takes) - 1, min(limit, len(takes))).round())]


def _ort_backend(name: str, precision: str, files: dict[str, Path]) -> OrtBackend:
    """An ONNX Runtime backend on freshly written graphs (not yet in a manifest)."""
    return OrtBackend(Artifact(name, "ort", precision, files, onnx_export.STRIP_SIZE, CONTEXT, {}, {}, CONTEXT_FPS,
                               heads_with_graphs(HEADS, files)))


def check_parity(net: PianoNet, fp32: OrtBackend, data: TakeData) -> float:
    """Largest difference of any probability between ONNX Runtime FP32 and PyTorch on a real take, over every head."""
    strips = data.strips[:120]
    gap = 0.0
    for head in net.heads():
        ours = take_posteriors(fp32, strips, data.rest, data.num_keys, data.lowest, data.fps, head=head)
        reference = onnx_export.torch_posteriors(net, strips, data.rest, data.num_keys, data.lowest, data.fps, head)
        gap = max(gap, float(np.abs(ours - reference).max()))
    if gap > PARITY:
        raise PianoedgeError(f"ONNX export differs from PyTorch by {gap:.2e} (> {PARITY:.0e}); not writing a manifest")
    return gap


def measure(backend, takes: list[TakeData], thresholds) -> dict:
    """Validation metrics of each head (as ``pianoedge eval``: ``metrics`` live, ``metrics_offline``) and live
    per-frame latency (88 keys, one thread)."""
    result = {}
    for head in backend.artifact.heads if takes else ():
        probs = [take_posteriors(backend, d.strips, d.rest, d.num_keys, d.lowest, d.fps, head=head) for d in takes]
        result["metrics" if head == "live" else f"metrics_{head}"] = evaluate(None, takes, thresholds, probs,
                                                                          as_file=head != "live")[0]  # as run / transcribe time notes
    sample = takes[0] if takes else None
    strips = sample.strips[:LATENCY_FRAMES] if sample else np.random.default_rng(0).integers(0, 256, (50, *onnx_export.STRIP_SIZE[::-1]), np.uint8)
    rest = sample.rest if sample else strips[0]
    ms = frame_latency_ms(backend, strips, rest, 88, 21)
    result["latency_ms"] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}
    return result


def export(model_dir: Path | None, out_dir: Path, fmt: str = "onnx", precision: str = "int8", calib: list[Path] | None = None,
           val: list[Path] | None = None, progress=None, log=print) -> dict:
    """Write ``out_dir/onnx/*.onnx`` and ``out_dir/manifest.json``; returns the manifest.

    ``precision`` fp32 exports FP32 only; int8 also quantises (calibrated on ``calib``, the method chosen
    by onset F1 on ``val``); fp16 applies to TensorRT engines (built from the FP32 graphs)."""
    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    folder = Path(model_dir) if model_dir else None
    net = load_weights(folder) if folder else load_weights()
    thresholds = load_thresholds(folder) if folder else load_thresholds()
    if precision == "int8" and not calib:
        raise PianoedgeError("INT8 needs calibration takes: add --calib DIR (studio takes or your own recordings)")
    val_takes = load_takes_list(spread_takes(val, 100), progress and progress(0, "take", "loading val")) if val else []
    calib_takes = (load_takes_list(spread_takes(calib, MAX_CALIBRATION_TAKES), progress and progress(0, "take", "loading calib"))
                   if calib else [])
    graphs = out_dir / "onnx"
    files = onnx_export.export_onnx(net, graphs)
    fp32 = _ort_backend("ort", "fp32", files)
    sample = (val_takes or calib_takes or [None])[0]
    gap = check_parity(net, fp32, sample) if sample is not None else None
    log(f"ONNX FP32 parity against PyTorch: max |difference| {gap:.1e}" if gap is not None else
        "no takes given: parity not checked on real frames (add --val DIR)")
    today = date.today().isoformat()
    artifacts = {"torch": {"backend": "torch", "precision": "fp32", "files": {}, **measure(TorchBackend(net), val_takes, thresholds)}}

    def entry(backend: str, prec: str, paths: dict, runner, **extra) -> dict:
        return {"backend": backend, "precision": prec, "opset": onnx_export.OPSET,
                "files": {g: file_entry(p, out_dir) for g, p in paths.items()}, "inputs": {g: onnx_export.INPUTS[g] for g in paths},
                **measure(runner, val_takes, thresholds), "date": today, **extra}

    artifacts["ort"] = entry("ort", "fp32", files, fp32, parity_max_abs=gap)
    if precision == "int8":
        trials = {}
        for method in quantize.METHODS:
            paths = quantize.quantize_int8(fp32, calib_takes, graphs, method, suffix=f".int8-{method}")
            runner = _ort_backend("ort-int8", "int8", paths)
            probs = [take_posteriors(runner, d.strips, d.rest, d.num_keys, d.lowest, d.fps) for d in val_takes]
            onset = evaluate(None, val_takes, thresholds, probs)[0]["onset_f1"] if val_takes else 0.0
            trials[method] = (onset, paths)
            log(f"INT8 calibration {method}: validation onset F1 {onset:.3f}")
        method = max(trials, key=lambda m: trials[m][0])  # ties: the first (MinMax, the cheapest)
        paths = {}
        for graph, path in trials[method][1].items():
            paths[graph] = path.with_name(onnx_export.FILES[graph].replace(".onnx", ".int8.onnx"))
            shutil.move(path, paths[graph])
        for _, other in (t for m, t in trials.items() if m != method):
            for path in other.values():
                path.unlink()
        runner = _ort_backend("ort-int8", "int8", paths)
        artifacts["ort-int8"] = entry("ort", "int8", paths, runner, calibration={
            "method": method, "takes": len(calib_takes), "frames": quantize.CALIBRATION_FRAMES,
            "onset_f1_by_method": {m: t[0] for m, t in trials.items()}})
    if fmt == "trt":
        from . import tensorrt

        for name, prec in (("trt", "fp16"), ("trt-int8", "int8")) if precision == "int8" else (("trt", precision),):
            source = artifacts["ort-int8" if prec == "int8" else "ort"]["files"]
            engines = {g: tensorrt.build_engine(out_dir / f["path"], g, prec, out_dir / "engines") for g, f in source.items()}
            artifacts[name] = {"backend": "trt", "precision": prec, "files": {g: file_entry(p, out_dir) for g, p in engines.items()},
                               "date": today}
    manifest = {"model": "pianonet", "strip_size": list(onnx_export.STRIP_SIZE), "context": CONTEXT, "context_fps": CONTEXT_FPS,
                "heads": fp32.artifact.heads, "decoder": thresholds.__dict__, "default": default_artifact(artifacts), "artifacts": artifacts,
                "validation_takes": [d.name for d in val_takes]}
    write_manifest(out_dir / "manifest.json", manifest)
    return manifest


def default_artifact(artifacts: dict) -> str:
    """The fastest shipped artifact whose onset F1 is within ``INT8_TOLERANCE`` of FP32's."""
    reference = artifacts["ort"].get("metrics", {}).get("onset_f1")
    fit = [name for name, a in artifacts.items() if a["backend"] == "ort" and (
        reference is None or a.get("metrics", {}).get("onset_f1", -1) >= reference - INT8_TOLERANCE)]
    return min(fit, key=lambda name: artifacts[name]["latency_ms"]["p50"])


def table(manifest: dict, out_dir: Path) -> list[str]:
    """The export report: artifact, backend, precision, size, ms per live frame (88 keys) and note onset F1
    (the live head; the offline head's beside it)."""
    lines = ["| artifact | backend | precision | size (kB) | ms/frame p50 | ms/frame p99 | onset F1 | frame F1 white | frame F1 black "
             "| offline onset F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in manifest["artifacts"].items():
        size = f'{sum((out_dir / f["path"]).stat().st_size for f in a["files"].values()) / 1024:.0f}' if a["files"] else "-"
        m, lat = a.get("metrics", {}), a.get("latency_ms", {})
        cells = [f"{name}{' (default)' if name == manifest['default'] else ''}", a["backend"], a["precision"], size,
                 *(f"{lat[k]:.2f}" if k in lat else "-" for k in ("p50", "p99")),
                 *(f"{m[k]:.3f}" if k in m else "-" for k in ("onset_f1", "frame_f1_white", "frame_f1_black")),
                 f'{a["metrics_offline"]["onset_f1"]:.3f}' if "metrics_offline" in a else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
