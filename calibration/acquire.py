"""Lock from an image, a video or a camera: gather frames, fade the hands out, fit, check, and say what failed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError

from .lens import Lens
from .lock import KeyboardFit, UnclearKeys, estimate_k1, fit_keyboard, fit_score, keys_go_on_behind
from .lockfile import Lock

FRAMES = 9  # frames combined by their median, so that hands in motion fade out
FIRST_SECONDS = 6.0  # a video's lock frames come from its first seconds ...
RETRY_STRETCHES = 3  # ... or, when the keyboard is not found there, from as many later stretches as long
MIN_FIT_SCORE = 0.6  # share of black keys that must be where the lock says
MIN_AGREEMENT = 0.35  # share of the white keys' possible gap and edge measurements the fit must explain ...
GAPS_SHOW_KEY_PX = 14.0  # ... where white keys are this wide or wider (px); narrower, proportionally less (see _min_agreement)
# a fit of more keys taken for the whole of a smaller fit explains about as many measurements, or more: in
# the test views and 144 fresh takes under 3 draws each, the real wholes explained 0.89-1.40 times the part's, a wrong lens's 0.64-0.72
WHOLE_EXPLAINS = 0.8
MOSTLY_AGREE = 0.6  # below MIN_AGREEMENT, a fit that explains this share of the measurements it made lacks evidence (few show)
KEYFRAME_INTERVAL = 250  # frames between H.264 keyframes at most, as x264 writes them by default
LOCK_WIDTH = 1280  # wider views are locked at this width: the time grows with the pixels, and the pixel tolerances were set at 720p
FINDER_FAULTS = (cv2.error, ValueError, IndexError, ZeroDivisionError, np.linalg.LinAlgError)  # a view the geometry code did not foresee


def frames_from_video(path: str | Path, count: int = FRAMES, seconds: float = FIRST_SECONDS, start: float = 0.0) -> list[np.ndarray]:
    """``count`` frames spread over ``seconds`` of a video from ``start`` (seconds), read by ``frames_at``."""
    path = Path(path)
    if not path.is_file():
        raise PianoedgeError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.release()
    return frames_at(path, spread_frames(total, fps, count, seconds, start))


def spread_frames(total: int, fps: float, count: int = FRAMES, seconds: float | None = FIRST_SECONDS, start: float = 0.0) -> np.ndarray:
    """Indices (sorted, unique) of ``count`` frames spread over ``seconds`` from ``start`` (seconds) of a
    video of ``total`` frames at ``fps``; with ``seconds`` None, over all of it from ``start``."""
    if total <= 0:
        return np.array([], int)
    first = min(int(start * fps), total - 1)
    last = total if seconds is None else min(total, int((start + seconds) * fps))
    return np.unique(np.linspace(first, max(last - 1, first), count).astype(int))


def frames_at(path: str | Path, indices) -> list[np.ndarray]:
    """A video's frames at ``indices`` (sorted), by whichever costs fewer decodes: every frame in order
    up to the last, or a seek to each (a seek decodes from the keyframe before it: half of
    ``KEYFRAME_INTERVAL`` frames on average)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    if len(indices) and indices[-1] + 1 > len(indices) * KEYFRAME_INTERVAL / 2:
        for index in indices:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
    else:
        wanted = set(int(i) for i in indices)
        for index in range(max(wanted, default=-1) + 1):
            if not cap.grab():
                break
            if index in wanted:
                ok, frame = cap.retrieve()
                if ok:
                    frames.append(frame)
    cap.release()
    if not frames:
        raise PianoedgeError(f"cannot read any frame from {path}: is it a video file OpenCV can decode (mp4/avi/mkv)?")
    return frames


def video_seconds(path: str | Path) -> float:
    """A video's length as its container states it (0 when it cannot be opened)."""
    cap = cv2.VideoCapture(str(path))
    seconds = cap.get(cv2.CAP_PROP_FRAME_COUNT) / (cap.get(cv2.CAP_PROP_FPS) or 30.0) if cap.isOpened() else 0.0
    cap.release()
    return seconds


def lock_video(path: str | Path, num_keys: int | None = None, k1: float | None = None) -> tuple[Lock, list[np.ndarray]]:
    """Lock on frames from a video's first seconds; when that fails and the video goes on, on those of
    ``RETRY_STRETCHES`` later stretches as long, spread to its end (hands that rested on an end at first
    move on). Returns the lock and the frames it was made on (where the keys at rest are seen too);
    the first attempt's error when none gives a lock."""
    frames = frames_from_video(path)
    try:
        return lock_frames(frames, num_keys, k1), frames
    except PianoedgeError as failure:
        later = max(video_seconds(path) - FIRST_SECONDS, 0.0)
        for start in np.linspace(0.0, later, RETRY_STRETCHES + 1)[1:] if later > 0 else ():
            try:  # a stretch that cannot be read (a container that seeks badly) is one more that gives no lock
                frames = frames_from_video(path, start=float(start))
                return lock_frames(frames, num_keys, k1), frames
            except PianoedgeError:
                continue
        raise failure from None


