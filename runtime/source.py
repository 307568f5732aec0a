"""Frame sources named by URI (CONTRACTS): frames with their capture timestamps.

- ``file://clip.mp4`` or a bare path: anything OpenCV reads; timestamps are frame index / fps, every
  frame is delivered (offline work never drops).
- ``v4l2:///dev/video0`` or a camera index: a V4L2 camera (MJPG where the camera offers it); a reader
  thread keeps only the newest frame, so a slow consumer drops the oldest frames and counts them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pianoedge.errors import PianoedgeError


@dataclass
class Frame:
    image: np.ndarray  # BGR
    index: int  # position in the stream (live: counts dropped frames too)
    time: float  # capture time in seconds: stream time for files, time.monotonic() for cameras


class FileSource:
    """Every frame of a video file, in order."""

    live = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise PianoedgeError(f"video not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            raise PianoedgeError(f"cannot read {self.path}: not a video OpenCV can decode (corrupt, empty or an unknown "
                                 f"codec); convert it with: ffmpeg -i {self.path.name} -c:v libx264 fixed.mp4")
        self._first = first
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.size = (first.shape[1], first.shape[0])
        self.dropped = 0

    def __iter__(self):
        index, image = 0, self._first
        while image is not None:
            yield Frame(image, index, index / self.fps)
            ok, image = self._cap.read()
            index += 1
            if not ok:
                image = None

    def close(self) -> None:
        self._cap.release()


class CameraSource:
    """A V4L2 camera; only the newest frame is kept (the oldest are dropped and counted)."""

    live = True

    def __init__(self, device: int | str, width: int = 1280, height: int = 720, fps: float = 30.0):
        self._cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not self._cap.isOpened():
            raise PianoedgeError(f"cannot open camera {device}: is it plugged in, and is this user in the 'video' group?")
        self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or fps
        self.frame_count = None
        self.dropped = 0
        self._latest: Frame | None = None
        self._ready = threading.Condition()
        self._running = True
        self._captured = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            ok, image = self._cap.read()
            stamp = time.monotonic()
            with self._ready:
                if not ok:
                    self._running = False
                elif self._latest is not None:
                    self.dropped += 1  # the consumer did not take the previous frame in time
                if ok:
                    self._latest = Frame(image, self._captured, stamp)
                    self._captured += 1
                self._ready.notify()

    def __iter__(self):
        while True:
            with self._ready:
                while self._latest is None and self._running:
                    self._ready.wait(timeout=1.0)
                frame, self._latest = self._latest, None
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self._cap.release()


def open_source(uri: str | Path):
    """A source from a CONTRACTS URI: a path or ``file://``, ``v4l2:///dev/videoN`` or a camera index."""
    text = str(uri)
    if text.startswith("file://"):
        return FileSource(text[len("file://"):])
    if text.startswith("v4l2://"):
        return CameraSource(text[len("v4l2://"):])
    if text.isdigit():
        return CameraSource(int(text))
    if "://" in text:
        scheme = text.split("://")[0]
        raise PianoedgeError(f"source {text!r}: the {scheme}:// source is not available in this build "
                             f"(use a video path, file://PATH, v4l2:///dev/videoN or a camera index)")
    return FileSource(text)
