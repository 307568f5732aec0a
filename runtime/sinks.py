"""Where note events go, named as in CONTRACTS ``--midi-out``. Every sink has ``send(events)`` and
``close()``; the runtime sends the pipeline's final note-offs before closing, so nothing is left sounding.

- ``file:OUT.mid``: the notes as a MIDI file, times from the first frame.
- ``usb``: the board's USB MIDI gadget (Linux f_midi: its ALSA raw-MIDI device), else the first MIDI
  output port (mido with python-rtmidi) that is not a software through-port.
- ``usb:NAME``: a raw-MIDI device by path (``usb:/dev/snd/midiC1D0``) or a MIDI port whose name contains NAME.
- ``rtp://HOST:PORT``: an RTP-MIDI / AppleMIDI session with that peer; ``rtp://0.0.0.0:PORT`` listens
  for a DAW to connect, accepting only addresses in ``--rtp-allow`` (default: this machine) (``rtpmidi.py``).
Live sinks are wrapped in ``Resilient``: a sink that fails (cable pulled, peer gone, device busy) is
reported once, retried with backoff without holding the others up, and when it comes back it first
gets a note-off for every note that sounded meanwhile and All Notes Off.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import sys
import time
from pathlib import Path

import mido

from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import Event, events_to_notes
from pianoedge.notes import write_notes

log = logging.getLogger("pianoedge.sinks")
CHANNEL = 0
ALL_NOTES_OFF = 123
BACKOFF_S = (0.5, 10.0)  # first retry delay, cap (doubling in between)
GADGET_CARD_NAMES = ("f_midi", "pianoedge", "MIDI Gadget")  # /proc/asound/cards entries of a USB MIDI gadget


def midi_messages(events: list[Event], channel: int = CHANNEL) -> list[mido.Message]:
    return [mido.Message("note_on", channel=channel, note=e.pitch, velocity=e.velocity) if e.velocity > 0
            else mido.Message("note_off", channel=channel, note=e.pitch, velocity=0) for e in events]


def release_all(sounding: set[int], channel: int = CHANNEL) -> list[mido.Message]:
    """Note-off for every sounding note, then All Notes Off (CC 123) on the channel."""
    return ([mido.Message("note_off", channel=channel, note=p, velocity=0) for p in sorted(sounding)]
            + [mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF, value=0)])


class EventLog:
    """Keeps every event sent (``transcribe`` turns them into notes once the whole video went through)."""

    def __init__(self):
        self.events: list[Event] = []

    def send(self, events: list[Event]) -> None:
        self.events += events

    def close(self) -> None:
        pass


class MidiFileSink(EventLog):
    """Collects the events and writes them as a MIDI file when closed."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        if not self.path.resolve().parent.is_dir():
            raise PianoedgeError(f"--midi-out file:{path}: folder {self.path.resolve().parent} does not exist")

    def close(self) -> None:
        write_notes(self.path, events_to_notes(self.events))

    def __str__(self) -> str:
        return f"file:{self.path}"


