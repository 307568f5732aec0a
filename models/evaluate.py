"""Scoring transcriptions the CONTRACTS way (mir_eval), and a piano-roll picture of prediction against truth.

numpy, OpenCV and mir_eval: no torch, so any backend's notes can be scored here.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pianoedge import keys as K
from pianoedge.notes import Note

ONSET_TOLERANCE = 0.05  # seconds (CONTRACTS: mir_eval, 50 ms)
METRICS = ("frame_f1_white", "frame_f1_black", "onset_f1", "onset_offset_f1", "velocity_f1", "velocity_mae")


def roll(notes: list[Note], fps: float, frames: int) -> np.ndarray:
    """(frames, 88) bool: which keys sound at each frame's instant (the frame_labels convention)."""
    out = np.zeros((frames, K.NUM_SLOTS), bool)
    for n in notes:
        a, b = int(np.ceil(n.start * fps - 1e-9)), int(np.ceil(n.end * fps - 1e-9))
        out[max(a, 0):min(max(b, a + 1), frames), n.pitch - K.LOWEST_PITCH] = True
    return out


def _f1(truth: np.ndarray, pred: np.ndarray) -> float:
    tp = float((truth & pred).sum())
    denominator = float(truth.sum() + pred.sum())
    return 1.0 if denominator == 0 else 2 * tp / denominator


def _arrays(notes: list[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import mir_eval

    if not notes:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    intervals = np.array([[n.start, max(n.end, n.start + 1e-3)] for n in notes])
    pitches = np.array([mir_eval.util.midi_to_hz(n.pitch) for n in notes])
    return intervals, pitches, np.array([n.velocity for n in notes], float)


def score(truth: list[Note], pred: list[Note], fps: float, frames: int) -> dict[str, float]:
    """Frame F1 (white and black keys, at the video's frame rate), note onset F1, onset+offset F1,
    note-with-velocity F1 and velocity MAE over onset-matched notes."""
    import mir_eval

    t_roll, p_roll = roll(truth, fps, frames), roll(pred, fps, frames)
    black = np.array([K.is_black(p) for p in range(K.LOWEST_PITCH, K.HIGHEST_PITCH + 1)])
    result = {"frame_f1_white": _f1(t_roll[:, ~black], p_roll[:, ~black]), "frame_f1_black": _f1(t_roll[:, black], p_roll[:, black])}
    ti, tp, tv = _arrays(truth)
    pi, pp, pv = _arrays(pred)
    if len(ti) == 0 or len(pi) == 0:
        empty = float(len(ti) == len(pi))
        result.update(onset_f1=empty, onset_offset_f1=empty, velocity_f1=empty, velocity_mae=float("nan"))
        return result
    tr = mir_eval.transcription
    result["onset_f1"] = tr.precision_recall_f1_overlap(ti, tp, pi, pp, onset_tolerance=ONSET_TOLERANCE, offset_ratio=None)[2]
    result["onset_offset_f1"] = tr.precision_recall_f1_overlap(ti, tp, pi, pp, onset_tolerance=ONSET_TOLERANCE, offset_ratio=0.2)[2]
    result["velocity_f1"] = mir_eval.transcription_velocity.precision_recall_f1_overlap(
        ti, tp, tv, pi, pp, pv, onset_tolerance=ONSET_TOLERANCE, offset_ratio=None)[2]
    true, predicted = matched_velocities(truth, pred)
    result["velocity_mae"] = float(np.abs(true - predicted).mean()) if len(true) else float("nan")
    return result


def matched_velocities(truth: list[Note], pred: list[Note]) -> tuple[np.ndarray, np.ndarray]:
    """The true and predicted velocities of the notes whose onsets match (mir_eval, onsets only)."""
    import mir_eval

    (ti, tp, tv), (pi, pp, pv) = _arrays(truth), _arrays(pred)
    if len(ti) == 0 or len(pi) == 0:
        return np.zeros(0), np.zeros(0)
    matches = mir_eval.transcription.match_notes(ti, tp, pi, pp, onset_tolerance=ONSET_TOLERANCE, offset_ratio=None)
    return np.array([tv[i] for i, _ in matches], float), np.array([pv[j] for _, j in matches], float)



def mean_of(values: list[float]) -> float:
    """Mean over the values that are defined (velocity MAE is NaN for a take with no matched notes)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def piano_roll_png(path: str | Path, truth: list[Note], pred: list[Note], fps: float, frames: int, title: str = "") -> None:
    """Truth in green, prediction in red, both in yellow; one column per frame (at most 1600), low keys at the bottom."""
    t_roll, p_roll = roll(truth, fps, frames).T[::-1], roll(pred, fps, frames).T[::-1]
    image = np.full((K.NUM_SLOTS, frames, 3), 24, np.uint8)
    image[t_roll & ~p_roll] = (60, 200, 60)
    image[p_roll & ~t_roll] = (60, 60, 230)
    image[t_roll & p_roll] = (60, 220, 230)
    width = min(max(frames, 720), 1600)
    image = cv2.resize(image, (width, K.NUM_SLOTS * 4), interpolation=cv2.INTER_NEAREST)
    for row in range(0, K.NUM_SLOTS, 12):  # a line at every C
        y = (K.NUM_SLOTS - 1 - (row + 3)) * 4
        if y >= 0:
            image[y, :] = (70, 70, 70)
    header = np.full((24, width, 3), 255, np.uint8)
    cv2.putText(header, f"{title}: green truth only, red prediction only, yellow both", (6, 17),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.vstack([header, image]))
