"""RTP-MIDI sink over loopback with real sockets: exact RFC 6295 bytes, interop with pymidi (an independent
implementation), listening mode and its allow list, close(), fuzzing, and a peer that goes away.

The reference parser and the raw peers below are written from RFC 6295 and Apple's session protocol,
independently of pianoedge.runtime.rtpmidi (which they never import from)."""
from __future__ import annotations

import errno
import logging
import os
import random
import select
import socket
import struct
import threading
import time

import pytest

from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import Event
from pianoedge.runtime.rtpmidi import RtpMidiSink

LOGGER = "pianoedge.rtpmidi"


# ---- independent helpers ---------------------------------------------------------------------------------

def free_pair(host: str = "127.0.0.1") -> int:
    """An even UDP port P with P and P+1 both free on ``host``."""
    for _ in range(200):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind((host, 0))
        port = a.getsockname()[1]
        if port % 2 or port >= 65534:
            a.close()
            continue
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind((host, port + 1))
        except OSError:
            continue
        finally:
            a.close()
            b.close()
        return port
    raise RuntimeError("no free port pair")


def wait_for(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def ref_parse(packet: bytes) -> dict:
    """RFC 6295 RTP MIDI packet -> header fields and [(delta or None, status, data)] (running status resolved)."""
    assert len(packet) >= 13
    cc = packet[0] & 0x0F
    out = {"v": packet[0] >> 6, "p": (packet[0] >> 5) & 1, "x": (packet[0] >> 4) & 1, "cc": cc,
           "m": packet[1] >> 7, "pt": packet[1] & 0x7F}
    out["seq"], out["ts"], out["ssrc"] = struct.unpack(">HII", packet[2:12])
    i = 12 + 4 * cc
    flags = packet[i]
    out.update(b=flags >> 7, j=(flags >> 6) & 1, z=(flags >> 5) & 1, phantom=(flags >> 4) & 1)
    if out["b"]:
        length, i = ((flags & 0x0F) << 8) | packet[i + 1], i + 2
    else:
        length, i = flags & 0x0F, i + 1
    out["len"] = length
    body = packet[i:i + length]
    assert len(body) == length, "LEN runs past the packet"
    if not out["j"]:
        assert i + length == len(packet), "bytes after the MIDI list without a journal"
    sizes = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
    cmds, k, status = [], 0, None
    while k < length:
        delta = None
        if cmds or out["z"]:
            delta = 0
            for _ in range(4):
                octet = body[k]
                k += 1
                delta = (delta << 7) | (octet & 0x7F)
                if not octet & 0x80:
                    break
        if body[k] & 0x80:
            status = body[k]
            k += 1
        assert status is not None, "running status without a status octet"
        n = sizes[status & 0xF0]
        cmds.append((delta, status, bytes(body[k:k + n])))
        k += n
    assert k == length
    out["commands"] = cmds
    return out


def exchange(cmd: bytes, token: int, ssrc: int, name: bytes | None = b"test") -> bytes:
    return struct.pack(">2s2sIII", b"\xff\xff", cmd, 2, token, ssrc) + (name + b"\0" if name is not None else b"")


def ck(ssrc: int, count: int, t1: int = 0, t2: int = 0, t3: int = 0) -> bytes:
    return struct.pack(">2s2sIB3xQQQ", b"\xff\xff", b"CK", ssrc, count, t1, t2, t3)


def notes(parsed_packets) -> list[tuple[str, int, int, int]]:
    """(kind, channel, data1, data2) for every command of the packets."""
    kinds = {0x80: "off", 0x90: "on", 0xB0: "cc"}
    return [(kinds.get(s & 0xF0, hex(s)), s & 0x0F, d[0], d[1]) for p in parsed_packets for _, s, d in p["commands"]]


class RawListener:
    """A minimal session listener on PORT/PORT+1: OK to invitations, CK1 to CK0, records the rest."""

    def __init__(self, port: int, answer_ck: bool = True):
        self.port, self.answer_ck = port, answer_ck
        self.ssrc = random.getrandbits(32) | 1
        self.ctrl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ctrl.bind(("127.0.0.1", port))
        self.data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.data.bind(("127.0.0.1", port + 1))
        self.midi: list[tuple[bytes, dict]] = []
        self.control: list[bytes] = []
        self.invites: list[tuple[bytes, int, int]] = []   # (port kind, token, ssrc)
        self.open = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self.ctrl, self.data], [], [], 0.02)
            except (OSError, ValueError):
                return
            for s in readable:
                try:
                    packet, addr = s.recvfrom(2048)
                except OSError:
                    continue
                kind = b"data" if s is self.data else b"ctrl"
                if packet[:2] != b"\xff\xff":
                    self.midi.append((packet, ref_parse(packet)))
                    continue
                self.control.append(kind + b":" + packet)
                if packet[2:4] == b"IN":
                    token, ssrc = struct.unpack(">II", packet[8:16])
                    self.invites.append((kind, token, ssrc))
                    s.sendto(exchange(b"OK", token, self.ssrc, b"raw"), addr)
                    if kind == b"data":
                        self.open.set()
                elif packet[2:4] == b"CK" and packet[8] == 0 and self.answer_ck:
                    t1 = struct.unpack(">Q", packet[12:20])[0]
                    s.sendto(ck(self.ssrc, 1, t1, 12345), addr)

    def commands(self):
        return notes(p for _, p in self.midi)

    def close(self):
        self._stop.set()
        self._thread.join(1)
        self.ctrl.close()
        self.data.close()


