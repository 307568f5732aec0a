"""``/etc/pianoedge/config.toml``: every ``pianoedge run`` option in a file (the service reads it); the
command line overrides it. Keys are the options' long names with underscores::

    source = "csi://0"          # or: camera = 0
    midi_out = ["usb", "file:/var/lib/pianoedge/last.mid"]
    lock = "/var/lib/pianoedge/lock.json"
    # keys = 88                 # default: detected
    # backend = "ort-int8"      # default: the model manifest's
    # look_ahead = true         # the offline head: notes about 67 ms later, more of them right
"""
from __future__ import annotations

from pathlib import Path

from pianoedge.errors import PianoedgeError

TYPES = {"source": str, "camera": int, "midi_out": list, "rtp_allow": list, "lock": str, "keys": int, "backend": str,
         "seconds": float, "look_ahead": bool}


def read_config(path: str | Path) -> dict:
    """The options in a TOML config file, checked against ``TYPES``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PianoedgeError(f"config file not found: {path}; copy deploy/config.toml there and edit it") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PianoedgeError(f"config file {path} is not valid TOML ({exc}); fix it (see deploy/config.toml)") from None
    for key, value in data.items():
        if key not in TYPES:
            raise PianoedgeError(f"config file {path}: unknown option {key!r} (known: {', '.join(TYPES)})")
        wanted = TYPES[key]
        if not isinstance(value, wanted) and not (wanted is float and isinstance(value, int)):
            raise PianoedgeError(f"config file {path}: {key} must be a {wanted.__name__}, not {value!r}")
    for key in ("midi_out", "rtp_allow"):
        if key in data and not all(isinstance(v, str) for v in data[key]):
            raise PianoedgeError(f"config file {path}: {key} must be a list of strings like [\"usb\"]")
    return data


def merge(args, config: dict) -> None:
    """Fill every option the command line left unset from the config (the command line wins)."""
    if args.camera is not None or args.source is not None:  # a source on the command line replaces the file's
        config = {k: v for k, v in config.items() if k not in ("camera", "source")}
    for key, value in config.items():
        if getattr(args, key, None) in (None, []):
            setattr(args, key, Path(value) if key == "lock" else value)
