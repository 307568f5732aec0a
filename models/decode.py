"""Posteriors to notes, the one place it happens (live and offline alike): Onsets-and-Frames decoding.

Per key and frame the model gives P(down), P(onset), P(offset) and a velocity. A note starts on an
onset (a rising onset probability above ``Thresholds.onset``), or on a key held clearly down for
two frames that no onset announced; it is sustained by the frame output with hysteresis (off below
``Thresholds.frame_off``); a new onset peak while a note sounds re-triggers it (a repeated note).
Frame by frame, causal: the live runtime emits each event the moment its frame is decoded.
Where latency is free (a file), each note's start then moves to the peak of its onset posterior,
and its end to where P(down) fell through the release level, both between frames, and short notes are
lengthened (``file_notes``). numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from pianoedge import keys as K
from pianoedge.notes import Note

MIN_VELOCITY = 1
# where a note's onset posterior peaks is looked for from this many frames before the frame that started
# it to this long after (the tracker starts a note on the first frame above threshold: early on a
# posterior that rises over frames); chosen on validation takes, see BENCHMARKS.md
PEAK_FRAMES_BEFORE = 1
PEAK_SECONDS_AFTER = 0.067
# a file's notes last at least this long: the frame output often lets a struck key go after a frame or
# two (a quarter of the notes found lasted under 50 ms, no true one did); chosen on validation takes
MIN_FILE_NOTE_SECONDS = 0.1


@dataclass(frozen=True)
class Thresholds:
    """The decoder's settings; each model's manifest carries the set tuned on its validation takes."""

    onset: float = 0.5  # onset probability that starts (or re-triggers) a note
    rearm: float = 0.3  # the onset probability must fall below this before the same key can re-trigger
    frame_hold: float = 0.9  # a key this sure to be down for two frames starts a note even without an onset
    frame_off: float = 0.35  # a note ends when P(down) falls below this ...
    offset: float = 0.5  # ... or when an offset is this likely and P(down) is below one half
    velocity_shift: float = 0.0  # a note's velocity is 127 * (shift + scale * the velocity output): the line that
    velocity_scale: float = 1.0  # fits the validation notes' true velocities best (least absolute error)

    def velocity(self, output: float) -> int:
        """The MIDI velocity (1..127) of a note whose velocity output (0..1) is ``output``."""
        return int(np.clip(round((self.velocity_shift + self.velocity_scale * output) * 127), MIN_VELOCITY, 127))

    @classmethod
    def of(cls, manifest: dict) -> Thresholds:
        """The thresholds a model manifest names (defaults for any it leaves out)."""
        return cls(**manifest.get("decoder", {}))


@dataclass
class Event:
    """A note turned on (velocity > 0) or off (velocity 0) at ``time`` seconds."""

    time: float
    pitch: int
    velocity: int


@dataclass
class NoteTracker:
    """Feed one frame of posteriors at a time; get the note events it decides."""

    lowest: int
    num_keys: int
    fps: float
    thresholds: Thresholds = Thresholds()
    _on: np.ndarray = field(init=False)
    _armed: np.ndarray = field(init=False)
    _held: np.ndarray = field(init=False)
    _frame: int = field(init=False, default=0)
    _last: float = field(init=False, default=0.0)

    def __post_init__(self):
        self._on = np.zeros(self.num_keys, bool)
        self._armed = np.ones(self.num_keys, bool)
        self._held = np.zeros(self.num_keys, int)

    def step(self, frame: np.ndarray, onset: np.ndarray, offset: np.ndarray, velocity: np.ndarray,
             time: float | None = None) -> list[Event]:
        """One frame of (keys,) posteriors (velocity 0..1) -> events at this frame's instant (``time``, its
        capture time, when given; else its index / fps)."""
        t = self._frame / self.fps if time is None else time
        self._last = t
        self._frame += 1
        events, th = [], self.thresholds
        strike = (onset >= th.onset) & self._armed
        self._armed = np.where(strike, False, self._armed | (onset < th.rearm))
        self._held = np.where(frame >= th.frame_hold, self._held + 1, 0)
        release = self._on & ((frame < th.frame_off) | ((offset >= th.offset) & (frame < 0.5)))
        retrigger = self._on & strike & ~release
        start = (~self._on & (strike | (self._held >= 2))) | retrigger
        for key in np.flatnonzero(release | retrigger):
            events.append(Event(t, self.lowest + int(key), 0))
        for key in np.flatnonzero(start):
            events.append(Event(t, self.lowest + int(key), th.velocity(float(velocity[key]))))
        self._on = (self._on & ~release) | start
        return events

    @property
    def time(self) -> float:
        """The instant of the frame stepped last."""
        return self._last

    def finish(self) -> list[Event]:
        """Note-offs for every note still sounding (end of input, shutdown or fault), one frame after the last."""
        t = self._last + 1 / self.fps if self._frame else 0.0
        events = [Event(t, self.lowest + int(key), 0) for key in np.flatnonzero(self._on)]
        self._on[:] = False
        return events


def events_to_notes(events: list[Event]) -> list[Note]:
    """Pair each note-on with the next note-off of the same pitch."""
    sounding: dict[int, Event] = {}
    notes = []
    for e in sorted(events, key=lambda e: (e.time, e.velocity > 0)):
        if e.velocity == 0 and e.pitch in sounding:
            start = sounding.pop(e.pitch)
            notes.append(Note(e.pitch, start.time, max(e.time, start.time + 1e-3), start.velocity))
        elif e.velocity > 0:
            sounding[e.pitch] = e
    return sorted(notes, key=lambda n: (n.start, n.pitch))


@dataclass
class PosteriorTrack:
    """Every decoded frame's instant and its onset and key-down posteriors by pitch, kept where latency is
    free (a file) so that ``file_notes`` can place the notes' starts and ends between frames."""

    times: list[float] = field(default_factory=list)
    onsets: list[np.ndarray] = field(default_factory=list)  # (88,) per frame, 0 for keys the keyboard lacks
    downs: list[np.ndarray] = field(default_factory=list)  # (88,) P(down) per frame, likewise

    def add(self, time: float, posteriors: np.ndarray, lowest: int) -> None:
        """One frame's (keys, 4) posteriors (``NoteTracker.step``'s order), of a keyboard whose lowest key is ``lowest``."""
        by_pitch = np.zeros((2, K.NUM_SLOTS), np.float32)
        by_pitch[:, lowest - K.LOWEST_PITCH : lowest - K.LOWEST_PITCH + len(posteriors)] = posteriors[:, 1::-1].T
        self.times.append(time)
        self.onsets.append(by_pitch[0])
        self.downs.append(by_pitch[1])


