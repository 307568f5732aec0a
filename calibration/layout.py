"""Where each key lies on the canonical strip: the one place the runtime takes key crops from.

White keys split the strip's width equally (seed paper, section 3.2.2). Black keys are found the
seed paper's way: Otsu's threshold of the strip's top rows, column averages, and the white-to-black
and black-to-white transitions; a black key not found (under a hand, or in poor light) falls back
to its standard position in the octave (``pianoedge.keys``).
"""
from __future__ import annotations

import cv2
import numpy as np

from pianoedge import keys as K

TOP_ROWS = 5  # rows at the top of the strip (the back of the keys), where hands rarely reach
MATCH = 0.35  # a found black key must lie within this share of a white key of its standard place


def key_spans(strip: np.ndarray | None, num_keys: int, lowest: int | None = None) -> np.ndarray:
    """(num_keys, 2) left/right x of every key on a canonical strip (BGR or grey), in pixels.

    With ``strip=None`` the standard geometry is returned.
    """
    layout = K.layout(num_keys, lowest)
    width = K.CANONICAL_SIZE[0] if strip is None else strip.shape[1]
    spans = layout.spans_px(width)
    if strip is None:
        return spans
    grey = strip if strip.ndim == 2 else cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    top = np.ascontiguousarray(grey[1 : 1 + TOP_ROWS])
    _, binary = cv2.threshold(top, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    white = binary.mean(axis=0) > 0.5  # column average: mostly white
    edges = np.flatnonzero(np.diff(white.astype(int)))
    lefts = [e + 1 for e in edges if white[e]]  # white -> black
    rights = [e + 1 for e in edges if not white[e]]  # black -> white
    unit = width / layout.num_white
    for i, key in enumerate(layout.keys):
        if not key.black:
            continue
        standard = spans[i]
        for left in lefts:
            right = next((r for r in rights if r > left), None)
            if right is None:
                continue
            if abs(left - standard[0]) < MATCH * unit and abs(right - standard[1]) < MATCH * unit:
                spans[i] = (left, right)
                break
    return spans
