"""Takes as model input: each frame warped to the model's strip, with per-frame, per-key labels.

No torch here: the runtime shares ``strip_size`` and ``lock_of_take`` (a take's lock from its labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from pianoedge import keys as K
from pianoedge.calibration.acquire import spread_frames
from pianoedge.calibration.lockfile import Lock, canonical_corners
from pianoedge.errors import PianoedgeError
from pianoedge.notes import Note
from pianoedge.takes import Take, frame_labels

FRONT_MARGIN_PX = 30  # rows of what lies in front of the keys (42 mm): fingers striking a key's front edge, its front face dropping
STRIP_SIZE = (K.CANONICAL_SIZE[0], K.CANONICAL_SIZE[1] + FRONT_MARGIN_PX)  # model input (width, height): 17 px per white key
CONTEXT_FPS = 30.0  # the head's context frames are about 1/30 s apart whatever the camera's rate (every other frame at 50-60 fps)
KEY_CHANGE_LABEL = "key_change"  # studio label in NAME.npz: what the keys alone change in the strip (``studio.keychange``)
KEY_CHANGE_BANDS = 8  # its row bands (17 rows each)
FILE_REST_FRAMES = 25  # a file's rest view is made from this many frames spread over all of it (a camera's: from the lock's frames)


def context_stride(fps: float, context_fps: float | None = CONTEXT_FPS) -> int:
    """Frames from one of the head's context frames to the next at this frame rate, so that a press
    spans as many of them at 60 fps as at 30; 1 for a model trained on consecutive frames (``context_fps`` None)."""
    return max(1, int(round(fps / context_fps))) if context_fps else 1


def context_span(context: int, stride: int) -> int:
    """Frames from the oldest of ``context`` frames ``stride`` apart to the newest, both included."""
    return (context - 1) * stride + 1


REST_KEEP = 1 / 3  # the share of the frames whose median makes each column of the rest view


def _octave_misfit(strip: np.ndarray, octave: int) -> np.ndarray:
    """(W,) how unlike each column of ``strip`` is to the same column one or two octaves away, the
    likest of those (mean absolute grey difference): a bare keyboard repeats every octave; a hand, a
    pressed key or a shadow does not."""
    grey = strip.astype(np.float32)
    width = grey.shape[1]
    misfit = np.full(width, np.inf, np.float32)
    for shift in (-2 * octave, -octave, octave, 2 * octave):
        a, b = max(0, -shift), min(width, width - shift)
        if b > a:
            misfit[a:b] = np.minimum(misfit[a:b], np.abs(grey[:, a:b] - grey[:, a + shift : b + shift]).mean(axis=0))
    return misfit


def rest_view(strips: np.ndarray, num_keys: int, lowest: int) -> np.ndarray:
    """The keyboard at rest from strips spread over time: each column the median of the ``REST_KEEP``
    of them where it repeats best an octave or two away (``_octave_misfit``, over half a white key).
    A plain median keeps a hand that stays over a few keys half the time or more (the real clip's
    right hand); so chosen, the view is the bare keyboard wherever one frame in three shows it. Under
    three strips, or a keyboard under an octave wide, the plain median."""
    layout = K.layout(num_keys, lowest)
    width = strips.shape[2]
    octave = int(round(7 * width / layout.num_white))
    if octave >= width or len(strips) < 3:
        return np.median(strips, axis=0).astype(np.uint8)
    misfit = np.stack([_octave_misfit(s, octave) for s in strips])
    misfit = cv2.blur(misfit, (max(1, int(round(width / layout.num_white / 2))), 1))
    best = np.argsort(misfit, axis=0, kind="stable")[: max(1, int(round(REST_KEEP * len(strips))))]
    chosen = np.take_along_axis(strips, np.repeat(best[:, None, :], strips.shape[1], axis=1), axis=0)
    return np.median(chosen, axis=0).astype(np.uint8)


def rest_frames(frames: int, fps: float, camera: bool = False) -> np.ndarray:
    """Which of a clip's ``frames`` its rest view is made from (``rest_view``): for a file,
    ``FILE_REST_FRAMES`` spread over all of them (hands move on, chords held at the start end); with
    ``camera``, the frames a lock takes from a video's first seconds (``acquire.spread_frames``), as
    near as a take comes to what a camera has seen when it locks (a live camera gathers its over its
    first 2 s, ``live.LOCK_FRAMES_SECONDS``; its future is unknown)."""
    return spread_frames(frames, fps) if camera else spread_frames(frames, fps, FILE_REST_FRAMES, seconds=None)


LIGHT_SAMPLE = 4  # every 4th row and column of the strip (some 5,900 pixels) judges its light
LIGHT_BIN = 16  # grey levels of the rest view per bin of the first, robust fit
LIGHT_ROUNDS = 2  # least-squares refits without the pixels far from the line (hands, pressed keys)


def _line(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float] | None:
    """(a, b) of y = a x + b by (weighted) least squares; None when x does not vary."""
    w = np.ones_like(x) if weight is None else weight
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    spread = float(np.average((x - mx) ** 2, weights=w))
    if spread < 1.0:
        return None
    a = float(np.average((x - mx) * (y - my), weights=w)) / spread
    return a, float(my - a * mx)


def match_light(strip: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """``strip`` (uint8, (H, W), or (N, H, W): each on its own) with its grey levels mapped onto those
    of ``rest``, the keyboard at rest.

    The model reads each strip's difference from the rest view, taken once at lock time; a camera's
    auto exposure or the room's light changing afterwards (20 % darker, or 20 grey levels brighter)
    otherwise reads as keys changing everywhere. The map is the line strip = a * rest + b: first
    through the median strip level of each band of rest levels (hands covering under half of each
    band leave it alone), then refitted by least squares ``LIGHT_ROUNDS`` times without the pixels far
    from it (hands, pressed keys), and inverted through a lookup table. Always a new array, never
    ``strip`` itself: the runtime keeps matched strips while the warp reuses its buffer."""
    if strip.ndim == 3:
        return np.stack([match_light(one, rest) for one in strip]) if len(strip) else strip.copy()
    s = strip[::LIGHT_SAMPLE, ::LIGHT_SAMPLE].ravel().astype(np.float32)
    r = rest[::LIGHT_SAMPLE, ::LIGHT_SAMPLE].ravel().astype(np.float32)
    bins = r.astype(np.int32) // LIGHT_BIN
    counts = np.bincount(bins)
    middles = np.cumsum(counts) - (counts + 1) // 2  # each bin's middle, in samples sorted by bin, then level
    filled = counts >= 20
    by_rest, by_strip = (np.sort(bins * 256 + v.astype(np.int32)) % 256 for v in (r, s))
    fit = _line(by_rest[middles[filled]].astype(np.float32), by_strip[middles[filled]].astype(np.float32),
                counts[filled].astype(np.float32)) if filled.sum() >= 2 else None
    for _ in range(LIGHT_ROUNDS):
        if fit is None:  # the rest view is one grey level: nothing to judge the light by
            return strip.copy()
        miss = np.abs(s - (fit[0] * r + fit[1]))
        keep = miss < 2.5 * 1.4826 * float(np.median(miss)) + 3.0
        fit = _line(r[keep], s[keep]) if keep.sum() >= 100 else None
    if fit is None or not 0.25 < fit[0] < 4.0:  # not a change of light: leave the strip as it is
        return strip.copy()
    a, b = fit
    table = np.clip(np.round((np.arange(256, dtype=np.float32) - b) / a), 0, 255).astype(np.uint8)
    return cv2.LUT(strip, table)


def motion_batches(strips: np.ndarray, rest: np.ndarray, stride: int, chunk: int):
    """Consecutive (N, H, W) strips in batches of ``chunk``, light-matched (``match_light``): (batch, the
    strips ``stride`` frames before each of it) pairs, the first ``stride`` strips standing in as their
    own. Each batch is matched with the frames before it, so a long clip is never copied whole."""
    for i in range(0, len(strips), chunk):
        first = max(i - stride, 0)
        matched = match_light(strips[first : i + chunk], rest)
        before = np.maximum(np.arange(i, min(i + chunk, len(strips))) - stride, 0) - first
        yield matched[i - first :], matched[before]


def lock_of_take(take: Take) -> Lock:
    """The take's keyboard lock: from its labelled corners when it has them, else found in its video."""
    meta = take.meta()
    if "corners" in meta and "image_size" in meta:
        k1 = float(meta.get("lens", {}).get("k1", 0.0))
        ideal = np.array(meta.get("lens", {}).get("corners_undistorted", meta["corners"]), np.float32)
        homography = cv2.getPerspectiveTransform(ideal, canonical_corners(K.CANONICAL_SIZE).astype(np.float32))
        return Lock(np.array(meta["corners"], float), tuple(meta["image_size"]), int(meta["lowest_key"]),
                    int(meta["num_keys"]), homography, K.CANONICAL_SIZE, k1)
    from pianoedge.calibration.acquire import lock_video

    return lock_video(take.video)[0]


