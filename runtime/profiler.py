"""``pianoedge profile``: the real live loop (``live.run``) on a video or camera, timed per stage on the
monotonic clock: capture, warp, inference (key batch + features + head), decode, sinks; processing
(decoded frame to note events sent) and end to end (frame in memory / captured to the MIDI bytes out).
Warm-up frames are excluded; the profiler's own cost per frame is measured and reported.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import live
from .sinks import midi_messages

WARMUP_FRAMES = 30


class MidiBytesSink:
    """Makes the MIDI bytes of every event, as a device sink would, and drops them (no device needed)."""

    def __init__(self):
        self.bytes = 0

    def send(self, events) -> None:
        self.bytes += len(b"".join(bytes(m.bytes()) for m in midi_messages(events)))

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return "midi-bytes"


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith(("model name", "Model")))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(), "system": platform.platform(),
            "python": platform.python_version(), "onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def percentiles(values) -> dict:
    v = np.asarray(values, float)
    if v.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def timer_overhead_ms(samples: int = 20000) -> float:
    """What the profiler's five clock reads and bookkeeping cost per frame."""
    times = live.StageTimes()

    class Frame:
        capture_ms, stamp = 0.0, time.monotonic()

    started = time.perf_counter()
    for _ in range(samples):
        marks = [time.monotonic() for _ in range(5)]
        times.add(Frame, marks)
    return (time.perf_counter() - started) * 1000 / samples


