"""Music for training data: technical exercises and music21 corpus excerpts as hand-tagged, playable notes.

Every performance passes through ``_clean``, the one place that makes notes physically possible: in
range, in time, at most five keys per hand within a hand's reach, and a key released before it is
struck again. All randomness comes from the caller's ``numpy.random.Generator``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
from music21 import chord, corpus, note, stream

from pianoedge.errors import PianoedgeError
from pianoedge.notes import Note

from .motion import travel_time

EXERCISE_KINDS: tuple[str, ...] = (
    "scale", "arpeggio", "block_chords", "repeated_notes", "trill",
    "held_under_moving", "fast_run", "hand_crossing", "hovering",
)

# --- physical limits -------------------------------------------------------------------------
MAX_NOTES_PER_HAND = 5
MAX_HAND_SPAN = 16  # semitones an open hand reaches: an octave plus a major third
RESTRIKE_GAP_S = 0.040  # a key rises this long (most of the way: ``motion.RELEASE_S``) before it starts down again;
# its next strike's travel (``motion.travel_time``) comes on top: a key re-struck sooner would never rise on screen
MIN_DURATION_S = 0.025  # shortest key press kept
RELEASE_S = 1.0  # notes may ring this long past the performance's end
MIN_RANGE = 36  # semitones of keyboard the generators need (a 61-key keyboard has 60)
PIVOT_PITCH = 60  # middle C: where the hands meet, and where a one-part work is split

# --- registers: hand centres drawn per performance -----------------------------------------
RIGHT_CENTRE = (62, 74)
HANDS_APART = (12, 24)  # semitones from the right hand's centre down to the left's
EDGE_MARGIN = 8  # keep a hand's centre this far from the keyboard's ends

# --- dynamics --------------------------------------------------------------------------------
DYNAMICS = {"pp": (20, 40), "p": (35, 55), "mp": (50, 68), "mf": (65, 85), "f": (82, 102), "ff": (100, 120)}
PHRASE_SWELL = (0.0, 14.0)  # velocity range of a phrase's rise and fall
PHRASE_BEATS = (4, 8, 16)
BEAT_ACCENT = 5
MELODY_ACCENT = 4  # the right hand's top note
LEFT_HAND_SOFTER = 4
SHAPED_VELOCITY = (10, 122)  # before humanize adds its noise

# --- humanize --------------------------------------------------------------------------------
CHORD_WINDOW_S = 0.005  # one hand's notes starting this close form a chord
CHORD_SPREAD_MS = 5.0
DURATION_JITTER = 0.08  # standard deviation of the log duration

# --- keys and harmony ------------------------------------------------------------------------
MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 11)}  # minor: harmonic
PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (0, 3, 0, 4), (5, 1, 4, 0), (0, 5, 1, 4))

# --- exercise tempi (notes per second unless named bpm) -----------------------------------
SCALE_RATE = (2.5, 8.0)
ARPEGGIO_RATE = (4.0, 10.0)
CHORD_BPM = (60.0, 120.0)
REPEAT_RATE = (3.0, 10.0)
REPEAT_GROUP = (4, 13)
TRILL_RATE = (8.5, 14.0)
TRILL_BURST_S = (1.2, 3.5)
HELD_S = (2.5, 6.0)
MOVING_RATE = (3.0, 8.0)
RUN_RATE = (10.0, 16.0)
RUN_LENGTH = (8, 25)
CROSSING_BPM = (66.0, 120.0)
HOVER_GAP_S = (2.3, 5.0)
HOVER_NOTE_S = (0.2, 0.8)

# --- corpus ----------------------------------------------------------------------------------
CORPUS_QPM = (60.0, 140.0)
KEYBOARD_SHARE = 0.8  # share of corpus pieces taken from keyboard works
KEYBOARD_WORKS = (  # piano music (for songs, only the piano staves are used)
    "joplin/maple_leaf_rag.mxl",
    "bach/bwv846.mxl",
    "mozart/k545/movement1_exposition.mxl",
    "cpebach/h186.mxl",
    "chopin/mazurka06-2.krn",
    "schumann_clara/polonaise_op1n1.mxl",
    "schumann_clara/polonaise_op1n2.mxl",
    "schumann_clara/polonaise_op1n3.mxl",
    "schumann_clara/polonaise_op1n4.mxl",
    "schoenberg/opus19/movement2.mxl",
    "schoenberg/opus19/movement6.mxl",
    "schubert/Lindenbaum.xml",
    "schumann_robert/dichterliebe_no2.xml",
    "beach/prayer_of_a_tired_child.musicxml",
)
PART_WORKS = (  # other multi-part works reduced to two hands: upper parts right, lower parts left
    "bach/bwv269.mxl",
    "bach/bwv277.mxl",
    "bach/bwv354.mxl",
    "bach/bwv410.mxl",
    "johnson_j_r/lift_every_voice.mxl",
)

_WORKS: dict[str, _Work | None] = {}  # parsed corpus works by path; None when a work failed


@dataclass(frozen=True)
class Performance:
    """One take's music: a file-name safe name, the notes, and where they came from."""

    name: str
    notes: tuple[Note, ...]
    source: str


