"""RTP-MIDI network sink (``--midi-out rtp://HOST:PORT``): Apple's session protocol ("AppleMIDI") plus the
RFC 6295 MIDI payload, standard library only. Works with macOS Network MIDI, rtpMIDI (Windows) and Linux peers.

What is implemented:

- Sessions, protocol version 2: IN/OK/NO/BY on the control port, then on the data port (control + 1).
  ``rtp://HOST:PORT`` invites the listener at HOST:PORT. Invitations repeat every second (3 times),
  then with exponential backoff capped at 10 s, forever, also after the session is lost.
  ``rtp://0.0.0.0:PORT`` (or ``rtp://[::]:PORT``) listens instead and accepts invitations only from
  addresses in ``allow`` (default loopback); others get NO. At most ``MAX_PEERS`` sessions.
- Clock sync (CK 0/1/2, 64-bit counter in 100 us units from a monotonic clock; RTP timestamps use
  the same clock): the initiator syncs when the session opens, then every 10 s, and counts the session
  lost after 4 unanswered syncs; a listener answers CK0 and drops a peer silent for 61 s.
- RTP MIDI packets: V=2, PT 97, M=0 (as Apple sends), per-session sequence numbers, SSRC; MIDI command
  section with short (LEN <= 15) or long (B=1) header, J=0, Z=0, P=0, delta times between the
  commands of one packet, running status within a packet. Event times only set the spacing of the
  events of one ``send`` (capped at 1 s); the packet is stamped so that its last event is "now".
  Note-off is sent as 0x8n with release velocity 64.
- Receiver feedback (RS) is accepted and recorded (no journal, so there is no history to trim).
- Faults: network errors never leave ``send``; each outage logs one warning on the
  ``pianoedge.rtpmidi`` logger. While no session is open, events wait at most ``queue_seconds``;
  when a session (re)opens after a gap or a drop, note-off for every sounding note and All Notes
  Off (CC 123) go first. Malformed, unexpected or foreign packets are ignored without reply.

Not implemented: the recovery journal (a lost packet is a lost command; the reset on reconnect and
the note-offs on close bound the damage), receiving MIDI (incoming RTP MIDI is ignored),
Bonjour/mDNS advertising (enter host and port by hand on the peer), SysEx, more than one channel.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pianoedge.errors import PianoedgeError

if TYPE_CHECKING:
    from pianoedge.models.decode import Event

log = logging.getLogger("pianoedge.rtpmidi")

SIGNATURE = b"\xff\xff"
VERSION = 2
PAYLOAD_TYPE = 97
TICKS = 10_000             # session clock units per second (100 us)
MAX_LIST = 480             # bytes of MIDI list per RTP packet (well under any MTU)
MAX_SPAN = TICKS           # events of one send() spread over at most 1 s
NOTE_OFF_VELOCITY = 64
ALL_NOTES_OFF = 123
MAX_PEERS = 8              # listener: open + half-open sessions
PENDING_SECONDS = 10.0     # listener: a control-only session waits this long for the data invitation
FAST_TRIES = 3             # invitations 1 s apart before backing off
CK_MISSES = 4              # unanswered syncs before the session counts as lost
QUEUE_EVENTS = 512
_RATE = 10.0               # NO replies per second (burst as many)


def delta_time(ticks: int) -> bytes:
    """RFC 6295 delta time: 1-4 octets, most significant 7-bit group first, high bit = more follow."""
    ticks = max(0, min(int(ticks), 0x0FFFFFFF))
    out = [ticks & 0x7F]
    ticks >>= 7
    while ticks:
        out.append(0x80 | (ticks & 0x7F))
        ticks >>= 7
    return bytes(reversed(out))


def midi_list(commands: list[tuple[int, bytes]]) -> bytes:
    """(delta ticks, message) pairs as an RFC 6295 MIDI list: no delta before the first (Z=0), running status."""
    out, status = bytearray(), None
    for i, (delta, msg) in enumerate(commands):
        if i:
            out += delta_time(delta)
        if msg[0] == status:
            out += msg[1:]
        else:
            out += msg
            status = msg[0] if 0x80 <= msg[0] < 0xF0 else None
    return bytes(out)


def command_section(commands: list[tuple[int, bytes]]) -> bytes:
    """MIDI command section: B J Z P LEN header (short when LEN <= 15, else long with B=1), then the list."""
    body = midi_list(commands)
    if len(body) <= 15:
        return bytes([len(body)]) + body
    if len(body) > 0x0FFF:
        raise ValueError(f"MIDI list of {len(body)} bytes does not fit one packet")
    return struct.pack(">H", 0x8000 | len(body)) + body


def rtp_midi_packet(seq: int, timestamp: int, ssrc: int, commands: list[tuple[int, bytes]]) -> bytes:
    """One RTP MIDI packet: 12-byte RTP header (V=2, M=0, PT=97) and the command section; no journal."""
    header = struct.pack(">BBHII", 0x80, PAYLOAD_TYPE, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    return header + command_section(commands)


def packetize(base: int, timed: list[tuple[int, bytes]]) -> list[tuple[int, list[tuple[int, bytes]]]]:
    """Split messages at offsets (ticks after ``base``, non-decreasing) into (timestamp, commands) packets."""
    out: list[tuple[int, list[tuple[int, bytes]]]] = []
    size, prev = MAX_LIST + 1, 0
    for offset, msg in timed:
        if size + 4 + len(msg) > MAX_LIST:
            out.append((base + offset, []))
            size, prev = 0, offset
        out[-1][1].append((offset - prev, msg))
        size += 4 + len(msg)
        prev = offset
    return out


def _exchange(cmd: bytes, token: int, ssrc: int, name: bytes | None = None) -> bytes:
    packet = struct.pack(">2s2sIII", SIGNATURE, cmd, VERSION, token, ssrc)
    return packet + name + b"\0" if name is not None else packet


def _parse_exchange(data: bytes):
    """IN/OK/NO/BY body: (version, token, ssrc, name) or None."""
    if len(data) < 16:
        return None
    version, token, ssrc = struct.unpack_from(">III", data, 4)
    name = data[16:80].split(b"\0", 1)[0].decode("utf-8", "replace")
    return version, token, ssrc, name


def _clock_packet(ssrc: int, count: int, t1: int, t2: int, t3: int) -> bytes:
    mask = (1 << 64) - 1
    return struct.pack(">2s2sIB3xQQQ", SIGNATURE, b"CK", ssrc, count, t1 & mask, t2 & mask, t3 & mask)


def _rand32() -> int:
    return random.SystemRandom().getrandbits(32) or 1


def _ip(addr) -> str | None:
    """The peer's IP as text, IPv4-mapped IPv6 unwrapped; None if unparsable."""
    try:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def _parse_spec(spec) -> tuple[str, int]:
    usage = "expected rtp://HOST:PORT (invite HOST) or rtp://0.0.0.0:PORT (accept invitations), PORT 1-65534"
    if not isinstance(spec, str) or not spec.startswith("rtp://"):
        raise PianoedgeError(f"{spec!r}: {usage}")
    rest = spec[len("rtp://"):]
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not tail.startswith(":"):
            raise PianoedgeError(f"{spec}: {usage}")
        port_text = tail[1:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            raise PianoedgeError(f"{spec}: missing :PORT; {usage}")
    if not host:
        raise PianoedgeError(f"{spec}: missing HOST; {usage}")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65534:
        raise PianoedgeError(f"{spec}: port must be a number 1-65534 (the data port is PORT+1), got {port_text!r}")
    return host, int(port_text)


@dataclass(eq=False)
class _Peer:
    """One session. Initiator states: idle/ctrl/data/open; listener states: ctrl/open."""

    ctrl: tuple
    data: tuple | None
    token: int
    ssrc: int = 0                # the peer's SSRC, 0 until known
    dssrc: int = 0               # its SSRC on the data port (some implementations use a second one)
    name: str = ""
    state: str = "idle"
    ip: str = ""
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    since: float = 0.0
    heard: float = 0.0
    data_tries: int = 0
    acked: int | None = None     # last sequence number reported by RS
    offset: float | None = None  # clock offset estimate from CK, ticks

    def owns(self, ssrc: int) -> bool:
        return ssrc != 0 and ssrc in (self.ssrc, self.dssrc)


class RtpMidiSink:
    """Note events to one RTP-MIDI peer (initiator) or to every peer that invited us (listener)."""

    def __init__(self, spec: str, allow: list[str] | None = None, name: str = "pianoedge", channel: int = 0):
        host, port = _parse_spec(spec)
        if not isinstance(channel, int) or not 0 <= channel <= 15:
            raise PianoedgeError(f"{spec}: MIDI channel must be 0-15, got {channel!r}")
        self.spec, self.host, self.port, self.channel = spec, host, port, channel
        self.name = str(name).replace("\0", "").encode("utf-8")[:63].decode("utf-8", "ignore") or "pianoedge"
        self._name = self.name.encode("utf-8")
        self.listening = host in ("0.0.0.0", "::")
        # Timing, per instance so tests can shorten it.
        self.retry_first, self.retry_cap = 1.0, 10.0
        self.ck_interval, self.ck_retry, self.peer_timeout = 10.0, 1.0, 61.0
        self.queue_seconds = 0.5

        self._lock = threading.Lock()
        self._t0, self._clock_base = time.monotonic(), random.getrandbits(31)
        self._ssrc = _rand32()
        self._sounding: set[int] = set()
        self._queue: deque = deque()
        self._lost = False            # something may be stale at a peer: reset first when a session opens
        self._warned = False          # one warning per outage
        self._closed = False
        self._errors = 0              # bugs caught in the network thread (should stay 0)
        self._rx = 0                  # packets read
        self._peers: dict = {}
        self._refused: set[str] = set()
        self._no_tokens, self._no_time = _RATE, time.monotonic()
        self._attempts, self._next_try = 0, 0.0
        self._ck_next, self._ck_pending, self._ck_missed, self._ck_count = 0.0, None, 0, 0

        if self.listening:
            self._allow = self._parse_allow(allow)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            socks = []
            try:
                for p in (port, port + 1):
                    s = socket.socket(family, socket.SOCK_DGRAM)
                    socks.append(s)
                    if family == socket.AF_INET6:
                        try:
                            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                        except (OSError, AttributeError):
                            pass
                    s.bind((host, p))
            except OSError as e:
                for s in socks:
                    s.close()
                raise PianoedgeError(f"{spec}: cannot listen on UDP ports {port} and {port + 1}: {e.strerror or e}") from None
            self._ctrl, self._data = socks
        else:
            self._allow = []
            try:
                info = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
            except (OSError, UnicodeError) as e:
                raise PianoedgeError(f"{spec}: cannot resolve host {host!r}: {e}") from None
            family, addr = info[0], info[4]
            self._ctrl, self._data = self._local_pair(family)
            data_addr = (addr[0], addr[1] + 1) + tuple(addr[2:])
            try:
                self._ctrl.connect(addr)       # the kernel then drops datagrams from anyone else
                self._data.connect(data_addr)  # and reports ICMP errors (peer gone) to us
            except OSError as e:
                self._ctrl.close()
                self._data.close()
                raise PianoedgeError(f"{spec}: cannot reach {host}: {e.strerror or e}") from None
            self._peer = _Peer(ctrl=addr, data=data_addr, token=_rand32(), ip=_ip(addr) or "")
            self._peers[addr] = self._peer
        for s in (self._ctrl, self._data):
            s.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtpmidi {self}", daemon=True)
        self._thread.start()

    # ---- public ----------------------------------------------------------------------------------------

    def send(self, events: list[Event]) -> None:
        """Note-on (velocity > 0) / note-off (0) for each event; never raises on network errors."""
        if not events:
            return
        with self._lock:
            if self._closed:
                return
            timed = self._messages(events)
            if not timed:
                return
            batch = (self._ticks() - timed[-1][0], timed)
            peers = self._open_peers()
            for p in peers:
                self._send_batches(p, [batch])
            if not peers:
                now = time.monotonic()
                self._queue.append((now, batch))
                self._trim_queue(now)

    def close(self) -> None:
        """Note-off for sounding notes + All Notes Off, then BY to the peer(s); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            final = self._reset_batch()
            self._sounding.clear()
            self._queue.clear()
            for p in self._open_peers():
                self._send_batches(p, [final])
            for p in list(self._peers.values()):
                if p.state != "idle":
                    self._tx(self._ctrl, _exchange(b"BY", p.token, self._ssrc), p.ctrl, report=False)
                    p.state = "idle"
            if self.listening:
                self._peers.clear()
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        for s in (self._ctrl, self._data, self._wake_r, self._wake_w):
            s.close()

    @property
    def connected(self) -> bool:
        """True while at least one session is open."""
        with self._lock:
            return bool(self._open_peers())

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"rtp://{host}:{self.port}"

    @staticmethod
    def _local_pair(family) -> tuple[socket.socket, socket.socket]:
        """Our control and data sockets, on adjacent ports where possible (some peers expect that)."""
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        for _ in range(16):
            ctrl = socket.socket(family, socket.SOCK_DGRAM)
            ctrl.bind((wildcard, 0))
            port = ctrl.getsockname()[1]
            if port < 65535:
                data = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    data.bind((wildcard, port + 1))
                    return ctrl, data
                except OSError:
                    data.close()
            ctrl.close()
        ctrl, data = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family, socket.SOCK_DGRAM)
        ctrl.bind((wildcard, 0))
        data.bind((wildcard, 0))
        return ctrl, data

    # ---- MIDI -----------------------------------------------------------------------------------------

    def _ticks(self) -> int:
        return (self._clock_base + int((time.monotonic() - self._t0) * TICKS)) & ((1 << 64) - 1)

    def _messages(self, events) -> list[tuple[int, bytes]]:
        """Events as (ticks after the first event, message); tracks the sounding notes."""
        out: list[tuple[int, bytes]] = []
        first, last = None, 0
        for e in events:
            try:
                pitch, velocity, t = int(e.pitch), int(e.velocity), float(e.time)
            except (AttributeError, TypeError, ValueError, OverflowError):
                continue
            if not 0 <= pitch <= 127:
                continue
            if math.isfinite(t):
                first = t if first is None else first
                offset = (t - first) * TICKS
                if math.isfinite(offset):
                    last = max(last, min(round(offset), MAX_SPAN))
            if velocity > 0:
                out.append((last, bytes([0x90 | self.channel, pitch, min(velocity, 127)])))
                self._sounding.add(pitch)
            else:
                out.append((last, bytes([0x80 | self.channel, pitch, NOTE_OFF_VELOCITY])))
                self._sounding.discard(pitch)
        return out

    def _reset_batch(self):
        msgs = [bytes([0x80 | self.channel, p, NOTE_OFF_VELOCITY]) for p in sorted(self._sounding)]
        msgs.append(bytes([0xB0 | self.channel, ALL_NOTES_OFF, 0]))
        return (self._ticks(), [(0, m) for m in msgs])

    def _open_peers(self) -> list[_Peer]:
        return [p for p in self._peers.values() if p.state == "open"]

    def _send_batches(self, p: _Peer, batches) -> None:
        for base, timed in batches:
            for timestamp, commands in packetize(base, timed):
                packet = rtp_midi_packet(p.seq, timestamp, self._ssrc, commands)
                p.seq = (p.seq + 1) & 0xFFFF
                if not self._tx(self._data, packet, p.data) or p.state != "open":
                    return

    def _trim_queue(self, now: float) -> None:
        count = sum(len(b[1]) for _, b in self._queue)
        while self._queue and (now - self._queue[0][0] > self.queue_seconds or count > QUEUE_EVENTS):
            count -= len(self._queue.popleft()[1][1])
            self._lost = True

    def _opened(self, p: _Peer, now: float) -> None:
        p.state, p.since, p.heard = "open", now, now
        log.info("%s: session open with %r at %s", self, p.name, p.ctrl[0])
        self._warned = False
        self._trim_queue(now)
        if self._lost:
            self._send_batches(p, [self._reset_batch()])
            self._lost = False
        if self._queue and p.state == "open":
            self._send_batches(p, [b for _, b in self._queue])
        self._queue.clear()

    # ---- network --------------------------------------------------------------------------------------

    def _warn(self, message: str, *args) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s: " + message, self, *args)

    def _tx(self, sock, packet: bytes, addr, report: bool = True) -> bool:
        try:
            if self.listening:
                sock.sendto(packet, addr)
            else:
                sock.send(packet)
            return True
        except (BlockingIOError, InterruptedError):
            return False  # socket buffer full: drop this packet
        except OSError as e:
            if report:
                self._net_error(e)
            return False

    def _net_error(self, e: OSError) -> None:
        reason = f"network error ({e.strerror or e})"
        if isinstance(e, ConnectionRefusedError):
            reason = "connection refused (no session listener at that port)"
        if self.listening:
            self._warn("%s; keeping the sessions", reason)
        else:
            self._lose(reason, time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            socks = [self._ctrl, self._data, self._wake_r]
            try:
                readable, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                if self._stop.is_set():
                    break
                time.sleep(0.05)
                continue
            for sock in readable:
                if sock is self._wake_r:
                    try:
                        self._wake_r.recv(64)
                    except OSError:
                        pass
                    continue
                for _ in range(64):
                    try:
                        data, addr = sock.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        with self._lock:
                            if not self._closed:
                                self._guard(self._net_error, e)
                        break
                    with self._lock:
                        if self._closed:
                            return
                        self._rx += 1
                        self._guard(self._handle, data, addr, sock is self._data)
            with self._lock:
                if self._closed:
                    return
                self._guard(self._tick, time.monotonic())

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a bug: count it, report the first, keep the session alive
            self._errors += 1
            if self._errors == 1:
                log.exception("%s: internal error (further ones are counted, not logged)", self)

    def _handle(self, data: bytes, addr, on_data: bool) -> None:
        if data[:2] != SIGNATURE or len(data) < 4:
            return  # RTP MIDI from a peer (we only send) or junk
        if self.listening:
            self._handle_listener(data[2:4], data, addr, on_data)
        else:
            self._handle_initiator(data[2:4], data, addr, on_data)

    def _clock(self, p: _Peer, data: bytes, on_data: bool, now: float) -> None:
        if not on_data or len(data) < 36:
            return
        ssrc, count = struct.unpack_from(">IB", data, 4)
        t1, t2, t3 = struct.unpack_from(">QQQ", data, 12)
        if not p.owns(ssrc):
            return
        p.heard = now
        if count == 0:
            self._tx(self._data, _clock_packet(self._ssrc, 1, t1, self._ticks(), 0), p.data)
        elif count == 1 and not self.listening and self._ck_pending is not None and t1 == self._ck_pending:
            t3 = self._ticks()
            self._tx(self._data, _clock_packet(self._ssrc, 2, t1, t2, t3), p.data)
            p.offset = (t1 + t3) / 2 - t2
            self._ck_pending, self._ck_missed = None, 0
        elif count == 2:
            p.offset = (t1 + t3) / 2 - t2

    def _feedback(self, p: _Peer, data: bytes, now: float) -> None:
        if len(data) >= 10:
            ssrc, seq = struct.unpack_from(">IH", data, 4)
            if p.owns(ssrc):
                p.acked, p.heard = seq, now

    # initiator

    def _handle_initiator(self, cmd: bytes, data: bytes, addr, on_data: bool) -> None:
        p, now = self._peer, time.monotonic()
        if tuple(addr[:2]) != tuple((p.data if on_data else p.ctrl)[:2]):
            return
        if cmd in (b"OK", b"NO", b"BY"):
            parsed = _parse_exchange(data)
            if parsed is None:
                return
            _, token, ssrc, name = parsed
            if cmd == b"BY":
                if p.state != "idle" and p.owns(ssrc):
                    self._lose(f"{p.name or 'the peer'} ended the session", now, bye=False)
            elif token != p.token:
                return
            elif cmd == b"NO":
                if p.state in ("ctrl", "data"):
                    self._lose("the peer refused the invitation", now, bye=False)
            elif not on_data and p.state == "ctrl":
                p.ssrc, p.dssrc, p.name, p.state, p.data_tries = ssrc, 0, name, "data", 1
                self._tx(self._data, _exchange(b"IN", p.token, self._ssrc, self._name), p.data)
                self._next_try = now + self.retry_first
            elif on_data and p.state == "data":
                p.dssrc = ssrc
                self._attempts = 0
                self._ck_next, self._ck_pending, self._ck_missed, self._ck_count = now, None, 0, 0
                self._opened(p, now)
        elif cmd == b"CK" and p.state == "open":
            self._clock(p, data, on_data, now)
        elif cmd == b"RS" and p.state == "open":
            self._feedback(p, data, now)

    def _lose(self, reason: str, now: float, bye: bool = True) -> None:
        """The session (or the attempt) failed: back to idle, retry with backoff, warn once."""
        p = self._peer
        was, p.state = p.state, "idle"
        if was in ("data", "open"):
            if bye:
                self._tx(self._ctrl, _exchange(b"BY", p.token, self._ssrc), p.ctrl, report=False)
            self._ssrc, p.token, p.ssrc, p.dssrc = _rand32(), _rand32(), 0, 0  # a fresh session next time
        if was == "open":
            self._lost = True
            self._attempts = FAST_TRIES
            self._next_try = now + self.retry_first
        self._warn("%s; retrying with backoff (at most every %g s)", reason, self.retry_cap)

    def _delay(self) -> float:
        if self._attempts <= FAST_TRIES:
            return self.retry_first
        return min(self.retry_cap, self.retry_first * 2 ** (self._attempts - FAST_TRIES))

    def _invite(self, now: float) -> None:
        p = self._peer
        if p.state == "data":
            if p.data_tries < FAST_TRIES:
                p.data_tries += 1
                self._tx(self._data, _exchange(b"IN", p.token, self._ssrc, self._name), p.data)
                self._next_try = now + self.retry_first
                return
            self._lose("no answer on the data port", now)
        p.state, p.ssrc, p.dssrc = "ctrl", 0, 0
        self._attempts += 1
        self._next_try = now + self._delay()
        self._tx(self._ctrl, _exchange(b"IN", p.token, self._ssrc, self._name), p.ctrl)
        if self._attempts == FAST_TRIES + 1 and p.state == "ctrl":
            self._warn("no answer to %d invitations; retrying with backoff (at most every %g s)",
                       FAST_TRIES, self.retry_cap)

    def _tick(self, now: float) -> None:
        if self.listening:
            self._tick_listener(now)
            return
        p = self._peer
        if p.state != "open":
            if now >= self._next_try:
                self._invite(now)
            return
        if now >= self._ck_next:
            if self._ck_pending is not None:
                self._ck_missed += 1
                if self._ck_missed >= CK_MISSES:
                    self._lose(f"no answer to {CK_MISSES} clock syncs (peer gone?)", now)
                    return
            self._ck_pending = self._ticks()
            self._ck_count += 1
            self._tx(self._data, _clock_packet(self._ssrc, 0, self._ck_pending, 0, 0), p.data)
            if self._ck_missed:
                self._ck_next = now + self.ck_retry
            else:
                self._ck_next = now + (min(1.5, self.ck_interval) if self._ck_count < 3 else self.ck_interval)

    # listener

    def _parse_allow(self, allow):
        if allow is None:
            allow = ["127.0.0.1", "::1"]
        elif isinstance(allow, str):
            allow = [allow]
        nets = []
        for item in allow:
            try:
                nets.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                raise PianoedgeError(f"{self.spec}: allow entry {item!r} is not an IP address or network") from None
        return nets

    def _allowed(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address in net for net in self._allow)

    def _refuse(self, sock, addr, token: int, ip: str, why: str) -> None:
        if ip not in self._refused and len(self._refused) < 32:
            self._refused.add(ip)
            log.warning("%s: refused an invitation from %s (%s)", self, ip, why)
        now = time.monotonic()
        self._no_tokens = min(_RATE, self._no_tokens + (now - self._no_time) * _RATE)
        self._no_time = now
        if self._no_tokens >= 1:
            self._no_tokens -= 1
            self._tx(sock, _exchange(b"NO", token, self._ssrc), addr, report=False)

    def _find(self, addr, on_data: bool) -> _Peer | None:
        for p in self._peers.values():
            if (p.data if on_data else p.ctrl) == addr:
                return p
        return None

    def _handle_listener(self, cmd: bytes, data: bytes, addr, on_data: bool) -> None:
        ip, now = _ip(addr), time.monotonic()
        if ip is None:
            return
        sock = self._data if on_data else self._ctrl
        if cmd == b"IN":
            parsed = _parse_exchange(data)
            if parsed is None:
                return
            version, token, ssrc, name = parsed
            if not self._allowed(ip):
                self._refuse(sock, addr, token, ip, "not in the allow list")
                return
            if version != VERSION:
                self._refuse(sock, addr, token, ip, f"protocol version {version}")
                return
            if not on_data:
                self._invited(addr, ip, token, ssrc, name, now)
                return
            p = next((q for q in self._peers.values() if q.ip == ip and q.token == token), None)
            if p is None or (p.state == "open" and p.data != addr):
                self._refuse(sock, addr, token, ip, "data invitation without a control session")
                return
            self._tx(self._data, _exchange(b"OK", token, self._ssrc, self._name), addr)
            if p.state == "ctrl":
                p.data, p.dssrc = addr, ssrc
                self._opened(p, now)
            return
        p = self._find(addr, on_data)
        if p is None:
            return
        if cmd == b"BY":
            parsed = _parse_exchange(data)
            if parsed is not None and p.owns(parsed[2]):
                self._drop(p)
                log.info("%s: %r at %s ended the session", self, p.name, ip)
        elif cmd == b"CK" and p.state == "open":
            self._clock(p, data, on_data, now)
        elif cmd == b"RS" and p.state == "open":
            self._feedback(p, data, now)

    def _invited(self, addr, ip: str, token: int, ssrc: int, name: str, now: float) -> None:
        p = self._peers.get(addr)
        if p is not None and p.token == token and p.ssrc == ssrc:
            self._tx(self._ctrl, _exchange(b"OK", token, self._ssrc, self._name), addr)  # our OK was lost
            return
        if p is not None:
            self._drop(p)  # the peer restarted
        if len(self._peers) >= MAX_PEERS:  # a peer that restarted on new ports replaces its old session
            stale = [q for q in self._peers.values() if q.ip == ip and q.name == name]
            if stale:
                self._drop(min(stale, key=lambda q: q.heard))
        if len(self._peers) >= MAX_PEERS:
            self._refuse(self._ctrl, addr, token, ip, f"already {MAX_PEERS} sessions")
            return
        self._peers[addr] = _Peer(ctrl=addr, data=None, token=token, ssrc=ssrc, name=name, state="ctrl",
                                  ip=ip, since=now, heard=now)
        self._tx(self._ctrl, _exchange(b"OK", token, self._ssrc, self._name), addr)

    def _drop(self, p: _Peer) -> None:
        self._peers.pop(p.ctrl, None)
        if p.state == "open":
            self._lost = True
        p.state = "idle"

    def _tick_listener(self, now: float) -> None:
        for p in list(self._peers.values()):
            if p.state == "ctrl" and now - p.since > PENDING_SECONDS:
                self._drop(p)
            elif p.state == "open" and now - p.heard > self.peer_timeout:
                self._tx(self._ctrl, _exchange(b"BY", p.token, self._ssrc), p.ctrl, report=False)
                self._drop(p)
                log.warning("%s: nothing (no clock sync, no feedback) from %r at %s for %g s; session dropped",
                            self, p.name, p.ip, self.peer_timeout)
