"""Follow a lock after the camera is bumped: SIFT matches between the view at lock time and a new frame.

The full lock (``acquire.lock_frames``) needs several frames for the hands to fade. After a bump the
keyboard is the same, only seen from slightly elsewhere, so one frame is enough: SIFT keypoints of the
reference view (case, nameboard, key ends, room) are matched to the new frame, RANSAC finds the
image-to-image homography, and the lock's homography is carried over. The piano repeats itself every
octave, so matches are also required to agree with the motion of the rest (RANSAC) and the result is
checked the usual way (black keys where the lock says) before it is trusted; the caller falls back to a
full lock when this returns None.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .lockfile import Lock

RATIO = 0.75  # Lowe's ratio test
MIN_INLIERS = 30  # matches that must agree on the camera's motion
MIN_CHECK = 0.7  # share of black keys that must be where the carried-over lock says


@dataclass
class Reference:
    """SIFT features of the undistorted view the lock was made on."""

    keypoints: np.ndarray  # (N, 2) undistorted pixels
    descriptors: np.ndarray  # (N, 128) float32

    @classmethod
    def of(cls, lock: Lock, frame: np.ndarray) -> Reference:
        return cls(*_features(lock.undistorted_grey(frame)))


def _features(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keypoints, descriptors = cv2.SIFT_create(nfeatures=2000).detectAndCompute(grey, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    return np.array([k.pt for k in keypoints], np.float32), descriptors


def follow(lock: Lock, reference: Reference, frame: np.ndarray) -> Lock | None:
    """The lock carried over to ``frame`` (same camera, moved), or None when the motion cannot be
    found reliably."""
    points, descriptors = _features(lock.undistorted_grey(frame))
    if len(points) < MIN_INLIERS or len(reference.keypoints) < MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(reference.descriptors, descriptors, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < RATIO * n.distance]
    if len(good) < MIN_INLIERS:
        return None
    src = reference.keypoints[[m.queryIdx for m in good]]
    dst = points[[m.trainIdx for m in good]]
    motion, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    if motion is None or inliers.sum() < MIN_INLIERS:
        return None
    moved = lock.with_homography(lock.homography @ np.linalg.inv(motion))
    return moved if moved.check(frame) >= MIN_CHECK else None
