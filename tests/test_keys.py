import numpy as np
import pytest

from pianoedge import keys as K


@pytest.mark.parametrize("size,whites,lo,hi", [(88, 52, 21, 108), (76, 45, 28, 103), (61, 36, 36, 96)])
def test_keyboard_sizes(size, whites, lo, hi):
    layout = K.layout(size)
    assert (layout.lowest, layout.highest) == (lo, hi)
    assert layout.num_white == whites
    assert len(layout.blacks) == size - whites


def test_white_keys_split_equally_and_black_keys_straddle_their_gap():
    layout = K.layout(88)
    spans = layout.spans_px()
    whites = spans[[not k.black for k in layout.keys]]
    np.testing.assert_allclose(np.diff(whites[:, 0]), K.CANONICAL_SIZE[0] / 52)
    for key in layout.blacks:
        below, above = layout.key(key.pitch - 1), layout.key(key.pitch + 1)
        assert below.left < key.left < below.right == above.left < key.right < above.right
        width_mm = (key.right - key.left) * K.WHITE_KEY_PITCH_MM
        assert abs(width_mm - K.BLACK_KEY_WIDTH_MM) < 0.6


def test_black_key_positions_are_irregular_like_a_real_action():
    layout = K.layout(88)
    c_sharp, f_sharp = layout.key(61), layout.key(66)  # C#4 and F#4
    offset_c = c_sharp.centre - layout.key(60).right  # from the C-D gap
    offset_f = f_sharp.centre - layout.key(65).right  # from the F-G gap
    assert offset_c < -0.05 and offset_f < -0.05 and abs(offset_c - offset_f) > 0.01


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        K.keyboard_range(49)
    with pytest.raises(ValueError):
        K.layout(88, lowest=22)