class RawMidiDevice:
    """An ALSA raw-MIDI device (``/dev/snd/midiCxDy``; the USB gadget's is the host's USB MIDI device): bytes
    written by hand, as no library writes raw-MIDI devices. Opening and writing fail fast when nobody reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:  # non-blocking, open and writes alike: a host that stops reading must never stall a frame
            self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot open {self.path}: {exc.strerror}") from None

    def send_messages(self, messages: list[mido.Message]) -> None:
        data = b"".join(bytes(m.bytes()) for m in messages)
        while data:
            try:
                data = data[os.write(self._fd, data):]
            except BlockingIOError:
                raise OSError(errno.EAGAIN, f"{self.path} is not being read (buffer full)") from None

    def close(self) -> None:
        os.close(self._fd)


class MidoPort:
    """A MIDI output port through mido (python-rtmidi: ALSA sequencer, CoreMIDI, WinMM)."""

    def __init__(self, name: str):
        self.port = mido.open_output(name)

    def send_messages(self, messages: list[mido.Message]) -> None:
        for message in messages:
            self.port.send(message)

    def close(self) -> None:
        self.port.close()


class Resilient:
    """A live MIDI sink that survives its device: ``opener()`` makes the device (raising OSError or
    similar when it is not there); failures are reported once per outage and retried with backoff."""

    def __init__(self, name: str, opener, clock=time.monotonic):
        self.name, self._opener, self._clock = name, opener, clock
        self.sounding: set[int] = set()
        self._device = None
        self._down_since: float | None = None
        self._retry_at, self._delay = 0.0, BACKOFF_S[0]
        self._connect(first=True)

    def _connect(self, first: bool = False) -> bool:
        try:
            self._device = self._opener()
        except Exception as exc:  # every device layer has its own errors (OSError, rtmidi's SystemError, ...)
            self._fail(exc)
            return False
        if not first:
            self._device.send_messages(release_all(self.sounding))  # whatever sounded during the gap ends now
            self.sounding.clear()
            log.warning("%s is back after %.1f s", self.name, self._clock() - self._down_since)
        self._down_since, self._delay = None, BACKOFF_S[0]
        return True

    def _fail(self, exc: Exception) -> None:
        if self._down_since is None:  # once per outage, not once per frame
            log.warning("%s unavailable (%s); retrying in the background", self.name, exc)
            self._down_since = self._clock()
        if self._device is not None:
            try:
                self._device.close()
            except OSError:
                pass
            self._device = None
        self._retry_at = self._clock() + self._delay
        self._delay = min(self._delay * 2, BACKOFF_S[1])

    def send(self, events: list[Event]) -> None:
        for e in events:
            (self.sounding.add if e.velocity > 0 else self.sounding.discard)(e.pitch)
        if self._device is None and (self._clock() < self._retry_at or not self._connect()):
            return
        try:
            self._device.send_messages(midi_messages(events))
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        if self._device is None and not self._connect():
            return
        try:
            self._device.send_messages(release_all(self.sounding))
            self.sounding.clear()
            self._device.close()
        except OSError as exc:
            log.warning("%s: could not send the final note-offs (%s)", self.name, exc)

    def __str__(self) -> str:
        return self.name


def gadget_devices(asound: Path = Path("/proc/asound/cards"), dev: Path = Path("/dev/snd")) -> list[Path]:
    """Raw-MIDI devices of USB MIDI gadget cards (f_midi) listed by ALSA."""
    if not asound.is_file():
        return []
    cards = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+\[(.*)$", asound.read_text(), re.M)
             if any(name.lower() in m.group(2).lower() for name in GADGET_CARD_NAMES)]
    return [p for card in cards for p in sorted(dev.glob(f"midiC{card}D*"))]


def midi_output_names() -> list[str]:
    """MIDI output ports (mido + python-rtmidi), or a clear error where there is no MIDI system."""
    if sys.platform.startswith("linux") and not Path("/dev/snd/seq").exists():  # rtmidi would only print ALSA errors
        raise PianoedgeError("no ALSA sequencer (/dev/snd/seq): load it with sudo modprobe snd-seq")
    try:
        return mido.get_output_names()
    except Exception as exc:  # python-rtmidi raises its own SystemError without a MIDI system
        raise PianoedgeError(f"no MIDI system here ({exc})") from None


def _first_port() -> str:
    try:
        names = [n for n in midi_output_names() if "through" not in n.lower()]
    except PianoedgeError as exc:
        raise PianoedgeError(f"--midi-out usb: {exc}; on a board set up the USB MIDI gadget (deploy/), "
                             f"or give --midi-out usb:/dev/snd/midiCxDy") from None
    if not names:
        raise PianoedgeError("--midi-out usb: no USB MIDI gadget and no MIDI output port found; set up the gadget "
                             "(deploy/) or plug in a USB MIDI interface")
    return names[0]


def open_sink(spec: str, rtp_allow: list[str] | None = None):
    """The sink a ``--midi-out`` value names; ``rtp_allow``: who may join a listening RTP-MIDI session."""
    if spec.startswith("file:"):
        return MidiFileSink(spec[len("file:"):])
    if spec == "usb":
        devices = gadget_devices()
        if devices:
            return Resilient(f"usb:{devices[0]}", lambda: RawMidiDevice(devices[0]))
        name = _first_port()
        return Resilient(f"usb:{name}", lambda: MidoPort(name))
    if spec.startswith("usb:"):
        target = spec[len("usb:"):]
        if target.startswith("/"):
            if not Path(target).exists():
                raise PianoedgeError(f"--midi-out {spec}: {target} does not exist (list them with: ls /dev/snd/midi*)")
            return Resilient(spec, lambda: RawMidiDevice(target))
        try:
            names = [n for n in midi_output_names() if target.lower() in n.lower()]
        except PianoedgeError as exc:
            raise PianoedgeError(f"--midi-out {spec}: {exc}") from None
        if not names:
            raise PianoedgeError(f"--midi-out {spec}: no MIDI output port named like {target!r}")
        return Resilient(f"usb:{names[0]}", lambda: MidoPort(names[0]))
    if spec.startswith("rtp://"):
        from .rtpmidi import RtpMidiSink

        return RtpMidiSink(spec, allow=rtp_allow)
    raise PianoedgeError(f"--midi-out {spec!r}: expected file:OUT.mid, usb, usb:NAME or rtp://HOST:PORT")
