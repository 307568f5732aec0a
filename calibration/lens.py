"""The lens model shared by the lock, the runtime and the studio: OpenCV radial distortion, k1 only.

The principal point is the image centre and the focal length used for normalisation is the image
width in pixels (the model ``../shared/data/real/furelise.json`` documents). ``k1 < 0`` is barrel
distortion. Undistortion is one precomputed remap.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: how lock.json and studio takes describe this model (the words of ../shared/data/real/furelise.json)
MODEL = "OpenCV radial distortion k1 only, principal point at the image centre, focal length = image width in pixels"


@dataclass(frozen=True)
class Lens:
    k1: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.width, 0, self.width / 2], [0, self.width, self.height / 2], [0, 0, 1]], float)

    @property
    def coefficients(self) -> np.ndarray:
        return np.array([self.k1, 0.0, 0.0, 0.0])

    def distort(self, ideal: np.ndarray) -> np.ndarray:
        """Where the lens puts ideal (undistorted) pixel coordinates, (N, 2)."""
        pts = np.asarray(ideal, float).reshape(-1, 2)
        if self.k1 == 0.0:
            return pts.copy()
        m = self.matrix
        norm = (pts - m[:2, 2]) / m[0, 0]
        return norm * (1 + self.k1 * (norm**2).sum(axis=1, keepdims=True)) * m[0, 0] + m[:2, 2]

    def undistort(self, recorded: np.ndarray) -> np.ndarray:
        """Ideal pixel coordinates of recorded ones, (N, 2)."""
        pts = np.asarray(recorded, float).reshape(-1, 1, 2)
        if self.k1 == 0.0:
            return pts.reshape(-1, 2).copy()
        return cv2.undistortPoints(pts, self.matrix, self.coefficients, P=self.matrix).reshape(-1, 2)

    def undistort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap maps from the recorded image to the ideal one."""
        return cv2.initUndistortRectifyMap(self.matrix, self.coefficients, None, self.matrix,
                                           (self.width, self.height), cv2.CV_16SC2)

    def undistort_image(self, image: np.ndarray) -> np.ndarray:
        """The ideal image of a recorded one (the same array when the lens is straight)."""
        return cv2.remap(image, *self.undistort_maps(), cv2.INTER_LINEAR) if self.k1 else image

    def distort_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap maps that turn an ideal image into what the lens records (the studio's last step)."""
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        ideal = self.undistort(np.stack([xs.ravel(), ys.ravel()], axis=1)).astype(np.float32).reshape(self.height, self.width, 2)
        return cv2.convertMaps(ideal[..., 0], ideal[..., 1], cv2.CV_16SC2)