def _frames_at(times: np.ndarray, instants: list[float]) -> list[int]:
    """The index of the frame nearest each instant."""
    nearest = np.clip(np.searchsorted(times, instants), 1, len(times) - 1)
    return [int(i - (t - times[i - 1] < times[i] - t)) for i, t in zip(nearest, instants)]


def file_notes(notes: list[Note], track: PosteriorTrack, release: float) -> list[Note]:
    """``notes`` as a file's transcription writes them: each start moved to the peak of its key's onset
    posterior near the frame that started it (from ``PEAK_FRAMES_BEFORE`` frames before to
    ``PEAK_SECONDS_AFTER`` after, short of the key's next note), between frames where the parabola
    through the peak and its neighbours says; each end that P(down) falling through ``release`` (the
    decoder's ``frame_off``) decided moved to where it crossed, between the frames either side; each note
    then at least ``MIN_FILE_NOTE_SECONDS`` long and ending by the key's next start."""
    times, onsets, downs = np.asarray(track.times, float), np.asarray(track.onsets), np.asarray(track.downs)
    if len(times) < 3 or not notes:
        return notes
    period = float(np.median(np.diff(times)))  # a frame (a lost lock leaves gaps in the track)
    after = max(1, round(PEAK_SECONDS_AFTER / period))
    keyed = sorted(zip(_frames_at(times, [n.start for n in notes]), _frames_at(times, [n.end for n in notes]), notes),
                   key=lambda fen: (fen[2].pitch, fen[0]))  # each key's notes in order
    following = [g if m.pitch == n.pitch else len(times) for (_, _, n), (g, _, m) in zip(keyed, keyed[1:])] + [len(times)]
    timed = []
    for (f, e, n), next_frame in zip(keyed, following):  # next_frame: where the key's next note starts
        slot = n.pitch - K.LOWEST_PITCH
        curve = onsets[:, slot]
        lo, hi = max(f - PEAK_FRAMES_BEFORE, 0), max(min(f + after, len(times) - 1, next_frame - 1), f)
        j = lo + int(np.argmax(curve[lo : hi + 1]))
        shift = 0.0
        if 0 < j < len(times) - 1:
            a, b, c = curve[j - 1], curve[j], curve[j + 1]
            bend = a - 2 * b + c
            shift = float(np.clip(0.5 * (a - c) / bend, -0.5, 0.5)) if abs(bend) > 1e-6 else 0.0
        start = max(float(times[j]) + shift * period, 0.0)
        end = n.end
        if 0 < e and abs(times[e] - n.end) < 1e-6 and downs[e - 1, slot] >= release > downs[e, slot]:
            above, below = downs[e - 1, slot], downs[e, slot]
            end = float(times[e - 1] + (above - release) / (above - below) * (times[e] - times[e - 1]))
        timed.append(Note(n.pitch, start, max(end, start + MIN_FILE_NOTE_SECONDS), n.velocity))
    timed.sort(key=lambda n: (n.pitch, n.start))
    nexts = [m.start if m.pitch == n.pitch else np.inf for n, m in zip(timed, timed[1:])] + [np.inf]
    return sorted((replace(n, end=max(min(n.end, following), n.start + 1e-3)) for n, following in zip(timed, nexts)),
                  key=lambda n: (n.start, n.pitch))


def decode(posteriors: np.ndarray, lowest: int, fps: float, thresholds: Thresholds = Thresholds(),
           as_file: bool = True) -> list[Note]:
    """(frames, keys, 4) posteriors (P(down), P(onset), P(offset), velocity 0..1) -> notes, ``file_notes``
    as a file's transcription writes them (``as_file`` False: as the live tracker sends them)."""
    tracker = NoteTracker(lowest, posteriors.shape[1], fps, thresholds)
    events = []
    for p in posteriors:
        events += tracker.step(p[:, 0], p[:, 1], p[:, 2], p[:, 3])
    notes = events_to_notes(events + tracker.finish())
    if not as_file:
        return notes
    track = PosteriorTrack()
    for i, p in enumerate(posteriors):
        track.add(i / fps, p, lowest)
    return file_notes(notes, track, thresholds.frame_off)
