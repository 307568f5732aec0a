"""Where note events go, named as in CONTRACTS ``--midi-out``. Every sink has ``send(events)`` and
``close()``; the runtime sends the pipeline's final note-offs before closing, so nothing is left sounding.

- ``file:OUT.mid``: the notes as a MIDI file, times from the first frame.
USB (``usb``, ``usb:NAME``) and network (``rtp://HOST:PORT``) sinks are issue 7.
"""
from __future__ import annotations

from pathlib import Path

from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import Event, events_to_notes
from pianoedge.notes import write_notes


class MidiFileSink:
    """Collects the events and writes them as a MIDI file when closed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.resolve().parent.is_dir():
            raise PianoedgeError(f"--midi-out file:{path}: folder {self.path.resolve().parent} does not exist")
        self.events: list[Event] = []

    def send(self, events: list[Event]) -> None:
        self.events += events

    def close(self) -> None:
        write_notes(self.path, events_to_notes(self.events))

    def __str__(self) -> str:
        return f"file:{self.path}"


def open_sink(spec: str):
    if spec.startswith("file:"):
        return MidiFileSink(spec[len("file:"):])
    if spec == "usb" or spec.startswith(("usb:", "rtp://")):
        raise PianoedgeError(f"--midi-out {spec}: USB and RTP-MIDI sinks are not in this build yet; use --midi-out file:OUT.mid")
    raise PianoedgeError(f"--midi-out {spec!r}: expected file:OUT.mid, usb, usb:NAME or rtp://HOST:PORT")