# --- cleaning --------------------------------------------------------------------------------

@dataclass
class _Press:
    """A key press being cleaned (mutable while hands and re-strikes are sorted out)."""

    pitch: int
    start: float
    end: float
    velocity: int
    hand: str | None


def _clean(notes: list[Note], lowest: int = 0, highest: int = 127, seconds: float = math.inf) -> list[Note]:
    """Make notes playable: in range and time, within each hand's reach, each key released before re-striking."""
    presses = []
    for n in notes:
        start, end = max(n.start, 0.0), min(n.end, seconds + RELEASE_S)
        if lowest <= n.pitch <= highest and start < seconds and end - start >= MIN_DURATION_S:
            presses.append(_Press(int(n.pitch), start, end, int(np.clip(round(n.velocity), 1, 127)), n.hand))
    presses = _separate_restrikes(_fit_hands(presses))
    return sorted((Note(p.pitch, float(p.start), float(p.end), p.velocity, p.hand) for p in presses),
                  key=lambda n: (n.start, n.pitch, n.hand or ""))


def _fits(sounding: list[_Press], pitch: int) -> bool:
    pitches = [p.pitch for p in sounding] + [pitch]
    return len(pitches) <= MAX_NOTES_PER_HAND and max(pitches) - min(pitches) <= MAX_HAND_SPAN


def _other_hand(hand: str | None) -> str | None:
    return {"left": "right", "right": "left"}.get(hand)


def _beside(press: _Press, hand: str, sounding: dict[str | None, list[_Press]]) -> bool:
    """True if ``press`` lies on ``hand``'s side of the other hand's sounding notes."""
    others = [p.pitch for p in sounding[_other_hand(hand)]]
    if not others:
        return True
    return press.pitch < min(others) if hand == "left" else press.pitch > max(others)


def _fit_hands(presses: list[_Press]) -> list[_Press]:
    """Keep each hand to MAX_NOTES_PER_HAND keys within MAX_HAND_SPAN.

    A note that does not fit passes to the other hand if that hand can take it, else held keys of its
    hand are released early, else it is dropped. Chords are kept from the outside in: the right
    hand's top notes and the left hand's bass notes first.
    """
    order = sorted(presses, key=lambda p: (p.start, p.pitch if p.hand == "left" else -p.pitch))
    sounding: dict[str | None, list[_Press]] = {"left": [], "right": [], None: []}
    kept = []
    for press in order:
        for hand in sounding:
            sounding[hand] = [p for p in sounding[hand] if p.end > press.start]
        own, other = press.hand, _other_hand(press.hand)
        if not _fits(sounding[own], press.pitch):
            if other is not None and _fits(sounding[other], press.pitch) and _beside(press, other, sounding):
                press.hand = other
            elif (released := _releases(sounding[own], press)) is not None:
                for p in released:
                    p.end = press.start
                sounding[own] = [p for p in sounding[own] if all(p is not r for r in released)]
            else:
                continue
        sounding[press.hand].append(press)
        kept.append(press)
    return kept


def _releases(sounding: list[_Press], press: _Press) -> list[_Press] | None:
    """Held keys to release so that ``press`` fits its hand (farthest first), or None if that cannot work."""
    held = [p for p in sounding if press.start - p.start >= MIN_DURATION_S]
    held.sort(key=lambda p: (-abs(p.pitch - press.pitch), p.start))
    remaining, released = list(sounding), []
    for p in held:
        remaining.remove(p)
        released.append(p)
        if _fits(remaining, press.pitch):
            return released
    return None


def restrike_release(start: float, velocity: int) -> float:
    """The latest a key may be released for a strike at ``start`` (the key reaching its bed at ``velocity``)
    to rise first, as a real key must for its action to strike again: ``RESTRIKE_GAP_S`` before the
    strike's travel (``motion.travel_time``) begins."""
    return start - travel_time(velocity) - RESTRIKE_GAP_S


