"""The command line: clear errors without tracebacks, the training-set builder, and a torch-free runtime."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pianoedge.notes import Note, write_notes
from pianoedge.takes import find_takes


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pianoedge", *args], capture_output=True, text=True, timeout=600, **kwargs)


def assert_clear_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pianoedge: error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_midi(tmp_path):
    assert_clear_error(run("synth", str(tmp_path / "nope.mid"), "-o", str(tmp_path / "out")), "not found", "nope.mid")


def test_corrupt_midi(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06 this is not midi")
    assert_clear_error(run("synth", str(bad), "-o", str(tmp_path / "out")), "cannot read MIDI file")
    assert not (tmp_path / "out" / "bad.mp4").exists()


def test_notes_outside_the_keyboard(tmp_path):
    low = tmp_path / "low.mid"
    write_notes(low, [Note(30, 0.1, 0.5, 80)])  # below a 61-key keyboard (36..96)
    assert_clear_error(run("synth", str(low), "-o", str(tmp_path / "out"), "--keys", "61"), "61-key", "--keys 88")
    high = tmp_path / "high.mid"
    write_notes(high, [Note(115, 0.1, 0.5, 80)])  # above any piano
    assert_clear_error(run("synth", str(high), "-o", str(tmp_path / "out")), "beyond an 88-key piano")


def test_empty_midi(tmp_path):
    empty = tmp_path / "empty.mid"
    write_notes(empty, [])
    assert_clear_error(run("synth", str(empty), "-o", str(tmp_path / "out")), "no notes")


def test_unwritable_output(tmp_path, demo_midi):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_clear_error(run("synth", str(demo_midi), "-o", str(blocker / "sub")), "cannot create output folder")


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "synth", str(tmp_path / "nope.mid"), "-o", str(tmp_path))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_synth_renders_a_take_from_the_command_line(tmp_path, demo_midi):
    result = run("synth", str(demo_midi), "-o", str(tmp_path), "--seed", "4", "--resolution", "640x480", "--fps", "24", "--view", "stand")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "demo.json").read_text())
    assert meta["image_size"] == [640, 480] and meta["fps"] == 24.0 and meta["studio"]["params"]["view"] == "stand"


@pytest.mark.slow
def test_generate_builds_a_training_set_in_parallel(tmp_path):
    result = run("synth", "--generate", "3", "--seconds", "2", "-o", str(tmp_path), "--seed", "1", "--workers", "2",
                 "--resolution", "640x480")
    assert result.returncode == 0, result.stderr
    takes = find_takes(tmp_path)
    assert len(takes) == 3
    sources = {json.loads(t.meta_path.read_text())["studio"]["source"] for t in takes}
    assert any(s.startswith("music21:") for s in sources) and any(s.startswith("exercise:") for s in sources)
    for take in takes:
        assert take.labels_path.is_file() and take.notes()


def test_runtime_and_help_work_without_torch():
    """The on-device runtime never imports torch: block it and import the runtime and the CLI."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, NoTorch())
        import pkgutil
        import pianoedge, pianoedge.runtime
        for mod in pkgutil.walk_packages(pianoedge.runtime.__path__, "pianoedge.runtime."):
            __import__(mod.name)
        from pianoedge.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok") and "synth" in result.stdout


def test_tuning_an_exported_artifact_is_a_clear_error():
    examples = Path(__file__).parent.parent / "examples"
    result = run("eval", "--data", str(examples), "--backend", "ort", "--tune")
    assert_clear_error(result, "--tune", "pianoedge export")
