"""Keyboard locking: find which key is where, once, and fix the homography to the canonical strip.

1. ``blackkeys`` finds the row of black keys (median of several frames, so moving hands fade).
2. Which black key is which: their spacing follows the octave's 2-3 pattern, and a 1D projective
   map (a line seen in perspective) from the 88-key layout's black-key positions to the row is
   tried for every consecutive triple of detections; the octave and the keyboard size (61/76/88) come from the ends:
   the white keys must stop, and the case begin, exactly where the hypothesis says.
3. The black-key tops lie 12 mm above the white keys, so the final homography is fitted to the
   white-key surface itself: the gaps between white keys, measured along several rows in front of
   the black keys (and the long E-F and B-C gaps further back), and the keys' front edge.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError

from .blackkeys import MIN_LOCK_ROW, BlackKeyRow, find_black_keys
from .lens import Lens

U = K.WHITE_KEY_PITCH_MM
REFERENCE = K.layout(88)
BLACK_X_MM = np.array([k.centre for k in REFERENCE.blacks]) * U  # 88-key black key centres from A0's edge
GAP_ROWS_MM = (10.0, 22.0, 34.0, 46.0)  # rows in front of the black keys where every white gap shows
LONG_GAP_ROWS_MM = (75.0, 105.0, 135.0)  # rows where only the E-F and B-C gaps (no black key) show
# rows just behind the black keys' front ends where a black key is looked for: seen from the music
# stand a tall nameboard hides all but their front 20-40 mm, and these rows stay in view
BLACK_CHECK_ROWS_MM = (K.BLACK_FRONT_MM + 6.0, K.BLACK_FRONT_MM + 13.0, K.BLACK_FRONT_MM + 20.0)
BACK_SEARCH_MM = 25.0  # how far either side of the fit's back the keys' back end is looked for
FRONT_SEARCH_MM = 30.0  # how far either side of the fit's front the keys' front edge is looked for (the depth may be short from behind)
MIN_SCORE_MARGIN = 0.15  # best octave/size hypothesis must beat the next by this much (else refuse)
MIN_END_SCORE = -0.15  # and its ends must look like a keyboard's ends at all (unless its size is given)
MIN_FOCAL, MAX_FOCAL = 0.3, 1.5  # plausible focal lengths in image widths (about 150 to 37 degrees across)
TYPICAL_FOCAL = 0.7  # taken when the perspective is too weak to tell (about 70 degrees across)


@dataclass
class KeyboardFit:
    """Result of locking one image: the homography from world mm (88-key x, y from the front) to ideal pixels."""

    world_to_image: np.ndarray
    lowest: int
    num_keys: int
    agreement: float = 0.0  # share of the possible white-key gap and front-edge measurements the fit explains
    measured: float = 0.0  # share of them that could be made at all (faint gaps, hands and glare lower it)
    world_points: np.ndarray | None = None  # the measurements it explains: world mm (as the refit put them) ...
    image_points: np.ndarray | None = None  # ... and where they are in the image

    @property
    def x0_mm(self) -> float:
        """x of this keyboard's lowest white key's outer edge, in the 88-key frame."""
        return REFERENCE.key(self.lowest).left * U

    @property
    def width_mm(self) -> float:
        return K.layout(self.num_keys, self.lowest).num_white * U

    def ends(self) -> np.ndarray:
        """Ideal-pixel points of the keyboard's two ends (see ``_ends``): what says which key is which."""
        return _ends(self.world_to_image, self.lowest, self.num_keys)

    def corners(self) -> np.ndarray:
        """Ideal-pixel corners of the white-key surface in CONTRACTS order (back-low, back-high, front-high, front-low)."""
        x0, x1, b = self.x0_mm, self.x0_mm + self.width_mm, K.WHITE_KEY_LENGTH_MM
        return _apply(self.world_to_image, np.array([[x0, b], [x1, b], [x1, 0.0], [x0, 0.0]]))


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, h).reshape(-1, 2) if len(pts) else np.zeros((0, 2))  # OpenCV gives None for none