def frames_from_image(path: str | Path) -> list[np.ndarray]:
    frame = cv2.imread(str(path))
    if frame is None:
        raise PianoedgeError(f"cannot read image {path}: give a PNG or JPEG file")
    return [frame]


def frames_from_camera(index: int, count: int = FRAMES, seconds: float = 2.0) -> list[np.ndarray]:
    """``count`` frames from a V4L2 camera over about ``seconds`` (hands may move meanwhile)."""
    cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
    if not cap.isOpened():
        raise PianoedgeError(f"cannot open camera {index}: check the cable and that /dev/video{index} exists")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    step = max(int(seconds * fps / count), 1)
    frames, read = [], 0
    while len(frames) < count and read < count * step + 30:
        ok, frame = cap.read()
        read += 1
        if ok and read % step == 0:
            frames.append(frame)
    cap.release()
    if not frames:
        raise PianoedgeError(f"camera {index} gave no frames")
    return frames


FIRST_GUESSES_K1 = (0.0, -0.1, -0.2, 0.05)  # a strongly bent keyboard may need a rough undistortion to lock at all
ALWAYS_TRIED = 2  # the first two guesses are always compared: a bent keyboard can fit the raw image loosely,
# and the lens estimated from that fit's own measurements then says the lens is straight
CLEAR_AGREEMENT = 0.55  # after those, a fit this consistent is taken without trying the other guesses
SAME_LENS = 0.03  # k1 estimates closer than this are not both fitted
LENS_STEP = 0.01  # the step of estimate_k1's search


def _estimate_lens(grey: np.ndarray, num_keys: int | None, clean: bool) -> tuple[list[float], KeyboardFit, float, float]:
    """Candidates for k1 from a first lock: on the image as recorded and after a rough guess of the
    distortion (more guesses while no fit is convincing: under a strong bend the wrong octave can fit
    the raw image loosely; all of them when the guesses disagree on which keys these are; the next one
    when fewer than 88 keys fit best under the latest: the middle 61 keys of a bent 88 fit under two
    guesses, the whole only under a third), keeping the
    fit that agrees best with the keys' edges and black keys (the product of its agreement and
    ``fit_score``, but see ``_whole_keyboard``). The candidates: the most bent estimate of any guess's
    fit (see ``_estimates``) and that best fit's own, when they differ. Also returns the best fit, the
    guess of k1 it was made under (its pixels are ideal under that guess) and its ``fit_score``.
    ``clean``: see ``find_black_keys``."""
    h, w = grey.shape
    failure, fits, unsure = None, [], False
    for tried, guess in enumerate(FIRST_GUESSES_K1, 1):
        image = Lens(guess, w, h).undistort_image(grey)
        try:
            fit = fit_keyboard(image, num_keys, clean=clean)
        except UnclearKeys as exc:
            failure, unsure = failure or exc, True
            continue
        except PianoedgeError as exc:
            failure = failure or exc
            continue
        score = fit_score(image, fit)
        fits.append((fit.agreement * score, score, guess, fit))  # white-key edges and black keys alike
        unsure |= len({(f.lowest, f.num_keys) for *_, f in fits}) > 1
        _, _, best_guess, best = max(fits, key=lambda f: f[0])
        # a smaller keyboard best read under the latest guess may be the middle of a bigger one that the
        # next, more bent guess shows whole (its ends fit only there): that guess is tried too
        settled = best.num_keys == max(K.KEYBOARD_SIZES) or best_guess != guess
        if tried >= ALWAYS_TRIED and not unsure and best.agreement >= CLEAR_AGREEMENT and settled:
            break
    if not fits:
        raise failure
    _, score, guess, fit = _whole_keyboard(max(fits, key=lambda f: f[0]), fits, (w, h))
    estimates = _estimates(fit, fits, (w, h))
    bent, own = max(estimates.values(), key=abs, default=0.0), estimates.get(guess, guess)
    if abs(own - guess) <= LENS_STEP:  # the best fit's own estimate confirms its guess: that fit needs no repeating
        own = guess
    return [bent] if abs(own - bent) < SAME_LENS else [bent, own], fit, guess, score