class RawInitiator:
    """A minimal session initiator from two loopback sockets."""

    def __init__(self, name: bytes = b"raw-initiator"):
        self.name = name
        self.token, self.ssrc = random.getrandbits(32), random.getrandbits(32) | 1
        self.ctrl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ctrl.bind(("127.0.0.1", 0))
        self.data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.data.bind(("127.0.0.1", 0))
        for s in (self.ctrl, self.data):
            s.settimeout(2.0)

    def ask(self, sock, packet: bytes, port: int) -> bytes:
        sock.sendto(packet, ("127.0.0.1", port))
        return sock.recv(2048)

    def invite(self, port: int, token: int | None = None) -> tuple[bytes, bytes | None]:
        token = self.token if token is None else token
        first = self.ask(self.ctrl, exchange(b"IN", token, self.ssrc, self.name), port)
        if first[2:4] != b"OK":
            return first, None
        return first, self.ask(self.data, exchange(b"IN", token, self.ssrc, self.name), port + 1)

    def recv_midi(self, timeout: float = 2.0) -> dict:
        self.data.settimeout(timeout)
        while True:
            packet = self.data.recv(2048)
            if packet[:2] != b"\xff\xff":
                return ref_parse(packet)

    def close(self):
        self.ctrl.close()
        self.data.close()


@pytest.fixture
def sinks():
    made = []
    yield made
    for s in made:
        s.close()


def initiator_sink(sinks, port, **kwargs) -> RtpMidiSink:
    sink = RtpMidiSink(f"rtp://127.0.0.1:{port}", **kwargs)
    sinks.append(sink)
    return sink


# ---- tests ----------------------------------------------------------------------------------------------

def test_packet_bytes_match_rfc6295(sinks):
    port = free_pair()
    peer = RawListener(port)
    try:
        sink = initiator_sink(sinks, port)
        assert peer.open.wait(3) and wait_for(lambda: sink.connected)
        invited_ssrc = peer.invites[0][2]
        # Two notes together, one released 5 ms (50 ticks of 100 us) later, another 15 ms (150 ticks) after that.
        sink.send([Event(10.0, 60, 100), Event(10.0, 64, 90), Event(10.005, 60, 0), Event(10.020, 67, 80)])
        sink.send([Event(11.0, 60, 100), Event(11.0, 64, 90), Event(11.005, 60, 0), Event(11.020, 67, 80),
                   Event(11.020, 72, 1)])
        assert wait_for(lambda: len(peer.midi) == 2)
        (short, _), (long, _) = peer.midi
        seq, ts, ssrc = struct.unpack(">HII", short[2:12])
        seq2, ts2, _ = struct.unpack(">HII", long[2:12])
        assert short[:2] == bytes([0x80, 0x61])         # V=2 P=0 X=0 CC=0, M=0 PT=97
        assert ssrc == invited_ssrc                     # the SSRC announced in the invitation
        # the second packet's timestamp: the same tick of the 100 us session clock or a later one (sent back
        # to back, both can fall in one tick), never earlier (that would wrap to nearly 2**32) and within 5 s
        assert seq2 == (seq + 1) & 0xFFFF and (ts2 - ts) % 2**32 < 50_000
        expected_list = bytes.fromhex(
            "90 3c 64"          # note-on 60 vel 100 (first command: status, no delta, Z=0)
            "00 40 5a"          # delta 0, running status: note-on 64 vel 90
            "32 80 3c 40"       # delta 50 ticks (5 ms), note-off 60 release velocity 64
            "81 16 90 43 50"    # delta 150 = 0x81 0x16 (two octets, high group first), note-on 67 vel 80
        )
        assert short[12:] == bytes([0x0F]) + expected_list                   # short header: B=J=Z=P=0, LEN=15
        assert long[12:] == bytes([0x80, 0x12]) + expected_list + bytes.fromhex("00 48 01")  # B=1, LEN=18
    finally:
        peer.close()


