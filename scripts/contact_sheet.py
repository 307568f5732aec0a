#!/usr/bin/env python3
"""Contact sheet of the studio: a frame from each camera position under three lightings, beside the real clip.

Run: .venv/bin/python scripts/contact_sheet.py -o docs/contact_sheet.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from pianoedge.studio import music
from pianoedge.studio.params import VIEWS
from pianoedge.studio.take import TakeRenderer

LIGHTINGS = {
    "dim, warm": dict(exposure=0.6, ambient=0.3, colour_temperature=-0.3, specular=0.1, noise_sd=6.0),
    "neutral": dict(exposure=1.0, ambient=0.45, colour_temperature=0.0, specular=0.3, noise_sd=2.5),
    "harsh, glare": dict(exposure=1.2, ambient=0.25, light_elevation_deg=70.0, specular=0.8, noise_sd=1.5),
}
CELL = (480, 270)
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "furelise.mp4"


def label(image: np.ndarray, text: str) -> np.ndarray:
    cv2.rectangle(image, (0, 0), (CELL[0], 22), (0, 0, 0), -1)
    cv2.putText(image, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def studio_frame(notes, seed: int, **overrides) -> np.ndarray:
    take = TakeRenderer(notes, seed, num_keys=88, width=1280, height=720, fps=30.0, **overrides)
    return cv2.resize(take.render(int(take.frame_count * 0.4)), CELL, interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/contact_sheet.png"))
    args = parser.parse_args()
    notes = list(music.exercise("block_chords", np.random.default_rng(3), 8.0, 21, 108).notes)
    rows = []
    for v, view in enumerate(VIEWS):
        row = [label(studio_frame(notes, 100 + 10 * v + i, view=view, **light), f"studio: {view}, {name}")
               for i, (name, light) in enumerate(LIGHTINGS.items())]
        rows.append(np.hstack(row))
    cap = cv2.VideoCapture(str(REAL))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 300)
    ok, real = cap.read()
    real = label(cv2.resize(real, CELL, interpolation=cv2.INTER_AREA), "REAL: furelise.mp4 frame 300") if ok else np.zeros(CELL[::-1] + (3,), np.uint8)
    look_alike = dict(view="overhead", piano="digital", case_bgr=(24, 24, 26), white_key_bgr=(190, 214, 228),
                      tilt_deg=3.0, yaw_deg=0.0, roll_deg=0.0, hfov_deg=56.0, fill=0.82, k1=-0.13, **LIGHTINGS["dim, warm"])
    rows.append(np.hstack([real, label(studio_frame(notes, 7, **look_alike), "studio: set up like the real clip"),
                           label(studio_frame(notes, 8, view="overhead", piano="acoustic"), "studio: random overhead")]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
