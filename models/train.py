"""Training PianoNet on takes (studio or real), with checkpoints, resume and per-epoch metrics. Host only (torch).

A step draws random clips of consecutive frames (the trunk runs once per frame, each head on every
frame with its whole window in the clip), jitters them as a slightly different camera and lock would
(shift, scale, focus, gamma, brightness, contrast, noise), and minimises, summed over the heads trained,
binary cross-entropy on key down, onset and offset plus the L1 error of the velocity at onsets.
``Settings.heads`` "offline" trains the offline head alone on a loaded model's frozen trunk
(``net.HEADS``): the trunk's features of every take are then computed once (``FEATURE_DRAWS`` draws:
as filmed, and jittered) and each step reads clips of them, some fifty times faster than a step
through the trunk.
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
from torch import nn

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError
from pianoedge.takes import find_takes

from .data import (CONTEXT_FPS, KEY_CHANGE_BANDS, STRIP_SIZE, TakeData, black_flags, context_span, context_stride, key_pool, load_take,
                   motion_batches)
from .decode import Thresholds, decode
from .evaluate import matched_velocities, mean_of, score
from .net import AHEAD, CONTEXT, FEATURES, HEADS, OUTPUTS, Head, PianoNet, grown_front, grown_motion, grown_stem, trunk_width, widened

WEIGHTS = Path(__file__).parent / "weights"  # shipped: pianonet.pt (state dict) + pianonet.json (manifest)
DECODER_GRID = {"onset": (0.3, 0.4, 0.5, 0.6), "frame_hold": (0.6, 0.75, 0.9), "frame_off": (0.25, 0.35, 0.5)}
VELOCITY_SLOPES = np.round(np.arange(0.0, 1.51, 0.05), 2)  # slopes tried by ``fit_velocity``
MIN_VELOCITY_NOTES = 20  # fewer matched notes than this leave the velocity output as it is
FEATURE_DRAWS = 2  # --heads offline: each take's features as filmed and under one random jitter


@dataclass
class Settings:
    steps_per_epoch: int = 150
    epochs: int = 12
    batch: int = 4  # clips per step
    clip: int = CONTEXT - 1 + AHEAD + 16  # frames per clip: 16 labelled frames each for every head
    heads: str = "all"  # "all": trunk and both heads; "offline": the offline head only, on a loaded model's trunk
    lr: float = 3e-3
    seed: int = 0
    frame_weight: float = 2.0  # positive-class weights: pressed keys are few, onsets rarer
    onset_weight: float = 4.0
    offset_weight: float = 2.0
    width: int | None = None  # the trunk's width (``net.BLOCK_CHANNELS`` times it): an --init model is widened to it (``net.widened``);
    # None: the --init model's, else 1
    key_change_weight: float = 0.0  # the trunk's side task on studio takes that have the label (``key_change_head``); 0: none
    # (off: with weight 1, run 34 scored below its control on every set; BENCHMARKS.md, twenty-third session)


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


REST_SHIFT_PX = 1.0  # the camera moves this far at most (strip pixels) after the rest view is taken
CAMERA_REST_SHARE = 0.5  # clips read against the rest view a live camera has (``TakeData.camera_rest``), the others a file's


def _jitter(clip: np.ndarray, rest: np.ndarray, rng: np.random.Generator,
            change: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One random camera/lock/light change applied to every frame of a clip and to its rest view; in
    half the clips the rest view is also shifted against the frames by up to ``REST_SHIFT_PX`` each way
    (a camera clipped to a piano moves a little after the lock, and a real rest view never lines up
    with every frame to the pixel). ``change``: the clip's (frames, KEY_CHANGE_BANDS, W) key-change
    label, moved as its frames are (no light change: it says where, not how bright)."""
    h, w = clip.shape[1:]
    scale = rng.uniform(0.98, 1.02)
    m = np.array([[scale, 0, rng.uniform(-1.5, 1.5) + (1 - scale) * w / 2], [0, rng.uniform(0.96, 1.04), rng.uniform(-1.5, 1.5)]])
    moved = m + [[0, 0, rng.uniform(-REST_SHIFT_PX, REST_SHIFT_PX)], [0, 0, rng.uniform(-REST_SHIFT_PX, REST_SHIFT_PX)]] if rng.random() < 0.5 else m
    gain, bias, gamma = rng.uniform(0.8, 1.2), rng.uniform(-20, 20), rng.uniform(0.75, 1.35)
    blur = rng.uniform(0.0, 1.2) if rng.random() < 0.5 else 0.0  # a lower-resolution or softer camera
    out = np.stack([cv2.warpAffine(f, affine, (w, h), borderMode=cv2.BORDER_REPLICATE)
                    for f, affine in [(f, m) for f in clip] + [(rest, moved)]]).astype(np.float32)
    if blur > 0.3:
        out = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in out])
    out = 255.0 * (out / 255.0) ** gamma
    out = np.clip(out * gain + bias + rng.normal(0, rng.uniform(0, 4), out.shape), 0, 255)
    if change is not None:
        rows = h // KEY_CHANGE_BANDS  # in bands: row y = rows * band + (rows - 1) / 2
        centre = (rows - 1) / 2
        bands = np.array([m[0], [0, m[1, 1], (centre * (m[1, 1] - 1) + m[1, 2]) / rows]])
        change = np.stack([cv2.warpAffine(c, bands, (w, KEY_CHANGE_BANDS), borderMode=cv2.BORDER_REPLICATE) for c in change])
    return out[:-1], out[-1], change


