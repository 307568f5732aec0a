"""`pianoedge bundle` (every file verified by its sha256) and `pianoedge doctor` (each problem with its fix)."""
from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from pianoedge.deploy import doctor
from pianoedge.deploy.bundle import verify_bundle, write_bundle
from pianoedge.errors import PianoedgeError
from pianoedge.runtime.manifest import MANIFEST, read_manifest

from .test_cli import run


@pytest.fixture
def models_copy(tmp_path):
    """The shipped model manifest and its files, copied so that a test may damage them."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(MANIFEST, folder / "manifest.json")
    for entry in read_manifest()["artifacts"].values():
        for spec in entry["files"].values():
            (folder / spec["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(MANIFEST.parent / spec["path"], folder / spec["path"])
    return folder


def by_name(checks):
    return {c.name: c for c in checks}


def test_doctor_reports_a_missing_camera_with_its_fix(models_copy):
    checks = by_name(doctor.diagnose("7", None, models_copy / "manifest.json"))
    assert not checks["camera"].ok and "camera 7" in checks["camera"].detail and "v4l2-ctl" in checks["camera"].fix


def test_doctor_reports_a_tampered_model_with_its_fix(models_copy):
    assert all(c.ok for c in doctor.check_models(models_copy / "manifest.json"))
    spec = read_manifest()["artifacts"]["ort"]["files"]["features"]
    victim = models_copy / spec["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    checks = by_name(doctor.check_models(models_copy / "manifest.json"))
    assert not checks["model ort"].ok and "sha256" in checks["model ort"].detail and "restore" in checks["model ort"].fix
    assert checks["model ort-int8"].ok  # the other artifact is still fine


def test_doctor_reports_a_missing_gadget_with_its_fix(tmp_path):
    cards = tmp_path / "cards"
    cards.write_text(" 0 [PCH            ]: HDA-Intel - HDA Intel PCH\n")
    checks = by_name(doctor.check_midi(cards, tmp_path))
    assert not checks["usb midi gadget"].ok and "pianoedge-gadget" in checks["usb midi gadget"].fix
    cards.write_text(cards.read_text() + " 1 [pianoedge      ]: f_midi - pianoedge MIDI\n")
    (tmp_path / "midiC1D0").touch()
    assert by_name(doctor.check_midi(cards, tmp_path))["usb midi gadget"].ok


def test_doctor_command_exits_1_and_prints_every_problem(tmp_path):
    result = run("doctor", "--camera", "7", "--lock", str(tmp_path / "none.json"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "PROBLEM camera" in result.stdout and "PROBLEM lock" in result.stdout and "fix: lock the keyboard" in result.stdout
    assert "ok      model ort:" in result.stdout and "problems found" in result.stdout


def test_bundle_holds_every_file_with_its_hash_and_refuses_tampering(tmp_path):
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({"corners": [[0, 0], [1, 0], [1, 1], [0, 1]]}))
    out = tmp_path / "board.tar.gz"
    result = run("bundle", "-o", str(out), "--lock", str(lock))
    assert result.returncode == 0, result.stderr
    index = verify_bundle(out, tmp_path / "unpacked")
    assert "models/manifest.json" in index["files"] and "lock.json" in index["files"]
    assert (tmp_path / "unpacked" / "models" / "onnx" / "pianonet_head.onnx").is_file()
    # tamper: same names, one file's bytes changed
    with tarfile.open(out) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for member, data in members:
            if member.name == "lock.json":
                data = data.replace(b"0", b"9")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(PianoedgeError, match="lock.json does not match its sha256"):
        verify_bundle(bad)
    with pytest.raises(PianoedgeError, match="not a pianoedge bundle"):
        verify_bundle(lock)
    write_bundle(tmp_path / "plain.tar.gz")  # models only
    assert set(verify_bundle(tmp_path / "plain.tar.gz")["files"]) == set(index["files"]) - {"lock.json"}


def test_pianoedge_models_points_the_runtime_at_installed_models(models_copy, tiny_take, tmp_path):
    """A board keeps its verified models in /var/lib/pianoedge/models: $PIANOEDGE_MODELS names that manifest."""
    import os

    from pianoedge.takes import find_takes

    env = {**os.environ, "PIANOEDGE_MODELS": str(models_copy / "manifest.json")}
    video = str(find_takes(tiny_take)[0].video)
    assert run("transcribe", video, "-o", str(tmp_path / "a.mid"), env=env).returncode == 0
    (models_copy / read_manifest()["artifacts"]["ort"]["files"]["head"]["path"]).write_bytes(b"not a model")
    damaged = run("transcribe", video, "-o", str(tmp_path / "b.mid"), "--backend", "ort", env=env)
    assert damaged.returncode == 1 and "does not match its sha256" in damaged.stderr and str(models_copy) in damaged.stderr
