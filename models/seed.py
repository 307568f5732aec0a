"""The seed paper's models, reproduced as the baseline to beat (sections 3.2.2, 4.2.3-4.2.4, 4.3, 5.1-5.2).

- Key splitting: each key's crop of the 884x106 canonical strip, its span from ``calibration.layout``
  (white keys equal, black keys by Otsu of the top rows) widened by a 3 px tolerance; bundling (B=3)
  takes the key with one neighbour on each side.
- Four VGG-like CNNs (single/bundle x white/black), one logit each, binary cross-entropy, trained on a
  set balanced by dropping negatives and duplicating positives; Adam lr 1e-3, step decay 0.5 every 10
  epochs, batch 32 (L2 lowered from the paper's 0.1, which kept every CNN at chance; epochs and
  sample counts scaled to this machine: see the card).
- Velocity: the single-key CNN of the key's colour, frozen, as the feature extractor for the frames
  around an onset, a two-layer LSTM (hidden 256) and one logit: velocity = sigmoid(logit) * 127, MSE.
- Notes as the paper makes them: a note is a run of frames classified pressed.
Host only (torch).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pianoedge import keys as K
from pianoedge.calibration.layout import key_spans
from pianoedge.errors import PianoedgeError
from pianoedge.notes import Note
from pianoedge.takes import find_takes, frame_labels

from .data import lock_of_take, read_strips

TOLERANCE = 3  # px added on each side of a key's crop (the paper: 2-4)
KINDS = [(mode, black) for mode in ("single", "bundle") for black in (False, True)]
CROP = {("single", False): (24, 106), ("single", True): (16, 106), ("bundle", False): (56, 106), ("bundle", True): (48, 106)}
VELOCITY_FRAMES = 5  # frames around the onset the LSTM reads (two before, the onset, two after)
NEGATIVES_KEPT = 0.04  # share of unpressed key crops kept (the paper drops most negatives)
FRAME_STRIDE = 4  # key crops from every 4th frame (neighbouring frames are near copies); onsets from all
MAX_CROPS = 12000  # balanced crops per CNN, so that training fits this machine
L2 = 1e-4  # the paper's "L2 penalty 0.1", taken as Adam weight decay 0.1, kept every CNN at chance
#            (loss 0.693 through every epoch here), so the baseline uses 1e-4


def crop_keys(strip: np.ndarray, spans: np.ndarray, keys: np.ndarray, mode: str, black: bool) -> np.ndarray:
    """(len(keys), h, w) crops of a canonical strip (grey) for key indices ``keys``, resized to the model input."""
    width = strip.shape[1]
    out = []
    for k in keys:
        a, b = (k, k) if mode == "single" else (max(k - 1, 0), min(k + 1, len(spans) - 1))
        left, right = int(max(spans[a][0] - TOLERANCE, 0)), int(min(spans[b][1] + TOLERANCE, width))
        out.append(cv2.resize(strip[:, left:max(right, left + 2)], CROP[(mode, black)], interpolation=cv2.INTER_AREA))
    return np.stack(out) if out else np.zeros((0, CROP[(mode, black)][1], CROP[(mode, black)][0]), np.uint8)


class SeedCNN(nn.Module):
    """VGG-like: three 3x3 conv + pool stages, then two fully connected layers; one logit."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        w, h = size
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * (h // 8) * (w // 8), 128), nn.ReLU(inplace=True))
        self.out = nn.Linear(128, 1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x[:, None].float() / 255.0 - 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.embedding(x))[:, 0]


class SeedLSTM(nn.Module):
    """Frozen single-key CNN features of neighbouring frames -> two-layer LSTM (256) -> one logit."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(128, 256, num_layers=2, batch_first=True)
        self.out = nn.Linear(256, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, VELOCITY_FRAMES, 128) -> (B,) velocity as a fraction of 127."""
        return torch.sigmoid(self.out(self.lstm(features)[0][:, -1]))[:, 0]


class Samples:
    """Balanced key crops per CNN kind, and onset crop sequences for the velocity LSTMs."""

    def __init__(self):
        self.crops = {kind: [] for kind in KINDS}
        self.labels = {kind: [] for kind in KINDS}
        self.sequences = {False: [], True: []}
        self.velocities = {False: [], True: []}

    def add_take(self, strips: np.ndarray, labels: dict, lowest: int, num_keys: int, rng: np.random.Generator) -> None:
        layout = K.layout(num_keys, lowest)
        black, slots = layout.black_mask, layout.slots
        pressed, onset, velocity = labels["pressed"][:, slots], labels["onset"][:, slots], labels["velocity"][:, slots]
        spans = [key_spans(s, num_keys, lowest) for s in strips]
        for t, strip in enumerate(strips):
            if t % FRAME_STRIDE == 0:
                self._add_frame(strip, spans[t], pressed[t], black, rng)
            for k in np.flatnonzero(onset[t]):
                frames = np.clip(np.arange(t - 2, t + 3), 0, len(strips) - 1)
                self.sequences[bool(black[k])].append(np.stack([crop_keys(strips[f], spans[f], [k], "single", bool(black[k]))[0] for f in frames]))
                self.velocities[bool(black[k])].append(velocity[t, k] / 127.0)

    def _add_frame(self, strip: np.ndarray, spans: np.ndarray, pressed: np.ndarray, black: np.ndarray, rng: np.random.Generator) -> None:
        keep = pressed | (rng.random(len(pressed)) < NEGATIVES_KEPT)
        for mode, is_black in KINDS:
            keys = np.flatnonzero(keep & (black == is_black))
            self.crops[(mode, is_black)].append(crop_keys(strip, spans, keys, mode, is_black))
            self.labels[(mode, is_black)].append(pressed[keys])

    def balanced(self, kind, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Positives duplicated until they match the negatives kept (section 5.1.4)."""
        x, y = np.concatenate(self.crops[kind]), np.concatenate(self.labels[kind])
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        if len(pos) and len(neg) > len(pos):
            pos = rng.choice(pos, len(neg))
        order = rng.permutation(np.concatenate([pos, neg]))[:MAX_CROPS]
        return x[order], y[order].astype(np.float32)


def collect(folders: list, rng: np.random.Generator, progress=None) -> Samples:
    samples = Samples()
    takes = [t for folder in folders for t in find_takes(folder)]
    if not takes:
        raise PianoedgeError(f"no takes in {', '.join(map(str, folders))}")
    for take in takes:
        lock = lock_of_take(take)
        strips, fps = read_strips(take, lock, K.CANONICAL_SIZE)
        samples.add_take(strips, frame_labels(take.notes(), fps, len(strips)), lock.lowest_key, lock.num_keys, rng)
        if progress is not None:
            progress.update(1)
    return samples


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, loss_fn, lr: float, log) -> None:
    """The paper's schedule: Adam, batch 32, lr halved every 10 epochs (L2: see ``L2``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=L2)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 10, 0.5)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        total, started = 0.0, time.perf_counter()
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            loss = loss_fn(model(xt[batch]), yt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        schedule.step()
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / max(len(order), 1):.4f} ({time.perf_counter() - started:.0f} s)")


def train_seed(folders: list, run_dir: Path, epochs: int = 6, lstm_epochs: int = 6, seed: int = 0, progress=None, log=print) -> Path:
    """Train the four CNNs and two velocity LSTMs; writes ``run_dir/seed.pt`` and ``seed.json``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    samples = collect(folders, rng, progress)
    state, counts = {}, {}
    cnns = {}
    for kind in KINDS:
        x, y = samples.balanced(kind, rng)
        counts["-".join((kind[0], "black" if kind[1] else "white"))] = int(len(y))
        log(f"{kind[0]} {'black' if kind[1] else 'white'} CNN: {len(y)} balanced crops")
        cnn = SeedCNN(CROP[kind])
        _fit(cnn, x, y, epochs, F.binary_cross_entropy_with_logits, 1e-3, log)
        cnns[kind] = cnn.eval()
        state[_name(kind)] = cnn.state_dict()
    for black in (False, True):
        if not samples.sequences[black]:
            continue
        seqs = np.stack(samples.sequences[black])
        with torch.no_grad():  # the CNN is frozen: its features are computed once
            feats = cnns[("single", black)].embedding(torch.from_numpy(seqs.reshape(-1, *seqs.shape[2:]))).reshape(len(seqs), VELOCITY_FRAMES, -1)
        log(f"{'black' if black else 'white'} velocity LSTM: {len(seqs)} onsets")
        lstm = SeedLSTM()
        _fit(lstm, feats.numpy(), np.array(samples.velocities[black], np.float32), lstm_epochs, F.mse_loss, 5e-3, log)
        state[f"lstm-{'black' if black else 'white'}"] = lstm.state_dict()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, run_dir / "seed.pt")
    (run_dir / "seed.json").write_text(json.dumps({"model": "seed", "epochs": epochs, "lstm_epochs": lstm_epochs,
                                                   "seed": seed, "samples": counts}, indent=1))
    return run_dir / "seed.pt"


def _name(kind) -> str:
    return f"{kind[0]}-{'black' if kind[1] else 'white'}"


class SeedTranscriber:
    """The baseline as a whole: bundle (or single) CNNs per frame, runs of pressed frames as notes,
    velocity from the LSTM at each note's first frame."""

    def __init__(self, folder: Path, mode: str = "bundle"):
        path = Path(folder) / "seed.pt"
        if not path.is_file():
            raise PianoedgeError(f"seed-paper weights not found: {path}; train them with: pianoedge train --arch seed ...")
        state = torch.load(path, weights_only=True)
        self.mode = mode
        self.cnns = {}
        for kind in KINDS:
            cnn = SeedCNN(CROP[kind])
            cnn.load_state_dict(state[_name(kind)])
            self.cnns[kind] = cnn.eval()
        self.lstms = {}
        for black in (False, True):
            lstm = SeedLSTM()
            lstm.load_state_dict(state[f"lstm-{'black' if black else 'white'}"])
            self.lstms[black] = lstm.eval()

    @torch.no_grad()
    def pressed(self, strips: np.ndarray, spans: list[np.ndarray], lowest: int, num_keys: int) -> np.ndarray:
        """(frames, num_keys) P(pressed), given each strip's key spans."""
        black = K.layout(num_keys, lowest).black_mask
        out = np.zeros((len(strips), num_keys), np.float32)
        for t, strip in enumerate(strips):
            for is_black in (False, True):
                keys = np.flatnonzero(black == is_black)
                logits = self.cnns[(self.mode, is_black)](torch.from_numpy(crop_keys(strip, spans[t], keys, self.mode, is_black)))
                out[t, keys] = torch.sigmoid(logits).numpy()
        return out

    def transcribe_take(self, take) -> tuple[list[Note], float, int]:
        """A take's notes through its lock (labelled or found), its frame rate and frame count."""
        lock = lock_of_take(take)
        strips, fps = read_strips(take, lock, K.CANONICAL_SIZE)
        return self.transcribe(strips, lock.lowest_key, lock.num_keys, fps), fps, len(strips)

    @torch.no_grad()
    def transcribe(self, strips: np.ndarray, lowest: int, num_keys: int, fps: float) -> list[Note]:
        spans = [key_spans(strip, num_keys, lowest) for strip in strips]  # the paper's layout, per frame
        down = self.pressed(strips, spans, lowest, num_keys) >= 0.5
        notes = []
        for k in range(num_keys):
            edges = np.flatnonzero(np.diff(np.concatenate([[0], down[:, k].astype(int), [0]])))
            black = K.is_black(lowest + k)
            for start, end in zip(edges[::2], edges[1::2]):
                frames = np.clip(np.arange(start - 2, start + 3), 0, len(strips) - 1)
                seq = np.stack([crop_keys(strips[f], spans[f], [k], "single", black)[0] for f in frames])
                feats = self.cnns[("single", black)].embedding(torch.from_numpy(seq))[None]
                velocity = int(round(float(self.lstms[black](feats)[0]) * 127))
                notes.append(Note(lowest + k, start / fps, end / fps, max(velocity, 1)))
        return sorted(notes, key=lambda n: (n.start, n.pitch))
