"""Writing real H.264 video through the ffmpeg program (Debian's ``ffmpeg``, or imageio-ffmpeg's binary)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from .errors import PianoedgeError


def find_ffmpeg() -> str:
    """Path of an ffmpeg executable, or a clear error saying how to get one."""
    path = shutil.which("ffmpeg")
    if path:
        return path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise PianoedgeError("ffmpeg not found: install it (apt-get install ffmpeg) or pip install imageio-ffmpeg") from None


class H264Writer:
    """Pipes BGR frames into ffmpeg: browser-playable H.264 MP4, bit-exact for the same frames and settings."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, crf: int = 23, preset: str = "veryfast"):
        self.path = Path(path)
        self.shape = (height, width, 3)
        cmd = [
            find_ffmpeg(), "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
            "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p",
            "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
            "-movflags", "+faststart", str(self.path),
        ]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {self.shape}, got {frame.dtype} {frame.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.close()

    def close(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        if self._proc.wait() != 0:
            raise PianoedgeError(f"ffmpeg could not write {self.path}: {err or 'unknown error'}")

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
