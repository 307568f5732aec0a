"""Shared fixtures: small rendered takes, made once per test session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pianoedge.notes import Note, write_notes


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
needs_real_clip = pytest.mark.skipif(not (REAL / "furelise.mp4").is_file(),
                                     reason="the real clip lives in ../shared/data/real beside the repository")


def performance(seed: int = 0, seconds: float = 3.0) -> list[Note]:
    """A short two-hand performance with chords, a held note and a re-struck key."""
    rng = np.random.default_rng(seed)
    notes = [Note(48, 0.2, 2.4, 64, "left")]  # held under moving notes
    t = 0.25
    while t < seconds - 0.5:
        pitch = int(rng.integers(60, 79))
        length = float(rng.uniform(0.12, 0.4))
        notes.append(Note(pitch, t, t + length, int(rng.integers(20, 126)), "right"))
        t += length + float(rng.uniform(0.04, 0.2))
    notes += [Note(43, 1.0, 1.3, 90, "left"), Note(43, 1.4, 1.7, 30, "left"), Note(40, 1.0, 1.3, 80, "left")]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


@pytest.fixture(scope="session")
def demo_midi(tmp_path_factory):
    path = tmp_path_factory.mktemp("midi") / "demo.mid"
    write_notes(path, performance())
    return path


@pytest.fixture(scope="session")
def tiny_take(tmp_path_factory):
    """A two-second studio take, rendered small."""
    from pianoedge.studio.take import render_take

    folder = tmp_path_factory.mktemp("tiny")
    notes = [Note(60 + i % 5, 0.1 + 0.18 * i, 0.25 + 0.18 * i, 40 + 8 * i) for i in range(10)]
    write_notes(folder / "src.mid", notes)
    render_take(notes, folder, "tiny", 7, num_keys=61, view="overhead", width=640, height=360, fps=25.0)
    return folder