def test_interop_with_pymidi(sinks):
    server_mod = pytest.importorskip(
        "pymidi.server", reason="pymidi not installed: pip install pymidi==0.5.0 (in the dev extra)")
    received, peers, gone = [], [], []

    class Collect(server_mod.Handler):
        def on_peer_connected(self, peer):
            peers.append(peer)

        def on_peer_disconnected(self, peer):
            gone.append(peer)

        def on_midi_commands(self, peer, command_list):
            for c in command_list:
                if c.command in ("note_on", "note_off"):
                    received.append((c.command, c.channel, int(c.params.key), c.params.velocity))
                else:
                    received.append((c.command, c.channel, c.params.controller, c.params.value))

    port = free_pair()
    server = server_mod.Server([("127.0.0.1", port)])
    server.add_handler(Collect())
    server._init_protocols()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server._loop_once(0.02)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        sink = initiator_sink(sinks, port, channel=5, name="pianoedge-test")
        assert wait_for(lambda: sink.connected, 3), "pymidi did not accept the invitations"
        assert {p.name for p in peers} == {"pianoedge-test"}
        sink.send([Event(1.0, 60, 100), Event(1.0, 64, 90)])
        sink.send([Event(1.1, 60, 0)])
        # pymidi decodes delta times as little-endian varints, so keep deltas under 128 ticks (12.8 ms).
        sink.send([Event(1.2, 64, 0), Event(1.203, 67, 70), Event(1.208, 71, 1)])
        sink.send([Event(1.3, 67, 0)])
        expected = [("note_on", 5, 60, 100), ("note_on", 5, 64, 90), ("note_off", 5, 60, 64),
                    ("note_off", 5, 64, 64), ("note_on", 5, 67, 70), ("note_on", 5, 71, 1), ("note_off", 5, 67, 64)]
        assert wait_for(lambda: len(received) >= len(expected), 3)
        assert received == expected
        sink.close()   # 71 still sounds: note-off, All Notes Off, then BY
        assert wait_for(lambda: len(gone) == 1 and len(received) == len(expected) + 2, 3)
        assert received[len(expected):] == [("note_off", 5, 71, 64), ("control_mode_change", 5, 123, 0)]
    finally:
        stop.set()
        thread.join(1)
        for s in server.socket_map:
            s.close()


def test_listening_mode_and_allow_list(sinks, caplog):
    port = free_pair("0.0.0.0")
    sink = RtpMidiSink(f"rtp://0.0.0.0:{port}", name="listener", channel=2)
    sinks.append(sink)
    assert str(sink) == f"rtp://0.0.0.0:{port}"
    peer = RawInitiator()
    try:
        ok_ctrl, ok_data = peer.invite(port)
        for reply in (ok_ctrl, ok_data):
            version, token, _ = struct.unpack(">III", reply[4:16])
            assert reply[:4] == b"\xff\xffOK" and version == 2 and token == peer.token
            assert reply[16:] == b"listener\0"
        sink_ssrc = struct.unpack(">I", ok_ctrl[12:16])[0]
        assert wait_for(lambda: sink.connected)
        sink.send([Event(0.0, 60, 100), Event(0.0, 67, 80)])
        parsed = peer.recv_midi()
        assert parsed["ssrc"] == sink_ssrc and parsed["pt"] == 97 and parsed["v"] == 2
        assert notes([parsed]) == [("on", 2, 60, 100), ("on", 2, 67, 80)]
        # Clock sync as listener: CK0 -> CK1 echoing our timestamp.
        reply = peer.ask(peer.data, ck(peer.ssrc, 0, 777), port + 1)
        ssrc, count = struct.unpack(">IB", reply[4:9])
        t1, t2, _ = struct.unpack(">QQQ", reply[12:36])
        assert reply[:4] == b"\xff\xffCK" and ssrc == sink_ssrc and count == 1 and t1 == 777 and t2 > 0
        # Receiver feedback is accepted silently.
        peer.ctrl.sendto(struct.pack(">2s2sIHH", b"\xff\xff", b"RS", peer.ssrc, parsed["seq"], 0), ("127.0.0.1", port))
        assert wait_for(lambda: next(iter(sink._peers.values())).acked == parsed["seq"], 2)
    finally:
        peer.close()

    other = free_pair("0.0.0.0")
    strict = RtpMidiSink(f"rtp://0.0.0.0:{other}", allow=["10.0.0.1"])
    sinks.append(strict)
    intruder = RawInitiator()
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            reply, data_reply = intruder.invite(other)
            assert reply[:4] == b"\xff\xffNO" and data_reply is None
            assert struct.unpack(">I", reply[8:12])[0] == intruder.token
            assert not strict._peers and not strict.connected
            # The data port does not open a session either.
            assert intruder.ask(intruder.data, exchange(b"IN", intruder.token, intruder.ssrc), other + 1)[2:4] == b"NO"
        assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
            f"rtp://0.0.0.0:{other}: refused an invitation from 127.0.0.1 (not in the allow list)"]
    finally:
        intruder.close()


