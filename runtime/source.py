"""Frame sources named by URI (CONTRACTS): frames with their capture timestamps.

- ``file://clip.mp4`` or a bare path: anything OpenCV reads; timestamps are frame index / fps, every
  frame is delivered (offline work never drops).
- ``v4l2:///dev/video0`` or a camera index: a V4L2 camera (MJPG where the camera offers it);
  ``csi://N``: a Jetson CSI camera through GStreamer (nvarguscamerasrc); ``picam://N``: a Raspberry Pi
  camera through picamera2. Live sources keep only the newest frame (a reader thread), so a slow
  consumer drops the oldest frames and counts them.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pianoedge.errors import PianoedgeError

READ_AHEAD = 4  # decoded frames a file source may hold ahead of the pipeline
STALL_S = 2.0  # a live source silent this long has stalled


@dataclass
class Frame:
    image: np.ndarray  # BGR
    index: int  # position in the stream (live: counts dropped frames too)
    time: float  # capture time in seconds: stream time for files, time.monotonic() for cameras
    stamp: float = 0.0  # time.monotonic() when the frame was in memory (cameras: its capture)
    capture_ms: float = 0.0  # how long reading (decoding, or waiting for the sensor) it took


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
        self._closed = False
        self._reader: threading.Thread | None = None

    def __iter__(self):
        """Frames in order; a reader thread decodes ahead (OpenCV releases the GIL) so that decoding overlaps
        the caller's work, a few frames at most (``READ_AHEAD``)."""
        self._frames = queue.Queue(maxsize=READ_AHEAD)
        self._reader = threading.Thread(target=self._read_ahead, daemon=True)
        self._reader.start()
        while (frame := self._frames.get()) is not None:
            # a file's frame is "captured" when the pipeline takes it, its decoding time before that: so end-to-end
            # latency means what it would for a camera, not how far the reader ran ahead
            frame.stamp = time.monotonic() - frame.capture_ms / 1000
            yield frame

    def _read_ahead(self) -> None:
        index, image, took = 0, self._first, 0.0
        while image is not None and not self._closed:
            self._frames.put(Frame(image, index, index / self.fps, time.monotonic(), took))
            started = time.monotonic()
            ok, image = self._cap.read()
            took = (time.monotonic() - started) * 1000
            index += 1
            image = image if ok else None
        self._frames.put(None)

    def close(self) -> None:
        """Stop the reader (it may be waiting on a full queue: drain it) before releasing the decoder."""
        self._closed = True
        if self._reader is not None:
            while self._reader.is_alive():
                try:
                    self._frames.get(timeout=0.1)
                except queue.Empty:
                    pass
        self._cap.release()


class LiveSource:
    """A camera: a reader thread keeps only the newest frame, stamped with time.monotonic() at capture;
    frames the consumer did not take in time are dropped and counted. Subclasses give ``_grab()``."""

    live = True
    frame_count = None

    def _start(self, fps: float) -> None:
        self.fps, self.dropped = fps, 0
        self._latest: Frame | None = None
        self._ready = threading.Condition()
        self._running, self._captured = True, 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _grab(self) -> np.ndarray | None:
        raise NotImplementedError

    def _read(self) -> None:
        while self._running:
            started = time.monotonic()
            image = self._grab()
            stamp = time.monotonic()
            with self._ready:
                if image is None:
                    self._running = False
                else:
                    if self._latest is not None:
                        self.dropped += 1  # the consumer did not take the previous frame in time
                    self._latest = Frame(image, self._captured, stamp, stamp, (stamp - started) * 1000)
                    self._captured += 1
                self._ready.notify()

    def __iter__(self):
        """Newest frames as they come; a camera that delivers nothing for ``STALL_S`` is a fault (the caller's
        shutdown path then releases every held note)."""
        while True:
            with self._ready:
                waited = time.monotonic()
                while self._latest is None and self._running:
                    if time.monotonic() - waited > STALL_S:
                        raise PianoedgeError(f"the camera stalled (no frame for {STALL_S:.0f} s): check its cable and power")
                    self._ready.wait(timeout=0.1)
                frame, self._latest = self._latest, None
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self._release()

    def _release(self) -> None:
        pass