def to_strip(lock: Lock, frame: np.ndarray, size: tuple[int, int] = STRIP_SIZE, out: dict | None = None) -> np.ndarray:
    """One frame as the model sees it: warped to ``size`` (``Lock.warp``), grey (converted after the warp: far fewer pixels).
    ``out``: buffers reused from frame to frame (see ``Lock.warp``)."""
    strip = lock.warp(frame, size, out)
    if strip.ndim == 2:
        return strip
    if out is None:
        return cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY)
    out["grey"] = cv2.cvtColor(strip, cv2.COLOR_BGR2GRAY, dst=out.get("grey"))
    return out["grey"]


def key_pool(num_keys: int, lowest: int, width: int) -> np.ndarray:
    """(keys, width) averaging matrix: row k averages the strip columns of key k's span (the model's per-key pooling)."""
    layout = K.layout(num_keys, lowest)
    spans = layout.spans_px(width)
    pool = np.zeros((num_keys, width), np.float32)
    for k, (left, right) in enumerate(spans):
        a, b = int(np.floor(left)), max(int(np.ceil(right)), int(np.floor(left)) + 1)
        pool[k, a:min(b, width)] = 1.0
    pool /= pool.sum(axis=1, keepdims=True)
    return pool


def black_flags(num_keys: int, lowest: int) -> np.ndarray:
    """(keys,) 1.0 for black keys: the model's per-key input beside the pooled features."""
    return K.layout(num_keys, lowest).black_mask.astype(np.float32)


