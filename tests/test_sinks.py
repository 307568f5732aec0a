"""MIDI sinks: the raw-MIDI writer on a real FIFO standing in for the gadget's /dev/snd/midiCxDy, a device
that disappears and comes back (reported once, retried, all notes off first), and sink names."""
from __future__ import annotations

import logging
import os
import threading

import mido
import pytest

from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import Event
from pianoedge.runtime import sinks


class Reader:
    """The host side of the device: reads what arrives on the FIFO and parses it with mido."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.parser = mido.Parser()

    def messages(self) -> list[mido.Message]:
        try:
            while chunk := os.read(self.fd, 4096):
                self.parser.feed(chunk)
        except BlockingIOError:
            pass
        out = []
        while (message := self.parser.get_message()) is not None:
            out.append(message)
        return out

    def close(self):
        os.close(self.fd)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "midiC1D0"
    os.mkfifo(path)
    return path


def test_raw_midi_device_writes_exact_bytes(fifo):
    reader = Reader(fifo)
    sink = sinks.Resilient("usb:test", lambda: sinks.RawMidiDevice(fifo))
    sink.send([Event(0.0, 60, 100), Event(0.0, 64, 80)])
    sink.send([Event(0.5, 60, 0)])
    sink.close()  # 64 still sounds: a note-off, then All Notes Off
    got = [(m.type, getattr(m, "note", getattr(m, "control", None)), getattr(m, "velocity", getattr(m, "value", None)))
           for m in reader.messages()]
    assert got == [("note_on", 60, 100), ("note_on", 64, 80), ("note_off", 60, 0), ("note_off", 64, 0), ("control_change", 123, 0)]
    reader.close()


def test_a_vanished_device_is_reported_once_retried_and_cleaned_up_when_back(fifo, caplog):
    clock = Clock()
    reader = Reader(fifo)
    sink = sinks.Resilient("usb:test", lambda: sinks.RawMidiDevice(fifo), clock=clock)
    sink.send([Event(0.0, 60, 90)])
    reader.close()  # the host goes away (cable pulled): writes now fail with EPIPE
    caplog.set_level(logging.WARNING, logger="pianoedge.sinks")
    for i in range(50):  # frame after frame while it is gone: no exception, one report
        clock.now += 0.04
        sink.send([Event(0.1 + i * 0.04, 62 + i % 2, 70)])
    assert len([r for r in caplog.records if "unavailable" in r.message]) == 1
    reader = Reader(fifo)  # back
    clock.now += 20.0
    sink.send([Event(3.0, 67, 50)])
    got = [(m.type, getattr(m, "note", getattr(m, "control", None))) for m in reader.messages()]
    assert got[-1] == ("note_on", 67)  # the new note, after ...
    assert ("control_change", 123) in got and ("note_off", 60) in got  # ... everything that sounded is ended first
    assert got.index(("control_change", 123)) < got.index(("note_on", 67))
    assert any("is back" in r.message for r in caplog.records)
    sink.close()
    reader.close()


def test_sinks_are_independent(fifo, tmp_path):
    """A dead device never stops the file sink beside it."""
    dead = sinks.Resilient("usb:dead", lambda: sinks.RawMidiDevice(fifo))  # no reader: cannot even open
    file_sink = sinks.open_sink(f"file:{tmp_path / 'x.mid'}")
    for s in (dead, file_sink):
        s.send([Event(0.0, 60, 90)])
        s.send([Event(0.5, 60, 0)])
        s.close()
    assert len(mido.MidiFile(tmp_path / "x.mid").tracks) >= 2


def test_gadget_devices_come_from_alsa_card_names(tmp_path):
    cards = tmp_path / "cards"
    cards.write_text(" 0 [PCH            ]: HDA-Intel - HDA Intel PCH\n"
                     " 1 [pianoedge      ]: f_midi - pianoedge MIDI\n")
    dev = tmp_path / "snd"
    dev.mkdir()
    for name in ("midiC0D0", "midiC1D0"):
        (dev / name).touch()
    assert sinks.gadget_devices(cards, dev) == [dev / "midiC1D0"]
    assert sinks.gadget_devices(tmp_path / "none", dev) == []


def test_bad_sink_names_are_clear_errors(tmp_path):
    with pytest.raises(PianoedgeError, match="expected file:OUT.mid"):
        sinks.open_sink("carrier-pigeon")
    with pytest.raises(PianoedgeError, match="does not exist"):
        sinks.open_sink(f"usb:{tmp_path / 'midiC9D0'}")
    with pytest.raises(PianoedgeError, match="folder .* does not exist"):
        sinks.open_sink(f"file:{tmp_path / 'no' / 'x.mid'}")


def test_a_host_that_stops_reading_never_blocks_a_frame(fifo, caplog):
    """The host stops reading (the pipe fills up): the sink must report it, not hang the loop."""
    reader = Reader(fifo)
    sink = sinks.Resilient("usb:test", lambda: sinks.RawMidiDevice(fifo))
    done = threading.Event()
    caplog.set_level(logging.WARNING, logger="pianoedge.sinks")

    def play():
        for i in range(30000):  # ~180 kB: far beyond the pipe's buffer
            sink.send([Event(i * 0.01, 60 + i % 12, 64), Event(i * 0.01, 60 + i % 12, 0)])
        done.set()

    threading.Thread(target=play, daemon=True).start()
    assert done.wait(20.0)
    outages = [r for r in caplog.records if "not being read" in r.message]
    recoveries = [r for r in caplog.records if "is back" in r.message]
    assert 1 <= len(outages) == len(recoveries) + 1 <= 5  # once per outage (a retry may find room again), not per frame
    reader.close()


def test_run_streams_to_an_absent_rtp_peer_and_a_file_at_once(tiny_take, tmp_path):
    """The network peer is not there: `run` still finishes and the file sink beside it gets every note."""
    from pianoedge.takes import find_takes

    from .test_cli import run

    take = find_takes(tiny_take)[0]
    result = run("run", "--source", str(take.video), "--midi-out", "rtp://127.0.0.1:5", "--midi-out", f"file:{tmp_path / 'x.mid'}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and (tmp_path / "x.mid").is_file()
    assert result.stderr.count("warning") <= 2  # reported once, not once per frame


@pytest.mark.skipif(not os.path.exists("/dev/snd/seq"),
                    reason="no ALSA sequencer on this machine (/dev/snd/seq): the mido/python-rtmidi port path runs on a board")
def test_a_midi_port_by_name_through_mido_and_rtmidi():
    pytest.importorskip("rtmidi", reason="python-rtmidi is not installed")
    with mido.open_input("pianoedge-test-in", virtual=True) as port:
        sink = sinks.open_sink("usb:pianoedge-test-in")
        sink.send([Event(0.0, 60, 90)])
        sink.close()
        got = [port.receive(block=True) for _ in range(3)]
    assert [(m.type, getattr(m, "note", getattr(m, "control", None))) for m in got] == [
        ("note_on", 60), ("note_off", 60), ("control_change", 123)]