class CameraSource(LiveSource):
    """A V4L2 camera by index or device path, MJPG where offered."""

    def __init__(self, device: int | str, width: int = 1280, height: int = 720, fps: float = 30.0):
        self._cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not self._cap.isOpened():
            raise PianoedgeError(f"cannot open camera {device}: is it plugged in, and is this user in the 'video' group?")
        self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._start(float(self._cap.get(cv2.CAP_PROP_FPS)) or fps)

    def _grab(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return image if ok else None

    def _release(self) -> None:
        self._cap.release()


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The GStreamer pipeline of a Jetson CSI camera into OpenCV: Argus -> NVMM -> BGR, newest buffer only."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
            f"video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false")


class CsiSource(CameraSource):
    """A Jetson CSI camera (``csi://N``) through GStreamer's nvarguscamerasrc."""

    def __init__(self, sensor: int, width: int = 1280, height: int = 720, fps: int = 30):
        self._cap = cv2.VideoCapture(csi_pipeline(sensor, width, height, fps), cv2.CAP_GSTREAMER)
        if not self._cap.isOpened():
            raise PianoedgeError(f"cannot open CSI camera {sensor}: needs a Jetson with the camera connected and OpenCV "
                                 f"built with GStreamer (JetPack's python3-opencv); check with: gst-launch-1.0 nvarguscamerasrc ! fakesink")
        self._start(float(fps))


class PiCameraSource(LiveSource):
    """A Raspberry Pi camera (``picam://N``) through picamera2 (libcamera); two buffers, newest frame only."""

    def __init__(self, camera: int, width: int = 1280, height: int = 720, fps: float = 30.0):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise PianoedgeError("picamera2 is not installed: on Raspberry Pi OS run apt install python3-picamera2 "
                                 "(and create the venv with --system-site-packages)") from None
        try:
            self._camera = Picamera2(camera)
        except (IndexError, RuntimeError) as exc:
            raise PianoedgeError(f"cannot open Raspberry Pi camera {camera} ({exc}): is it connected and enabled?") from None
        config = self._camera.create_video_configuration(main={"size": (width, height), "format": "RGB888"},
                                                         buffer_count=2, controls={"FrameRate": fps})
        self._camera.configure(config)
        self._camera.start()
        self._start(float(fps))

    def _grab(self) -> np.ndarray | None:
        return self._camera.capture_array("main")  # RGB888 is B, G, R in memory: what OpenCV expects

    def _release(self) -> None:
        self._camera.stop()
        self._camera.close()


def open_source(uri: str | Path):
    """A source from a CONTRACTS URI: a path or ``file://``, ``v4l2:///dev/videoN`` or a camera index."""
    text = str(uri)
    if text.startswith("file://"):
        return FileSource(text[len("file://"):])
    if text.startswith("v4l2://"):
        return CameraSource(text[len("v4l2://"):])
    if text.startswith("csi://"):
        return CsiSource(_index(text, "csi://"))
    if text.startswith("picam://"):
        return PiCameraSource(_index(text, "picam://"))
    if text.isdigit():
        return CameraSource(int(text))
    if "://" in text:
        scheme = text.split("://")[0]
        raise PianoedgeError(f"source {text!r}: unknown scheme {scheme}:// (use a video path, file://PATH, "
                             f"v4l2:///dev/videoN, csi://N, picam://N or a camera index)")
    return FileSource(text)


def _index(uri: str, scheme: str) -> int:
    rest = uri[len(scheme):] or "0"
    if not rest.isdigit():
        raise PianoedgeError(f"source {uri!r}: expected {scheme}N with a camera number, e.g. {scheme}0")
    return int(rest)