def _separate_restrikes(presses: list[_Press]) -> list[_Press]:
    """Shorten a key's press so it rises before its next strike (``restrike_release``); drop strikes too close to keep."""
    kept: list[_Press] = []
    for press in sorted(presses, key=lambda p: (p.pitch, p.start, -p.end)):
        previous = kept[-1] if kept and kept[-1].pitch == press.pitch else None
        release = restrike_release(press.start, press.velocity)
        if previous is not None and previous.end > release:
            if release - previous.start < MIN_DURATION_S:
                continue
            previous.end = release
        kept.append(press)
    return kept


# --- humanize and dynamics -------------------------------------------------------------------

def humanize(notes: list[Note], rng: np.random.Generator, timing_ms: float = 12.0, velocity_sd: float = 8.0) -> list[Note]:
    """Gaussian onset jitter (chords move together, slightly spread), duration and velocity noise, then cleaning."""
    ordered = sorted(notes, key=lambda n: (n.hand or "", n.start, n.pitch))
    group_of, group_size, group_start = [], [], -math.inf
    for i, n in enumerate(ordered):
        if i == 0 or n.hand != ordered[i - 1].hand or n.start - group_start > CHORD_WINDOW_S:
            group_start = n.start
            group_size.append(0)
        group_of.append(len(group_size) - 1)
        group_size[-1] += 1
    shift = rng.normal(0.0, timing_ms / 1000.0, len(group_size))
    spread = rng.normal(0.0, CHORD_SPREAD_MS / 1000.0, len(ordered))
    stretch = np.exp(rng.normal(0.0, DURATION_JITTER, len(ordered)))
    loudness = rng.normal(0.0, velocity_sd, len(ordered))
    out = []
    for i, n in enumerate(ordered):
        g = group_of[i]
        start = n.start + shift[g] + (spread[i] if group_size[g] > 1 else 0.0)
        velocity = int(np.clip(round(n.velocity + loudness[i]), 1, 127))
        out.append(Note(n.pitch, start, start + (n.end - n.start) * stretch[i], velocity, n.hand))
    return _clean(out)


def _dynamics(notes: list[Note], rng: np.random.Generator, seconds: float, beat_s: float) -> list[Note]:
    """Velocities: a crescendo or diminuendo across the take, phrase swells, beat accents, a singing top voice."""
    levels = list(DYNAMICS.values())
    first, last = (levels[i] for i in rng.integers(len(levels), size=2))
    begin, finish = rng.uniform(*first), rng.uniform(*last)
    swell = rng.uniform(*PHRASE_SWELL)
    phrase_s = beat_s * PHRASE_BEATS[rng.integers(len(PHRASE_BEATS))]
    top = {}
    for n in notes:
        if n.hand == "right":
            top[n.start] = max(top.get(n.start, n.pitch), n.pitch)
    out = []
    for n in notes:
        level = begin + (finish - begin) * min(n.start / seconds, 1.0)
        level += swell * (math.sin(math.pi * (n.start % phrase_s) / phrase_s) - 0.5)
        beats = n.start / beat_s
        level += BEAT_ACCENT * (abs(beats - round(beats)) < 0.02)
        level += MELODY_ACCENT * (n.hand == "right" and top[n.start] == n.pitch)
        level -= LEFT_HAND_SOFTER * (n.hand == "left")
        out.append(replace(n, velocity=int(np.clip(round(level), *SHAPED_VELOCITY))))
    return out


def _perform(raw: list[Note], rng: np.random.Generator, seconds: float, lowest: int, highest: int,
             beat_s: float) -> tuple[Note, ...]:
    """Score notes to a performance: clean, shape dynamics, humanize, clean to the take's limits."""
    shaped = _dynamics(_clean(raw, lowest, highest, seconds), rng, seconds, beat_s)
    return tuple(_clean(humanize(shaped, rng), lowest, highest, seconds))


def _octave_shift(pitches: np.ndarray, lowest: int, highest: int) -> int:
    """Octave transposition (in semitones) keeping the most pitches in range, the smallest such shift."""
    shifts = [12 * k for k in sorted(range(-10, 11), key=abs)]
    return max(shifts, key=lambda d: int(np.count_nonzero((pitches + d >= lowest) & (pitches + d <= highest))))


def _check_request(seconds: float, lowest: int, highest: int) -> None:
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if not 0 <= lowest < highest <= 127 or highest - lowest < MIN_RANGE:
        raise ValueError(f"need a MIDI pitch range of at least {MIN_RANGE} semitones, got {lowest}..{highest}")


