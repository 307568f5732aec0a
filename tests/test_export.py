"""Export: ONNX parity with PyTorch, INT8 QDQ properties, the manifest's hash check, calibration on a real
take, the TensorRT engine cache's keys, and the shipped artifacts."""
from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pianoedge.errors import PianoedgeError
from pianoedge.runtime import manifest as M
from pianoedge.runtime.backend import OrtBackend, take_posteriors

torch = pytest.importorskip("torch", reason="export is host-side: install the host extra (torch)")

from pianoedge.export import exporter, onnx_export, quantize, tensorrt  # noqa: E402
from pianoedge.models import train  # noqa: E402
from pianoedge.models.data import load_take  # noqa: E402
from pianoedge.takes import find_takes  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tiny_take):
    return load_take(find_takes(tiny_take)[0])


@pytest.fixture(scope="module")
def exported(tiny_take, tmp_path_factory):
    """The shipped weights exported to FP32 and INT8, calibrated and scored on the tiny take."""
    out = tmp_path_factory.mktemp("export")
    manifest = exporter.export(None, out, "onnx", "int8", [tiny_take], [tiny_take], log=lambda _: None)
    return out, manifest


@pytest.mark.slow
def test_fp32_onnx_matches_pytorch_on_a_real_take(exported, tiny_data):
    out, manifest = exported
    backend = OrtBackend(M.load_artifact("ort", out / "manifest.json"))
    strips = tiny_data.strips[:40]
    assert set(backend.artifact.heads) == {"live", "offline"}
    for fps, head in itertools.product((tiny_data.fps, 60.0), backend.artifact.heads):  # context frames consecutive, then every other
        ours = take_posteriors(backend, strips, tiny_data.rest, tiny_data.num_keys, tiny_data.lowest, fps, chunk=7, head=head)
        reference = onnx_export.torch_posteriors(train.load_weights(), strips, tiny_data.rest, tiny_data.num_keys, tiny_data.lowest,
                                                 fps, head)
        assert ours.shape == (40, 61, 4)
        assert np.abs(ours - reference).max() < 1e-4
    assert manifest["artifacts"]["ort"]["parity_max_abs"] < 1e-4
    for path in (out / "onnx").glob("*.onnx"):
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version >= 17


