"""Training PianoNet on takes (studio or real), with checkpoints, resume and per-epoch metrics. Host only (torch).

A step draws random clips of consecutive frames (the trunk runs once per frame, the head on every
frame with a full context behind it), jitters them as a slightly different camera and lock would
(shift, scale, focus, gamma, brightness, contrast, noise), and minimises binary cross-entropy on key down, onset
and offset plus the L1 error of the velocity at onsets.
"""
from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError
from pianoedge.takes import find_takes

from .data import CONTEXT_FPS, STRIP_SIZE, TakeData, black_flags, context_span, context_stride, key_pool, load_take
from .decode import Thresholds, decode
from .evaluate import matched_velocities, mean_of, score
from .net import CONTEXT, OUTPUTS, PianoNet, grown_stem

WEIGHTS = Path(__file__).parent / "weights"  # shipped: pianonet.pt (state dict) + pianonet.json (manifest)
DECODER_GRID = {"onset": (0.3, 0.4, 0.5, 0.6), "frame_hold": (0.6, 0.75, 0.9), "frame_off": (0.25, 0.35, 0.5)}
VELOCITY_SLOPES = np.round(np.arange(0.0, 1.51, 0.05), 2)  # slopes tried by ``fit_velocity``
MIN_VELOCITY_NOTES = 20  # fewer matched notes than this leave the velocity output as it is


@dataclass
class Settings:
    steps_per_epoch: int = 150
    epochs: int = 12
    batch: int = 4  # clips per step
    clip: int = CONTEXT - 1 + 16  # frames per clip: 16 labelled frames each
    lr: float = 3e-3
    seed: int = 0
    frame_weight: float = 2.0  # positive-class weights: pressed keys are few, onsets rarer
    onset_weight: float = 4.0
    offset_weight: float = 2.0


def load_takes(folders: list[str | Path], progress=None) -> list[TakeData]:
    takes = [t for folder in folders for t in find_takes(folder)]
    if not takes:
        raise PianoedgeError(f"no takes (NAME.mp4 + NAME.mid) in {', '.join(map(str, folders))}")
    return load_takes_list(takes, progress)


def load_takes_list(takes: list, progress=None) -> list[TakeData]:
    if progress is not None:
        progress.reset(total=len(takes))
    out = []
    for take in takes:
        out.append(load_take(take))
        if progress is not None:
            progress.update(1)
    return out


