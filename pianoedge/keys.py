"""The piano keyboard in one place: pitches, sizes, physical key geometry and the canonical strip.

Every other module takes key facts from here, so the studio's 3D keyboard, the lock's key layout and
the runtime's key crops can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

LOWEST_PITCH = 21  # A0
HIGHEST_PITCH = 108  # C8
NUM_SLOTS = 88  # arrays indexed by key use ``pitch - LOWEST_PITCH``

#: keyboard size -> (lowest pitch, highest pitch), as in CONTRACTS.md
KEYBOARD_SIZES = {88: (21, 108), 76: (28, 103), 61: (36, 96)}

#: canonical keyboard strip (width, height) from the seed paper
CANONICAL_SIZE = (884, 106)

_BLACK_PITCH_CLASSES = frozenset({1, 3, 6, 8, 10})

# Physical dimensions in millimetres (standard acoustic/digital action).
WHITE_KEY_PITCH_MM = 23.5  # centre-to-centre spacing of white keys (7 per 164.5 mm octave)
WHITE_KEY_GAP_MM = 1.5  # visible gap between white keys (1 mm slot plus the rounded top edges)
WHITE_KEY_LENGTH_MM = 150.0  # visible length, front edge to fallboard
WHITE_KEY_FRONT_MM = 16.0  # thickness of the key's front face
BLACK_KEY_WIDTH_MM = 13.7  # nominal; the real spans below vary slightly by position
BLACK_KEY_LENGTH_MM = 95.0
BLACK_FRONT_MM = WHITE_KEY_LENGTH_MM - BLACK_KEY_LENGTH_MM  # the black keys' front ends, behind the white keys' front edge
BLACK_KEY_HEIGHT_MM = 12.0  # top of a black key above the white-key surface
KEY_TRAVEL_MM = 10.0  # key dip at the front edge

# Black keys are not centred on white-key gaps: in the C-E group the octave span is split in 5
# equal parts, in the F-B group in 7 (the classic layout of real actions), giving slightly
# irregular positions. Values: (left, right) edge in units of the group's split, from the group's
# left edge.
_GROUP_SPLITS = {
    1: (0, 5, 1), 3: (0, 5, 3),  # C#, D# within C..E (3 whites)
    6: (3, 7, 1), 8: (3, 7, 3), 10: (3, 7, 5),  # F#, G#, A# within F..B (4 whites)
}
_WHITE_INDEX_IN_OCTAVE = {0: 0, 2: 1, 4: 2, 5: 3, 7: 4, 9: 5, 11: 6}


def is_black(pitch: int) -> bool:
    """True for the pitch of a black key."""
    return pitch % 12 in _BLACK_PITCH_CLASSES


def keyboard_range(num_keys: int) -> tuple[int, int]:
    """(lowest, highest) pitch of a keyboard with ``num_keys`` keys (61, 76 or 88)."""
    try:
        return KEYBOARD_SIZES[num_keys]
    except KeyError:
        raise ValueError(f"unsupported keyboard size {num_keys}: use one of 61, 76, 88") from None


def _white_ordinal(pitch: int) -> int:
    """Index of the white key at or just below ``pitch`` counted from C-1 (MIDI pitch 0)."""
    octave, pc = divmod(pitch, 12)
    if pc in _WHITE_INDEX_IN_OCTAVE:
        return octave * 7 + _WHITE_INDEX_IN_OCTAVE[pc]
    return octave * 7 + _WHITE_INDEX_IN_OCTAVE[pc - 1]


@dataclass(frozen=True)
class KeySpan:
    """One key across the keyboard, in units of white-key pitches from the lowest white key's outer edge."""

    pitch: int
    black: bool
    left: float
    right: float

    @property
    def centre(self) -> float:
        return 0.5 * (self.left + self.right)


@dataclass(frozen=True)
class KeyboardLayout:
    """Key positions of one keyboard size, in white-key units (0 .. num_white)."""

    lowest: int
    num_keys: int
    keys: tuple[KeySpan, ...]

    @property
    def highest(self) -> int:
        return self.lowest + self.num_keys - 1

    @cached_property  # layouts are shared (``layout`` caches them) and asked for these thousands of times while locking
    def num_white(self) -> int:
        return sum(not k.black for k in self.keys)

    @cached_property
    def whites(self) -> tuple[KeySpan, ...]:
        return tuple(k for k in self.keys if not k.black)

    @cached_property
    def blacks(self) -> tuple[KeySpan, ...]:
        return tuple(k for k in self.keys if k.black)

    def key(self, pitch: int) -> KeySpan:
        return self.keys[pitch - self.lowest]

    @property
    def slots(self) -> slice:
        """This keyboard's columns in arrays over the 88 key slots (``pitch - LOWEST_PITCH``)."""
        return slice(self.lowest - LOWEST_PITCH, self.lowest - LOWEST_PITCH + self.num_keys)

    @property
    def black_mask(self) -> np.ndarray:
        """(num_keys,) bool: which keys are black."""
        return np.array([k.black for k in self.keys])

    def white_boundaries_px(self, width: float = CANONICAL_SIZE[0]) -> np.ndarray:
        """x of the num_white+1 white-key edges on a strip ``width`` pixels wide (equal split)."""
        return np.linspace(0.0, width, self.num_white + 1)

    def spans_px(self, width: float = CANONICAL_SIZE[0]) -> np.ndarray:
        """(num_keys, 2) array of each key's left/right x on a strip ``width`` pixels wide."""
        scale = width / self.num_white
        return np.array([[k.left * scale, k.right * scale] for k in self.keys])


@cache  # a handful of keyboards, asked for thousands of times while locking
def layout(num_keys: int = 88, lowest: int | None = None) -> KeyboardLayout:
    """Standard key geometry of a keyboard: equal white keys, black keys at their real positions."""
    lo = keyboard_range(num_keys)[0] if lowest is None else lowest
    if is_black(lo) or is_black(lo + num_keys - 1):
        raise ValueError("a keyboard starts and ends on white keys")
    base = _white_ordinal(lo)
    spans = []
    for pitch in range(lo, lo + num_keys):
        pc = pitch % 12
        if pc in _GROUP_SPLITS:
            first_white, parts, index = _GROUP_SPLITS[pc]
            group_whites = 3 if first_white == 0 else 4
            unit = group_whites / parts
            origin = (pitch // 12) * 7 + first_white - base
            spans.append(KeySpan(pitch, True, origin + index * unit, origin + (index + 1) * unit))
        else:
            w = _white_ordinal(pitch) - base
            spans.append(KeySpan(pitch, False, float(w), float(w + 1)))
    return KeyboardLayout(lo, num_keys, tuple(spans))


NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """Scientific pitch name: 60 -> C4, 21 -> A0."""
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"
