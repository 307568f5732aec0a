"""``pianoedge bundle``: everything a board needs besides the code, in one verifiable tar.gz.

Layout: ``manifest.json`` ({"files": {path: sha256}, "created", "pianoedge"}) at the top, then
``models/manifest.json`` + the ONNX artifacts it lists, and optionally ``lock.json`` and
``config.toml``. The installers (deploy/*/install.sh) and ``verify_bundle`` check every hash before use.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from pianoedge.errors import PianoedgeError
from pianoedge.runtime.manifest import MANIFEST, read_manifest, sha256_of


def bundle_files(lock: Path | None = None, config: Path | None = None, manifest: Path = MANIFEST) -> dict[str, Path]:
    """{path in the bundle: file here}: the model manifest, every file it lists (verified), lock and config."""
    models = read_manifest(manifest)
    files = {"models/manifest.json": manifest}
    for entry in models["artifacts"].values():
        for spec in entry["files"].values():
            path = manifest.parent / spec["path"]
            if not path.is_file() or sha256_of(path) != spec["sha256"]:
                raise PianoedgeError(f"{path} is missing or does not match {manifest}: export the models again before bundling")
            files[f"models/{spec['path']}"] = path
    for name, path in (("lock.json", lock), ("config.toml", config)):
        if path is not None:
            if not Path(path).is_file():
                raise PianoedgeError(f"{name} to bundle not found: {path}")
            files[name] = Path(path)
    return files


def write_bundle(out: str | Path, lock: Path | None = None, config: Path | None = None, manifest: Path = MANIFEST) -> dict:
    """Write the bundle; returns its manifest."""
    from pianoedge import __version__

    files = bundle_files(lock, config, manifest)
    index = {"files": {name: sha256_of(path) for name, path in files.items()},
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "pianoedge": __version__}
    data = json.dumps(index, indent=1).encode()
    try:
        with tarfile.open(out, "w:gz") as tar:
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(data), int(datetime.now(timezone.utc).timestamp())
            tar.addfile(info, io.BytesIO(data))
            for name, path in files.items():
                tar.add(path, arcname=name, recursive=False)
    except OSError as exc:
        raise PianoedgeError(f"cannot write {out}: {exc.strerror}") from None
    return index


def verify_bundle(path: str | Path, into: str | Path | None = None) -> dict:
    """Check every file of a bundle against its manifest (and unpack it into ``into`` if given)."""
    try:
        tar = tarfile.open(path, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise PianoedgeError(f"{path} is not a pianoedge bundle ({exc}); make one with: pianoedge bundle -o FILE.tar.gz") from None
    with tar:
        try:
            index = json.loads(tar.extractfile("manifest.json").read())
        except (KeyError, json.JSONDecodeError, AttributeError):
            raise PianoedgeError(f"{path} has no valid manifest.json: not a pianoedge bundle") from None
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        for name, digest in index["files"].items():
            member = members.get(name)
            if member is None:
                raise PianoedgeError(f"bundle {path} lacks {name}: make the bundle again")
            if hashlib.sha256(tar.extractfile(member).read()).hexdigest() != digest:
                raise PianoedgeError(f"bundle {path}: {name} does not match its sha256 (corrupt or tampered); make the bundle again")
        extra = set(members) - set(index["files"]) - {"manifest.json"}
        if extra:
            raise PianoedgeError(f"bundle {path} holds files its manifest does not list ({', '.join(sorted(extra))}): refusing it")
        if into is not None:
            tar.extractall(into, members=[members[n] for n in index["files"]], filter="data")
    return index