def _jitter(clip: np.ndarray, rest: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random camera/lock/light change applied to every frame of a clip and to its rest view."""
    h, w = clip.shape[1:]
    scale = rng.uniform(0.98, 1.02)
    m = np.array([[scale, 0, rng.uniform(-1.5, 1.5) + (1 - scale) * w / 2], [0, rng.uniform(0.96, 1.04), rng.uniform(-1.5, 1.5)]])
    gain, bias, gamma = rng.uniform(0.8, 1.2), rng.uniform(-20, 20), rng.uniform(0.75, 1.35)
    blur = rng.uniform(0.0, 1.2) if rng.random() < 0.5 else 0.0  # a lower-resolution or softer camera
    frames = np.concatenate([clip, rest[None]])
    out = np.stack([cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE) for f in frames]).astype(np.float32)
    if blur > 0.3:
        out = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in out])
    out = 255.0 * (out / 255.0) ** gamma
    out = np.clip(out * gain + bias + rng.normal(0, rng.uniform(0, 4), out.shape), 0, 255)
    return out[:-1], out[-1]


def _batch(takes: list[TakeData], settings: Settings, rng: np.random.Generator):
    """Clips from one keyboard size (the pooling is per size) and one context stride (frame rate):
    inputs, targets, pooling, black flags and the stride."""
    first = takes[int(rng.integers(len(takes)))]
    size, stride = first.num_keys, context_stride(first.fps)
    pool = [t for t in takes if t.num_keys == size and context_stride(t.fps) == stride and len(t.strips) >= settings.clip]
    clips, rests, targets = [], [], []
    for _ in range(settings.batch):
        data = pool[int(rng.integers(len(pool)))]
        start = int(rng.integers(len(data.strips) - settings.clip + 1))
        clip, rest = _jitter(data.strips[start : start + settings.clip], data.rest, rng)
        clips.append(clip)
        rests.append(rest)
        frames = slice(start + context_span(CONTEXT, stride) - 1, start + settings.clip)
        keys = K.layout(data.num_keys, data.lowest).slots
        targets.append(np.stack([data.labels["pressed"][frames, keys], data.labels["onset"][frames, keys],
                                 data.labels["offset"][frames, keys], data.labels["velocity"][frames, keys] / 127.0], axis=2))
    lowest = pool[0].lowest
    return (torch.from_numpy(np.stack(clips)), torch.from_numpy(np.stack(rests)), torch.from_numpy(np.stack(targets).astype(np.float32)),
            torch.from_numpy(key_pool(size, lowest, STRIP_SIZE[0])), torch.from_numpy(black_flags(size, lowest)), stride)


def loss_of(out: torch.Tensor, target: torch.Tensor, settings: Settings) -> torch.Tensor:
    frame = F.binary_cross_entropy_with_logits(out[..., 0], target[..., 0], pos_weight=torch.tensor(settings.frame_weight))
    onset = F.binary_cross_entropy_with_logits(out[..., 1], target[..., 1], pos_weight=torch.tensor(settings.onset_weight))
    offset = F.binary_cross_entropy_with_logits(out[..., 2], target[..., 2], pos_weight=torch.tensor(settings.offset_weight))
    struck = target[..., 1] > 0
    velocity = (out[..., 3][struck] - target[..., 3][struck]).abs().mean() if struck.any() else out.sum() * 0
    return frame + onset + offset + velocity


@torch.no_grad()
def posteriors(net: PianoNet, data: TakeData, chunk: int = 256) -> np.ndarray:
    """(frames, keys, 4) probabilities for a whole take: P(down), P(onset), P(offset), velocity 0..1.
    The first frames reuse the first frame as their past; context frames are ``context_stride`` apart."""
    net.eval()
    pool = torch.from_numpy(key_pool(data.num_keys, data.lowest, STRIP_SIZE[0]))
    black = torch.from_numpy(black_flags(data.num_keys, data.lowest))
    rest = torch.from_numpy(data.rest)[None]
    feats = torch.cat([net.key_features(torch.from_numpy(data.strips[i : i + chunk]), rest, pool) for i in range(0, len(data.strips), chunk)])
    stride = context_stride(data.fps)
    span = context_span(CONTEXT, stride)
    feats = torch.cat([feats[:1].expand(span - 1, -1, -1), feats])
    windows = feats.unfold(0, span, 1)[..., ::stride].permute(0, 3, 1, 2)  # (frames, CONTEXT, keys, F)
    out = torch.cat([net.head(windows[i : i + chunk], black) for i in range(0, len(windows), chunk)])
    return torch.cat([torch.sigmoid(out[..., :3]), out[..., 3:]], dim=2).numpy()


def evaluate(net: PianoNet, takes: list[TakeData], thresholds: Thresholds | None = None,
             probs: list[np.ndarray] | None = None) -> tuple[dict[str, float], list[dict]]:
    """Metrics per take and their mean (evaluate.METRICS); ``probs``: the takes' posteriors when already computed."""
    probs = probs or [posteriors(net, data) for data in takes]
    per_take = []
    for data, p in zip(takes, probs):
        pred = decode(p, data.lowest, data.fps, thresholds or Thresholds())
        per_take.append({"take": data.name, **score(data.notes, pred, data.fps, len(data.strips))})
    keys = [k for k in per_take[0] if k != "take"]
    return {k: mean_of([r[k] for r in per_take]) for k in keys}, per_take


def tune_decoder(net: PianoNet, takes: list[TakeData], keep: Thresholds | None = None) -> tuple[Thresholds, dict[str, float]]:
    """The decoder thresholds (over ``DECODER_GRID``; ``keep``'s when given) with the best mean onset F1 on
    these takes, then the velocity line fitted to their matched notes (``fit_velocity``), and the metrics with both."""
    probs = [posteriors(net, data) for data in takes]
    if keep is None:
        thresholds, metrics = _best_thresholds(net, takes, probs)
    else:
        thresholds = replace(keep, velocity_shift=0.0, velocity_scale=1.0)
        metrics = evaluate(net, takes, thresholds, probs)[0]
    pairs = [matched_velocities(data.notes, decode(p, data.lowest, data.fps, thresholds)) for data, p in zip(takes, probs)]
    true, predicted = (np.concatenate(a) for a in zip(*pairs))
    if len(true) < MIN_VELOCITY_NOTES:
        return thresholds, metrics
    shift, scale = fit_velocity(true, predicted)
    thresholds = replace(thresholds, velocity_shift=round(shift / 127, 4), velocity_scale=round(scale, 3))
    return thresholds, evaluate(net, takes, thresholds, probs)[0]


def _best_thresholds(net: PianoNet, takes: list[TakeData], probs: list[np.ndarray]) -> tuple[Thresholds, dict[str, float]]:
    """Over ``DECODER_GRID``: the thresholds with the best mean onset F1 (then frame F1), and their metrics."""
    best = None
    for values in itertools.product(*DECODER_GRID.values()):
        chosen = dict(zip(DECODER_GRID, values))
        thresholds = Thresholds(**chosen, rearm=round(0.6 * chosen["onset"], 3))
        metrics = evaluate(net, takes, thresholds, probs)[0]
        rank = (metrics["onset_f1"], metrics["frame_f1_white"] + metrics["frame_f1_black"])
        if best is None or rank > best[0]:
            best = (rank, thresholds, metrics)
    return best[1], best[2]


def fit_velocity(true: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(a, b) of the line ``true ~ a + b * predicted`` (MIDI velocities) with the least absolute error, the
    slope in ``VELOCITY_SLOPES``: for a slope, the best intercept is the median residual. (A grid and a
    median, as the fit has two numbers and must not be thrown by outliers; no solver needed.) Where the
    predictions carry nothing of the truth, the slope is 0 and every note gets the median velocity."""
    fits = [(float(np.median(true - b * predicted)), float(b)) for b in VELOCITY_SLOPES]
    return min(fits, key=lambda f: np.abs(true - f[0] - f[1] * predicted).mean())


def retune(folder: Path, takes: list[TakeData], log=print, velocity_only: bool = False) -> dict[str, float]:
    """Tune the decoder of the model in ``folder`` on ``takes`` and store it in its manifest
    (``velocity_only``: keep its thresholds, fit only the velocity line)."""
    net = load_weights(folder)
    thresholds, metrics = tune_decoder(net, takes, load_thresholds(folder) if velocity_only else None)
    manifest = json.loads((Path(folder) / "pianonet.json").read_text())
    names = [t.name for t in takes]
    manifest.update(decoder=asdict(thresholds), velocity_tuned_on=names, metrics={**manifest.get("metrics", {}), **metrics})
    if not velocity_only:
        manifest["decoder_tuned_on"] = names
    (Path(folder) / "pianonet.json").write_text(json.dumps(manifest, indent=1))
    log(f"decoder thresholds {asdict(thresholds)}: onset F1 {metrics['onset_f1']:.3f}")
    return metrics


def train(train_dirs: list, run_dir: Path, val_dirs: list | None = None, settings: Settings | None = None,
          progress_factory=None, log=print, init: Path | None = None) -> dict:
    """Train (resuming from ``run_dir/checkpoint.pt`` when present, else starting from the weights in
    ``init`` when given: fine-tuning, e.g. on real takes); returns the best epoch's metrics."""
    settings = settings or Settings()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    train_takes = load_takes(train_dirs, progress_factory and progress_factory(0, "take", "loading train"))
    val_takes = load_takes(val_dirs, progress_factory and progress_factory(0, "take", "loading val")) if val_dirs else []
    net = load_weights(init).train() if init else PianoNet(STRIP_SIZE[1])
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs * settings.steps_per_epoch)
    epoch, best = 0, None
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        changed = ", ".join(f"{k} {v} -> {asdict(settings)[k]}" for k, v in state.get("settings", {}).items()
                            if k != "epochs" and asdict(settings)[k] != v)  # more epochs may extend a finished run
        if changed:
            raise PianoedgeError(f"{run_dir} holds a run with other settings ({changed}): resume it with the same "
                                 f"settings, or train into a new -o folder")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        epoch, best = state["epoch"], state["best"]
        log(f"resumed from {checkpoint} after epoch {epoch}")
    while epoch < settings.epochs:
        rng = np.random.default_rng([settings.seed, epoch])  # resume-safe: each epoch's draws depend only on its number
        net.train()
        bar = progress_factory and progress_factory(settings.steps_per_epoch, "step", f"epoch {epoch + 1}/{settings.epochs}")
        losses, started = [], time.perf_counter()
        for _ in range(settings.steps_per_epoch):
            clips, rest, target, pool, black, stride = _batch(train_takes, settings, rng)
            loss = loss_of(net(clips, rest, pool, black, stride), target, settings)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if bar is not None:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        epoch += 1
        metrics = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - started}
        if val_takes:
            metrics.update(evaluate(net, val_takes)[0])
        log(json.dumps(metrics))
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        key = metrics.get("onset_f1", -metrics["loss"])
        if best is None or key >= best["key"]:
            best = {"key": key, **metrics}
            save_weights(net, run_dir, {"settings": asdict(settings), "metrics": metrics})
        torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "epoch": epoch, "best": best, "settings": asdict(settings)}, checkpoint)
    if val_takes:
        best.update(retune(run_dir, val_takes, log))
    return best


def save_weights(net: PianoNet, folder: Path, manifest: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "pianonet.pt")
    manifest = {"model": "pianonet", "strip_size": list(STRIP_SIZE), "context": CONTEXT, "context_fps": CONTEXT_FPS,
                "outputs": list(OUTPUTS), **manifest}
    (folder / "pianonet.json").write_text(json.dumps(manifest, indent=1))


def load_thresholds(folder: Path = WEIGHTS) -> Thresholds:
    """The decoder thresholds in a model's manifest (defaults when it names none)."""
    path = Path(folder) / "pianonet.json"
    try:
        return Thresholds.of(json.loads(path.read_text())) if path.is_file() else Thresholds()
    except (json.JSONDecodeError, TypeError) as exc:
        raise PianoedgeError(f"{path} is not a valid model manifest ({exc}); copy it again with the weights") from None


def load_weights(folder: Path = WEIGHTS) -> PianoNet:
    path = Path(folder) / "pianonet.pt"
    if not path.is_file():
        raise PianoedgeError(f"model weights not found: {path}; train them with: pianoedge train --data DIR -o RUN_DIR")
    net = PianoNet(STRIP_SIZE[1])
    net.load_state_dict(grown_stem(torch.load(path, weights_only=True), net))
    return net.eval()