@pytest.mark.slow
def test_int8_graphs_are_symmetric_qdq_on_conv_gemm_matmul_only(exported):
    out, manifest = exported
    entry = manifest["artifacts"]["ort-int8"]
    assert entry["calibration"]["method"] in quantize.METHODS
    for spec in entry["files"].values():
        model = onnx.load(str(out / spec["path"]))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        quantisers = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert quantisers
        for node in quantisers:
            zero = inits[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any()
        dequantised = {q.output[0]: q for q in quantisers if q.op_type == "DequantizeLinear"}
        consumers = [(n.op_type, dequantised[i]) for n in model.graph.node for i in n.input if i in dequantised]
        weight_ops = {op for op, dq in consumers if dq.input[0] in inits}
        assert weight_ops and weight_ops <= set(quantize.QUANTISED_OPS)  # only these ops have int8 weights
        assert {op for op, _ in consumers} <= set(quantize.QUANTISED_OPS)  # activations: int8 only into them
        for node in model.graph.node:
            if node.op_type in ("Conv", "Gemm") and len(node.input) > 2:  # biases stay float
                bias = node.input[2]
                assert bias in inits and inits[bias].dtype == np.float32


@pytest.mark.slow
def test_manifest_lists_every_artifact_and_refuses_a_tampered_file(exported, tmp_path):
    out, manifest = exported
    assert set(manifest["artifacts"]) == {"torch", "ort", "ort-int8"}
    assert manifest["default"] in ("ort", "ort-int8")
    for name in ("ort", "ort-int8"):
        entry = manifest["artifacts"][name]
        assert set(entry["files"]) == set(M.GRAPHS) and 0 < entry["latency_ms"]["p50"] <= entry["latency_ms"]["p99"]
        assert 0.0 <= entry["metrics"]["onset_f1"] <= 1.0 and entry["date"]
    copy = tmp_path / "models"
    shutil.copytree(out, copy)
    artifact = M.load_artifact("ort-int8", copy / "manifest.json")
    assert artifact.precision == "int8" and artifact.decoder == manifest["decoder"]
    victim = copy / manifest["artifacts"]["ort"]["files"]["head"]["path"]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(PianoedgeError, match="does not match its sha256"):
        M.load_artifact("ort", copy / "manifest.json")
    with pytest.raises(PianoedgeError, match="no 'trt' model"):
        M.load_artifact("trt", copy / "manifest.json")
    victim.unlink()
    with pytest.raises(PianoedgeError, match="model file missing"):
        M.load_artifact("ort", copy / "manifest.json")


def test_calibration_readers_give_real_model_inputs(tiny_data, tmp_path):
    files = onnx_export.export_onnx(train.load_weights(), tmp_path)
    fp32 = OrtBackend(M.Artifact("ort", "ort", "fp32", files, onnx_export.STRIP_SIZE, 5, {}, {}, 30.0, {"live": 0, "offline": 2}))
    strips = quantize.StripReader([tiny_data], 30.0, count=5)
    items = list(iter(strips.get_next, None))
    assert len(items) == 5 and items[0]["strips"].shape == (1, *tiny_data.strips.shape[1:])
    assert items[0]["strips"].dtype == np.uint8 and items[0]["key_pool"].shape == (61, tiny_data.strips.shape[2])
    assert any(np.array_equal(items[0]["strips"][0], s) for s in tiny_data.strips)  # a real frame of the take
    assert items[0]["previous"].shape == items[0]["strips"].shape  # with its context frame before (motion)
    strips.rewind()
    assert strips.get_next() is not None
    windows = quantize.WindowReader(fp32, [tiny_data], count=3)
    item = windows.get_next()
    assert item["features"].shape == (1, 5, 61, 48) and np.isfinite(item["features"]).all() and item["features"].any()
    assert quantize.WindowReader(fp32, [tiny_data], count=1, head="offline").get_next()["features"].shape == (1, 7, 61, 48)


def test_tensorrt_engine_cache_key_changes_with_model_version_gpu_and_precision(tmp_path):
    base = ("a" * 64, "10.3.0", "Orin", "int8")
    key = tensorrt.engine_key(*base)
    assert key == tensorrt.engine_key(*base)  # stable
    for i, other in enumerate(("b" * 64, "10.4.0", "Xavier", "fp16")):
        changed = list(base)
        changed[i] = other
        assert tensorrt.engine_key(*changed) != key
    graph = tmp_path / "g.onnx"
    graph.write_bytes(b"one")
    first = tensorrt.engine_path(tmp_path, graph, "10.3.0", "Orin", "fp16")
    graph.write_bytes(b"two")  # a re-exported model: its old engine is never found again
    assert tensorrt.engine_path(tmp_path, graph, "10.3.0", "Orin", "fp16") != first
    shapes = tensorrt.profile_shapes("features")
    w, h = onnx_export.STRIP_SIZE
    assert shapes["strips"] == ((1, h, w), (1, h, w), (8, h, w)) and shapes["key_pool"][0] == (61, w)
    assert "rest" not in shapes  # static inputs need no profile
    assert tensorrt.profile_shapes("head")["features"][2] == (8, 5, 88, 48)
    assert tensorrt.profile_shapes("offline")["features"][2] == (8, 7, 88, 48)


def test_tensorrt_build_needs_tensorrt():
    pytest.importorskip("tensorrt", reason="TensorRT is not installable here (no NVIDIA GPU); engine builds run on the device")
    pytest.skip("building an engine needs an NVIDIA GPU")


def test_shipped_manifest_verifies_and_runs():
    manifest = M.read_manifest()
    for name, entry in manifest["artifacts"].items():
        if entry["backend"] != "ort":
            continue
        backend = OrtBackend(M.load_artifact(name))
        strips = np.random.default_rng(0).integers(0, 256, (6, *backend.artifact.strip_size[::-1]), dtype=np.uint8)
        for head in backend.artifact.heads:
            out = take_posteriors(backend, strips, strips[0], 88, 21, 30.0, head=head)
            assert out.shape == (6, 88, 4) and np.all((out >= 0) & (out <= 1))
    assert json.loads(M.MANIFEST.read_text())["default"] in manifest["artifacts"]