def profile(source: str, backend: str | None = None, seconds: float | None = None, sinks: list[str] | None = None,
            lock: Path | None = None) -> dict:
    """Run the live loop and return the CONTRACTS profile JSON."""
    times = live.StageTimes()
    started = time.monotonic()
    result = live.run(source, [MidiBytesSink(), *(sinks or [])], lock, None, backend, seconds, None, times)
    wall = time.monotonic() - started
    measured = {k: v[WARMUP_FRAMES:] for k, v in times.ms.items()}
    frames = len(measured["processing"])
    loop_s = sum(times.ms["capture"]) / 1000 + sum(times.ms["processing"]) / 1000
    return {
        "frames": frames, "warmup_frames": min(WARMUP_FRAMES, result["frames"]), "dropped": result["dropped"],
        "source_fps": result["source_fps"],
        "achieved_fps": result["frames"] / loop_s if loop_s else 0.0,  # frames per second of capture + processing
        "stages": {name: percentiles(measured[name]) for name in live.StageTimes.STAGES},
        "processing": percentiles(measured["processing"]),
        "end_to_end": percentiles(measured["end_to_end"]),
        "stage_sum_p50": float(np.median(np.sum([measured[n] for n in live.StageTimes.STAGES[1:]], axis=0))) if frames else 0.0,
        "profiler_overhead_ms": timer_overhead_ms(),
        "cpu_s": _cpu_seconds(), "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": machine(), "backend": result["backend"], "source": str(source),
        "raw_ms": {k: [round(x, 4) for x in v] for k, v in measured.items()},
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def table(report: dict) -> list[str]:
    lines = [f"{report['frames']} frames after {report['warmup_frames']} warm-up, backend {report['backend']}, "
             f"source {report['source_fps']:.1f} fps, achieved {report['achieved_fps']:.1f} fps, dropped {report['dropped']}",
             "", "| stage | p50 ms | p90 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    rows = [*report["stages"].items(), ("processing", report["processing"]), ("end to end", report["end_to_end"])]
    lines += [f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['max']:.2f} |" for name, s in rows]
    lines += ["", f"CPU {report['cpu_s']:.1f} s over {report['wall_s']:.1f} s wall, peak memory {report['peak_rss_mb']:.0f} MB, "
                  f"profiler overhead {report['profiler_overhead_ms'] * 1000:.1f} us/frame"]
    return lines


def plot(report: dict, path: str | Path, width: int = 900) -> None:
    """A PNG (OpenCV: the device has no plotting library): the histogram of processing and end-to-end
    latency on top, each frame's stage times stacked below."""
    import cv2

    raw = report["raw_ms"]
    colours = {"processing": (200, 120, 40), "end_to_end": (40, 140, 230), "warp": (90, 170, 60), "inference": (40, 120, 220),
               "decode": (180, 80, 160), "sinks": (60, 60, 60)}
    image = np.full((560, width, 3), 255, np.uint8)
    text = lambda s, x, y, c=(0, 0, 0): cv2.putText(image, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, c, 1, cv2.LINE_AA)  # noqa: E731
    text(f"pianoedge profile: {report['backend']}, {report['frames']} frames, {report['machine']['cpu']}", 10, 18)
    top = max(max(raw["end_to_end"], default=1.0), 1e-3)
    edges = np.linspace(0, top, 61)
    counts = {n: np.histogram(raw[n], edges)[0] for n in ("processing", "end_to_end")}
    peak = max(1, *(c.max() for c in counts.values()))
    x0, y0, w, h = 50, 250, width - 70, 200
    for i, name in enumerate(counts):
        for j, c in enumerate(counts[name]):
            x = x0 + int(j * w / 60) + i * 4
            cv2.rectangle(image, (x, y0 - int(c * h / peak)), (x + 5, y0), colours[name], -1)
        text(f"{name.replace('_', ' ')} p50 {report[name]['p50']:.2f} ms", x0 + 10 + 260 * i, 45, colours[name])
    cv2.line(image, (x0, y0), (x0 + w, y0), (0, 0, 0), 1)
    for k in range(0, 61, 10):
        text(f"{edges[k]:.1f}", x0 + int(k * w / 60) - 8, y0 + 16)
    text("ms per frame (histogram)", x0 + w - 180, y0 + 32)
    stages = live.StageTimes.STAGES[1:]
    stacked = np.cumsum([np.asarray(raw[n], float) for n in stages], axis=0)
    ymax, base = max(float(stacked[-1].max()) if stacked.size else 1.0, 1e-3), 530
    n = stacked.shape[1] if stacked.size else 0
    for k in range(len(stages) - 1, -1, -1):
        if n:
            xs = x0 + (np.arange(n) * w / max(n - 1, 1)).astype(int)
            ys = base - (stacked[k] * 200 / ymax).astype(int)
            pts = np.concatenate([np.stack([xs, ys], 1), [[xs[-1], base], [xs[0], base]]]).astype(np.int32)
            cv2.fillPoly(image, [pts], colours[stages[k]])
        text(stages[k], x0 + 10 + 110 * k, 305, colours[stages[k]])
    text(f"per-frame timeline, stacked stages (max {ymax:.1f} ms)", x0 + w - 330, 305)
    cv2.line(image, (x0, base), (x0 + w, base), (0, 0, 0), 1)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def write_json(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=1))


def benchmark(video: str | Path, lock: Path | None = None) -> list[dict]:
    """Every backend this machine can run on the same clip: latency per stage and, when the clip is a
    take (a MIDI file beside it), note onset and frame F1. Torch eager is the reference when installed."""
    import tempfile

    from pianoedge.models.evaluate import score
    from pianoedge.notes import read_notes

    from .manifest import read_manifest
    from .sinks import MidiFileSink

    video = Path(video)
    truth = read_notes(video.with_suffix(".mid")) if video.with_suffix(".mid").is_file() else None
    names = [n for n, a in read_manifest()["artifacts"].items() if a["backend"] == "ort"]
    try:
        import torch  # noqa: F401

        names.insert(0, "torch")
    except ImportError:
        pass
    rows = []
    for name in names:
        times = live.StageTimes()
        with tempfile.TemporaryDirectory() as tmp:
            sink = MidiFileSink(Path(tmp) / "b.mid")
            result = live.run(str(video), [sink], lock, None, name, None, None, times)
            notes = read_notes(sink.path)
        row = {"backend": name, "frames": result["frames"],
               "inference": percentiles(times.ms["inference"][WARMUP_FRAMES:]),
               "processing": percentiles(times.ms["processing"][WARMUP_FRAMES:])}
        if truth is not None:
            metrics = score(truth, notes, result["source_fps"], result["frames"])
            row.update({k: metrics[k] for k in ("onset_f1", "frame_f1_white", "frame_f1_black")})
        rows.append(row)
    return rows


def benchmark_table(rows: list[dict]) -> list[str]:
    lines = ["| backend | inference p50 ms | inference p99 ms | processing p50 ms | processing p99 ms | onset F1 | frame F1 white | frame F1 black |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = [f"{r[k]:.3f}" if k in r else "-" for k in ("onset_f1", "frame_f1_white", "frame_f1_black")]
        lines.append(f"| {r['backend']} | {r['inference']['p50']:.2f} | {r['inference']['p99']:.2f} | {r['processing']['p50']:.2f} | "
                     f"{r['processing']['p99']:.2f} | " + " | ".join(acc) + " |")
    return lines
