"""``models/manifest.json``: every exported model artifact with its files' sha256, precision, input spec and
measured accuracy. The runtime verifies every hash before it loads a file and refuses a corrupt,
tampered or mismatched model with one clear message. numpy-free, torch-free.

Layout::

    {"model": "pianonet", "strip_size": [884, 106], "context": 5, "context_fps": 30.0, "heads": {"live": 0, "offline": 2},
     "decoder": {...thresholds...},
     "artifacts": {"ort": {"backend": "ort", "precision": "fp32", "opset": 17,
                           "files": {"features": {"path": "onnx/pianonet_features.onnx", "sha256": "..."},
                                     "head": {...}, "offline": {...}},
                           "inputs": {...}, "metrics": {...}, "latency_ms": {...}, "date": "2026-11-28"},
                   "ort-int8": {...}}}

Artifact names are the ``--backend`` names of CONTRACTS.md; paths are relative to the manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pianoedge.errors import PianoedgeError

MODELS = Path(__file__).resolve().parent.parent / "models"  # the shipped models (the pianoedge.models folder)
# $PIANOEDGE_MODELS names another manifest (a board's installer puts verified models in /var/lib/pianoedge/models)
MANIFEST = Path(os.environ.get("PIANOEDGE_MODELS") or MODELS / "manifest.json")
# PianoNet's networks: per-frame key features, and per-key temporal heads: live (causal) and offline (looks ahead)
GRAPHS = ("features", "head", "offline")
HEAD_GRAPHS = {"live": "head", "offline": "offline"}  # each head's graph


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """One verified model artifact: where its graphs are and what the manifest says about it."""

    name: str
    backend: str
    precision: str
    files: dict[str, Path]
    strip_size: tuple[int, int]
    context: int
    decoder: dict
    metrics: dict
    context_fps: float | None = None  # context frames about 1/context_fps s apart (None: consecutive frames)
    heads: dict[str, int] = field(default_factory=lambda: {"live": 0})  # each head's look-ahead in context frames

    def look_ahead(self, head: str) -> int:
        """Context frames after the labelled one that ``head`` reads; a clear error when the artifact lacks it."""
        if head not in self.heads:
            raise PianoedgeError(f"the '{self.name}' model has no {head} head; export a model trained with it (pianoedge export)")
        return self.heads[head]


def heads_with_graphs(heads: dict[str, int], files: dict) -> dict[str, int]:
    """The heads (name: look-ahead) whose graphs are among ``files`` (all of them for an artifact with no
    files: PyTorch)."""
    return {head: ahead for head, ahead in heads.items() if not files or HEAD_GRAPHS[head] in files}


def file_head(heads) -> str:
    """The head that judges files (``transcribe``, ``eval``): the offline one where the model has it, else the live one."""
    return "offline" if "offline" in heads else "live"


def read_manifest(path: str | Path = MANIFEST) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PianoedgeError(f"model manifest not found: {path}; export the models with: pianoedge export --format onnx -o {path.parent}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PianoedgeError(f"{path} is not valid JSON ({exc}); export the models again (pianoedge export)") from None
    if not isinstance(manifest.get("artifacts"), dict) or not manifest["artifacts"]:
        raise PianoedgeError(f"{path} lists no model artifacts; export the models again (pianoedge export)")
    return manifest


def load_artifact(name: str, path: str | Path = MANIFEST) -> Artifact:
    """The artifact called ``name`` (a ``--backend`` name), after checking every file's sha256."""
    path = Path(path)
    manifest = read_manifest(path)
    entry = manifest["artifacts"].get(name)
    if entry is None:
        raise PianoedgeError(f"no '{name}' model in {path} (it has: {', '.join(manifest['artifacts'])}); "
                             f"pick one of those with --backend, or export it with pianoedge export")
    files = {}
    for graph, spec in entry["files"].items():
        file = path.parent / spec["path"]
        if not file.is_file():
            raise PianoedgeError(f"model file missing: {file}; export the models again (pianoedge export) or restore the checkout")
        if sha256_of(file) != spec["sha256"]:
            raise PianoedgeError(f"model file {file} does not match its sha256 in {path} (corrupt or tampered); "
                                 f"restore it (git checkout / the bundle) or export the models again")
        files[graph] = file
    heads = heads_with_graphs(manifest.get("heads", {"live": 0}), files)
    return Artifact(name, entry["backend"], entry["precision"], files, tuple(manifest["strip_size"]),
                    int(manifest["context"]), dict(manifest.get("decoder", {})), dict(entry.get("metrics", {})),
                    manifest.get("context_fps"), heads)


def file_entry(path: Path, root: Path) -> dict:
    """A manifest ``files`` entry: the path relative to the manifest's folder and its sha256."""
    return {"path": Path(path).resolve().relative_to(Path(root).resolve()).as_posix(), "sha256": sha256_of(path)}


def write_manifest(path: str | Path, manifest: dict) -> None:
    Path(path).write_text(json.dumps(manifest, indent=1) + "\n")
