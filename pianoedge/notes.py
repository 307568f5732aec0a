"""Notes and MIDI files: the plain data passed between music, studio, labels and the decoder.

MIDI is read and written with mido (a base dependency, so the lean runtime can use this module).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import mido

from .errors import PianoedgeError

#: hand tags carried by a note; ``None`` means "not known"
HANDS = ("left", "right")
TICKS_PER_BEAT = 960
TEMPO_US = 500_000  # 120 bpm: one tick is ~0.52 ms


@dataclass(frozen=True)
class Note:
    """One key press: MIDI pitch, onset and release in seconds, velocity 1..127, and the playing hand."""

    pitch: int
    start: float
    end: float
    velocity: int
    hand: str | None = None


class _TempoMap:
    """Converts absolute ticks to seconds through every set_tempo event of a file."""

    def __init__(self, mid: mido.MidiFile):
        changes = sorted((tick, msg.tempo) for track in mid.tracks for tick, msg in _absolute(track) if msg.type == "set_tempo")
        self.ticks, self.seconds, self.tempi = [0], [0.0], [TEMPO_US]
        for tick, tempo in changes:
            self.seconds.append(self.to_seconds(tick, mid.ticks_per_beat))
            self.ticks.append(tick)
            self.tempi.append(tempo)

    def to_seconds(self, tick: int, tpb: int) -> float:
        i = bisect.bisect_right(self.ticks, tick) - 1
        return self.seconds[i] + mido.tick2second(tick - self.ticks[i], tpb, self.tempi[i])


def _absolute(track):
    tick = 0
    for msg in track:
        tick += msg.time
        yield tick, msg


def read_notes(path: str | Path, offset_s: float = 0.0) -> list[Note]:
    """Read every note of a MIDI file (all tracks and channels but drums; pedal ignored), sorted by onset.

    A track named "left"/"right" (case-insensitive, e.g. "Left hand") tags its notes with that hand.
    ``offset_s`` shifts the notes (the take metadata's ``offset_s``).
    """
    path = Path(path)
    if not path.is_file():
        raise PianoedgeError(f"MIDI file not found: {path}")
    try:
        mid = mido.MidiFile(str(path))
    except Exception as exc:  # mido raises several types for a damaged file
        raise PianoedgeError(f"cannot read MIDI file {path} ({exc}): give a standard MIDI file (.mid)") from None
    if mid.type == 2:
        raise PianoedgeError(f"{path} is a type 2 (multi-song) MIDI file: convert it to type 0 or 1")
    tempo = _TempoMap(mid)
    notes = []
    for track in mid.tracks:
        name = next((m.name.lower() for m in track if m.type == "track_name"), "")
        hand = next((h for h in HANDS if h in name), None)
        sounding: dict[tuple[int, int], list[tuple[float, int]]] = {}
        for tick, msg in _absolute(track):
            if msg.type not in ("note_on", "note_off") or msg.channel == 9:
                continue
            t = tempo.to_seconds(tick, mid.ticks_per_beat) + offset_s
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault(key, []).append((t, msg.velocity))
            elif sounding.get(key):
                start, velocity = sounding[key].pop(0)
                if t > start:
                    notes.append(Note(msg.note, start, t, velocity, hand))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


def write_notes(path: str | Path, notes: list[Note]) -> None:
    """Write notes as a type 1 piano MIDI file (120 bpm, 960 ticks per beat); each hand gets its own track."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0)])
    mid.tracks.append(meta)
    for hand in sorted({n.hand for n in notes}, key=lambda h: h or ""):
        events = []
        for n in notes:
            if n.hand == hand:
                on = round(mido.second2tick(n.start, TICKS_PER_BEAT, TEMPO_US))
                off = max(round(mido.second2tick(n.end, TICKS_PER_BEAT, TEMPO_US)), on + 1)
                events.append((on, 1, mido.Message("note_on", note=n.pitch, velocity=int(n.velocity))))
                events.append((off, 0, mido.Message("note_off", note=n.pitch, velocity=0)))
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=hand or "piano", time=0),
                                mido.Message("program_change", program=0, time=0)])
        now = 0
        for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):  # offs before ons at the same tick
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    try:
        mid.save(str(path))
    except OSError as exc:
        raise PianoedgeError(f"cannot write MIDI file {path}: {exc.strerror}") from None
