"""How keys move: the depth of every key over time, from the notes and their velocities.

A MIDI onset is the moment the key reaches the key bed (hammer strike / the digital piano's second
sensor), so the key starts moving before it: a loud note travels in ~12 ms, a soft one in ~95 ms.
The note's end is the moment the key starts to rise; it is back up 30-60 ms later.
"""
from __future__ import annotations

import numpy as np

from pianoedge import keys as K
from pianoedge.notes import Note

LOUD_TRAVEL_S, SOFT_TRAVEL_S = 0.012, 0.095
RELEASE_S = (0.03, 0.06)


def travel_time(velocity: int) -> float:
    """Seconds from touch to key bed for a MIDI velocity (1..127)."""
    strength = (np.clip(velocity, 1, 127) / 127.0) ** 0.7
    return float(SOFT_TRAVEL_S + (LOUD_TRAVEL_S - SOFT_TRAVEL_S) * strength)


def release_times(notes: list[Note], rng: np.random.Generator) -> np.ndarray:
    """A release duration for each note."""
    return rng.uniform(*RELEASE_S, len(notes))


def key_depths(notes: list[Note], release: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Key depth (0 up .. 1 fully down) of the 88 key slots at each of ``times`` (seconds)."""
    times = np.asarray(times, float)
    depth = np.zeros((len(times), K.NUM_SLOTS), np.float32)
    for note, up in zip(notes, release):
        down = travel_time(note.velocity)
        a, b = np.searchsorted(times, [note.start - down, note.end + up])
        if a == b:
            continue
        t = times[a:b]
        press = np.clip((t - (note.start - down)) / down, 0, 1) ** 1.6  # the key accelerates under the finger
        s = np.clip((t - note.end) / up, 0, 1)
        rise = 1 - s * s * (3 - 2 * s)
        col = note.pitch - K.LOWEST_PITCH
        depth[a:b, col] = np.maximum(depth[a:b, col], np.minimum(press, rise))
    return depth