@dataclass
class TakeData:
    """A whole take as model input and targets."""

    name: str
    strips: np.ndarray  # (frames, H, W) uint8
    rest: np.ndarray  # (H, W) uint8: the rest view as the runtime has it for a file (``rest_frames``)
    labels: dict[str, np.ndarray]  # frame_labels() arrays, (frames, 88)
    notes: list[Note]
    lowest: int
    num_keys: int
    fps: float
    key_change: np.ndarray | None = None  # (frames, KEY_CHANGE_BANDS, W) uint8 studio label, when the take has it

    @cached_property
    def camera_rest(self) -> np.ndarray:
        """The rest view a live camera would have had of this take (``rest_frames(camera=True)``)."""
        return rest_view(self.strips[rest_frames(len(self.strips), self.fps, camera=True)], self.num_keys, self.lowest)


def read_strips(take: Take, lock: Lock, size: tuple[int, int] = STRIP_SIZE) -> tuple[np.ndarray, float]:
    """Every frame of a take's video as a (frames, H, W) strip array, and the video's frame rate
    (from the container, else the take's metadata, else 30)."""
    cap = cv2.VideoCapture(str(take.video))
    fps = cap.get(cv2.CAP_PROP_FPS) or float(take.meta().get("fps", 30.0))
    strips = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        strips.append(to_strip(lock, frame, size))
    cap.release()
    if not strips:
        raise PianoedgeError(f"cannot read any frame from {take.video}: is it a video OpenCV can decode?")
    return np.stack(strips), fps


def load_take(take: Take, size: tuple[int, int] = STRIP_SIZE) -> TakeData:
    lock = lock_of_take(take)
    strips, fps = read_strips(take, lock, size)
    notes = take.notes()
    rest = rest_view(strips[rest_frames(len(strips), fps)], lock.num_keys, lock.lowest_key)
    return TakeData(take.name, strips, rest, frame_labels(notes, fps, len(strips)), notes,
                    lock.lowest_key, lock.num_keys, fps, key_change_of(take, strips.shape))


def key_change_of(take: Take, strips_shape: tuple[int, ...]) -> np.ndarray | None:
    """The take's key-change label (``KEY_CHANGE_LABEL``) when its NAME.npz has one for every strip, else None."""
    if not take.labels_path.is_file():
        return None
    with np.load(take.labels_path) as labels:
        if KEY_CHANGE_LABEL not in labels.files:
            return None
        change = labels[KEY_CHANGE_LABEL]
    frames, _, width = strips_shape
    return change if change.shape == (frames, KEY_CHANGE_BANDS, width) else None
