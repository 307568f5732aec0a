"""systemd service notifications (``Type=notify`` with ``WatchdogSec``): READY=1 once the keyboard is
locked, WATCHDOG=1 while frames flow, STOPPING=1 on the way out. Written by hand: the protocol is one
datagram on $NOTIFY_SOCKET, and python-systemd is a C extension that boards rarely have."""
from __future__ import annotations

import os
import socket
import time

WATCHDOG_EVERY_S = 2.0


def notify(message: str) -> bool:
    """Send one state line to systemd; False (and nothing done) outside a notify service."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a busy systemd must never stall a frame: a dropped ping is harmless
            sock.connect(address)
            sock.send(message.encode())
    except OSError:
        return False
    return True


class Watchdog:
    """Pets systemd's watchdog at most every ``WATCHDOG_EVERY_S`` while the loop calls ``frame()``."""

    def __init__(self):
        self._last = 0.0

    def frame(self) -> None:
        now = time.monotonic()
        if now - self._last >= WATCHDOG_EVERY_S:
            self._last = now
            notify("WATCHDOG=1")