def test_close_sends_note_offs_all_notes_off_and_bye(sinks):
    port = free_pair()
    peer = RawListener(port)
    try:
        sink = initiator_sink(sinks, port, channel=1)
        assert peer.open.wait(3) and wait_for(lambda: sink.connected)
        sink_ssrc = peer.invites[0][2]
        sink.send([Event(0.0, 60, 100), Event(0.0, 64, 90), Event(0.0, 67, 80)])
        sink.send([Event(0.1, 64, 0)])
        assert wait_for(lambda: len(peer.midi) == 2)
        sink.close()
        assert wait_for(lambda: len(peer.midi) == 3 and any(c.startswith(b"ctrl:\xff\xffBY") for c in peer.control))
        assert notes([peer.midi[2][1]]) == [("off", 1, 60, 64), ("off", 1, 67, 64), ("cc", 1, 123, 0)]
        bye = next(c for c in peer.control if c.startswith(b"ctrl:\xff\xffBY"))[5:]
        assert struct.unpack(">I", bye[12:16])[0] == sink_ssrc
        sink.close()     # idempotent
        sink.send([Event(1.0, 60, 100)])   # ignored after close
        time.sleep(0.1)
        assert len(peer.midi) == 3
    finally:
        peer.close()


def _fuzz_packets(rng: random.Random, n: int, victim_ssrc: int):
    """Random and mutated packets; none is a well-formed control-port invitation."""
    valid = [exchange(b"IN", 1, 2), exchange(b"OK", 1, 2), exchange(b"NO", 1, 2, None),
             exchange(b"BY", 0, victim_ssrc, None), ck(victim_ssrc, 0, 5), ck(3, 1, 5, 6), ck(3, 2, 5, 6, 7),
             struct.pack(">2s2sIHH", b"\xff\xff", b"RS", victim_ssrc, 1, 0),
             bytes.fromhex("80610001000000100000000303903c64"), bytes.fromhex("806100010000001000000003800390")]
    out = []
    for i in range(n):
        kind = i % 6
        base = bytearray(rng.choice(valid))
        if kind == 0:
            packet = rng.randbytes(rng.randint(0, 64 if rng.random() < 0.9 else 1500))
        elif kind == 1:
            packet = bytes(base[:rng.randint(0, len(base) - 1)])                 # truncated
        elif kind == 2:                                                         # bit flips
            for _ in range(rng.randint(1, 4)):
                base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
            packet = bytes(base)
        elif kind == 3:                                                         # absurd lengths
            packet = bytes.fromhex("8061") + rng.randbytes(10) + bytes([0x80 | rng.randrange(16), rng.randrange(256)])
            packet += rng.randbytes(rng.randint(0, 8))
        elif kind == 4:                                                         # wrong signature / command
            packet = bytes([rng.randrange(256), 0xFF]) + rng.choice([b"IN", b"OK", b"CK", b"BY", b"ZZ"]) + bytes(base[4:])
        else:                                                                   # valid shapes from a stranger
            packet = bytes(base)
        if packet[:4] == b"\xff\xffIN" and len(packet) >= 8 and packet[4:8] == b"\0\0\0\2":
            packet = packet[:4] + b"\0\0\0\3" + packet[8:]                       # wrong version
        out.append(packet)
    return out