def _clip_draws(takes: list[TakeData], settings: Settings, rng: np.random.Generator):
    """One batch's clips, all of one keyboard size (the pooling is per size) and one context stride (frame
    rate), those of the first take drawn: that take, the stride, and a generator of (take index, first
    frame) per clip, drawn as it is read (the caller's own draws for a clip come before the next clip's)."""
    first = takes[int(rng.integers(len(takes)))]
    stride = context_stride(first.fps)
    pool = [i for i, t in enumerate(takes)
            if t.num_keys == first.num_keys and context_stride(t.fps) == stride and len(t.strips) >= settings.clip]

    def clips():
        for _ in range(settings.batch):
            index = pool[int(rng.integers(len(pool)))]
            yield index, int(rng.integers(len(takes[index].strips) - settings.clip + 1))
    return first, stride, clips()


def _batch(takes: list[TakeData], settings: Settings, rng: np.random.Generator):
    """Clips (``_clip_draws``), each with the ``stride`` frames before it (``PianoNet.clip_features``' lead):
    inputs, targets of every frame (``head_targets`` picks each head's), pooling, black flags, the stride and
    the side task's key-change targets (``_change_targets``; none labelled while ``settings.key_change_weight`` is 0)."""
    first, stride, draws = _clip_draws(takes, settings, rng)
    clips, rests, targets, changes = [], [], [], []
    for index, start in draws:
        data = takes[index]
        rest = data.camera_rest if rng.random() < CAMERA_REST_SHARE else data.rest
        frames = np.maximum(np.arange(start - stride, start + settings.clip), 0)  # ``stride`` frames before the clip: its motion
        side_task = settings.key_change_weight and data.key_change is not None  # else no label to move
        labelled = data.key_change[start : start + settings.clip] if side_task else None
        clip, rest, change = _jitter(data.strips[frames], rest, rng, labelled)
        clips.append(clip)
        rests.append(rest)
        targets.append(_targets(data, slice(start, start + settings.clip)))
        changes.append(change)
    size, lowest = first.num_keys, first.lowest
    return (torch.from_numpy(np.stack(clips)), torch.from_numpy(np.stack(rests)), torch.from_numpy(np.stack(targets).astype(np.float32)),
            torch.from_numpy(key_pool(size, lowest, STRIP_SIZE[0])), torch.from_numpy(black_flags(size, lowest)), stride,
            _change_targets(changes, settings.clip))