def _orient(row: BlackKeyRow, gray: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Both ways the keyboard may face (see ``_oriented``), the likelier first: which side is the front
    is a vote that steep views from the side or from behind can lose, so the ends decide in the end."""
    axes, length = row.across()
    axes *= np.sign(axes @ axes[0])[:, None]
    axis = axes.mean(axis=0)
    axis /= np.linalg.norm(axis)
    centres = row.centres
    # Beyond its front end a black key is followed by ~0.58 of its length of white key, then the
    # keys' front edge (a step); beyond its back end comes the fallboard at once. Which side has a
    # flat stretch and then a step (median over all keys, so hands do not count) is the front.
    reach = np.linspace(0.5, 1.5, 41)
    smooth = cv2.blur(gray, (3, 3))
    scores = []
    for sign in (1.0, -1.0):
        pts = centres[:, None, :] + sign * axis * (reach[None, :, None] * length[:, None, None])
        profiles = _samples(smooth, pts.reshape(-1, 2)).reshape(len(centres), len(reach))
        grad = np.abs(np.gradient(np.median(profiles, axis=0)))
        flat = grad[(reach > 0.55) & (reach < 0.85)].max()
        step = grad[(reach > 0.9) & (reach < 1.4)].max()
        scores.append(step - flat)
    votes = scores[0] - scores[1]
    return [_oriented(row, axis if votes >= 0 else -axis, length), _oriented(row, -axis if votes >= 0 else axis, length)]


def _oriented(row: BlackKeyRow, front: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Low->high unit vector, back->front unit vector, centres and front ends in low-to-high order,
    for the keyboard seen with its front towards ``front``."""
    high = row.direction if row.direction[0] * front[1] - row.direction[1] * front[0] > 0 else -row.direction
    order = np.argsort(row.centres @ high)
    centres, length = row.centres[order], length[order]
    return high, front, centres, centres + front * (0.5 * length)[:, None]


SAMPLE_ROW = 4096  # points remapped per row (OpenCV maps are limited to 32767 columns)


def _samples(gray: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear grey values at many (N, 2) points (0 outside the image); a BGR image is sampled and
    then weighted to grey, so a whole frame need not be converted for a few thousand points."""
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    n = len(pts)
    if n == 0:  # OpenCV refuses an empty map
        return np.zeros(0, np.float32)
    pts = np.pad(pts, ((0, -n % SAMPLE_ROW), (0, 0))).reshape(-1, SAMPLE_ROW, 2) if n > SAMPLE_ROW else pts[None]
    values = cv2.remap(gray, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT).astype(np.float32)
    return values.reshape(-1, 3)[:n] @ np.float32([0.114, 0.587, 0.299]) if gray.ndim == 3 else values.ravel()[:n]


def _identify(t: np.ndarray) -> np.ndarray:
    """Black-key index (88-key order) of each detection, -1 for outliers; up to a whole number of octaves.

    Every hypothesis "detections i, i+1, i+2 are black keys a, a+d1, a+d1+d2" (d = 1, or 2 when one
    is hidden) fixes a 1D projective map; the one that puts the most detections on distinct black
    keys (then the smallest error) wins. All hypotheses are solved at once.
    """
    n, keys = len(t), len(BLACK_X_MM)
    hyp = np.array([(i, a, d1, d2) for i in range(n - 2) for a in range(keys - 2) for d1 in (1, 2) for d2 in (1, 2)
                    if a + d1 + d2 < keys])
    if len(hyp) == 0:
        return np.full(n, -1)
    i, a = hyp[:, 0], hyp[:, 1]
    x = np.stack([BLACK_X_MM[a], BLACK_X_MM[a + hyp[:, 2]], BLACK_X_MM[a + hyp[:, 2] + hyp[:, 3]]], axis=1)
    tt = np.stack([t[i], t[i + 1], t[i + 2]], axis=1)
    A = np.stack([x, np.ones_like(x), -x * tt], axis=2)
    solvable = np.abs(np.linalg.det(A)) > 1e-9
    A, tt = A[solvable], tt[solvable]
    p = np.linalg.solve(A, tt[..., None])[..., 0]
    pred = (p[:, :1] * BLACK_X_MM + p[:, 1:2]) / (p[:, 2:3] * BLACK_X_MM + 1)  # (M, keys)
    monotonic = np.all(np.diff(pred, axis=1) > 0, axis=1)  # only these can put detections on keys
    p, pred = p[monotonic], pred[monotonic]
    if len(p) == 0:
        return np.full(n, -1)
    spacing = np.abs(np.gradient(pred, axis=1))
    # a monotonic map has no pole among the keys, so inverting it places each detection among them;
    # the nearest key in the image is then one of the two either side (searched two further for rounding)
    with np.errstate(divide="ignore", invalid="ignore"):  # at a detection beyond the keys' ends; overruled below
        world = (t[None, :] - p[:, 1:2]) / (p[:, :1] - p[:, 2:3] * t[None, :])
    place = np.where(t <= pred[:, :1], 0, np.where(t > pred[:, -1:], keys, np.searchsorted(BLACK_X_MM, world)))
    window = np.clip(place[..., None] + np.arange(-2, 2), 0, keys - 1)  # (M, n, 4)
    rows = np.arange(len(pred))[:, None]
    distance = np.abs(t[None, :, None] - pred[rows[..., None], window])
    nearest = np.take_along_axis(window, np.argmin(distance, axis=2)[..., None], axis=2)[..., 0]  # (M, n)
    err = np.abs(t[None, :] - pred[rows, nearest]) / np.maximum(spacing[rows, nearest], 1e-9)
    ok = err < 0.18
    hits = np.zeros(pred.shape, bool)
    r, c = np.nonzero(ok)
    hits[r, nearest[r, c]] = True
    count = hits.sum(axis=1)
    total = np.where(ok, err, 0).sum(axis=1)
    j = int(np.lexsort((total, -count))[0])  # the most keys hit, then the smallest error
    if count[j] == 0:
        return np.full(n, -1)
    return np.where(ok[j], nearest[j], -1)


BLACK_KEY_ROWS_MM = (75.0, 100.0, 125.0)  # rows across the black keys' tops where each is looked for as a dark run


def _black_key_runs(gray: np.ndarray, h: np.ndarray, x: np.ndarray, y: float, px_per_mm: float) -> tuple[np.ndarray, ...]:
    """For black keys centred at x (mm) on row y: whether one dark run between bright lies within 0.6
    white keys of where ``h`` puts each (so a key the blob finder missed, or one a homography
    extrapolates to, still counts; a plain case or an end's edge does not), the run's centre (mm from
    x) and its width (mm; callers judge whether it is a black key's)."""
    offsets = np.arange(-0.6 * U, 0.6 * U, 0.5 / px_per_mm)
    grid = np.stack([np.add.outer(x, offsets), np.full((len(x), len(offsets)), y)], axis=2)
    pts = _apply(h, grid.reshape(-1, 2))
    inside = ((pts >= 0) & (pts < gray.shape[::-1])).all(axis=1).reshape(len(x), -1).all(axis=1)
    v = _samples(gray, pts).reshape(len(x), -1)
    lo_v, hi_v = v.min(axis=1), np.median(np.concatenate([v[:, :8], v[:, -8:]], axis=1), axis=1)
    dark = v < ((lo_v + hi_v) / 2)[:, None]
    steps = np.diff(dark.astype(np.int8), axis=1) != 0
    first = np.argmax(steps, axis=1)  # the first and last dark/bright change in each key's window
    last = steps.shape[1] - 1 - np.argmax(steps[:, ::-1], axis=1)
    one_run = inside & (hi_v - lo_v >= 25) & (steps.sum(axis=1) == 2) & dark[np.arange(len(x)), first + 1]
    return one_run, (offsets[first] + offsets[last]) / 2, offsets[last] - offsets[first]


def _black_key_plane(gray: np.ndarray, h: np.ndarray, lo: int, size: int, px_per_mm: float) -> np.ndarray:
    """Refit the black-key-top homography on every black key of the keyboard, each looked for across
    its row near where ``h`` puts it (``_black_key_runs``): keys the blob finder missed (glare, fused
    with a shadow) count too, so the fit no longer extrapolates from one part of the keyboard."""
    x = np.array([REFERENCE.key(k.pitch).centre * U for k in K.layout(size, lo).blacks])
    for _ in range(2):
        world, image = [], []
        for y in BLACK_KEY_ROWS_MM:
            run, centre, width = _black_key_runs(gray, h, x, y, px_per_mm)
            found = run & (np.abs(width - K.BLACK_KEY_WIDTH_MM) <= 0.35 * K.BLACK_KEY_WIDTH_MM)  # a black key's top wide
            world += [[x[k], y] for k in np.flatnonzero(found)]
            image += [[x[k] + centre[k], y] for k in np.flatnonzero(found)]
        if len(world) < 12:
            break
        refit, _ = cv2.findHomography(np.array(world), _apply(h, np.array(image)), cv2.RANSAC, 2.0)
        if refit is None:
            break
        h = refit
    return h


def _candidates(index: np.ndarray, sizes) -> list[tuple[int, int, int]]:
    """(octave shift, lowest pitch, size) hypotheses that contain every identified black key."""
    found = index[index >= 0]
    out = []
    for shift in range(-7, 8):
        shifted = found + 5 * shift
        if shifted.min() < 0 or shifted.max() >= len(BLACK_X_MM):
            continue
        pitches = [REFERENCE.blacks[i].pitch for i in shifted]
        for size in sizes:
            lo, hi = K.keyboard_range(size)
            if lo < min(pitches) and max(pitches) < hi:
                out.append((shift, lo, size))
    return out


def _black_keys_shown(gray: np.ndarray, h: np.ndarray, pitches: list[int], search: float = 0.0,
                      rows: int = 2, distort=None) -> tuple[np.ndarray, np.ndarray]:
    """For black keys (pitches, continued by whole octaves beyond the 88 keys), whether each shows as
    a dark key between white ones where ``h`` puts it (give or take ``search`` white-key widths, for a
    homography extrapolated beyond the keys it was fitted to) in at least ``rows`` of the
    ``BLACK_CHECK_ROWS_MM``, and whether it is in the frame at all. ``distort``: ideal to recorded
    pixels, to sample a frame as recorded (the lens applied to the points, not the image)."""
    return _dark_at(gray, h, _black_x(pitches), search, rows, distort)


def _black_x(pitches: list[int]) -> np.ndarray:
    """x (mm from A0's edge) of black keys, continued by whole octaves beyond the 88 keys."""
    octaves = np.array([int(np.ceil((p - K.HIGHEST_PITCH) / 12)) if p > K.HIGHEST_PITCH else
                        -int(np.ceil((K.LOWEST_PITCH - p) / 12)) if p < K.LOWEST_PITCH else 0 for p in pitches], int)
    return np.array([REFERENCE.key(p - 12 * o).centre * U for p, o in zip(pitches, octaves)]).reshape(-1) + octaves * 7 * U


def _dark_at(gray: np.ndarray, h: np.ndarray, x: np.ndarray, search: float, rows: int, distort) -> tuple[np.ndarray, np.ndarray]:
    """``_black_keys_shown`` for any x (mm): dark between bright half a white key either side, in at
    least ``rows`` rows; and in the frame."""
    probe = _DarkProbe.of(h, x, search, distort, gray.shape[:2])
    return probe.dark(gray, rows), probe.inside


@dataclass(frozen=True)
class _DarkProbe:
    """Where ``_dark_at`` samples a frame for given x, homography and search, worked out once: in every
    one of the ``BLACK_CHECK_ROWS_MM``, for every x, samples across it from half a white key to its
    left to half a white key to its right of each place the search tries."""

    points: np.ndarray  # (rows, len(x), samples, 2) image pixels
    inside: np.ndarray  # (len(x),) every sample of that x inside the image
    beside: int  # samples from a key's centre to where its white neighbours are
    shifts: int  # places the search tries

    STEP = 0.05  # white keys between samples

    @classmethod
    def of(cls, h: np.ndarray, x: np.ndarray, search: float, distort, shape: tuple[int, int]) -> _DarkProbe:
        beside = int(round(0.5 / cls.STEP))
        shifts = np.arange(-search, search + cls.STEP / 2, cls.STEP) if search else np.zeros(1)
        offsets = np.arange(-beside, len(shifts) + beside) * cls.STEP + shifts[0]
        xs = np.add.outer(x, offsets * U).ravel()
        pts = np.concatenate([_apply(h, np.column_stack([xs, np.full(xs.size, y)])) for y in BLACK_CHECK_ROWS_MM])
        if distort is not None:
            pts = distort(pts)
        height, width = shape
        inside = ((pts >= 0) & (pts < [width, height])).all(axis=1).reshape(len(BLACK_CHECK_ROWS_MM), len(x), -1).all(axis=(0, 2))
        return cls(pts.reshape(len(BLACK_CHECK_ROWS_MM), len(x), -1, 2), inside, beside, len(shifts))

    def dark(self, gray: np.ndarray, rows: int) -> np.ndarray:
        """Per x: dark between bright (under 3/4 of its neighbours' mean) in at least ``rows`` rows."""
        v = _samples(gray, self.points.reshape(-1, 2)).reshape(self.points.shape[:3])
        b, n = self.beside, self.shifts
        at = v[..., b : b + n]
        sides = 0.5 * (v[..., :n] + v[..., 2 * b : 2 * b + n])
        return (at < 0.75 * sides).any(axis=2).sum(axis=0) >= rows


def _missing_black_keys(gray: np.ndarray, h: np.ndarray, lo: int, size: int, seen: tuple[int, int]) -> float:
    """Share of the black keys this keyboard has beyond those found (``seen``: lowest, highest pitch)
    that the image shows, in the frame, as no dark key between white ones."""
    extra = [k.pitch for k in K.layout(size, lo).blacks if not seen[0] <= k.pitch <= seen[1]]
    if not extra:
        return 0.0
    dark, inside = _black_keys_shown(gray, h, extra, search=0.35)
    return float((inside & ~dark).sum() / max(inside.sum(), 1))


KEYS_GAP_CONTRAST = 10.0  # grey levels across a white-key gap (``_gap_contrast``) that say keys, not a plain case
CLEAR_OF_END_U = 1.0  # black keys beyond an end whose centre is nearer to it than this straddle it (one side on the keys)
KEPT_ON = 2  # clearly found black keys beyond an end that say the keyboard goes on there
SAME_CASE_SHARE = 1 / 3  # a light case: the weaker end's contrast at least this share of the stronger's
SEEN_BLACK_WIDTH = (0.65, 1.7)  # a black key's dark run over its width: its top, or with a side face seen at an angle


def _end_score(gray: np.ndarray, h: np.ndarray, lo: int, size: int) -> float:
    """How well the white keys stop where this keyboard's ends would be (bright inside, not outside;
    where both ends are darker inside, and alike, a case lighter than the keys, as a white piano's:
    one case has one colour, so a light block over one end, beside an end put among the keys, does
    not count), summed over both ends. An end out of the frame adds nothing: a hypothesis whose
    other end lies out of sight must not score as if it had been seen twice."""
    x0 = REFERENCE.key(lo).left * U
    x1 = x0 + K.layout(size).num_white * U
    ys = np.array([8.0, 20.0, 32.0])
    height, width = gray.shape
    px_per_mm = _px_per_mm(h, lo, size)
    scores, contrasts = [], []
    for edge, inward in ((x0, 1.0), (x1, -1.0)):
        inside = _apply(h, np.array([[edge + inward * f * U, y] for f in (0.25, 0.5, 0.75) for y in ys]))
        outside = _apply(h, np.array([[edge - inward * f * U, y] for f in (0.5, 1.0, 1.5, 2.0) for y in ys]))
        in_frame = ((outside >= 0) & (outside < [width, height])).all(axis=1)
        if not ((inside >= 0) & (inside < [width, height])).all() or not in_frame[: 2 * len(ys)].all():
            # this end (with at least a key's width beyond it) is out of the frame: no evidence either way,
            # but the keys it claims up to the frame's border must show their gaps (not a plain case)
            scores.append(_border_keys(gray, h, edge, inward))
            continue
        contrasts.append((np.median(_samples(gray, inside)) - np.median(_samples(gray, outside[in_frame]))) / 255.0)
        # the first gaps inside must all show (not a plain case), and no black keys go on beyond
        comb = _gap_contrast(gray, h, edge + inward * U * np.arange(1, 4)).min()
        beyond = _past_end(lo, size, low=inward > 0)
        dark, shown = _black_keys_shown(gray, h, beyond)
        scores.append(0.5 * np.clip((comb - KEYS_GAP_CONTRAST) / 20.0, -1.0, 1.0) - 0.5 * (dark & shown).sum() / max(shown.sum(), 1)
                      - _goes_on(gray, h, beyond, edge, px_per_mm))
    light_case = len(contrasts) == 2 and max(contrasts) < 0 and max(contrasts) <= SAME_CASE_SHARE * min(contrasts)
    brightness = np.abs(contrasts) if light_case else np.array(contrasts)
    return float(np.sum(scores) + brightness.sum()) if scores else -np.inf


def _border_keys(gray: np.ndarray, h: np.ndarray, edge: float, inward: float) -> float:
    """-1 to 0 for an end out of the frame: how plainly the first white-key gaps in the frame on its side
    (those of the three keys nearest the border) are missing. A keyboard cut off by the frame shows keys
    up to the border; a hypothesis run out of the frame over the case around a keyboard does not."""
    height, width = gray.shape
    gaps = edge + inward * U * np.arange(1, 60)  # white-key gaps from the end inward, the keyboard's whole width
    corners = _apply(h, np.array([[x, y] for x in gaps for y in (8.0, 32.0)])).reshape(len(gaps), 2, 2)
    seen = np.flatnonzero(((corners >= 0) & (corners < [width, height])).all(axis=(1, 2)))
    if len(seen) < 3:
        return 0.0
    comb = _gap_contrast(gray, h, gaps[seen[:3]]).min()
    return float(np.clip((comb - KEYS_GAP_CONTRAST) / KEYS_GAP_CONTRAST, -1.0, 0.0))


def _past_end(lo: int, size: int, low: bool) -> list[int]:
    """Pitches of the black keys in the octave past the keyboard's low (or high) end, nearest first."""
    if low:
        return [p for p in range(lo - 1, lo - 13, -1) if K.is_black(p)]
    top = K.layout(size, lo).keys[-1].pitch
    return [p for p in range(top + 1, top + 13) if K.is_black(p)]


def _goes_on(gray: np.ndarray, h: np.ndarray, beyond: list[int], edge: float, px_per_mm: float) -> float:
    """0 to 1: how clearly black keys go on past an end (edge, mm): those of ``beyond`` (pitches, the
    octave past the end) found as a black key's dark run (``_black_key_runs``, ``SEEN_BLACK_WIDTH``) in
    at least two of ``BLACK_KEY_ROWS_MM``, counted up to ``KEPT_ON``. ``_black_keys_shown`` takes any
    dark spot between bright ones, which a case's pattern or a hand can make; this test is strict, so
    a key that passes is a key. It catches an end put in the middle of a keyboard whose further black
    keys the blob finder missed (in a dimmer part of the room, say)."""
    x = _black_x(beyond)
    x = x[np.abs(x - edge) > CLEAR_OF_END_U * U]
    if not len(x):
        return 0.0
    found = np.zeros(len(x), int)
    for y in BLACK_KEY_ROWS_MM:
        run, _, width = _black_key_runs(gray, h, x, y, px_per_mm)
        found += run & (width >= SEEN_BLACK_WIDTH[0] * K.BLACK_KEY_WIDTH_MM) & (width <= SEEN_BLACK_WIDTH[1] * K.BLACK_KEY_WIDTH_MM)
    found = found >= 2
    return min(int(found.sum()), KEPT_ON) / KEPT_ON


def _gap_contrast(gray: np.ndarray, h: np.ndarray, gaps_mm: np.ndarray) -> np.ndarray:
    """Contrast (grey levels, median of three rows) across a key's width centred on each given gap
    position: a gap always darkens part of it on the keys, a plain case of any colour barely varies.
    A whole key wide, so that the black keys' parallax in ``h`` cannot move the gap out of it."""
    offsets = np.linspace(-0.45 * U, 0.45 * U, 13)
    values = []
    for y in (8.0, 20.0, 32.0):
        at = _samples(gray, _apply(h, np.column_stack([np.add.outer(gaps_mm, offsets).ravel(), np.full(gaps_mm.size * 13, y)])))
        at = at.reshape(gaps_mm.size, -1)
        values.append(at.max(axis=1) - at.min(axis=1))
    return np.median(values, axis=0)


CLEAR_GAP_DIP = 6.0  # grey levels by which a gap darkens the key tops' profile in a sharp view
FAINT_GAP_DIP = 3.0  # the least taken, where blur or dim light leaves every gap faint (a 1 mm gap at a slant)
GAP_DIP_SHARE = 0.5  # between the two: this share of the median dip over all the gaps looked at


def _gap_positions(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float):
    """Measured image points of white-key gaps (and both ends) with their world points, for refitting.
    A gap counts where it darkens the key tops by ``GAP_DIP_SHARE`` of the median over all the gaps
    looked at (within ``FAINT_GAP_DIP``-``CLEAR_GAP_DIP``): faint gaps in a soft view, not hands and
    shading in a sharp one."""
    image_pts, world_pts = [], []
    inv = np.linalg.inv(h)
    margin = 2 * U
    width = n_white * U
    sx = px_per_mm
    # rectified strip: world x in [x0 - margin, x0 + width + margin], y in [-10, 150]
    ox, oy = x0 - margin, -10.0
    to_strip = np.array([[sx, 0, -ox * sx], [0, sx, -oy * sx], [0, 0, 1]]) @ inv
    strip_w, strip_h = int((width + 2 * margin) * sx), int(160 * sx)
    strip = cv2.warpPerspective(gray, to_strip, (strip_w, strip_h), flags=cv2.INTER_LINEAR).astype(np.float32)
    half = max(int(0.4 * U * sx), 2)
    windows = []  # (world x, y, gap index, strip column, the profile about it)
    for y, only_long in [(y, False) for y in GAP_ROWS_MM] + [(y, True) for y in LONG_GAP_ROWS_MM]:
        r = int((y - oy) * sx)
        band = strip[max(r - int(3 * sx), 0) : r + int(3 * sx) + 1]
        if band.size == 0:
            continue
        profile = _column_medians(band)
        for i in range(n_white + 1):
            x = x0 + i * U
            c = int((x - ox) * sx)
            window = profile[c - half : c + half + 1]
            if len(window) == 2 * half + 1 and (_is_long_gap(x) or not only_long):
                windows.append((x, y, i, c, window))
    if not windows:
        return np.zeros((0, 2)), np.zeros((0, 2))
    profiles = np.array([w for *_, w in windows])
    dips = profiles.mean(axis=1) - profiles.min(axis=1)
    inner = np.array([0 < i < n_white for _, _, i, _, _ in windows])
    least_dip = float(np.clip(GAP_DIP_SHARE * np.median(dips[inner]), FAINT_GAP_DIP, CLEAR_GAP_DIP)) if inner.any() else CLEAR_GAP_DIP
    for (x, y, i, c, window), dip in zip(windows, dips):
        if i in (0, n_white):  # an end: the steepest fall from key to case
            signal = np.gradient(window) * (1 if i == 0 else -1)
            strong = signal.max() >= 4
        else:  # a gap: the darkest column, clearly darker than the key tops beside it
            signal = -window
            strong = dip >= least_dip
        k = int(np.argmax(signal))
        if not strong or k in (0, len(window) - 1):
            continue
        a, b, cc = signal[k - 1], signal[k], signal[k + 1]
        denom = a - 2 * b + cc
        sub = 0.5 * (a - cc) / denom if abs(denom) > 1e-6 else 0.0  # parabola through the peak
        xs = (c - half + k + np.clip(sub, -0.5, 0.5)) / sx + ox
        image_pts.append([xs, y])
        world_pts.append([x, y])
    if not image_pts:
        return np.zeros((0, 2)), np.zeros((0, 2))
    strip_to_image = np.linalg.inv(to_strip)
    pts = np.array(image_pts)
    pix = _apply(strip_to_image, (pts - [ox, oy]) * sx)
    return pix, np.array(world_pts)


def _column_medians(rows: np.ndarray) -> np.ndarray:
    """``np.median(rows, axis=0)`` (the same values) for a few long rows, by sorting each short column:
    several times faster than numpy's partition along the short axis."""
    ordered, middle = np.sort(rows, axis=0), len(rows) // 2
    return ordered[middle] if len(rows) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _is_long_gap(x_mm: float) -> bool:
    """True for an E-F or B-C boundary (no black key on it) in the 88-key frame."""
    i = int(round(x_mm / U))
    if i <= 0:
        return False
    left = REFERENCE.whites[i - 1].pitch
    return left % 12 in (4, 11)


def _long_gaps(x0: float, n_white: int) -> list[float]:
    """x (mm) of every E-F and B-C boundary inside a keyboard of ``n_white`` white keys from ``x0``."""
    return [x0 + i * U for i in range(1, n_white) if _is_long_gap(x0 + i * U)]


BESIDE_LONG_GAP_U = 0.2  # white keys either side of an E-F or B-C boundary: no black key there (one key off, there is)


def _beside_long_gaps(x0: float, n_white: int) -> np.ndarray:
    """x (mm) ``BESIDE_LONG_GAP_U`` either side of every E-F and B-C boundary: white key surface with
    no black key beside it, so the keys' back end shows there and a lock one key off has a black key."""
    return np.add.outer(_long_gaps(x0, n_white), [-BESIDE_LONG_GAP_U * U, BESIDE_LONG_GAP_U * U]).ravel()


def _steps_nearest(values: np.ndarray, ys: np.ndarray, sign: int, reach: int, tops: np.ndarray, target: float) -> np.ndarray:
    """For each line of samples (rows of ``values``, world y ``ys``): the index of the edge nearest
    ``target``, where the grey level rises (``sign`` 1) or falls (-1) most steeply over two samples
    (about a pixel), by at least 6 levels, with the key-top brightness (``tops``, one per line)
    ``reach`` samples on the key's side of it; -1 where none does."""
    if len(ys) < 3:  # no sample has a neighbour either side
        return np.full(len(values), -1)
    step = sign * np.gradient(values, axis=1) * 2
    inner = np.arange(1, len(ys) - 1)
    keyside = values[:, np.clip(inner + sign * reach, 0, len(ys) - 1)]
    middle = step[:, 1:-1]
    edge = ((middle >= 6) & (middle >= step[:, :-2]) & (middle >= step[:, 2:])
            & (keyside >= (0.8 * np.asarray(tops, np.float64)).astype(values.dtype)[:, None]))
    nearest = np.argmin(np.where(edge, np.abs(ys[inner] - target), np.inf), axis=1)
    return np.where(edge.any(axis=1), inner[nearest], -1)


def _measured_y(h: np.ndarray, image_pts: np.ndarray, least: int) -> float | None:
    """Median world y (in ``h``'s frame) of measured edge points, when there are ``least`` of them and
    they agree (interquartile range within 3 mm); None when the edge does not show."""
    if len(image_pts) < least:
        return None
    y = _apply(np.linalg.inv(h), image_pts)[:, 1]
    q1, median, q3 = np.percentile(y, [25, 50, 75])
    return None if q3 - q1 > 3.0 else float(median)


EDGE_BAND_MM = 3.0  # points found on an edge lie in a band this wide about its line
GAP_END_BAND_MM = 4.0  # the same for where gaps end (a fading contrast, found less sharply than an edge)
ON_LINE_SHARE = 0.4  # share of the points found that must lie on one line (hands and their edges make the rest)


def _measured_line(h: np.ndarray, image_pts: np.ndarray, least: int, band: float = EDGE_BAND_MM) -> tuple[float, float] | None:
    """World y = offset + slope * x (in ``h``'s frame) of a measured edge that is straight in the image
    but, in a fit whose tilt is off, slants: the line through two of the points that most of them lie
    on (within ``band`` / 2), refitted to those, when they are at least ``least`` and ``ON_LINE_SHARE``
    of all; None when the edge does not show."""
    if len(image_pts) < least:
        return None
    x, y = _apply(np.linalg.inv(h), image_pts).T
    i, j = np.triu_indices(len(x), 1)
    apart = np.abs(x[j] - x[i]) >= 0.25 * np.ptp(x)  # pairs far enough apart to give the slope
    if not apart.any():
        return None
    i, j = i[apart], j[apart]
    slopes = (y[j] - y[i]) / (x[j] - x[i])
    on_line = np.abs(y[None, :] - (y[i, None] + slopes[:, None] * (x[None, :] - x[i, None]))) <= band / 2
    inside = on_line[int(np.argmax(on_line.sum(axis=1)))]
    if inside.sum() < max(least, ON_LINE_SHARE * len(x)):
        return None
    slope, offset = np.polyfit(x[inside], y[inside], 1)
    return float(offset), float(slope)


def _edge_points(gray: np.ndarray, h: np.ndarray, xs: np.ndarray, ys: np.ndarray, top_ys: np.ndarray, sign: int,
                 reach: int, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Along world y ``ys`` at each x of ``xs``: the edge nearest ``target`` (``_steps_nearest``, the key
    top's brightness the median at ``top_ys``), as image points with their world points (y = target)."""
    smooth = cv2.blur(gray, (3, 3))
    pts = _apply(h, np.column_stack([np.repeat(xs, len(ys)), np.tile(ys, len(xs))])).reshape(len(xs), len(ys), 2)
    values = _samples(smooth, pts.reshape(-1, 2)).reshape(len(xs), len(ys))
    tops = _samples(smooth, _apply(h, np.column_stack([np.repeat(xs, len(top_ys)), np.tile(top_ys, len(xs))])))
    tops = np.median(tops.reshape(len(xs), len(top_ys)), axis=1)
    k = _steps_nearest(values, ys, sign, reach, tops, target)
    found = np.flatnonzero(k >= 0)
    return pts[found, k[found]].reshape(-1, 2), np.column_stack([xs[found], np.full(len(found), target)]).reshape(-1, 2)


def _front_edge(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float, span: float, at: float = 0.0):
    """Image points of the keys' front edge with their world points: the rise from the dark front to
    the bright key top nearest the fit's y = ``at``, at the middle of every white key (``at`` < 0:
    the foot of the keys' lit front face, which shows that far in front of the edge; see ``_face_depth``)."""
    ys = at + np.linspace(-span, span, int(2 * span * px_per_mm) + 1)
    xs = x0 + (np.arange(n_white) + 0.5) * U
    return _edge_points(gray, h, xs, ys, np.linspace(12, 36, 9), 1, int(round(2 * px_per_mm)), at)


GAP_END_KEY_MM = (10.0, 40.0)  # stretch of the keys where a gap's own contrast is measured, to find where it ends


def _gap_ends(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float, span: float) -> np.ndarray:
    """Image points where the white keys' gaps end at the front (y = 0 if ``h`` were right), searched
    ``span`` mm either side of the fit's front: the front edge where the keys are no lighter than what
    lies beyond them (a light rail, a light case). A gap is a dark line with key top either side; going
    frontwards it ends where its contrast falls below half its contrast further back on the keys."""
    step = 1.0 / px_per_mm
    ys = np.arange(-span, GAP_END_KEY_MM[1] + step, step)
    beside = np.linspace(-0.4 * U, 0.4 * U, 9)
    gaps = x0 + np.arange(1, n_white) * U
    xs = np.add.outer(gaps, beside)  # (gaps, 9): the gap in the middle, key top either side
    world = np.column_stack([np.repeat(xs.ravel(), len(ys)), np.tile(ys, xs.size)])
    values = _samples(cv2.blur(gray, (3, 3)), _apply(h, world)).reshape(len(gaps), len(beside), len(ys))
    middle = len(beside) // 2
    contrast = np.median(values[:, [0, 1, -2, -1]], axis=1) - values[:, middle - 1 : middle + 2].min(axis=1)
    on_keys = (ys >= GAP_END_KEY_MM[0]) & (ys <= GAP_END_KEY_MM[1])
    image_pts = []
    for g, profile in enumerate(contrast):
        level = float(np.median(profile[on_keys]))
        if level < 6:  # no gap to follow here (a hand, glare)
            continue
        below = np.flatnonzero((profile < level / 2) & (ys < GAP_END_KEY_MM[0]))
        if len(below) == 0 or below[-1] == len(ys) - 1:
            continue
        k = below[-1]  # the front-most stretch of gap starts after the last sample below half
        if np.any(profile[k + 1 : np.searchsorted(ys, GAP_END_KEY_MM[0])] < level / 2):
            continue
        a, b = profile[k], profile[k + 1]
        y_end = ys[k] + step * (level / 2 - a) / max(b - a, 1e-6)
        image_pts.append(_apply(h, np.array([[gaps[g], y_end]]))[0])
    return np.array(image_pts).reshape(-1, 2)


def _back_edge(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float, span: float):
    """Image points of the white keys' back end (y = key length) with their world points, where it shows:
    beside each E-F and B-C boundary (no black key there), the fall from the key top to the nameboard
    nearest the fit's back."""
    length = K.WHITE_KEY_LENGTH_MM
    ys = np.linspace(length - span, length + span, int(2 * span * px_per_mm) + 1)
    xs = _beside_long_gaps(x0, n_white)
    return _edge_points(gray, h, xs, ys, np.linspace(100, 130, 9), -1, int(round(2 * px_per_mm)), length)


def _back_to_edge(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float) -> np.ndarray:
    """Scale the fit's depth so that its back lies on the keys' measured back end, keeping the front in
    place: otherwise the black keys, whose proportions vary between pianos, set the depth."""
    image_pts, _ = _back_edge(gray, h, x0, n_white, px_per_mm, BACK_SEARCH_MM)
    back = _measured_y(h, image_pts, 8)
    return h if back is None else h @ np.diag([1.0, back / K.WHITE_KEY_LENGTH_MM, 1.0])


def _white_plane(gray: np.ndarray, h_top: np.ndarray, x0: float, n_white: int, px_per_mm: float) -> np.ndarray:
    """The white-key plane's homography, from the black-key tops' (12 mm higher, so shifted by parallax).

    The E-F and B-C boundaries are the only white-key gaps that run on between the black keys: each
    is the one dark line in the bright stretch between two black keys, so it can be found without
    ambiguity, and where it lies in that stretch measures the parallax there.
    """
    xs = np.arange(x0, x0 + n_white * U, 1.0 / px_per_mm)
    image_pts, world_pts = [], []
    for y in (70.0, 85.0, 100.0, 115.0, 130.0):
        profile = _samples(gray, _apply(h_top, np.column_stack([xs, np.full_like(xs, y)])))
        for x in _long_gaps(x0, n_white):
            a, b = np.searchsorted(xs, [x - 0.45 * U, x + 0.45 * U])  # between the flanking black keys
            window = profile[a:b]
            if len(window) < 5:
                continue
            k = int(np.argmin(window))
            if np.median(window) - window[k] < 6 or k in (0, len(window) - 1):
                continue
            image_pts.append(_apply(h_top, np.array([[xs[a + k], y]]))[0])
            world_pts.append([x, y])
    if len(image_pts) < 8:
        return h_top
    h, _ = cv2.findHomography(np.array(world_pts), np.array(image_pts), cv2.RANSAC, 2.0)
    return h_top if h is None else h


def _front_to_edge(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float, at: float = 0.0,
                   behind: bool = False) -> np.ndarray | None:
    """Move the fit's front (y = 0) onto the keys' measured front edge, keeping the back's middle in
    place (a slant of the edge in the fit shears the whole fit); None when the edge does not show.

    Gap measurements fix x but inherit their y from the fit, so the depth and tilt come from the black
    keys, whose proportions vary between pianos (and which a nameboard may half hide); the front edge
    is measured directly.
    """
    image_pts, _ = _front_edge(gray, h, x0, n_white, px_per_mm, FRONT_SEARCH_MM, at)
    line = _measured_line(h, image_pts, 10)
    middle = x0 + n_white * U / 2
    if line is None or behind:  # the keys as light as what lies beyond them: where their gaps end is the edge
        ends = _measured_line(h, _gap_ends(gray, h, x0, n_white, px_per_mm, FRONT_SEARCH_MM), 10, GAP_END_BAND_MM)
        if ends is not None and (line is None or line[0] + line[1] * middle < ends[0] + ends[1] * middle - GAP_END_BAND_MM):
            line = ends  # seen from behind, the gaps run to the very edge: an edge found beyond their ends is a rail's
    if line is None:
        return None
    slope, back = line[1], K.WHITE_KEY_LENGTH_MM
    offset = line[0] - at + slope * middle  # the front's y at the keyboard's middle
    return h @ np.array([[1.0, 0, 0], [slope, (back - offset) / back, offset - slope * middle], [0, 0, 1]])


def _refine(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, px_per_mm: float, at: float = 0.0):
    """Fit the white-key plane to gaps and the front edge (found at y = ``at``: see ``_front_edge``)
    measured near where ``h`` puts them; returns the homography, the last measurements (world, image
    points) and how many agree with it."""
    kept = (np.zeros((0, 2)), np.zeros((0, 2)), 0)
    for _ in range(3):
        gi, gw = _gap_positions(gray, h, x0, n_white, px_per_mm)
        fi, fw = _front_edge(gray, h, x0, n_white, px_per_mm, 20.0, at)
        img, wld = np.concatenate([gi, fi]), np.concatenate([gw, fw])
        if len(img) < 12:
            break
        h_new, inliers = cv2.findHomography(wld, img, cv2.RANSAC, 1.5)
        if h_new is None:
            break
        h, kept = h_new, (wld, img, int(inliers.sum()))
    return h, kept


MAX_TRIMMED = 2  # detections at each end of the row that may be something else (a dark case edge, a shadow)
TRIM_PENALTY = 0.1  # score cost of each detection a hypothesis leaves out


def _hypotheses(gray: np.ndarray, row: BlackKeyRow, sizes,
                near: np.ndarray | None = None) -> list[tuple[float, int, int, int, np.ndarray]] | None:
    """Every (score, shift, lowest pitch, size, black-key-top homography) that the row allows, both ways
    round and with up to ``MAX_TRIMMED`` detections at each end left out (with ``near``, only those
    whose ends lie there: see ``fit_keyboard``); None when the row does not follow the black keys'
    pattern either way round."""
    out, seen_any = [], False
    judged = _stretched(gray)  # the ends and black keys are judged on full contrast, even in a dim room
    for high, _, centres, fronts in _orient(row, gray):
        index = _identify(centres @ high)
        found = np.flatnonzero(index >= 0)
        if len(found) < MIN_LOCK_ROW:
            continue
        seen_any = True
        tried = set()
        for trim in sorted(itertools.product(range(MAX_TRIMMED + 1), repeat=2), key=sum):
            keep = found[trim[0] : len(found) - trim[1]]
            if len(keep) < MIN_LOCK_ROW:
                continue
            image = np.concatenate([centres[keep], fronts[keep]])  # black-key tops: centres and front ends
            y_world = np.repeat([(K.BLACK_FRONT_MM + K.WHITE_KEY_LENGTH_MM) / 2, K.BLACK_FRONT_MM], len(keep))
            for shift, lo, size in _candidates(index[keep], sizes):
                if (shift, lo, size) in tried:
                    continue  # already scored with more of the detections
                tried.add((shift, lo, size))
                shifted = index[keep] + 5 * shift  # five black keys an octave
                world = np.column_stack([np.tile(BLACK_X_MM[shifted], 2), y_world])
                h, _ = cv2.findHomography(world, image, cv2.RANSAC, 3.0)
                if h is None or (near is not None and not _same_keys(h, lo, size, near, ROUGHLY_SAME_KEYS_WHITE)):
                    continue  # before its plane refit (_which_keys checks it again after)
                h = _black_key_plane(gray, h, lo, size, _px_per_mm(h, lo, size))
                # fewest black keys missing where this keyboard has them, then the clearest ends
                seen = (REFERENCE.blacks[shifted.min()].pitch, REFERENCE.blacks[shifted.max()].pitch)
                score = _end_score(judged, h, lo, size) - 1.5 * _missing_black_keys(judged, h, lo, size, seen) - TRIM_PENALTY * sum(trim)
                out.append((score, shift, lo, size, h))
    return out if seen_any else None


def _stretched(gray: np.ndarray) -> np.ndarray:
    """The image with its grey levels stretched to the full range (1st to 99.5th percentile), so that a
    dim room's keys show the contrasts the measurements expect of a well-lit one."""
    lo, hi = np.percentile(gray[::4, ::4], (1.0, 99.5))
    if hi - lo < 1:
        return gray
    return cv2.convertScaleAbs(gray, alpha=255.0 / (hi - lo), beta=-lo * 255.0 / (hi - lo))


class UnclearKeys(PianoedgeError):
    """Two readings of which key is which (an octave apart, or keyboards of two sizes) fit about as well."""


SAME_KEYS_WHITE = 2.0  # white keys: how far a refit's ends may lie from the lock it confirms (an octave is 7)
ROUGHLY_SAME_KEYS_WHITE = 3.5  # the same for a fit on the black keys found, before its plane refit: it may extrapolate
# its ends a few keys off (strong yaw, keys found on part of the keyboard); half an octave still tells octaves apart


def fit_keyboard(gray: np.ndarray, num_keys: int | None = None, near: np.ndarray | None = None, clean: bool = False) -> KeyboardFit:
    """Lock onto the keyboard in an (ideal, undistorted) grey image (``clean``: see ``find_black_keys``).

    ``near``: where a lock already made on the same view (under another guess of the lens) puts the
    keyboard's ends (``KeyboardFit.ends``, in this image's pixels): which key is which is then settled,
    and only hypotheses that put the ends there are weighed."""
    lo, size, h = _which_keys(gray, find_black_keys(gray, clean), num_keys, near)
    return _fit_white_keys(gray, lo, size, h)


def _which_keys(gray: np.ndarray, row: BlackKeyRow, num_keys: int | None, near: np.ndarray | None) -> tuple[int, int, np.ndarray]:
    """The keyboard's lowest pitch, size and black-key-top homography that ``row`` says most clearly
    (see ``_hypotheses``), or a PianoedgeError saying why none does."""
    if len(row) < MIN_LOCK_ROW:
        raise PianoedgeError(f"no keyboard found: fewer than {MIN_LOCK_ROW} black keys visible. Make sure the keys are in view and lit")
    best = _hypotheses(gray, row, (num_keys,) if num_keys else tuple(K.KEYBOARD_SIZES), near)
    if best is None:
        raise PianoedgeError("no keyboard found: the dark blobs do not follow the black keys' 2-3 pattern")
    if near is not None:
        best = [b for b in best if _same_keys(b[4], b[2], b[3], near)]
    if not best:
        raise PianoedgeError("keyboard size unclear: no 61/76/88-key keyboard holds the black keys found")
    best.sort(key=lambda b: -b[0])
    if best[0][0] < MIN_END_SCORE and not num_keys:  # given the size, the placement that stands out is taken
        raise PianoedgeError("cannot find the keyboard's ends where its black keys say they are: "
                             "make both ends visible and evenly lit (or give --keys)")
    if len(best) > 1 and best[0][0] - best[1][0] < MIN_SCORE_MARGIN:
        raise UnclearKeys("cannot tell which key is which: both ends of the keyboard must be visible (or give --keys)")
    _, _, lo, size, h = best[0]
    return lo, size, h


def _fit_white_keys(gray: np.ndarray, lo: int, size: int, h: np.ndarray) -> KeyboardFit:
    """The fit of the white-key surface, from the black-key-top homography ``h`` of a keyboard of
    ``size`` keys from ``lo``: refitted to the white keys' gaps and front edge, then its depth to
    their measured ends (or, seen from behind, to perspective; where the perspective cannot tell
    which, both, keeping the depth under which more black keys are where the fit puts them)."""
    n_white = K.layout(size).num_white
    x0 = REFERENCE.key(lo).left * U
    px_per_mm = _px_per_mm(h, lo, size)
    # refit on the white-key surface (z = 0), starting from the black-key plane as it is and as
    # corrected for parallax; keep the start whose fit agrees with the most gap and edge measurements
    results = [_refine(gray, start, x0, n_white, px_per_mm) for start in (h, _white_plane(gray, h, x0, n_white, px_per_mm))]
    h, kept = max(results, key=lambda r: r[1][2])
    widening = _back_widening(h, x0, n_white * U)

    def depth(behind: bool):  # the homography with its depth set, and the measurements of its last refit
        return (_depth_from_behind(gray, h, lo, size, px_per_mm), kept) if behind else _depth_from_front(gray, h, lo, size, px_per_mm, kept)

    likelier = depth(widening > BEHIND_WIDENING)
    if UNSURE_WIDENING[0] < widening <= UNSURE_WIDENING[1]:  # the camera may be straight above the keys or low behind them
        try:
            other = depth(widening <= BEHIND_WIDENING)
        except PianoedgeError:
            other = None
        if other is not None and _black_key_share(gray, other[0], lo, size) > _black_key_share(gray, likelier[0], lo, size) + OTHER_SIDE_MARGIN:
            likelier = other
    h, (world_pts, image_pts, agree) = likelier
    possible = len(GAP_ROWS_MM) * (n_white + 1) + n_white + len(LONG_GAP_ROWS_MM) * 2 * n_white // 7
    return KeyboardFit(h, lo, size, agree / possible, len(world_pts) / possible, world_pts, image_pts)


def _depth_from_behind(gray: np.ndarray, h: np.ndarray, lo: int, size: int, px_per_mm: float) -> np.ndarray:
    """The fit's depth seen from the music stand, where the nameboard hides the keys' back ends: a first
    depth from perspective brings the front edge within reach, and with the front in place the
    perspective gives the depth again, now both ways."""
    x0, n_white = REFERENCE.key(lo).left * U, K.layout(size).num_white
    front = _front_to_edge(gray, _depth_from_perspective(h, gray.shape, lengthen_only=True), x0, n_white, px_per_mm, behind=True)
    if front is None:
        raise PianoedgeError("no reliable lock: seen from behind, the keys' front edge does not show against the case, "
                             "so their depth is unknown; film from the player's side or from above, or light the keys' front")
    return _depth_from_perspective(front, gray.shape, focal=_focal_from_behind(gray, front, lo, size))


def _depth_from_front(gray: np.ndarray, h: np.ndarray, lo: int, size: int, px_per_mm: float, kept):
    """The fit's depth where the keys' back ends are in view: both edges measured where they show (the
    front edge may be the foot of the keys' lit front face). Returns the homography and the
    measurements of its last refit (``kept``, ``_refine``'s, unless the face moved the front)."""
    x0, n_white = REFERENCE.key(lo).left * U, K.layout(size).num_white
    front = _front_to_edge(gray, h, x0, n_white, px_per_mm)
    face = 0.0 if front is None else _face_depth(front, gray.shape)
    top = _face_top(gray, front, x0, n_white, face) if face > MIN_FACE_MM else None
    if top is not None:  # the edge found is the foot of the keys' front face: the fit's front is that far forward
        return _from_face_foot(gray, front, x0, n_white, px_per_mm, top)
    h = _back_to_edge(gray, h if front is None else front, x0, n_white, px_per_mm)
    if face > MIN_FACE_MM:  # a face lit like the tops shows no top edge: is the edge found its foot?
        foot = _from_face_foot(gray, front, x0, n_white, px_per_mm, face)
        if _black_key_share(gray, foot[0], lo, size) > _black_key_share(gray, h, lo, size) + UNSEEN_FACE_MARGIN:
            return foot
    return h, kept


UNSEEN_FACE_MARGIN = 0.25  # share of black keys by which a fit taking the front edge found as a face's foot must do better


def _from_face_foot(gray: np.ndarray, front: np.ndarray, x0: float, n_white: int, px_per_mm: float, face: float):
    """The fit whose front edge (y = 0 in ``front``) is the foot of the keys' front face, ``face`` mm in
    front of the key tops: refitted there, then its depth to the keys' measured back end; returns the
    homography and the refit's measurements (see ``_refine``)."""
    back = K.WHITE_KEY_LENGTH_MM
    start = front @ np.array([[1.0, 0, 0], [0, (back - face) / back, face], [0, 0, 1]])  # the back stays
    h, kept = _refine(gray, start, x0, n_white, px_per_mm, at=-face)
    moved = _front_to_edge(gray, h, x0, n_white, px_per_mm, at=-face)
    return _back_to_edge(gray, h if moved is None else moved, x0, n_white, px_per_mm), kept


def _ends(h: np.ndarray, lo: int, size: int) -> np.ndarray:
    """Image points of the keyboard's low and high ends on the line of the black keys' front ends
    (where a fit on the black keys is surest, whatever its depth)."""
    x0, width = REFERENCE.key(lo).left * U, K.layout(size).num_white * U
    return _apply(h, np.array([[x0, K.BLACK_FRONT_MM], [x0 + width, K.BLACK_FRONT_MM]]))


def _same_keys(h: np.ndarray, lo: int, size: int, near: np.ndarray, within: float = SAME_KEYS_WHITE) -> bool:
    """Whether a hypothesis puts both ends of the keyboard within ``within`` white keys of ``near``."""
    ends = _ends(h, lo, size)
    key_px = np.linalg.norm(ends[1] - ends[0]) / K.layout(size).num_white
    return bool(np.linalg.norm(ends - near, axis=1).max() < within * key_px)


BEHIND_WIDENING = 1.02  # keys that look this much wider at their back than at their front (``_back_widening``) are seen from behind
# where the camera may be straight above the keys (up to 1.012 in 96 fresh takes at tilts under 3 degrees) or
# behind them at a low tilt (1.018-1.021 from the stand at 19 degrees, seed 7069), the other side's depth is tried
# too, and taken when clearly more black keys are where it puts them (a wrong depth misplaces half of them)
UNSURE_WIDENING = (1.0, 1.035)
OTHER_SIDE_MARGIN = 0.25


def _back_widening(h: np.ndarray, x0: float, width: float) -> float:
    """How much wider the keys look at their back than at their front, mid-keyboard (over 1: the camera
    is behind them, under 1: in front, about 1: straight above)."""
    mid = x0 + width / 2
    p = _apply(h, np.array([[mid, 0.0], [mid + 10, 0.0], [mid, K.WHITE_KEY_LENGTH_MM], [mid + 10, K.WHITE_KEY_LENGTH_MM]]))
    return float(np.linalg.norm(p[3] - p[2]) / np.linalg.norm(p[1] - p[0]))


def _centred(h: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``h`` into pixels measured from the image centre (the principal point assumed there)."""
    height, width_px = shape
    return np.array([[1, 0, -width_px / 2], [0, 1, -height / 2], [0, 0, 1]]) @ h


def _focal(h: np.ndarray, shape: tuple[int, int]) -> float:
    """The focal length (pixels) that makes the plane's x and y axes orthogonal under ``h`` (Zhang's
    constraint, square pixels, principal point at the centre); ``TYPICAL_FOCAL`` when there is too
    little perspective to tell."""
    width_px = shape[1]
    g = _centred(h, shape)
    f2 = -(g[0, 0] * g[0, 1] + g[1, 0] * g[1, 1]) / (g[2, 0] * g[2, 1])
    f = float(np.sqrt(max(f2, 0.0)))
    return f if MIN_FOCAL * width_px <= f <= MAX_FOCAL * width_px else TYPICAL_FOCAL * width_px


def _pose(h: np.ndarray, shape: tuple[int, int], f: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The camera that ``h`` implies with focal length ``f``: its intrinsics, the plane's x, y and up
    axes and its origin in camera coordinates (mm; ``h``'s depth taken as right)."""
    height, width_px = shape
    intrinsics = np.array([[f, 0, width_px / 2], [0, f, height / 2], [0, 0, 1]])
    m = np.linalg.inv(intrinsics) @ h
    m /= np.linalg.norm(m[:, 0]) * np.sign(m[2, 2])  # the plane's origin in front of the camera
    r1, r2 = m[:, 0], m[:, 1] / np.linalg.norm(m[:, 1])
    return intrinsics, r1, r2, np.cross(r1, r2), m[:, 2]  # up: world z, from the key tops (x along the keys, y away from the player)


def _face_depth(h: np.ndarray, shape: tuple[int, int]) -> float:
    """How far in front of the keys' front edge (mm on the key-top plane) the foot of their front face
    shows, seen from the camera that ``h`` implies; 0 when the camera is behind the keys."""
    _, r1, r2, up, t = _pose(h, shape, _focal(h, shape))
    camera = -np.column_stack([r1, r2, up]).T @ t
    if camera[1] > 0 or camera[2] < 0:
        return 0.0
    # where the camera's ray through the face's foot (under the edge) meets the key-top plane
    return float(K.WHITE_KEY_FRONT_MM * -camera[1] / camera[2])


BLACK_FRONT_FALL = 10.0  # grey levels per mm, at least, from a white key top onto a black key's front end
MIN_BLACK_FRONTS = 8  # black keys' front ends needed to tell the focal length from them
FOCAL_STEP = 0.01  # image widths between the focal lengths tried
BLACK_FRONT_TOLERANCE_MM = 3.0  # how near K.BLACK_FRONT_MM the best focal length must bring the black keys' fronts
SAME_FOCAL = 0.1  # Zhang's focal length stands when the black keys' fronts give one this close (a share of theirs)


def _black_fronts(gray: np.ndarray, h: np.ndarray, lo: int, size: int) -> np.ndarray:
    """Image points of the black keys' front ends, seen from behind the keys (their top front edges,
    the fronts facing away): the steepest fall from white key top to black key, looked for 20-100 mm
    behind ``h``'s front (its depth may be far off) along three lines through each black key."""
    step = 0.25
    ys = np.arange(20.0, 100.0, step)
    x = _black_x([k.pitch for k in K.layout(size, lo).blacks])
    lines = np.add.outer(x, [-3.0, 0.0, 3.0])  # (keys, 3): the lines' x
    world = np.stack([np.repeat(lines[..., None], len(ys), axis=2), np.broadcast_to(ys, lines.shape + ys.shape)], axis=3)
    values = _samples(cv2.blur(gray, (3, 3)), _apply(h, world.reshape(-1, 2))).reshape(world.shape[:3])
    fall = -np.gradient(np.median(values, axis=1), axis=1) / step
    k = fall.argmax(axis=1)
    shown = fall[np.arange(len(x)), k] >= BLACK_FRONT_FALL
    return _apply(h, np.column_stack([x[shown], ys[k[shown]]])).reshape(-1, 2)


def _focal_from_behind(gray: np.ndarray, h: np.ndarray, lo: int, size: int) -> float:
    """The focal length (pixels) for a camera behind the keys: Zhang's (``_focal``, the more precise)
    where the black keys' front ends confirm it within ``SAME_FOCAL``, else theirs when they show.
    Zhang's constraint needs perspective across the keys, which a camera square behind them hardly
    sees: its estimate then follows the noise of the fit."""
    zhang, fronts = _focal(h, gray.shape), _focal_from_black_keys(gray, h, lo, size)
    return zhang if fronts is None or abs(zhang - fronts) <= SAME_FOCAL * fronts else fronts


def _focal_from_black_keys(gray: np.ndarray, h: np.ndarray, lo: int, size: int) -> float | None:
    """Seen from behind the keys, the focal length (pixels) under which the black keys' front ends lie
    where they are on a piano, ``K.BLACK_FRONT_MM`` behind the front edge on tops 12 mm up: how far they
    seem from the front edge (their height's parallax included) depends on the depth that each focal
    length gives. None when too few show or no focal length puts them there."""
    points = _black_fronts(gray, h, lo, size)
    if len(points) < MIN_BLACK_FRONTS:
        return None
    width_px = gray.shape[1]
    best, miss = None, BLACK_FRONT_TOLERANCE_MM
    for f in np.arange(MIN_FOCAL, MAX_FOCAL + FOCAL_STEP / 2, FOCAL_STEP) * width_px:
        intrinsics, r1, r2, up, t = _pose(_depth_from_perspective(h, gray.shape, focal=f), gray.shape, f)
        tops = intrinsics @ np.column_stack([r1, r2, t + K.BLACK_KEY_HEIGHT_MM * up])  # the black keys' top plane
        y = float(np.median(_apply(np.linalg.inv(tops), points)[:, 1]))
        if abs(y - K.BLACK_FRONT_MM) < miss:
            best, miss = float(f), abs(y - K.BLACK_FRONT_MM)
    return best


MIN_FACE_MM = 3.0  # a front face that shows less deep than this is not looked for
FACE_STEP = 8.0  # grey levels between a lit front face and the key tops beyond it that show the keys' top edge
EDGE_BLUR_PX = 4.0  # how far past an edge its blur may reach
FACE_FROM_MM = 2.0  # the face's brightness is read from at least this far past its foot


def _face_top(gray: np.ndarray, h: np.ndarray, x0: float, n_white: int, face: float) -> float | None:
    """Where the key tops begin (mm behind ``h``'s front) when the front edge ``h`` has at y = 0 is the
    foot of the keys' lit front face, not its top; None when it is the top. A face's top edge shows
    as the strongest step in brightness between the face and the key tops, or a dark rim (the rounded
    edge) between them, looked for up to 1.5 times the ``face`` depth that the camera implies; past a
    true front edge the key tops run on unchanged. Median over all the white keys, so hands do not count."""
    centre = x0 + n_white * U / 2
    mm_px = 1.0 / np.linalg.norm(np.diff(_apply(h, np.array([[centre, 0.0], [centre, 1.0]])), axis=0))
    first = max(FACE_FROM_MM, EDGE_BLUR_PX * mm_px)  # clear of the blur of the edge at y = 0
    step = 0.25
    ys = np.arange(first, 1.5 * face + 4.0 + step, step)
    if len(ys) < int(5.0 / step):  # the edge's blur reaches past the face (a small image): no top edge to find
        return None
    xs = x0 + (np.arange(n_white) + 0.5) * U
    values = _samples(cv2.blur(gray, (3, 3)), _apply(h, np.column_stack([np.repeat(xs, len(ys)), np.tile(ys, len(xs))])))
    profile = np.median(values.reshape(len(xs), len(ys)), axis=0)
    best, where = 0.0, None
    for k in range(int(1.0 / step), len(ys) - int(4.0 / step)):
        if ys[k] > 1.5 * face:
            break
        before, after = float(np.median(profile[: k - 1])), float(np.median(profile[k + 2 : k + 16]))  # the face so far, 0.5-4 mm on
        rim = min(before, after) - float(profile[k - 1 : k + 2].min())  # a dark rounded edge between them
        contrast = max(abs(after - before), rim)
        if contrast > best:
            best, where = contrast, float(ys[k])
    return where if best >= FACE_STEP else None


def _depth_from_perspective(h: np.ndarray, shape: tuple[int, int], lengthen_only: bool = False, focal: float | None = None) -> np.ndarray:
    """The fit with its key depth set from perspective, keeping the front in place (for a camera behind
    the keys, where the nameboard hides their back ends and the black keys' backs, so that the keys
    look shorter than they are and a depth taken from them is too shallow).

    With square pixels and the principal point at the centre, the plane's x and y axes must come out
    orthogonal and equally long (Zhang's constraints), which fixes the focal length and the y scale.
    A typical focal length stands in when there is too little perspective to tell (``_focal``);
    ``lengthen_only``: for a first estimate, only the lengthening that hidden back ends call for;
    ``focal``: the focal length (pixels) when it is known otherwise (``_focal_from_black_keys``).
    """
    g = _centred(h, shape)
    g1, g2 = g[:, 0], g[:, 1]
    f2 = (focal or _focal(h, shape)) ** 2
    length_x = (g1[0] ** 2 + g1[1] ** 2) / f2 + g1[2] ** 2
    length_y = (g2[0] ** 2 + g2[1] ** 2) / f2 + g2[2] ** 2
    depth = float(np.sqrt(length_x / length_y))
    return h @ np.diag([1.0, max(depth, 1.0) if lengthen_only else depth, 1.0])


def _px_per_mm(h: np.ndarray, lo: int, size: int) -> float:
    """Sampling density for measurements on the keys: twice the image's mean pixels per mm along the front edge."""
    x0, width = REFERENCE.key(lo).left * U, K.layout(size).num_white * U
    corners = _apply(h, np.array([[x0, 0], [x0 + width, 0]]))
    return max(float(np.linalg.norm(corners[1] - corners[0])) / width, 0.5) * 2


BEHIND_KEYS_MM = 35.0  # behind the keys' back ends, where a fit of the right depth finds no black keys
KEYS_BEHIND_SHARE = 0.5  # black keys showing there with this share of their contrast on the keys: the fit is too shallow
KEYS_BEHIND_CONTRAST = 20.0  # and at least this many grey levels darker than the white between them (not noise or a reflection)


def _black_key_contrast(gray: np.ndarray, fit: KeyboardFit, y: float) -> float:
    """How much darker the fit's black keys are than the white between neighbouring ones, on the line
    ``y`` mm behind its front edge (medians over the keyboard; 0 where nothing is drawn)."""
    x = _black_x([k.pitch for k in K.layout(fit.num_keys, fit.lowest).blacks])
    between = (x[:-1] + x[1:]) / 2
    h = fit.world_to_image
    dark = _samples(gray, _apply(h, np.column_stack([x, np.full(len(x), y)])))
    light = _samples(gray, _apply(h, np.column_stack([between, np.full(len(between), y)])))
    return float(np.median(light) - np.median(dark))


def keys_go_on_behind(gray: np.ndarray, fit: KeyboardFit) -> bool:
    """The black keys still show ``BEHIND_KEYS_MM`` behind where the fit ends the keys: the fit is far
    too shallow (its front and back edges both found on the keys; from behind a dark case, seed 5417)."""
    on_keys = _black_key_contrast(gray, fit, BLACK_CHECK_ROWS_MM[1])  # their front part, which no nameboard hides
    behind = _black_key_contrast(gray, fit, K.WHITE_KEY_LENGTH_MM + BEHIND_KEYS_MM)
    return behind > max(KEYS_BEHIND_SHARE * on_keys, KEYS_BEHIND_CONTRAST)


CLOSER_SPREAD = 0.6  # a bend that brings the keys' edge points this much closer to one homography is the lens's
# RANSAC draws per lens tried: loose fits (few edge points agreeing) otherwise run OpenCV's 2000 and made a
# 1080p lock take 3 s; at 300 every kept benchmark take (1,152) locks exactly as before
LENS_RANSAC_ITERATIONS = 300


def estimate_k1(fit: KeyboardFit, image_size: tuple[int, int]) -> float:
    """Radial distortion under which the most measured gap and front-edge points fit one homography
    (the keys' edges are straight lines), ties (within 2 %) going to the smallest median distance of
    all points from it: 0 when the lens does not measurably bend them."""

    def consistency(k1: float) -> tuple[int, float]:
        pts = Lens(k1, *image_size).undistort(fit.image_points)
        h, inliers = cv2.findHomography(fit.world_points, pts, cv2.RANSAC, 1.0, maxIters=LENS_RANSAC_ITERATIONS)
        if h is None:
            return 0, np.inf
        return int(inliers.sum()), float(np.median(np.linalg.norm(_apply(h, fit.world_points) - pts, axis=1)))

    if fit.world_points is None or len(fit.world_points) < 20:
        return 0.0
    grid = np.round(np.arange(-0.3, 0.1001, 0.01), 3)
    counts, spread = np.zeros(len(grid)), np.full(len(grid), np.inf)
    for k in range(0, len(grid), 2):  # every other step first, then the steps between those near the best
        counts[k], spread[k] = consistency(grid[k])
    for k in range(1, len(grid), 2):
        if max(counts[k - 1], counts[k + 1]) >= 0.9 * counts.max():
            counts[k], spread[k] = consistency(grid[k])
    near_best = np.flatnonzero(counts >= 0.98 * counts.max())
    best = float(grid[near_best[np.argmin(spread[near_best])]])
    # only when it matters: clearly more of the keys' edges line up than with no distortion at all, or
    # as many, much closer (with few outliers, all points line up within RANSAC's pixel either way)
    straight = grid == 0.0
    more = counts.max() > 1.1 * counts[straight][0]
    closer = counts[grid == best][0] >= 0.98 * counts[straight][0] and spread[grid == best][0] < CLOSER_SPREAD * spread[straight][0]
    return best if more or closer else 0.0


def fit_score(gray: np.ndarray, fit: KeyboardFit, distort=None) -> float:
    """Share of this keyboard's black keys in the frame that show as dark keys between white ones where
    the fit puts them, and of the places beside its E-F and B-C boundaries that show none: near 1 for
    a good lock, low for a wrong or stale one (hands hide a few). A lock one white key off still finds
    three black keys in five (the 2-3 groups), but black keys beside every E-F and B-C boundary.
    ``gray`` may be a BGR frame; ``distort`` maps ideal to its recorded pixels (see ``_black_keys_shown``)."""
    return _black_key_share(gray, fit.world_to_image, fit.lowest, fit.num_keys, distort)


def _black_key_share(gray: np.ndarray, h: np.ndarray, lo: int, size: int, distort=None) -> float:
    """``fit_score`` of the keyboard of ``size`` keys from ``lo`` that ``h`` maps into ``gray``."""
    return FitProbe.of(h, lo, size, distort, gray.shape[:2]).score(gray)


@dataclass(frozen=True)
class FitProbe:
    """``fit_score``'s sample points for one fit and frame size, worked out once: a lock scores every
    frame it is used on with one remap of a few thousand points (``Lock.check``)."""

    blacks: _DarkProbe  # the keyboard's black keys: dark in every row (a lock a key off must fail)
    beside: _DarkProbe  # beside its E-F and B-C boundaries: dark in any row means a black key is there

    @classmethod
    def of(cls, h: np.ndarray, lo: int, size: int, distort, shape: tuple[int, int]) -> FitProbe:
        blacks = _black_x([k.pitch for k in K.layout(size, lo).blacks])
        beside = _beside_long_gaps(REFERENCE.key(lo).left * U, K.layout(size).num_white)
        return cls(_DarkProbe.of(h, blacks, 0.0, distort, shape), _DarkProbe.of(h, beside, 0.0, distort, shape))

    def score(self, gray: np.ndarray) -> float:
        dark, inside = self.blacks.dark(gray, len(BLACK_CHECK_ROWS_MM)), self.blacks.inside
        stray, clear = self.beside.dark(gray, 1), self.beside.inside
        return float(((dark & inside).sum() + (~stray & clear).sum()) / max(inside.sum() + clear.sum(), 1))