# --- exercises -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Setting:
    """What every exercise draws first: key and hand registers, within the take's limits."""

    rng: np.random.Generator
    seconds: float
    lowest: int
    highest: int
    tonic: int  # pitch class
    mode: tuple[int, ...]
    centres: dict[str, int]  # hand -> centre pitch

    @classmethod
    def draw(cls, rng: np.random.Generator, seconds: float, lowest: int, highest: int) -> _Setting:
        tonic = int(rng.integers(12))
        mode = MODES["major" if rng.random() < 0.6 else "minor"]
        right = rng.integers(*RIGHT_CENTRE, endpoint=True)
        right = int(np.clip(right, lowest + EDGE_MARGIN + HANDS_APART[0], highest - EDGE_MARGIN))
        left = right - rng.integers(*HANDS_APART, endpoint=True)
        left = int(np.clip(left, lowest + EDGE_MARGIN, right - HANDS_APART[0]))
        return cls(rng, seconds, lowest, highest, tonic, mode, {"left": left, "right": right})

    def in_key(self, pitch: int) -> bool:
        return (pitch - self.tonic) % 12 in self.mode

    def snap(self, pitch: int) -> int:
        """The key's pitch nearest ``pitch`` (the lower one on a tie)."""
        return min((p for p in range(pitch - 2, pitch + 3) if self.in_key(p)), key=lambda p: (abs(p - pitch), p))

    def step(self, pitch: int, degrees: int) -> int:
        """Move a pitch of the key by scale degrees."""
        direction = 1 if degrees > 0 else -1
        for _ in range(abs(degrees)):
            pitch += direction
            while not self.in_key(pitch):
                pitch += direction
        return pitch

    def base(self, pitch_class: int, near: int, span: int) -> int:
        """The pitch of a class nearest ``near`` with ``span`` semitones above it on the keyboard (if any is)."""
        fitting = [p for p in range(self.lowest, self.highest - span + 1) if p % 12 == pitch_class]
        return min(fitting or [_nearest_with_class(pitch_class, near)], key=lambda p: abs(p - near))

    def chord(self, degree: int, size: int) -> list[int]:
        """Pitch classes of the key's chord on a scale degree: a triad (size 3) or a seventh chord (4)."""
        return [(self.tonic + self.mode[(degree + 2 * k) % 7]) % 12 for k in range(size)]

    def draw_hand(self) -> tuple[str, str]:
        """A (playing, other) hand pair."""
        return ("right", "left") if self.rng.random() < 0.5 else ("left", "right")

    def pick(self, options):
        return options[self.rng.integers(len(options))]


def _press(pitch: int, start: float, duration: float, hand: str) -> Note:
    return Note(int(pitch), float(start), float(start + duration), 64, hand)


def _nearest_with_class(pitch_class: int, pitch: int) -> int:
    return min((p for p in range(pitch - 6, pitch + 7) if p % 12 == pitch_class), key=lambda p: (abs(p - pitch), p))


def _close_voicing(pitch_classes: list[int], near: int) -> list[int]:
    """Close-position chord whose lowest note is the chord tone nearest ``near``."""
    bottom = min((_nearest_with_class(pc, near) for pc in pitch_classes), key=lambda p: (abs(p - near), p))
    return sorted(bottom + (pc - bottom) % 12 for pc in pitch_classes)


def _bass_voicing(s: _Setting, root_class: int, near: int) -> list[int]:
    root = _nearest_with_class(root_class, near)
    return [root + i for i in s.pick(((0,), (0, 12), (0, 7), (0, 7, 12)))]