def _change_targets(changes: list[np.ndarray | None], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The clips' key-change labels as the trunk's side task reads them: (B, frames, KEY_CHANGE_BANDS, W // 2)
    shares 0..1 (two strip columns per trunk column; zero for a clip without the label) and (B,) 1.0
    where the clip has it."""
    width = STRIP_SIZE[0]
    target = np.zeros((len(changes), frames, KEY_CHANGE_BANDS, width // 2), np.float32)
    for i, change in enumerate(changes):
        if change is not None:
            target[i] = change.reshape(frames, KEY_CHANGE_BANDS, width // 2, 2).mean(axis=3) / 255.0
    return torch.from_numpy(target), torch.tensor([c is not None for c in changes], dtype=torch.float32)


@dataclass
class TakeFeatures:
    """A take with its frozen trunk's key features, one (frames, keys, F) tensor per draw (``FEATURE_DRAWS``)."""

    data: TakeData
    draws: list[torch.Tensor]


def take_feature_draws(net: PianoNet, takes: list[TakeData], seed: int, progress=None) -> list[TakeFeatures]:
    """Each take's features as filmed and under ``FEATURE_DRAWS - 1`` jitters (``_jitter``, one per take and draw)."""
    out = []
    for i, data in enumerate(takes):
        rng = np.random.default_rng([seed, i])
        draws = [take_features(net, data)]
        for _ in range(FEATURE_DRAWS - 1):
            strips, rest = (a.astype(np.uint8) for a in _jitter(data.strips, data.rest, rng)[:2])
            draws.append(take_features(net, replace(data, strips=strips, rest=rest)))
        out.append(TakeFeatures(data, draws))
        if progress is not None:
            progress.update(1)
    return out


def _feature_batch(takes: list[TakeFeatures], settings: Settings, rng: np.random.Generator):
    """As ``_batch``, from features: (B, clip, keys, F) features, targets of every frame, black flags, stride."""
    first, stride, draws = _clip_draws([t.data for t in takes], settings, rng)
    feats, targets = [], []
    for index, start in draws:
        take = takes[index]
        feats.append(take.draws[int(rng.integers(len(take.draws)))][start : start + settings.clip])
        targets.append(_targets(take.data, slice(start, start + settings.clip)))
    return (torch.stack(feats), torch.from_numpy(np.stack(targets).astype(np.float32)),
            torch.from_numpy(black_flags(first.num_keys, first.lowest)), stride)


def _targets(data: TakeData, frames: slice) -> np.ndarray:
    """(frames, keys, 4) targets: pressed, onset, offset, velocity / 127."""
    keys = K.layout(data.num_keys, data.lowest).slots
    return np.stack([data.labels["pressed"][frames, keys], data.labels["onset"][frames, keys],
                     data.labels["offset"][frames, keys], data.labels["velocity"][frames, keys] / 127.0], axis=2)


def head_targets(target: torch.Tensor, name: str, stride: int) -> torch.Tensor:
    """The targets (B, L, keys, 4) of a clip's frames that head ``name`` labels (``PianoNet.run_head``)."""
    return target[:, context_span(CONTEXT, stride) - 1 : target.shape[1] - HEADS[name] * stride]


def trained_heads(net: PianoNet, settings: Settings) -> list[str]:
    return ["offline"] if settings.heads == "offline" else list(net.heads())


KEY_CHANGE_POS_WEIGHT = 10.0  # changed pixels are few (under 1 % of the strip): their weight in the side task


SIDE_TASK_LOG = "side task: the keys' own change (studio label), on the takes that have it"


def key_change_head() -> nn.Conv1d:
    """The trunk's side task in training: from the trunk's features along the keyboard, what the keys alone
    change in each of the strip's ``KEY_CHANGE_BANDS`` row bands (``studio.keychange``), as logits. It
    is meant to teach the trunk a key's own motion under a hand; the model ships without it."""
    return nn.Conv1d(FEATURES, KEY_CHANGE_BANDS, 1)


def step_loss(net: PianoNet, batch: tuple, settings: Settings, side: nn.Conv1d | None = None) -> torch.Tensor:
    """The loss of one ``_batch``, summed over the heads trained, plus ``settings.key_change_weight`` times
    the side task's (``side``, a ``key_change_head``) on the clips with the label."""
    clips, rest, target, pool, black, stride, (change, labelled) = batch
    maps = net.clip_maps(clips, rest, lead=stride)
    loss = heads_loss(net, net.pooled_clips(maps, pool), target, black, stride, settings)
    if side is None or not settings.key_change_weight or not labelled.any():
        return loss
    logits = side(maps.flatten(0, 1)).reshape(change.shape)
    each = F.binary_cross_entropy_with_logits(logits, change, pos_weight=torch.tensor(KEY_CHANGE_POS_WEIGHT), reduction="none")
    return loss + settings.key_change_weight * (each.mean(dim=(1, 2, 3)) * labelled).sum() / labelled.sum()


def heads_loss(net: PianoNet, feats: torch.Tensor, target: torch.Tensor, black: torch.Tensor, stride: int,
               settings: Settings) -> torch.Tensor:
    """The loss of the heads trained on (B, L, keys, F) clip features (a ``_feature_batch`` is these inputs)."""
    return sum(loss_of(net.run_head(name, feats, black, stride), head_targets(target, name, stride), settings)
               for name in trained_heads(net, settings))


def loss_of(out: torch.Tensor, target: torch.Tensor, settings: Settings) -> torch.Tensor:
    frame = F.binary_cross_entropy_with_logits(out[..., 0], target[..., 0], pos_weight=torch.tensor(settings.frame_weight))
    onset = F.binary_cross_entropy_with_logits(out[..., 1], target[..., 1], pos_weight=torch.tensor(settings.onset_weight))
    offset = F.binary_cross_entropy_with_logits(out[..., 2], target[..., 2], pos_weight=torch.tensor(settings.offset_weight))
    struck = target[..., 1] > 0
    velocity = (out[..., 3][struck] - target[..., 3][struck]).abs().mean() if struck.any() else out.sum() * 0
    return frame + onset + offset + velocity


@torch.no_grad()
def take_features(net: PianoNet, data: TakeData, chunk: int = 256) -> torch.Tensor:
    """(frames, keys, FEATURES): the trunk's key features of every frame of a take, each strip's light
    matched to the rest view's first (``data.match_light``), as the runtime does. (Training clips are
    not matched: a clip and its rest view are jittered alike, so the map would be the identity.)"""
    net.eval()
    pool = torch.from_numpy(key_pool(data.num_keys, data.lowest, STRIP_SIZE[0]))
    rest = torch.from_numpy(data.rest)[None]
    return torch.cat([net.key_features(torch.from_numpy(batch), rest, pool, torch.from_numpy(before))
                      for batch, before in motion_batches(data.strips, data.rest, context_stride(data.fps), chunk)])


@torch.no_grad()
def posteriors(net: PianoNet, data: TakeData, chunk: int = 256, head: str = "live", feats: torch.Tensor | None = None) -> np.ndarray:
    """(frames, keys, 4) probabilities for a whole take from head ``head``: P(down), P(onset), P(offset),
    velocity 0..1. The first frames reuse the first frame as their past, the last the last frame as
    their future; context frames are ``context_stride`` apart. ``feats``: the take's ``take_features``
    when already computed."""
    net.eval()
    black = torch.from_numpy(black_flags(data.num_keys, data.lowest))
    feats = take_features(net, data, chunk) if feats is None else feats
    stride = context_stride(data.fps)
    past, ahead = context_span(CONTEXT, stride) - 1, HEADS[head] * stride
    feats = torch.cat([feats[:1].expand(past, -1, -1), feats, feats[-1:].expand(ahead, -1, -1)])
    windows = feats.unfold(0, past + ahead + 1, 1)[..., ::stride].permute(0, 3, 1, 2)  # (frames, window, keys, F)
    out = torch.cat([net.heads()[head](windows[i : i + chunk], black) for i in range(0, len(windows), chunk)])
    return torch.cat([torch.sigmoid(out[..., :3]), out[..., 3:]], dim=2).numpy()


def evaluate(net: PianoNet, takes: list[TakeData], thresholds: Thresholds | None = None,
             probs: list[np.ndarray] | None = None, head: str = "live", as_file: bool = True) -> tuple[dict[str, float], list[dict]]:
    """Metrics per take and their mean (evaluate.METRICS) of head ``head``; ``probs``: the takes' posteriors
    when already computed; ``as_file``: notes as a file's transcription times them (see ``decode``)."""
    probs = probs or [posteriors(net, data, head=head) for data in takes]
    per_take = []
    for data, p in zip(takes, probs):
        pred = decode(p, data.lowest, data.fps, thresholds or Thresholds(), as_file)
        per_take.append({"take": data.name, **score(data.notes, pred, data.fps, len(data.strips))})
    keys = [k for k in per_take[0] if k != "take"]
    return {k: mean_of([r[k] for r in per_take]) for k in keys}, per_take


def head_posteriors(net: PianoNet, takes: list[TakeData], feats: list[torch.Tensor] | None = None) -> dict[str, list[np.ndarray]]:
    """Each head's posteriors of every take, by head name (``feats``: the takes' ``take_features`` when already computed)."""
    feats = feats or [take_features(net, data) for data in takes]
    return {head: [posteriors(net, data, head=head, feats=f) for data, f in zip(takes, feats)] for head in net.heads()}


def head_metric(head: str, metric: str) -> str:
    """The name ``heads_metrics`` gives a head's metric: the live head's as it is, the others' with the head's name in front."""
    return metric if head == "live" else f"{head}_{metric}"


def heads_metrics(net: PianoNet, takes: list[TakeData], probs: dict[str, list[np.ndarray]],
                  thresholds: Thresholds | None = None) -> dict[str, float]:
    """Every head's mean metrics (``head_metric`` names them) of its notes timed as the product times them: the
    live head's as ``run`` sends them, the offline head's as ``transcribe`` writes them."""
    out = {}
    for head, head_probs in probs.items():
        result = evaluate(net, takes, thresholds, head_probs, as_file=head != "live")[0]
        out.update({head_metric(head, name): value for name, value in result.items()})
    return out


def tune_decoder(net: PianoNet, takes: list[TakeData], keep: Thresholds | None = None) -> tuple[Thresholds, dict[str, float]]:
    """The decoder thresholds (over ``DECODER_GRID``; ``keep``'s when given) with the best onset F1 plus
    onset+offset F1 on these takes, over every head as the product uses it (``heads_metrics``), then the
    velocity line fitted to their matched notes (``fit_velocity``), and the metrics with both."""
    probs = head_posteriors(net, takes)
    if keep is None:
        thresholds, metrics = _best_thresholds(net, takes, probs)
    else:
        thresholds = replace(keep, velocity_shift=0.0, velocity_scale=1.0)
        metrics = heads_metrics(net, takes, probs, thresholds)
    pairs = [matched_velocities(data.notes, decode(p, data.lowest, data.fps, thresholds, as_file=head != "live"))
             for head, head_probs in probs.items() for data, p in zip(takes, head_probs)]
    true, predicted = (np.concatenate(a) for a in zip(*pairs))
    if len(true) < MIN_VELOCITY_NOTES:
        return thresholds, metrics
    shift, scale = fit_velocity(true, predicted)
    thresholds = replace(thresholds, velocity_shift=round(shift / 127, 4), velocity_scale=round(scale, 3))
    return thresholds, heads_metrics(net, takes, probs, thresholds)


def _best_thresholds(net: PianoNet, takes: list[TakeData], probs: dict[str, list[np.ndarray]]) -> tuple[Thresholds, dict[str, float]]:
    """Over ``DECODER_GRID``: the thresholds with the best onset F1 plus onset+offset F1 (a note must start
    and end right: onset F1 alone cannot choose the release level), summed over the heads, then frame F1,
    and their metrics (``heads_metrics``)."""
    best = None
    for values in itertools.product(*DECODER_GRID.values()):
        chosen = dict(zip(DECODER_GRID, values))
        thresholds = Thresholds(**chosen, rearm=round(0.6 * chosen["onset"], 3))
        metrics = heads_metrics(net, takes, probs, thresholds)
        rank = tuple(sum(metrics[head_metric(head, name)] for head in probs for name in names)
                     for names in (("onset_f1", "onset_offset_f1"), ("frame_f1_white", "frame_f1_black")))
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
    log(f"decoder thresholds {asdict(thresholds)}: onset F1 " + ", ".join(
        f"{head} {metrics[head_metric(head, 'onset_f1')]:.3f}" for head in net.heads()))
    return metrics


def train(train_dirs: list, run_dir: Path, val_dirs: list | None = None, settings: Settings | None = None,
          progress_factory=None, log=print, init: Path | None = None) -> dict:
    """Train (resuming from ``run_dir/checkpoint.pt`` when present, else starting from the weights in
    ``init`` when given: fine-tuning, e.g. on real takes); returns the best epoch's metrics."""
    settings = settings or Settings()
    if settings.heads == "offline" and not init:
        raise PianoedgeError("--heads offline trains the offline head on a trained model's trunk: give it with --init RUN_DIR")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    train_takes = load_takes(train_dirs, progress_factory and progress_factory(0, "take", "loading train"))
    val_takes = load_takes(val_dirs, progress_factory and progress_factory(0, "take", "loading val")) if val_dirs else []
    net = load_weights(init) if init else PianoNet(STRIP_SIZE[1], width=settings.width or 1)
    if settings.width and settings.width != net.width:
        if settings.heads == "offline":
            raise PianoedgeError("--heads offline keeps the --init model's trunk as it is: leave out --width")
        net = widened(net, settings.width, settings.seed)
    if net.offline is None:  # weights from before the offline head: it starts untrained
        net.offline = Head(HEADS["offline"])
    trained = net.offline if settings.heads == "offline" else net
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(settings.heads == "all" or name.startswith("offline."))
    labelled = any(data.key_change is not None for data in train_takes)
    side = key_change_head() if settings.heads == "all" and settings.key_change_weight and labelled else None
    if side is not None:
        log(SIDE_TASK_LOG)
    optimizer = torch.optim.AdamW(list(trained.parameters()) + (list(side.parameters()) if side else []), lr=settings.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs * settings.steps_per_epoch)
    epoch, best = 0, None
    checkpoint = run_dir / "checkpoint.pt"
    frozen = settings.heads == "offline"
    if frozen:  # the trunk never changes: its features of every take, once
        train_feats = take_feature_draws(net, train_takes, settings.seed, progress_factory and progress_factory(
            len(train_takes), "take", "trunk features"))
        val_feats = [take_features(net, data) for data in val_takes]
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        changed = ", ".join(f"{k} {v} -> {asdict(settings)[k]}" for k, v in state.get("settings", {}).items()
                            if k != "epochs" and asdict(settings)[k] != v)  # more epochs may extend a finished run
        if changed:
            raise PianoedgeError(f"{run_dir} holds a run with other settings ({changed}): resume it with the same "
                                 f"settings, or train into a new -o folder")
        net.load_state_dict(state["model"])
        if side is not None:
            side.load_state_dict(state["side"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        epoch, best = state["epoch"], state["best"]
        log(f"resumed from {checkpoint} after epoch {epoch}")
    while epoch < settings.epochs:
        rng = np.random.default_rng([settings.seed, epoch])  # resume-safe: each epoch's draws depend only on its number
        net.train(settings.heads == "all")  # a frozen trunk keeps its batch-norm statistics
        bar = progress_factory and progress_factory(settings.steps_per_epoch, "step", f"epoch {epoch + 1}/{settings.epochs}")
        losses, started = [], time.perf_counter()
        for _ in range(settings.steps_per_epoch):
            if frozen:
                loss = heads_loss(net, *_feature_batch(train_feats, settings, rng), settings)
            else:
                loss = step_loss(net, _batch(train_takes, settings, rng), settings, side)
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
            metrics.update(heads_metrics(net, val_takes, head_posteriors(net, val_takes, val_feats if frozen else None)))
        log(json.dumps(metrics))
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        key = np.mean([metrics[head_metric(h, "onset_f1")] for h in trained_heads(net, settings)]) if val_takes else -metrics["loss"]
        if best is None or key >= best["key"]:
            best = {"key": key, **metrics}
            kept = {"decoder": asdict(load_thresholds(init))} if frozen else {}  # the live head is the init's: so is its decoder
            save_weights(net, run_dir, {"settings": asdict(settings), "metrics": metrics, **kept})
        torch.save({"model": net.state_dict(), "side": side and side.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "epoch": epoch, "best": best, "settings": asdict(settings)}, checkpoint)
    if val_takes and not frozen:
        best.update(retune(run_dir, val_takes, log))
    return best


def save_weights(net: PianoNet, folder: Path, manifest: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "pianonet.pt")
    manifest = {"model": "pianonet", "strip_size": list(STRIP_SIZE), "context": CONTEXT, "context_fps": CONTEXT_FPS, "heads": HEADS,
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
    state = torch.load(path, weights_only=True)
    net = PianoNet(STRIP_SIZE[1], offline="offline.mlp.0.weight" in state, width=trunk_width(state))
    net.load_state_dict(grown_motion(grown_front(grown_stem(state, net), net), net))
    return net.eval()
