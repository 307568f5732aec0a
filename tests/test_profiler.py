"""The profiler: the real loop on a real take, every CONTRACTS field, stage times that add up, a plot,
and the benchmark across backends."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pianoedge.runtime import profiler
from pianoedge.runtime.source import FileSource
from pianoedge.takes import find_takes

from .test_cli import run


@pytest.fixture(scope="module")
def report(tiny_take, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    take = find_takes(tiny_take)[0]
    result = run("profile", "--video", str(take.video), "--json", str(out / "p.json"), "--plot", str(out / "p.png"))
    assert result.returncode == 0, result.stderr
    assert "| processing |" in result.stdout and "| end to end |" in result.stdout
    return json.loads((out / "p.json").read_text()), out


def test_profile_json_has_every_contract_field(report, tiny_take):
    data, _ = report
    for key in ("frames", "dropped", "source_fps", "achieved_fps", "stages", "processing", "end_to_end", "peak_rss_mb", "machine", "backend"):
        assert key in data, key
    assert set(data["stages"]) == {"capture", "warp", "inference", "decode", "sinks"}
    for block in (*data["stages"].values(), data["processing"], data["end_to_end"]):
        assert set(block) == {"p50", "p90", "p99", "max"} and 0 <= block["p50"] <= block["p90"] <= block["p99"] <= block["max"]
    source = FileSource(find_takes(tiny_take)[0].video)
    assert data["frames"] + data["warmup_frames"] == source.frame_count and data["warmup_frames"] == profiler.WARMUP_FRAMES
    source.close()
    assert data["source_fps"] == 25.0 and data["dropped"] == 0 and data["achieved_fps"] > 25.0
    assert data["machine"]["cores"] >= 1 and "CPUExecutionProvider" in data["machine"]["providers"]
    assert data["backend"] in ("ort", "ort-int8") and 0 < data["profiler_overhead_ms"] < 0.1


def test_stage_times_add_up_to_the_processing_time(report):
    data, _ = report
    raw = data["raw_ms"]
    stages = np.sum([raw[n] for n in ("warp", "inference", "decode", "sinks")], axis=0)
    assert np.allclose(stages, raw["processing"], rtol=0.10, atol=0.05)  # frame by frame, within 10%
    assert abs(data["stage_sum_p50"] - data["processing"]["p50"]) <= 0.1 * data["processing"]["p50"] + 0.05
    assert all(e >= p for e, p in zip(raw["end_to_end"], raw["processing"]))  # end to end includes processing


def test_profile_plot_is_a_png_with_content(report):
    _, out = report
    image = cv2.imread(str(out / "p.png"))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
    assert (image < 200).any(axis=2).mean() > 0.02  # bars and areas drawn, not a blank canvas


@pytest.mark.slow
def test_benchmark_lists_every_backend_with_latency_and_accuracy(tiny_take):
    take = find_takes(tiny_take)[0]
    result = run("benchmark", "--video", str(take.video))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| backend")]
    names = [r.split("|")[1].strip() for r in rows]
    assert {"ort", "ort-int8"} <= set(names) and ("torch" in names) == (pytest.importorskip("torch") is not None)
    for r in rows:
        cells = [c.strip() for c in r.split("|")[2:-1]]
        assert all(float(c) >= 0 for c in cells)  # latency and onset/frame F1 (the take has its MIDI)
