"""``pianoedge run``: the live loop. Source -> pipeline -> sinks, with a one-line terminal view (notes
sounding, fps, processing time, dropped frames). On the end of the input, Ctrl-C, SIGTERM or any fault,
every sounding note is turned off in every sink before the sinks close.
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from pianoedge import keys as K
from pianoedge.calibration import acquire
from pianoedge.errors import PianoedgeError
from pianoedge.models.data import rest_frames
from pianoedge.models.decode import PosteriorTrack

from . import systemd
from .backend import open_backend
from .drift import DriftWatch
from .pipeline import Pipeline, locked, rest_strip
from .sinks import open_sink
from .source import open_source

LOCK_FRAMES_SECONDS = 2.0  # a live source: frames gathered over this long to lock and to see the keys at rest


def _lock_and_frames(source, lock_path: Path | None, keys: int | None):
    """The lock (``lock_path``'s, else found) and the frames to see the keys at rest on: spread over a
    file's first seconds (or later stretches when the keyboard is not found in them: ``acquire.lock_video``),
    or a camera's next two."""
    if not source.live:
        if lock_path is None:
            return acquire.lock_video(source.path, keys)
        frames = acquire.frames_from_video(source.path)
        return locked(frames, lock_path, keys), frames
    frames, start = [], time.monotonic()
    for frame in source:
        if time.monotonic() - start >= LOCK_FRAMES_SECONDS * len(frames) / acquire.FRAMES:
            frames.append(frame.image)
        if len(frames) == acquire.FRAMES:
            return locked(frames, lock_path, keys), frames
    raise PianoedgeError("the camera stopped before the keyboard could be locked")


def _rest_frames(source, lock_frames: list) -> list:
    """The frames to see the keys at rest on: a camera's, those it was locked on; a file's,
    ``data.FILE_REST_FRAMES`` spread over all of it (``data.rest_frames``)."""
    if source.live or not source.frame_count:
        return lock_frames
    return acquire.frames_at(source.path, rest_frames(source.frame_count, source.fps))


class StatusLine:
    """Notes sounding, fps, processing time and dropped frames, redrawn at most 5 times a second."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self.sounding: set[int] = set()
        self.frames, self.started = 0, time.monotonic()
        self.last_draw = self.started
        self.work_ms = 0.0

    def update(self, events, work_ms: float, dropped: int) -> None:
        for e in events:
            (self.sounding.add if e.velocity > 0 else self.sounding.discard)(e.pitch)
        self.frames += 1
        self.work_ms = 0.9 * self.work_ms + 0.1 * work_ms if self.frames > 1 else work_ms
        now = time.monotonic()
        if now - self.last_draw < (0.2 if self.tty else 5.0):
            return
        self.last_draw = now
        notes = " ".join(K.pitch_name(p) for p in sorted(self.sounding)) or "-"
        fps = self.frames / max(now - self.started, 1e-6)
        line = f"notes {notes:<24} | {fps:5.1f} fps | {self.work_ms:5.1f} ms/frame | dropped {dropped}"
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()

    def say(self, text: str) -> None:
        """A message on its own line, the status line redrawn after it."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


class StageTimes:
    """Milliseconds per frame for every stage, from the monotonic clock (what ``pianoedge profile`` reports)."""

    STAGES = ("capture", "warp", "inference", "decode", "sinks")

    def __init__(self):
        self.ms = {name: [] for name in (*self.STAGES, "processing", "end_to_end")}

    def add(self, frame, marks: list[float]) -> None:
        """``marks``: monotonic times before warp, after warp, inference, decode and sinks."""
        self.ms["capture"].append(frame.capture_ms)
        for name, a, b in zip(self.STAGES[1:], marks, marks[1:]):
            self.ms[name].append((b - a) * 1000)
        self.ms["processing"].append((marks[-1] - marks[0]) * 1000)
        self.ms["end_to_end"].append((marks[-1] - frame.stamp) * 1000)


def run(source_uri, sink_specs: list, lock_path: Path | None = None, keys: int | None = None,
        backend_name=None, seconds: float | None = None, status: StatusLine | None = None,
        times: StageTimes | None = None, rtp_allow: list[str] | None = None, head: str = "live",
        track: PosteriorTrack | None = None) -> dict:
    """Run until the source ends, ``seconds`` pass, or a signal; returns counts for the caller to report.
    Source, sinks and backend are each given by name (URI, --midi-out value, --backend name) or as an
    object already opened; ``status`` sees every frame (``update(events, work_ms, dropped)``, ``say(text)``
    for a message such as a lost lock, ``close()``); ``head``: the model's live head (no added latency) or
    its offline head (more accurate; each frame's notes come its look-ahead later); ``track``: keeps every
    frame's onset and key-down posteriors (``Pipeline``), for a file's ``file_notes`` notes."""
    sinks = [open_sink(spec, rtp_allow) if isinstance(spec, str) else spec for spec in sink_specs]
    backend = open_backend(backend_name) if backend_name is None or isinstance(backend_name, str) else backend_name
    source = open_source(source_uri) if isinstance(source_uri, (str, Path)) else source_uri
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    pipeline, watch, frames, notes = None, None, 0, 0
    try:
        lock, lock_frames = _lock_and_frames(source, lock_path, keys)
        rest = rest_strip(lock, _rest_frames(source, lock_frames), backend.artifact.strip_size)
        pipeline = Pipeline(lock, backend, rest, source.fps, head, track)
        watch = DriftWatch(lock, lock_frames[-1])
        del lock_frames  # full-size frames: not needed once the lock, the rest view and the view to follow are made
        systemd.notify("READY=1")
        watchdog = systemd.Watchdog()
        first, held = None, []  # held: frames in doubt (a low lock check), played once a frame fits again
        clock = time.monotonic
        for frame in source:
            first = frame.time if first is None else first
            t = frame.time - first
            marks = [clock()]
            change = watch.observe(frame.image, t)  # part of the warp stage: is the lock still right
            if change == "lost":
                final = pipeline.finish()
                for sink in sinks:
                    sink.send(final)
                _say(status, f"lock lost at {t:.2f} s (only {watch.last_score:.0%} of the black keys where it says: "
                             "camera or piano moved): silent until the keyboard is found again")
            elif change == "found":
                pipeline = pipeline.relocked(watch.lock, watch.relock_frames)
                _say(status, f"keyboard found again at {t:.2f} s: playing")
            held.append((frame, t))
            events = []
            if change != "doubt":  # in doubt: keep holding
                # lost, or still lost: the frames held were seen through a stale lock, never played
                playable, held = (held if change in ("fits", "found") else []), []
                for waited, at in playable:
                    stamps = marks if waited is frame else [clock()]  # a frame held back is timed from when it is played
                    events += _play(pipeline, waited.image, at, sinks, stamps, clock)
                    if times is not None:
                        times.add(waited, stamps)
            notes += sum(e.velocity > 0 for e in events)
            frames += 1
            watchdog.frame()
            if status is not None:
                status.update(events, (clock() - marks[0]) * 1000, source.dropped)
            if seconds is not None and t >= seconds:
                break
    finally:
        # a second Ctrl-C or SIGTERM arriving now must not cut the note-offs short: hold both until done
        held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            systemd.notify("STOPPING=1")
            if pipeline is not None:
                final = pipeline.finish()
                for sink in sinks:
                    sink.send(final)
            for sink in sinks:
                sink.close()
            source.close()
            if status is not None:
                status.close()
        finally:
            signal.signal(signal.SIGINT, held[signal.SIGINT])
            signal.signal(signal.SIGTERM, previous)
    return {"frames": frames, "notes": notes, "dropped": source.dropped, "source_fps": source.fps, "backend": backend.artifact.name,
            "relocks": watch.relocks if watch is not None else 0}


def _play(pipeline: Pipeline, image, t: float, sinks: list, marks: list[float], clock) -> list:
    """One frame through warp, model, decoder and sinks, marking the time after each stage."""
    strip = pipeline.warp(image)
    marks.append(clock())
    answer = pipeline.posteriors(strip, t)
    marks.append(clock())
    events = pipeline.decode(answer)
    marks.append(clock())
    for sink in sinks:
        sink.send(events)
    marks.append(clock())
    return events


def _say(status, text: str) -> None:
    """A message on its own line, through the caller's view when it has one."""
    if status is not None:
        status.say(text)
    else:
        print(text, file=sys.stderr, flush=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
