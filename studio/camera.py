"""A pinhole camera with one radial distortion term, placed wherever a user would clip it.

World frame (millimetres): x along the keyboard from the lowest white key's outer edge, y from the
white keys' front edge towards the fallboard, z up from the white-key surface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianoedge.calibration.lens import Lens


@dataclass
class Camera:
    """Intrinsics ``K``, world-to-camera rotation ``R`` and translation ``t``, image size, lens ``k1``
    (the model of ``pianoedge.calibration.lens``)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    k1: float = 0.0

    @property
    def centre(self) -> np.ndarray:
        """Camera position in the world."""
        return -self.R.T @ self.t

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        """Ideal (undistorted) pixel coordinates of world points, shape (..., 2)."""
        pc = self.to_camera(np.asarray(points, float))
        z = np.maximum(pc[..., 2:3], 1e-3)
        return pc[..., :2] / z * self.K[[0, 1], [0, 1]] + self.K[:2, 2]

    def depth(self, points: np.ndarray) -> np.ndarray:
        return self.to_camera(np.asarray(points, float))[..., 2]

    @property
    def lens(self) -> Lens:
        return Lens(self.k1, self.width, self.height)

    def distort(self, pixels: np.ndarray) -> np.ndarray:
        """Map ideal pixel coordinates to where the lens puts them in the recorded image."""
        return self.lens.distort(pixels)

    def distortion_maps(self) -> tuple[np.ndarray, np.ndarray] | None:
        """cv2.remap maps that turn an ideal render into the distorted recorded image (None if no lens)."""
        return None if self.k1 == 0.0 else self.lens.distort_maps()


def look_at(centre: np.ndarray, target: np.ndarray, up_hint: np.ndarray, roll_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation of a camera at ``centre`` looking at ``target``; image up ~ ``up_hint``."""
    forward = target - centre
    forward /= np.linalg.norm(forward)
    up = up_hint - up_hint.dot(forward) * forward
    up /= np.linalg.norm(up)
    down = -up
    right = np.cross(down, forward)
    roll = np.deg2rad(roll_deg)
    right, down = np.cos(roll) * right + np.sin(roll) * down, -np.sin(roll) * right + np.cos(roll) * down
    R = np.stack([right, down, forward])
    return R, -R @ centre


def place_camera(
    extent: np.ndarray, target: np.ndarray, width: int, height: int, hfov_deg: float,
    tilt_deg: float, yaw_deg: float, roll_deg: float, fill: float, facing_player: bool, k1: float = 0.0,
) -> Camera:
    """Place a camera so the points ``extent`` (N, 3) fill ``fill`` of the frame.

    ``tilt_deg`` is the angle from vertical, ``yaw_deg`` turns the camera around the keyboard's
    vertical axis (0: square to the keys), ``facing_player`` puts it on the music stand looking back.
    """
    f = 0.5 * width / np.tan(np.deg2rad(hfov_deg) / 2)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    azimuth = np.deg2rad(yaw_deg + (180.0 if facing_player else 0.0))
    away = np.array([np.sin(azimuth), -np.cos(azimuth), 0.0])  # horizontal direction to the camera
    tilt = np.deg2rad(tilt_deg)
    direction = np.sin(tilt) * away + np.cos(tilt) * np.array([0.0, 0.0, 1.0])
    up_hint = -away  # image up points away from the camera: the keys' back, or the player
    distance = 1000.0
    aim = target.astype(float).copy()
    for _ in range(6):  # shrink/grow and re-aim until the extent fills the frame as asked
        centre = aim + distance * direction
        R, t = look_at(centre, aim, up_hint, roll_deg)
        cam = Camera(K, R, t, width, height, k1)
        px = cam.project(extent)
        lo, hi = px.min(axis=0), px.max(axis=0)
        scale = max((hi[0] - lo[0]) / (fill * width), (hi[1] - lo[1]) / (fill * height))
        distance *= scale
        # re-aim at the extent's centre so it sits in the middle of the frame
        mid_px = 0.5 * (lo + hi)
        ray = np.linalg.solve(K, np.array([mid_px[0], mid_px[1], 1.0]))
        world_ray = R.T @ ray
        hit = centre + world_ray * ((aim[2] - centre[2]) / world_ray[2])
        aim = aim + (hit - aim) * 0.9 * np.array([1, 1, 0])
    centre = aim + distance * direction
    R, t = look_at(centre, aim, up_hint, roll_deg)
    return Camera(K, R, t, width, height, k1)