def _whole_keyboard(best: tuple[float, float, float, KeyboardFit], fits: list[tuple[float, float, float, KeyboardFit]],
                    size: tuple[int, int]) -> tuple[float, float, float, KeyboardFit]:
    """``best`` (agreement times ``fit_score``, ``fit_score``, guess, fit), or a fit of more keys under another guess that ends where it ends (within a white key),
    would itself be accepted and explains about as many of the keys' edge measurements (``WHOLE_EXPLAINS``):
    then the smaller fit is a part of that keyboard whose far end it missed (in the dark, under hands),
    and its higher share of agreeing measurements comes from claiming fewer keys. A keyboard explains
    at least what any part of it does: a bigger fit that explains clearly fewer is another reading,
    under a wrong lens (a 61-key keyboard under k1 -0.17 was taken for 76 keys fitted under +0.05,
    181 px off, when RANSAC drew other samples: take 7041)."""
    _, _, best_guess, best_fit = best
    ends = Lens(best_guess, *size).distort(best_fit.ends())
    key_px = _white_key_px(ends, best_fit.num_keys)
    wholes = [candidate for candidate in fits
              if candidate[3].num_keys > best_fit.num_keys and candidate[3].agreement >= _min_agreement(candidate[3]) and candidate[1] >= MIN_FIT_SCORE
              and _explained(candidate[3]) >= WHOLE_EXPLAINS * _explained(best_fit)
              and np.linalg.norm(ends - Lens(candidate[2], *size).distort(candidate[3].ends()), axis=1).min() < key_px]
    return max(wholes, key=lambda c: (c[3].num_keys, c[0]), default=best)


def _explained(fit: KeyboardFit) -> float:
    """How many of the keys' gap and edge measurements ``fit`` explains, in white keys' worth: its
    agreement is a share of what its white keys allow."""
    return fit.agreement * K.layout(fit.num_keys).num_white


def _estimates(best: KeyboardFit, fits: list[tuple[float, float, float, KeyboardFit]], size: tuple[int, int]) -> dict[float, float]:
    """k1 estimated from the edge measurements of each guess's fit of the same keys as ``best``, by guess.
    The most bent of them is a candidate: a fit measures only the edges near where its own lens model
    puts them, so under a wrong guess it understates the bend (the raw image's fit of a bent keyboard
    finds it straight), and ``estimate_k1`` keeps a bend only where clearly more edges line up under it."""
    return {g: estimate_k1(replace(f, image_points=Lens(g, *size).distort(f.image_points)), size)
            for _, _, g, f in fits if (f.lowest, f.num_keys) == (best.lowest, best.num_keys) and f.image_points is not None}


def _less_bent(k1: float) -> float:
    """The lens one ``LENS_STEP`` closer to straight: where a refit under an estimated lens fails, the
    estimate's own step of uncertainty is tried before the candidate is dropped (a keyboard read at
    k1 +0.04 failed to fit there, and fitted at +0.03 better than under any other lens; seed 5839)."""
    return round(k1 - np.sign(k1) * LENS_STEP, 3)


def _min_agreement(fit: KeyboardFit) -> float:
    """The share of the white keys' gap and edge measurements that ``fit`` must explain: ``MIN_AGREEMENT``,
    lowered in proportion where its white keys are narrower than ``GAPS_SHOW_KEY_PX``. A gap is about
    1 mm of a 23.5 mm key: at 10 px per key it is under half a pixel wide, and blur and compression
    hide more of the gaps the smaller the keyboard is in the image (a 480p view of 88 keys)."""
    return MIN_AGREEMENT * min(1.0, _white_key_px(fit.ends(), fit.num_keys) / GAPS_SHOW_KEY_PX)


def _white_key_px(ends: np.ndarray, num_keys: int) -> float:
    """A white key's mean width (px) along the line between the keyboard's two ``ends`` (``KeyboardFit.ends``)."""
    return float(np.linalg.norm(ends[1] - ends[0])) / K.layout(num_keys).num_white


def _median_frame(greys: list[np.ndarray]) -> np.ndarray:
    """The pixelwise median of grey frames, the same as ``np.median(..., axis=0).astype(np.uint8)``, about
    twice as fast: a partition at the middle alone, with no mean taken per pixel where the count is odd."""
    if len(greys) == 1:
        return greys[0]
    stack, middle = np.stack(greys), len(greys) // 2
    if len(greys) % 2:
        return np.partition(stack, middle, axis=0)[middle]
    both = np.partition(stack, [middle - 1, middle], axis=0)
    return ((both[middle - 1].astype(np.float64) + both[middle]) / 2).astype(np.uint8)


