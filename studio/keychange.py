"""What the keys alone change in the model's strip, frame by frame: a studio label the hands cannot hide.

Each frame of a take is rendered again without hands (the keys as played; the light, lens and sensor
noise as at rest) and warped to the model's strip with the take's lock. A strip pixel counts as
changed where it differs from the bare keyboard at rest by ``LEVELS`` grey levels or more; the rows
fold into ``KEY_CHANGE_BANDS`` bands (back of the keys to the front margin), each column of a band holding the
share of its pixels changed, 0..255. On the studio's renders two thirds of the change over a pressed
key is the hand (BENCHMARKS, twenty-second session); this label says which third is the key.
Training can ask the trunk to say this map beside its key outputs (``train --key-change-weight``;
off by default: with weight 1 it did worse than its control, BENCHMARKS, twenty-third session).
The runtime never sees it.
"""
from __future__ import annotations

import numpy as np

from pianoedge.calibration.lockfile import Lock
from pianoedge.models.data import KEY_CHANGE_BANDS, STRIP_SIZE, to_strip

from .render import Renderer

LEVELS = 16  # grey levels of change that count (a key's side wall, its tilted top in the light)
NOISE = 0  # the sensor-noise frame every render of the label shares: noise cancels in the difference


def key_change(renderer: Renderer, samples: np.ndarray, lock: Lock) -> np.ndarray:
    """(frames, KEY_CHANGE_BANDS, strip width) uint8: the share of each band's pixels in each strip column that the
    keys alone change (see the module), a frame per row of ``samples`` ((frames, S, keys) key depths over
    each exposure), warped with the take's ``lock``."""
    width, height = STRIP_SIZE
    rows = height // KEY_CHANGE_BANDS

    def strip(depths: np.ndarray) -> np.ndarray:
        image = renderer.finish(renderer.render(depths, finish=False), noise=NOISE)
        return to_strip(lock, image, STRIP_SIZE)[: rows * KEY_CHANGE_BANDS].astype(np.int16)

    rest = strip(np.zeros_like(samples[0]))
    out = np.empty((len(samples), KEY_CHANGE_BANDS, width), np.uint8)
    for i, frame in enumerate(samples):
        changed = np.abs(strip(frame) - rest) >= LEVELS
        out[i] = np.round(255.0 * changed.reshape(KEY_CHANGE_BANDS, rows, width).mean(axis=1))
    return out