def test_fuzz_listening_sink(sinks):
    port = free_pair("0.0.0.0")
    sink = RtpMidiSink(f"rtp://0.0.0.0:{port}")
    sinks.append(sink)
    legit = RawInitiator()
    fuzzers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        assert legit.invite(port)[1][2:4] == b"OK"
        before = dict(sink._peers)
        rng = random.Random(1234)
        packets = _fuzz_packets(rng, 12_000, legit.ssrc)
        started, rx0 = time.monotonic(), sink._rx
        for i, packet in enumerate(packets):
            sender = fuzzers[i % 4]
            if i % 5 == 4 and packet[2:4] not in (b"BY", b"IN"):   # garbage from the peer's own ports too
                sender = legit.data if i % 2 else legit.ctrl
            try:
                sender.sendto(packet, ("127.0.0.1", port + (i % 2)))
            except OSError:
                pass
            if i % 200 == 199:   # let the sink keep up instead of letting the kernel drop most of them
                wait_for(lambda sent=i: sink._rx - rx0 >= sent - 50, 0.5)
        wait_for(lambda: sink._rx - rx0 >= len(packets) - 100, 3)
        elapsed = time.monotonic() - started
        processed = sink._rx - rx0
        assert processed >= 10_000, f"only {processed} of {len(packets)} fuzz packets reached the sink"
        assert elapsed < 15
        assert sink._thread.is_alive() and sink._errors == 0
        assert sink._peers == before and len(sink._refused) <= 1 and not sink._queue
        # Refusals (NO) are rate limited: no flood back at the senders.
        refusals = 0
        for f in fuzzers:
            f.setblocking(False)
            try:
                while True:
                    refusals += f.recv(2048)[2:4] == b"NO"
            except OSError:
                pass
        assert 0 < refusals <= 10 + 10 * (time.monotonic() - started)
        # The session survived and a new, valid invitation is still accepted.
        legit.data.setblocking(False)
        try:
            while True:
                legit.data.recv(2048)   # CK1 replies to the fuzz's valid-looking CK0s
        except OSError:
            pass
        sink.send([Event(0.0, 61, 99)])
        assert notes([legit.recv_midi()]) == [("on", 0, 61, 99)]
        newcomer = RawInitiator()
        try:
            ok_ctrl, ok_data = newcomer.invite(port)
            assert ok_ctrl[2:4] == b"OK" and ok_data[2:4] == b"OK"
        finally:
            newcomer.close()
        # The session table is bounded: at most 8 sessions, later invitations are refused.
        time.sleep(0.3)  # let the NO rate limit refill
        crowd = [RawInitiator(b"device-%d" % i) for i in range(8)]
        try:
            replies = [c.invite(port)[0][2:4] for c in crowd]
            assert replies == [b"OK"] * 6 + [b"NO"] * 2 and len(sink._peers) == 8
            # A device that restarted on new ports (same address and name) replaces its old session.
            restarted = RawInitiator(b"device-0")
            try:
                assert [r[2:4] for r in restarted.invite(port)] == [b"OK", b"OK"] and len(sink._peers) == 8
            finally:
                restarted.close()
        finally:
            for c in crowd:
                c.close()
    finally:
        legit.close()
        for f in fuzzers:
            f.close()


def test_peer_disappears_then_returns(sinks, caplog):
    port = free_pair()
    peer = RawListener(port)
    caplog.set_level(logging.INFO, logger=LOGGER)
    sink = initiator_sink(sinks, port)
    sink.retry_first = 0.2
    assert peer.open.wait(3) and wait_for(lambda: sink.connected)
    sink.send([Event(0.0, 60, 100), Event(0.0, 48, 70)])
    assert wait_for(lambda: len(peer.midi) == 1)
    peer.close()                       # the peer vanishes without BY: its ports now refuse
    for i in range(50):
        sink.send([Event(0.1 + i * 0.02, 62 + i % 5, 80 if i % 2 == 0 else 0)])
        time.sleep(0.02)
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "refused" in warnings[0].getMessage() and not sink.connected
    sounding = sorted(sink._sounding)
    back = RawListener(port)           # the peer comes back on the same ports
    try:
        assert back.open.wait(5) and wait_for(lambda: sink.connected)
        sink.send([Event(2.0, 72, 90)])
        assert wait_for(lambda: back.commands()[-1:] == [("on", 0, 72, 90)])
        got = back.commands()
        reset = [("off", 0, p, 64) for p in sounding] + [("cc", 0, 123, 0)]
        assert got[:len(reset)] == reset and got[-1] == ("on", 0, 72, 90)
        # In between only the freshest outage events (at most queue_seconds old), in order.
        outage = [("on" if i % 2 == 0 else "off", 0, 62 + i % 5, 80 if i % 2 == 0 else 64) for i in range(50)]
        replayed = got[len(reset):-1]
        assert replayed == outage[len(outage) - len(replayed):] and len(replayed) < len(outage)
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    finally:
        back.close()