def _scale(s: _Setting) -> tuple[list[Note], float]:
    """Major or harmonic-minor scales over 1-2 octaves, legato: one hand, both in parallel, or in contrary motion."""
    rng = s.rng
    step_s = 1.0 / rng.uniform(*SCALE_RATE)
    octaves = int(rng.integers(1, 3))
    layout = s.pick(("both", "contrary", "right", "left"))
    degrees = list(range(7 * octaves)) + list(range(7 * octaves, 0, -1))
    span = 12 * octaves
    if layout == "contrary":  # from tonics an octave apart, the right hand up, the left down
        right = s.base(s.tonic, max(s.centres["right"] - span // 2, s.lowest + 12 + span + 6), span)
        left = right - 12
    else:
        right = s.base(s.tonic, s.centres["right"] - span // 2, span)
        left = s.base(s.tonic, s.centres["left"] - span // 2, span)
        if layout == "both":
            left = right - 12 * max(1, min(round((right - left) / 12), (right - s.lowest) // 12))
    notes, t, k = [], 0.0, 0
    while t < s.seconds:
        d = degrees[k % len(degrees)]
        duration = step_s * rng.uniform(1.0, 1.15)
        if layout != "left":
            notes.append(_press(s.step(right, d), t, duration, "right"))
        if layout != "right":
            notes.append(_press(s.step(left, -d if layout == "contrary" else d), t, duration, "left"))
        t, k = t + step_s, k + 1
        if k % len(degrees) == 0 and rng.random() < 0.3:
            t += step_s * rng.integers(1, 4)
    return notes, 2 * step_s


def _arpeggio(s: _Setting) -> tuple[list[Note], float]:
    """Broken chords of a progression up and down 1-2 octaves; the other hand holds the bass or a chord, or joins in."""
    rng = s.rng
    step_s = 1.0 / rng.uniform(*ARPEGGIO_RATE)
    size, octaves = int(rng.integers(3, 5)), int(rng.integers(1, 3))
    progression = s.pick(PROGRESSIONS)
    layout = s.pick(("right", "left", "both"))
    notes, t, k = [], 0.0, 0
    while t < s.seconds:
        classes = s.chord(progression[k % len(progression)], size)
        figures = {}
        for hand in ("right", "left"):
            base = s.base(classes[0], s.centres[hand] - 6 * octaves, 12 * octaves)
            tones = [p for p in range(base, base + 12 * octaves + 1) if p % 12 in classes]
            figures[hand] = tones + tones[-2:0:-1]
        length = len(figures["right"]) * step_s
        for hand in ("right", "left"):
            if layout in (hand, "both"):
                notes += [_press(p, t + i * step_s, step_s * rng.uniform(1.0, 1.2), hand)
                          for i, p in enumerate(figures[hand])]
            elif hand == "left":
                notes += [_press(p, t, length * 0.95, hand) for p in _bass_voicing(s, classes[0], s.centres["left"])]
            else:
                notes += [_press(p, t, length * 0.9, hand) for p in _close_voicing(classes, s.centres["right"])]
        t, k = t + length, k + 1
    return notes, 4 * step_s


def _block_chords(s: _Setting) -> tuple[list[Note], float]:
    """Triads or seventh chords in the right hand over bass voicings in the left, voice-led, legato to staccato."""
    rng = s.rng
    beat_s = 60.0 / rng.uniform(*CHORD_BPM)
    chord_s = beat_s * s.pick((1, 2, 4))
    repeats = int(rng.integers(1, 4)) if chord_s == beat_s else 1
    size = int(rng.integers(3, 5))
    doubled = size == 3 and rng.random() < 0.4
    articulation = rng.uniform(0.55, 0.95)
    progression = s.pick(PROGRESSIONS)
    near = s.centres["right"] - 4
    notes, t, k = [], 0.0, 0
    while t < s.seconds:
        classes = s.chord(progression[k % len(progression)], size)
        upper = _close_voicing(classes, near)
        if doubled:
            upper.append(upper[0] + 12)
        lower = _bass_voicing(s, classes[0], s.centres["left"])
        near = upper[0]
        for _ in range(repeats):
            duration = min(chord_s * articulation, chord_s - 2 * RESTRIKE_GAP_S)
            notes += [_press(p, t, duration, "right") for p in upper]
            notes += [_press(p, t, duration, "left") for p in lower]
            t += chord_s
        near = int(np.clip(near + rng.integers(-2, 3), s.centres["right"] - 7, s.centres["right"] + 3))
        k += 1
    return notes, beat_s


def _repeated_notes(s: _Setting) -> tuple[list[Note], float]:
    """One key (or an octave) struck 4-12 times in a row at 3-10 per second, the other hand holding a note."""
    rng = s.rng
    period = 1.0 / rng.uniform(*REPEAT_RATE)
    hand, other = s.draw_hand()
    octave = (12 if hand == "right" else -12) if rng.random() < 0.25 else 0
    accompanied = rng.random() < 0.6
    centre = s.centres[hand]
    pitch = s.snap(centre)
    notes, t = [], 0.0
    while t < s.seconds:
        strikes = int(rng.integers(*REPEAT_GROUP))
        for i in range(strikes):
            for p in sorted({pitch, pitch + octave}):
                notes.append(_press(p, t + i * period, period * rng.uniform(0.4, 0.6), hand))
        if accompanied:
            notes.append(_press(s.snap(s.centres[other] + rng.integers(-4, 5)), t, strikes * period * 0.9, other))
        t += (strikes + rng.integers(0, 3)) * period
        pitch = s.step(pitch, int(rng.integers(-3, 4)) or 1)
        if abs(pitch - centre) > 9:
            pitch = s.snap(centre)
    return notes, 4 * period


def _trill(s: _Setting) -> tuple[list[Note], float]:
    """Two neighbouring keys of the key alternating at 8.5-14 per second, often ending with a turn, over a held bass."""
    rng = s.rng
    period = 1.0 / rng.uniform(*TRILL_RATE)
    hand, other = s.draw_hand()
    notes, t = [], 0.0
    while t < s.seconds:
        main = s.snap(s.centres[hand] + rng.integers(-4, 5))
        pair = (main, s.step(main, 1)) if rng.random() < 0.7 else (s.step(main, 1), main)
        line = [pair[i % 2] for i in range(int(rng.uniform(*TRILL_BURST_S) / period))]
        if rng.random() < 0.5:
            line += [s.step(main, -1), main]
        for i, p in enumerate(line):
            last = i == len(line) - 1
            notes.append(_press(p, t + i * period, period * (rng.uniform(2, 5) if last else rng.uniform(0.75, 0.95)), hand))
        burst_s = len(line) * period
        if rng.random() < 0.7:
            notes.append(_press(s.snap(s.centres[other] + rng.integers(-4, 5)), t, burst_s, other))
        t += burst_s + rng.uniform(0.3, 1.0)
    return notes, 4 * period


def _held_under_moving(s: _Setting) -> tuple[list[Note], float]:
    """One hand holds notes or chords for 2.5-6 s while the other plays a moving line."""
    rng = s.rng
    holder, mover = ("left", "right") if rng.random() < 0.7 else ("right", "left")
    progression = s.pick(PROGRESSIONS)
    notes, t, k = [], 0.0, 0
    while t < s.seconds:
        duration = rng.uniform(*HELD_S)
        classes = s.chord(progression[k % len(progression)], 3)
        if holder == "left":
            held = _bass_voicing(s, classes[0], s.centres["left"])
        else:
            held = _close_voicing(classes, s.centres["right"])[: int(rng.integers(1, 4))]
        notes += [_press(p, t, duration, holder) for p in held]
        t, k = t + duration + rng.uniform(0.05, 0.4), k + 1
    step_s = 1.0 / rng.uniform(*MOVING_RATE)
    centre = s.centres[mover]
    pitch, t = s.snap(centre), rng.uniform(0.0, 0.5)
    while t < s.seconds:
        notes.append(_press(pitch, t, step_s * rng.uniform(0.85, 1.05), mover))
        move = int(s.pick((1, 1, 1, 2, 2, 3, 4))) * (1 if rng.random() < 0.5 else -1)
        if abs(s.step(pitch, move) - centre) > 9:
            move = -move
        pitch = s.step(pitch, move)
        t += step_s * (2 if rng.random() < 0.1 else 1)
    return notes, 2 * step_s


def _fast_run(s: _Setting) -> tuple[list[Note], float]:
    """Sixteenth-note runs at 10-16 notes per second (scales, four-note groups, broken thirds), ending on a held note."""
    rng = s.rng
    step_s = 1.0 / rng.uniform(*RUN_RATE)
    layout = s.pick(("right", "left", "both"))
    lead = "left" if layout == "left" else "right"
    octaves_down = max(1, round((s.centres["right"] - s.centres["left"]) / 12))
    patterns = {
        "scale": lambda k: k,
        "groups": lambda k: k // 4 + k % 4,
        "thirds": lambda k: k // 2 + 2 * (k % 2),
    }
    notes, t = [], 0.0
    while t < s.seconds:
        length = int(rng.integers(*RUN_LENGTH))
        pattern = patterns[s.pick(tuple(patterns))]
        direction = 1 if rng.random() < 0.5 else -1
        start = s.step(s.snap(s.centres[lead]), -direction * (pattern(length - 1) // 2))
        pitches = np.array([s.step(start, direction * pattern(k)) for k in range(length)])
        pitches += _octave_shift(pitches, s.lowest + (12 * octaves_down if layout == "both" else 0), s.highest)
        landing_s = step_s * rng.uniform(2, 6)
        for k, pitch in enumerate(pitches):
            duration = landing_s if k == length - 1 else step_s * rng.uniform(0.9, 1.05)
            notes.append(_press(pitch, t + k * step_s, duration, lead))
            if layout == "both":
                notes.append(_press(pitch - 12 * octaves_down, t + k * step_s, duration, "left"))
        t += (length - 1) * step_s + landing_s + rng.uniform(0.1, 0.6)
    return notes, 4 * step_s


def _hand_crossing(s: _Setting) -> tuple[list[Note], float]:
    """Right hand keeps an Alberti figure while the left alternates bass notes with notes crossed over above it."""
    rng = s.rng
    beat_s = 60.0 / rng.uniform(*CROSSING_BPM)
    bar_beats = int(s.pick((3, 4)))
    progression = s.pick(PROGRESSIONS)
    near = min(s.centres["right"], s.highest - 26)  # room above the figure for the crossing hand
    notes, t, k = [], 0.0, 0
    while t < s.seconds:
        classes = s.chord(progression[k % len(progression)], 3)
        low, mid, high = _close_voicing(classes, near)
        figure = ([low, high, mid, high] * bar_beats)[: 2 * bar_beats]  # two notes a beat
        half = beat_s / 2
        notes += [_press(p, t + i * half, half * rng.uniform(0.9, 1.1), "right") for i, p in enumerate(figure)]
        notes.append(_press(_nearest_with_class(classes[0], s.centres["left"]), t, beat_s * 0.9, "left"))
        for beat in range(1, bar_beats):
            if rng.random() < 0.75:
                above = _nearest_with_class(s.pick(classes), high + 8)
                notes.append(_press(above, t + beat * beat_s, beat_s * rng.uniform(0.6, 0.95), "left"))
        t, k = t + bar_beats * beat_s, k + 1
    return notes, beat_s


def _hovering(s: _Setting) -> tuple[list[Note], float]:
    """Mostly silence: 2.3-5 s with no key pressed between a few single notes (the hands hover over the keys)."""
    rng = s.rng
    notes, t = [], rng.uniform(0.0, 2.0)
    while t < s.seconds:
        for _ in range(int(rng.integers(1, 4))):
            hand = s.pick(("left", "right"))
            end = t + rng.uniform(*HOVER_NOTE_S)
            notes.append(_press(s.snap(s.centres[hand] + rng.integers(-7, 8)), t, end - t, hand))
            t = end + rng.uniform(0.3, 0.8)
        t = end + rng.uniform(*HOVER_GAP_S)
    return notes, 1.0


_EXERCISES = {
    "scale": _scale, "arpeggio": _arpeggio, "block_chords": _block_chords, "repeated_notes": _repeated_notes,
    "trill": _trill, "held_under_moving": _held_under_moving, "fast_run": _fast_run,
    "hand_crossing": _hand_crossing, "hovering": _hovering,
}


def exercise(kind: str, rng: np.random.Generator, seconds: float, lowest: int, highest: int) -> Performance:
    """A technical exercise of one of EXERCISE_KINDS, with key, register, tempo and dynamics drawn from ``rng``."""
    if kind not in _EXERCISES:
        raise ValueError(f"unknown exercise kind {kind!r}: use one of {', '.join(EXERCISE_KINDS)}")
    _check_request(seconds, lowest, highest)
    raw, beat_s = _EXERCISES[kind](_Setting.draw(rng, seconds, lowest, highest))
    return Performance(f"exercise-{kind}", _perform(raw, rng, seconds, lowest, highest, beat_s), f"exercise:{kind}")


# --- corpus ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Work:
    """A parsed corpus work: notes as (offset, end offset, pitch, hand) in quarter lengths, and its bars."""

    path: str
    events: tuple[tuple[float, float, int, str], ...]
    bars: tuple[tuple[int, float], ...]  # (bar number, offset)
    length: float


def _part_events(part: stream.Stream, hand: str | None) -> list[tuple[float, float, int, str]]:
    """A part's sounding notes with tied notes joined; rests and grace notes are skipped.

    ``hand`` None splits the part at PIVOT_PITCH.
    """
    events: list[list] = []
    open_ties: dict[int, int] = {}  # pitch -> index of the event a tie continues
    for element in part.flatten().getElementsByClass((note.Note, chord.Chord)):
        if element.duration.isGrace or element.quarterLength <= 0:
            continue
        offset, end = float(element.offset), float(element.offset + element.quarterLength)
        for n in element.notes if isinstance(element, chord.Chord) else (element,):
            pitch, tie = n.pitch.midi, n.tie or element.tie
            index = open_ties.pop(pitch, None)
            continues = tie is not None and tie.type in ("stop", "continue") and index is not None
            if continues and abs(events[index][1] - offset) < 1e-6:
                events[index][1] = end
            else:
                index = len(events)
                events.append([offset, end, pitch, hand or ("left" if pitch < PIVOT_PITCH else "right")])
            if tie is not None and tie.type in ("start", "continue"):
                open_ties[pitch] = index
    return [tuple(e) for e in events]


def _score_work(path: str, score: stream.Score) -> _Work:
    """Notes with hands: upper staff (or upper half of the parts) right, lower left; one part splits by pitch."""
    parts = list(score.parts) or [score]
    keyboard = [p for p in parts if isinstance(p, stream.PartStaff) or "piano" in (p.partName or "").lower()]
    group = keyboard if len(keyboard) >= 2 else parts
    right_count = (len(group) + 1) // 2
    events = []
    for i, part in enumerate(group):
        hand = None if len(group) == 1 else ("right" if i < right_count else "left")
        events += _part_events(part, hand)
    bars = tuple((int(m.number), float(m.offset)) for m in group[0].getElementsByClass(stream.Measure)) or ((1, 0.0),)
    length = max((e[1] for e in events), default=0.0)
    return _Work(path, tuple(sorted(events)), bars, length)


def _load_work(path: str) -> _Work | None:
    """The parsed work at a corpus path, cached; None if it cannot be parsed or has no notes."""
    if path not in _WORKS:
        try:
            work = _score_work(path, corpus.parse(path))
        except Exception:  # music21 raises many types for an unreadable work
            work = None
        _WORKS[path] = work if work is not None and work.events else None
    return _WORKS[path]


def _excerpt(work: _Work, rng: np.random.Generator, seconds: float, lowest: int, highest: int) -> Performance:
    """About ``seconds`` of a work from a random bar at a random tempo, fitted to the range and performed."""
    beat_s = 60.0 / rng.uniform(*CORPUS_QPM)
    span = seconds / beat_s
    starts = [bar for bar in work.bars if bar[1] + span <= work.length] or [work.bars[0]]
    first_bar, begin = starts[rng.integers(len(starts))]
    chosen = [e for e in work.events if begin <= e[0] < begin + span]
    shift = _octave_shift(np.array([e[2] for e in chosen]), lowest, highest)
    raw = [Note(pitch + shift, (on - begin) * beat_s, (off - begin) * beat_s, 64, hand) for on, off, pitch, hand in chosen]
    last_bar = [number for number, offset in work.bars if offset < begin + span][-1]
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", work.path.rsplit(".", 1)[0].replace("/", "-"))
    return Performance(f"corpus-{slug}", _perform(raw, rng, seconds, lowest, highest, beat_s),
                       f"music21:{work.path} bars {first_bar}-{last_bar}")


def corpus_piece(rng: np.random.Generator, seconds: float, lowest: int, highest: int) -> Performance:
    """An excerpt of a random work from music21's corpus, keyboard music preferred, played by two hands."""
    _check_request(seconds, lowest, highest)
    preferred, fallback = (KEYBOARD_WORKS, PART_WORKS) if rng.random() < KEYBOARD_SHARE else (PART_WORKS, KEYBOARD_WORKS)
    for path in [*rng.permutation(preferred), *rng.permutation(fallback)]:
        work = _load_work(str(path))
        if work is not None:
            return _excerpt(work, rng, seconds, lowest, highest)
    raise PianoedgeError("no work of music21's corpus could be parsed; check the music21 installation (pip install music21)")


def generate(rng: np.random.Generator, count: int, seconds: float, lowest: int = 21, highest: int = 108,
             corpus_fraction: float = 0.5) -> list[Performance]:
    """``count`` performances: exercises cycling through EXERCISE_KINDS, then a ``corpus_fraction`` share from the corpus."""
    if not 0.0 <= corpus_fraction <= 1.0:
        raise ValueError(f"corpus_fraction must be within 0..1, got {corpus_fraction}")
    exercises = count - round(count * corpus_fraction)
    performances = []
    for i in range(count):
        if i < exercises:
            performance = exercise(EXERCISE_KINDS[i % len(EXERCISE_KINDS)], rng, seconds, lowest, highest)
        else:
            performance = corpus_piece(rng, seconds, lowest, highest)
        performances.append(replace(performance, name=f"{performance.name}-{i:02d}"))
    return performances
