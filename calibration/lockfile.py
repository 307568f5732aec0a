"""``lock.json`` (CONTRACTS.md): the fixed mapping from camera pixels to the canonical keyboard strip.

Beyond the contract's fields, ``lens`` holds the radial distortion (``k1``, the model of
``calibration.lens``): when present, pixels are undistorted first and ``homography`` maps the
undistorted image to the strip; ``corners`` are always in the recorded image.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError

from .lens import MODEL, Lens
from .lock import FitProbe, KeyboardFit


@dataclass
class Lock:
    corners: np.ndarray  # (4, 2) recorded-image pixels, CONTRACTS order
    image_size: tuple[int, int]
    lowest_key: int
    num_keys: int
    homography: np.ndarray  # (3, 3) undistorted image -> canonical strip
    canonical_size: tuple[int, int] = K.CANONICAL_SIZE
    k1: float = 0.0

    @property
    def lens(self) -> Lens:
        return Lens(self.k1, *self.image_size)

    @classmethod
    def from_fit(cls, fit: KeyboardFit, image_size: tuple[int, int], k1: float = 0.0) -> Lock:
        world_to_canon = _world_to_canonical(fit.x0_mm, fit.width_mm, K.CANONICAL_SIZE)
        homography = world_to_canon @ np.linalg.inv(fit.world_to_image)
        corners = Lens(k1, *image_size).distort(fit.corners())
        return cls(corners, tuple(image_size), fit.lowest, fit.num_keys, homography / homography[2, 2], K.CANONICAL_SIZE, k1)

    def to_json(self) -> dict:
        data = {
            "corners": np.round(self.corners, 3).tolist(),
            "image_size": list(self.image_size),
            "lowest_key": self.lowest_key,
            "num_keys": self.num_keys,
            "homography": self.homography.tolist(),
            "canonical_size": list(self.canonical_size),
        }
        if self.k1:
            data["lens"] = {"k1": self.k1, "model": MODEL}
        return data

    def save(self, path: str | Path) -> None:
        try:
            Path(path).write_text(json.dumps(self.to_json(), indent=1))
        except OSError as exc:
            raise PianoedgeError(f"cannot write lock file {path}: {exc.strerror}") from None

    @classmethod
    def load(cls, path: str | Path) -> Lock:
        path = Path(path)
        fix = f"make a new one with: pianoedge lock --video VIDEO -o {path}"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PianoedgeError(f"lock file not found: {path}; {fix}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PianoedgeError(f"lock file {path} is not readable JSON ({exc}); {fix}") from None
        try:
            lock = cls(np.array(data["corners"], float).reshape(4, 2), tuple(int(v) for v in data["image_size"]),
                       int(data["lowest_key"]), int(data["num_keys"]), np.array(data["homography"], float).reshape(3, 3),
                       tuple(int(v) for v in data.get("canonical_size", K.CANONICAL_SIZE)), float(data.get("lens", {}).get("k1", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise PianoedgeError(f"lock file {path} is missing or has a bad field ({exc}); {fix}") from None
        if K.KEYBOARD_SIZES.get(lock.num_keys, (None,))[0] != lock.lowest_key:
            raise PianoedgeError(f"lock file {path}: a {lock.num_keys}-key keyboard cannot start at pitch {lock.lowest_key}; {fix}")
        if not np.all(np.isfinite(lock.homography)) or abs(np.linalg.det(lock.homography)) < 1e-12:
            raise PianoedgeError(f"lock file {path}: the homography is singular; {fix}")
        return lock

    def warp(self, frame: np.ndarray, size: tuple[int, int] | None = None, out: dict | None = None) -> np.ndarray:
        """The canonical strip of a recorded frame (grey or BGR, kept as given), or, with ``size`` (width,
        height), the strip at that width (scaled alike across and along the keys) in ``height`` rows: rows
        past the keys' front edge show what lies in front of it (fingers striking there, the keys' front
        faces). One precomputed remap does the lens and the homography together and touches only the
        output's pixels, whatever the camera's resolution. ``out``: buffers kept by the caller between
        frames (the live pipeline), so that no frame allocates."""
        self._require_size(frame)
        out = {} if out is None else out
        maps = self._maps_for(tuple(size or self.canonical_size))
        out["strip"] = cv2.remap(frame, *maps, cv2.INTER_LINEAR, dst=out.get("strip"), borderMode=cv2.BORDER_CONSTANT)
        return out["strip"]

    @cached_property
    def _strip_maps(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        return {}

    def _maps_for(self, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """For every pixel of a strip of ``size``, where it lies in the recorded image (the strip's scale,
        the inverse homography, then the lens); made once per size."""
        if size in self._strip_maps:
            return self._strip_maps[size]
        w, h = size
        scale = self.canonical_size[0] / w
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        canonical = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * scale - 0.5
        ideal = cv2.perspectiveTransform(canonical.reshape(-1, 1, 2), np.linalg.inv(self.homography))
        recorded = self.lens.distort(ideal.reshape(-1, 2)).astype(np.float32).reshape(h, w, 2)
        self._strip_maps[size] = cv2.convertMaps(recorded[..., 0], recorded[..., 1], cv2.CV_16SC2)
        return self._strip_maps[size]

    @cached_property
    def _undistort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lens.undistort_maps()

    def keys_out_of_view(self) -> list[int]:
        """Pitches of the keys whose front half lies outside the image (the lock extrapolates them)."""
        spans = K.layout(self.num_keys, self.lowest_key).spans_px(self.canonical_size[0])
        ch = self.canonical_size[1]
        centres = np.column_stack([spans.mean(axis=1), np.full(len(spans), 0.8 * ch)])
        ideal = cv2.perspectiveTransform(centres.reshape(-1, 1, 2), np.linalg.inv(self.homography)).reshape(-1, 2)
        pts = self.lens.distort(ideal)
        w, h = self.image_size
        outside = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
        return [self.lowest_key + int(i) for i in np.flatnonzero(outside)]

    def at_size(self, image_size: tuple[int, int]) -> Lock:
        """This lock for the same view recorded at another size, as ``cv2.resize`` scales it (pixel
        centres: x -> (x + 0.5) * scale - 0.5); the lens model is relative to the image width, so k1 stays."""
        sx, sy = image_size[0] / self.image_size[0], image_size[1] / self.image_size[1]
        to_new = np.array([[sx, 0, 0.5 * (sx - 1)], [0, sy, 0.5 * (sy - 1)], [0, 0, 1]])
        corners = cv2.perspectiveTransform(self.corners.reshape(-1, 1, 2), to_new).reshape(-1, 2)
        homography = self.homography @ np.linalg.inv(to_new)
        return replace(self, corners=corners, image_size=tuple(image_size), homography=homography / homography[2, 2])

    def with_homography(self, homography: np.ndarray) -> Lock:
        """The same keyboard under another image -> strip homography (e.g. after the camera moved)."""
        ideal = cv2.perspectiveTransform(canonical_corners(self.canonical_size).reshape(-1, 1, 2), np.linalg.inv(homography))
        return replace(self, homography=homography / homography[2, 2], corners=self.lens.distort(ideal.reshape(-1, 2)))

    def undistorted_grey(self, frame: np.ndarray) -> np.ndarray:
        """A recorded frame as the homography expects it: grey and, with a lens, undistorted."""
        self._require_size(frame)
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        return cv2.remap(grey, *self._undistort_maps, cv2.INTER_LINEAR) if self.k1 else grey

    def check(self, frame: np.ndarray) -> float:
        """How well this lock still fits a new frame (0..1): the share of black keys that are where it
        says. Cheap (a few thousand samples of the frame as recorded, the lens applied to the sample
        points, worked out once per lock: about 0.1 ms): the runtime calls it on every frame and re-locks
        when it stays below ``acquire.MIN_FIT_SCORE`` (camera bumped, piano moved)."""
        self._require_size(frame)
        return self._probe.score(frame)

    @cached_property
    def _probe(self) -> FitProbe:
        size = (self.image_size[1], self.image_size[0])
        return FitProbe.of(self.fit().world_to_image, self.lowest_key, self.num_keys, self.lens.distort if self.k1 else None, size)

    def fit(self) -> KeyboardFit:
        """The lock as a world (mm) -> undistorted image homography, for checking it against new frames."""
        fit = KeyboardFit(np.eye(3), self.lowest_key, self.num_keys)
        fit.world_to_image = np.linalg.inv(self.homography) @ _world_to_canonical(fit.x0_mm, fit.width_mm, self.canonical_size)
        return fit

    def _require_size(self, frame: np.ndarray) -> None:
        if frame.shape[1::-1] != tuple(self.image_size):
            raise PianoedgeError(f"frame is {frame.shape[1]}x{frame.shape[0]} but the lock was made at "
                                 f"{self.image_size[0]}x{self.image_size[1]}: lock again at this resolution")


def canonical_corners(size: tuple[int, int]) -> np.ndarray:
    """(4, 2) corners of the white-key surface on a canonical strip of ``size``, in CONTRACTS order."""
    w, h = size
    return np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])


def _world_to_canonical(x0_mm: float, width_mm: float, canonical_size: tuple[int, int]) -> np.ndarray:
    """World mm (x from A0's edge, y from the front) to the canonical strip: x across the keys (left
    = low), y from the back (0) to the front (strip height)."""
    cw, ch = canonical_size
    back = K.WHITE_KEY_LENGTH_MM
    return np.array([[cw / width_mm, 0, -x0_mm * cw / width_mm], [0, -ch / back, ch], [0, 0, 1]])