class FailingSocket(socket.socket):
    """A socket whose send() fails like a host whose network went away."""

    def send(self, *args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


def test_network_error_inside_send_never_raises(sinks, caplog):
    port = free_pair()
    peer = RawListener(port)
    try:
        sink = initiator_sink(sinks, port)
        assert peer.open.wait(3) and wait_for(lambda: sink.connected)
        real = sink._data
        sink._data = FailingSocket(fileno=os.dup(real.fileno()))
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            for i in range(20):
                sink.send([Event(i * 0.01, 60 + i, 90)])
        real.close()
        messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert len(messages) == 1 and "Network is unreachable" in messages[0]
        assert not sink.connected and len(sink._sounding) == 20
    finally:
        peer.close()


def test_silent_peer_is_detected_by_clock_sync(sinks, caplog):
    port = free_pair()
    peer = RawListener(port, answer_ck=False)   # alive ports, but never answers CK (e.g. host powered off)
    try:
        sink = initiator_sink(sinks, port)
        sink.ck_interval, sink.ck_retry = 0.1, 0.05
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert peer.open.wait(3)
            assert wait_for(lambda: any(c.startswith(b"ctrl:\xff\xffBY") for c in peer.control), 3)
            sink.send([Event(0.0, 60, 100)])   # no session: kept briefly, never raises
        messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert len(messages) == 1 and "clock sync" in messages[0]
    finally:
        peer.close()


@pytest.mark.parametrize("spec, kwargs, message", [
    ("udp://127.0.0.1:5004", {}, "expected rtp://HOST:PORT"),
    ("rtp://127.0.0.1", {}, "missing :PORT"),
    ("rtp://:5004", {}, "missing HOST"),
    ("rtp://127.0.0.1:0", {}, "port must be a number 1-65534"),
    ("rtp://127.0.0.1:65535", {}, "port must be a number 1-65534"),
    ("rtp://127.0.0.1:50x4", {}, "port must be a number 1-65534"),
    ("rtp://[::1:5004", {}, "expected rtp://HOST:PORT"),
    ("rtp://127.0.0.1:5004", {"channel": 16}, "MIDI channel must be 0-15"),
    ("rtp://0.0.0.0:5004", {"allow": ["not-an-ip"]}, "allow entry 'not-an-ip'"),
])
def test_bad_specs(spec, kwargs, message):
    with pytest.raises(PianoedgeError, match=message) as info:
        RtpMidiSink(spec, **kwargs).close()
    assert str(info.value).startswith((spec, repr(spec)))


def test_listening_port_in_use():
    port = free_pair("0.0.0.0")
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("0.0.0.0", port + 1))
    try:
        with pytest.raises(PianoedgeError, match=f"cannot listen on UDP ports {port} and {port + 1}"):
            RtpMidiSink(f"rtp://0.0.0.0:{port}")
    finally:
        blocker.close()


def test_dual_stack_listener_and_backoff_schedule(sinks):
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    port = free_pair("0.0.0.0")
    sink = RtpMidiSink(f"rtp://[::]:{port}")
    sinks.append(sink)
    assert str(sink) == f"rtp://[::]:{port}"
    v4 = RawInitiator()
    v6 = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        assert [r[2:4] for r in v4.invite(port)] == [b"OK", b"OK"]   # IPv4-mapped 127.0.0.1 is allowed
        for s, p in zip(v6, (port, port + 1)):
            s.bind(("::1", 0))
            s.settimeout(2)
            s.sendto(exchange(b"IN", 7, 8), ("::1", p))
            assert s.recv(100)[2:4] == b"OK"
        assert wait_for(lambda: len(sink._open_peers()) == 2)
        sink.send([Event(0.0, 60, 100)])
        assert notes([v4.recv_midi()]) == notes([ref_parse(v6[1].recv(100))]) == [("on", 0, 60, 100)]
    finally:
        v4.close()
        for s in v6:
            s.close()
    # Invitations: every second three times, then doubling up to the 10 s cap.
    delays = []
    for attempts in range(1, 9):
        sink._attempts = attempts
        delays.append(sink._delay())
    assert delays == [1, 1, 1, 2, 4, 8, 10, 10]