def lock_frames(frames: list[np.ndarray], num_keys: int | None = None, k1: float | None = None) -> Lock:
    """Lock onto the keyboard seen in ``frames`` (one or more of the same view).

    ``k1``: the lens's radial distortion when known; by default it is estimated from the keys'
    straight edges, and the lock is fitted again on the undistorted image when it matters.
    """
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]
    median = _median_frame(greys)  # hands fade
    height, width = median.shape
    small = median if width <= LOCK_WIDTH else cv2.resize(median, (LOCK_WIDTH, round(height * LOCK_WIDTH / width)),
                                                          interpolation=cv2.INTER_AREA)
    try:
        lock = _lock_with_retry(small, num_keys, k1)
    except FINDER_FAULTS as fault:  # never a traceback from a camera's view: say so, and how to get past it
        kind = type(fault).__name__ if type(fault).__module__ == "builtins" else f"{type(fault).__module__}.{type(fault).__name__}"
        raise PianoedgeError(f"no lock: the keyboard finder failed on this view ({kind}: {fault}); film "
                             "the keyboard from another position or give --keys, and please report it with a frame") from fault
    return lock if small is median else lock.at_size((width, height))


def _lock_with_retry(median: np.ndarray, num_keys: int | None, k1: float | None) -> Lock:
    """``_lock``, and when it fails once more measuring the black keys clean; the first failure is the one reported."""
    try:
        return _lock(median, num_keys, k1, clean=False, last_try=False)
    except PianoedgeError as failure:
        try:  # white-key gaps touching black keys can lengthen their blobs enough to skew every fit: measure them without
            return _lock(median, num_keys, k1, clean=True, last_try=True)
        except PianoedgeError:
            raise failure from None


def _lock(median: np.ndarray, num_keys: int | None, k1: float | None, clean: bool, last_try: bool) -> Lock:
    """``lock_frames`` on the frames' median (``clean``: see ``find_black_keys``). On the ``last_try``, a
    first lock whose refits on the undistorted image all failed (after a remap the black keys can fuse
    with a band at their backs) stands, under the guess of the lens it was made with, unless that guess
    is more bent than its own edge measurements say (then an end was found only under the wrong lens,
    e.g. one end hidden by a hand)."""
    h, w = median.shape
    first = guess = None
    candidates = [k1]
    if k1 is None:
        candidates, first, guess, first_score = _estimate_lens(median, num_keys, clean)
    fits, failure = [], None
    first_fit = None if first is None else (first.agreement * first_score, first_score, guess, first)
    for k1 in candidates:
        if first is not None and guess == k1:  # already fitted and scored under this lens
            fits.append(first_fit)
            continue
        for lens in (k1, _less_bent(k1)) if first is not None and abs(k1) >= LENS_STEP else (k1,):  # estimated, bent
            gray = Lens(lens, w, h).undistort_image(median)
            try:  # refit on the undistorted image; a first lock has settled which key is which
                near = Lens(lens, w, h).undistort(Lens(guess, w, h).distort(first.ends())) if first is not None else None
                fit = fit_keyboard(gray, num_keys, near, clean)
            except PianoedgeError as exc:
                failure = failure or exc
                continue
            score = fit_score(gray, fit)
            fits.append((fit.agreement * score, score, lens, fit))  # the lens under which the keys fit best
            break
    if not fits and first is not None and last_try and abs(guess) <= max(map(abs, candidates)) + LENS_STEP:
        fits.append(first_fit)
    if not fits:
        raise failure
    _, score, k1, fit = max(fits, key=lambda f: f[0])
    if fit.agreement < _min_agreement(fit):  # the measurements a fit makes lie near it: few, even if they agree, are no proof
        if fit.agreement >= MOSTLY_AGREE * fit.measured:
            raise PianoedgeError(f"no reliable lock: only {fit.measured:.0%} of the white keys' gaps and front edge show; light "
                                 "the keys evenly (no glare, not overexposed), keep hands off them while locking, or give --keys")
        agree = fit.agreement / fit.measured
        raise PianoedgeError(f"no reliable lock: the white keys' gaps and front edge disagree with the fit ({agree:.0%} agree); "
                             "film the keyboard less steeply, evenly lit, or give --keys")
    if score < MIN_FIT_SCORE:
        raise PianoedgeError(f"no reliable lock: only {score:.0%} of the black keys are where the fit puts them; "
                             "show the whole keyboard, evenly lit, or give --keys")
    if keys_go_on_behind(Lens(k1, w, h).undistort_image(median), fit):  # one more remap: fits do not keep their images
        raise PianoedgeError("no reliable lock: the black keys go on behind where the fit ends the keys (their back ends "
                             "and the case behind them do not show apart); show the keys' back ends, or film from the player's side")
    return Lock.from_fit(fit, (w, h), k1)
