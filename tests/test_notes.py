import numpy as np
import pretty_midi
import pytest

from pianoedge.errors import PianoedgeError
from pianoedge.notes import read_notes, write_notes
from pianoedge.takes import frame_labels

from .conftest import REAL, needs_real_clip, performance


def test_write_then_read_back_with_an_independent_reader(tmp_path):
    notes = performance(3)
    path = tmp_path / "p.mid"
    write_notes(path, notes)
    ours = read_notes(path)
    theirs = sorted((n.pitch, n.start, n.end, n.velocity) for inst in pretty_midi.PrettyMIDI(str(path)).instruments for n in inst.notes)
    assert len(ours) == len(theirs) == len(notes)
    for a, b in zip(sorted((n.pitch, n.start, n.end, n.velocity) for n in ours), theirs):
        assert a[0] == b[0] and a[3] == b[3]
        assert abs(a[1] - b[1]) < 1e-6 and abs(a[2] - b[2]) < 1e-6
    for a, b in zip(sorted(ours, key=lambda n: (n.start, n.pitch)), notes):
        assert (a.pitch, a.velocity, a.hand) == (b.pitch, b.velocity, b.hand)
        assert abs(a.start - b.start) < 1e-3 and abs(a.end - b.end) < 1e-3


@needs_real_clip
def test_real_recording_reads_like_pretty_midi(tmp_path):
    path = str(REAL / "furelise.mid")
    pm = pretty_midi.PrettyMIDI(path)
    expected = sorted((n.pitch, n.start, n.end, n.velocity) for i in pm.instruments for n in i.notes)
    ours = sorted((n.pitch, n.start, n.end, n.velocity) for n in read_notes(path))
    assert len(ours) == len(expected) == 196
    np.testing.assert_allclose(np.array(ours, float), np.array(expected, float), atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"MThd garbage", bytes(range(256))])
def test_corrupt_midi_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(PianoedgeError, match="cannot read MIDI file"):
        read_notes(path)


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0, 50.0, 60.0])
def test_frame_labels_agree_with_the_notes_at_every_frame_rate(fps):
    notes = performance(1)
    frames = int(np.ceil(4.0 * fps))
    labels = frame_labels(notes, fps, frames)
    times = np.arange(frames) / fps
    for n in notes:
        slot = n.pitch - 21
        inside = (times >= n.start) & (times < n.end)
        assert labels["pressed"][inside, slot].all()
        assert (labels["velocity"][inside, slot] == n.velocity).all()
        onset_frames = np.flatnonzero(labels["onset"][:, slot])
        nearest = onset_frames[np.argmin(np.abs(times[onset_frames] - n.start))]
        assert abs(times[nearest] - n.start) <= 0.5 / fps + 1e-9  # the nearest frame (ties: the later one)
        assert abs(labels["onset_shift"][nearest, slot] - (n.start * fps - nearest)) < 1e-5
        offset_frames = np.flatnonzero(labels["offset"][:, slot])
        assert np.min(np.abs(times[offset_frames] - n.end)) <= 0.5 / fps + 1e-9
    # nothing is pressed where no note sounds
    sounding = np.zeros_like(labels["pressed"])
    for n in notes:
        sounding[(times >= n.start) & (times < n.end), n.pitch - 21] = True
    assert (labels["pressed"] == sounding).all()
    assert labels["onset"].sum() == len(notes)
