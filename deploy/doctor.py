"""``pianoedge doctor``: checks a board (or any machine) end to end and prints each problem with its fix:
camera, lock, models (hashes), backends, MIDI gadget and ports, clock, free disk."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pianoedge.errors import PianoedgeError

STATE = Path("/var/lib/pianoedge")
SERVICE_CONFIG = Path("/etc/pianoedge/config.toml")
MIN_FREE_MB = 500


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    size: tuple[int, int] | None = None  # the camera check: the frame size it saw


def check_camera(source: str) -> Check:
    from pianoedge.runtime.source import open_source

    try:
        camera = open_source(source)
    except PianoedgeError as exc:
        return Check("camera", False, str(exc), "plug the camera in; list cameras with: v4l2-ctl --list-devices")
    try:
        frame = next(iter(camera), None)
    except PianoedgeError as exc:
        frame, problem = None, str(exc)
    else:
        problem = "it gave no frame"
    finally:
        camera.close()
    if frame is None:
        return Check("camera", False, f"{source}: {problem}", "check the cable and that no other program uses the camera")
    size = (frame.image.shape[1], frame.image.shape[0])
    return Check("camera", True, f"{source}: {size[0]}x{size[1]} at {camera.fps:.0f} fps", size=size)


def check_lock(path: Path, frame_size: tuple[int, int] | None) -> Check:
    from pianoedge.calibration.lockfile import Lock

    try:
        lock = Lock.load(path)
    except PianoedgeError as exc:
        return Check("lock", False, str(exc), f"lock the keyboard: pianoedge lock --camera 0 -o {path}")
    if frame_size is not None and tuple(lock.image_size) != tuple(frame_size):
        return Check("lock", False, f"{path} was made at {lock.image_size[0]}x{lock.image_size[1]}, the camera gives "
                     f"{frame_size[0]}x{frame_size[1]}", f"lock again: pianoedge lock --camera 0 -o {path}")
    return Check("lock", True, f"{path}: {lock.num_keys} keys from pitch {lock.lowest_key}")


def check_models(manifest: Path) -> list[Check]:
    from pianoedge.runtime.manifest import load_artifact, read_manifest

    try:
        artifacts = read_manifest(manifest)["artifacts"]
    except PianoedgeError as exc:
        return [Check("models", False, str(exc), "reinstall, or copy models/ from a bundle (pianoedge bundle)")]
    checks = []
    for name, entry in artifacts.items():
        if not entry["files"]:
            continue  # the torch reference row: measured at export, not shipped
        try:
            artifact = load_artifact(name, manifest)
            checks.append(Check(f"model {name}", True, f"{artifact.precision}, every sha256 matches"))
        except PianoedgeError as exc:
            checks.append(Check(f"model {name}", False, str(exc), "restore the file (git checkout, or the bundle) or export again"))
    return checks


def check_backends() -> list[Check]:
    import onnxruntime as ort

    checks = [Check("onnxruntime", True, f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}")]
    try:
        import tensorrt

        checks.append(Check("tensorrt", True, tensorrt.__version__))
    except ImportError:
        checks.append(Check("tensorrt", True, "not installed (optional: JetPack's python3-libnvinfer on a Jetson)"))
    return checks


def check_midi(asound: Path = Path("/proc/asound/cards"), dev: Path = Path("/dev/snd")) -> list[Check]:
    from pianoedge.runtime.sinks import gadget_devices, midi_output_names

    devices = gadget_devices(asound, dev)
    checks = [Check("usb midi gadget", bool(devices), ", ".join(map(str, devices)) if devices else "no USB MIDI gadget device found",
                    "" if devices else "set it up: sudo deploy/usb-gadget/pianoedge-gadget.sh up (or sudo systemctl start "
                    "pianoedge-gadget); the board must support USB device mode (Pi 4/5/Zero with dtoverlay=dwc2, Jetson)")]
    try:
        ports = [n for n in midi_output_names() if "through" not in n.lower()]
        checks.append(Check("midi ports", True, ", ".join(ports) or "none besides the gadget"))
    except PianoedgeError as exc:
        checks.append(Check("midi ports", bool(devices), str(exc),
                            "" if devices else "install python-rtmidi and load snd-seq, or use --midi-out rtp://HOST:PORT"))
    return checks


def check_clock() -> Check:
    year = time.gmtime().tm_year
    ok = year >= 2025
    return Check("clock", ok, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                 "" if ok else "the clock is unset: connect to a network once (timedatectl set-ntp true) or set it")


def check_disk(path: Path) -> Check:
    target = path if path.exists() else Path("/")
    free = shutil.disk_usage(target).free / 2**20
    ok = free >= MIN_FREE_MB
    return Check("disk", ok, f"{free:.0f} MB free on {target}", "" if ok else f"free at least {MIN_FREE_MB} MB (journal, old takes)")


def diagnose(source: str | None, lock: Path | None, manifest: Path, asound: Path = Path("/proc/asound/cards"),
             dev: Path = Path("/dev/snd")) -> list[Check]:
    checks, size = [], None
    if source is not None:
        camera = check_camera(source)
        checks.append(camera)
        size = camera.size
    if lock is not None:
        checks.append(check_lock(lock, size))
    checks += check_models(manifest)
    checks += check_backends()
    checks += check_midi(asound, dev)
    checks.append(check_clock())
    checks.append(check_disk(STATE))
    return checks


def report(checks: list[Check]) -> list[str]:
    lines = []
    for c in checks:
        lines.append(f"{'ok     ' if c.ok else 'PROBLEM'} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"        fix: {c.fix}")
    problems = sum(not c.ok for c in checks)
    lines.append(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "everything looks right")
    return lines
