"""Issue 7's bar, end to end: a pseudo-terminal stands in for the gadget's raw-MIDI device; a loopback
RTP-MIDI session with an independent implementation (pymidi) receives exactly what the file sink
records; SIGTERM/SIGINT at random points never leaves a note sounding."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import tty

import mido
import pytest

from pianoedge.models.decode import Event
from pianoedge.notes import read_notes
from pianoedge.runtime import live, sinks
from pianoedge.takes import find_takes


class Pty:
    """A raw pseudo-terminal: the runtime writes the slave like /dev/snd/midiCxDy; the test reads the master."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no line discipline: bytes pass unchanged (0x0A stays 0x0A)
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.data = b""

    def read(self) -> bytes:
        try:
            while chunk := os.read(self.master, 65536):
                self.data += chunk
        except (BlockingIOError, OSError):
            pass
        return self.data

    def messages(self) -> list[mido.Message]:
        parser = mido.Parser()
        parser.feed(self.read())
        out = []
        while (m := parser.get_message()) is not None:
            out.append(m)
        return out

    def close(self):
        os.close(self.master)
        os.close(self.slave)


def stuck_notes(messages: list[mido.Message]) -> set[int]:
    """Pitches left sounding at the end of a MIDI byte stream (All Notes Off clears them)."""
    sounding = set()
    for m in messages:
        if m.type == "note_on" and m.velocity > 0:
            sounding.add(m.note)
        elif m.type in ("note_off", "note_on"):
            sounding.discard(m.note)
        elif m.type == "control_change" and m.control == 123:
            sounding.clear()
    return sounding


def test_a_pseudo_terminal_stands_in_for_the_raw_midi_device():
    pty = Pty()
    sink = sinks.open_sink(f"usb:{pty.path}")
    sink.send([Event(0.0, 60, 100), Event(0.0, 10, 10)])  # note 10, velocity 10: 0x0A bytes survive
    sink.send([Event(0.1, 60, 0)])
    sink.close()
    assert pty.read() == bytes([0x90, 60, 100, 0x90, 10, 10, 0x80, 60, 0, 0x80, 10, 0, 0xB0, 123, 0])
    pty.close()


@pytest.mark.slow
def test_rtp_peer_receives_exactly_what_the_file_sink_records(tiny_take, tmp_path):
    server_mod = pytest.importorskip("pymidi.server", reason="pymidi not installed: pip install pymidi==0.5.0 (in the dev extra)")
    from .test_rtpmidi import free_pair, wait_for

    received = []

    class Collect(server_mod.Handler):
        def on_peer_connected(self, peer):
            pass

        def on_peer_disconnected(self, peer):
            pass

        def on_midi_commands(self, peer, command_list):
            received.extend((c.command, int(c.params.key), c.params.velocity) for c in command_list
                            if c.command in ("note_on", "note_off"))

    port = free_pair()
    server = server_mod.Server([("127.0.0.1", port)])
    server.add_handler(Collect())
    server._init_protocols()
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [server._loop_once(0.02) for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    try:
        rtp = sinks.open_sink(f"rtp://127.0.0.1:{port}")
        assert wait_for(lambda: rtp.connected, 3)
        live.run(str(find_takes(tiny_take)[0].video), [rtp, f"file:{tmp_path / 'f.mid'}"])
        recorded = read_notes(tmp_path / "f.mid")
        assert recorded  # the take has notes to compare
        assert wait_for(lambda: sum(c == "note_on" for c, _, _ in received) >= len(recorded), 3)
        ons = [(key, velocity) for command, key, velocity in received if command == "note_on" and velocity > 0]
        assert ons == [(n.pitch, n.velocity) for n in sorted(recorded, key=lambda n: (n.start, n.pitch))]
        offs = [key for command, key, _ in received if command == "note_off"]
        assert sorted(offs) == sorted(n.pitch for n in recorded)  # every note ended, none twice
    finally:
        stop.set()
        thread.join(1)
        for s in server.socket_map:
            s.close()


@pytest.mark.slow
def test_killing_the_process_at_random_points_leaves_no_stuck_note(tiny_take):
    video = str(find_takes(tiny_take)[0].video)
    rng = random.Random(7)
    for attempt in range(8):
        pty = Pty()
        child = subprocess.Popen([sys.executable, "-m", "pianoedge", "run", "--source", video, "--midi-out", f"usb:{pty.path}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not pty.read() and child.poll() is None and time.monotonic() < deadline:  # wait for the first MIDI byte
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))  # then anywhere in the performance
        child.send_signal(rng.choice([signal.SIGTERM, signal.SIGINT]))
        child.wait(30)
        time.sleep(0.05)
        messages = pty.messages()
        assert "Traceback" not in child.stderr.read()
        assert any(m.type == "note_on" for m in messages), f"attempt {attempt}: no note was played before the signal"
        assert stuck_notes(messages) == set(), f"attempt {attempt}: notes left sounding"
        assert messages[-1].type == "control_change" and messages[-1].control == 123  # All Notes Off, last
        pty.close()
