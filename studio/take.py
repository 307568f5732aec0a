"""One studio take: a MIDI performance in, ``NAME.mp4`` + ``.mid`` + ``.json`` + ``.npz`` out."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pianoedge import __version__
from pianoedge import keys as K
from pianoedge.calibration import lens
from pianoedge.errors import PianoedgeError
from pianoedge.models.data import KEY_CHANGE_LABEL, lock_of_take
from pianoedge.notes import Note, read_notes, write_notes
from pianoedge.takes import Take, frame_labels
from pianoedge.video import H264Writer

from . import keychange
from .hands import Hand, assign_hands
from .motion import key_depths, release_times
from .params import sample_params
from .render import Renderer

EXPOSURE_SAMPLES = 3  # sub-frame renders averaged for motion blur of moving keys
TAIL_S = 1.0  # video continues after the last release
#: touch parameters added after takes were rendered, with the value that plans an older take as it was rendered
LATER_TOUCH_PARAMS = {"early_touch_s": 0.0, "thumb_edge_share": 0.0}


def fitting_sizes(notes: list[Note]) -> list[int]:
    """Keyboard sizes (61/76/88) that hold every note."""
    lo, hi = min(n.pitch for n in notes), max(n.pitch for n in notes)
    return [size for size, (a, b) in sorted(K.KEYBOARD_SIZES.items()) if a <= lo and hi <= b]


class TakeRenderer:
    """Plans and renders the frames of one take; ``frames()`` yields (frame, mid-exposure key depths)."""

    def __init__(self, notes: list[Note], seed: int, num_keys: int | None = None, **overrides):
        if not notes:
            raise PianoedgeError("the MIDI file has no notes: give a performance with at least one note")
        sizes = fitting_sizes(notes)
        rng = np.random.default_rng(seed)
        self.keys_given = num_keys  # None: drawn from the seed
        if num_keys is None:
            if not sizes:
                lo, hi = min(n.pitch for n in notes), max(n.pitch for n in notes)
                raise PianoedgeError(f"notes span pitches {lo}..{hi}, beyond an 88-key piano (21..108): transpose them into range")
            num_keys = sizes[int(rng.integers(len(sizes)))]
        elif num_keys not in sizes:
            lo, hi = K.keyboard_range(num_keys)
            raise PianoedgeError(f"notes fall outside the {num_keys}-key keyboard ({lo}..{hi}): use --keys 88 or transpose the MIDI")
        self.notes = assign_hands(notes)
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.params = sample_params(rng, num_keys, **overrides)
        self.renderer = Renderer(self.params, rng)
        p = self.params
        self.duration = max(n.end for n in notes) + TAIL_S
        self.frame_count = int(np.ceil(self.duration * p.fps))
        self.times = np.arange(self.frame_count) / p.fps
        offsets = np.linspace(-0.5, 0.5, EXPOSURE_SAMPLES) * p.exposure_fraction / p.fps
        release = release_times(self.notes, rng)
        lo = K.keyboard_range(num_keys)[0] - K.LOWEST_PITCH
        samples = key_depths(self.notes, release, (self.times[:, None] + offsets).ravel())
        self.samples = samples.reshape(self.frame_count, EXPOSURE_SAMPLES, K.NUM_SLOTS)[:, :, lo : lo + num_keys]
        self.depth = key_depths(self.notes, release, self.times)
        layout = self.renderer.piano.layout
        self.hands = {side: Hand(side, [n for n in self.notes if n.hand == side], layout, p, rng, self.duration)
                      for side in ("left", "right")}
        self.skin = np.array(p.skin_bgr, float)
        self.sleeve = None if p.sleeve_bgr is None else np.array(p.sleeve_bgr, float)

    def hand_geometry(self, index: int):
        t = self.times[index]
        depth_row = self.depth[index]

        def depth_of(pitch: int, _t: float) -> float:
            return float(depth_row[pitch - K.LOWEST_PITCH])

        left_x = self.hands["left"].knuckle_anchor(t)[0]
        right_x = self.hands["right"].knuckle_anchor(t)[0]
        crossing = left_x > right_x - 90
        capsules, blobs = [], []
        for side, hand in self.hands.items():
            c, b = hand.geometry(t, depth_of, self.skin, self.sleeve, crossing and side == "left", self.renderer.piano.player_x)
            capsules += c
            blobs += b
        return capsules, blobs

    def render(self, index: int, finish: bool = True) -> np.ndarray:
        capsules, blobs = self.hand_geometry(index)
        return self.renderer.render(self.samples[index], capsules, blobs, finish=finish)

    def metadata(self, source: str, seed: int) -> dict:
        p = self.params
        corners, ideal = self.renderer.image_corners()
        lo = K.keyboard_range(p.num_keys)[0]
        return {
            "fps": p.fps,
            "frames": self.frame_count,
            "image_size": [p.width, p.height],
            "corners": np.round(corners, 3).tolist(),
            "lowest_key": lo,
            "num_keys": p.num_keys,
            "offset_s": 0.0,
            "lens": {"model": lens.MODEL, "k1": p.k1, "corners_undistorted": np.round(ideal, 3).tolist()},
            "studio": {"version": __version__, "seed": seed, "source": source, "params": p.to_json(),
                       "keys_given": self.keys_given, "overrides": self.overrides},  # what planning it again needs
        }


def render_take(notes: list[Note], out_dir: str | Path, name: str, seed: int = 0, source: str = "",
                num_keys: int | None = None, progress=None, **overrides) -> Path:
    """Render a performance into the take ``out_dir/name.*``; returns the video path.

    ``progress``: called with the frame count once the take is planned, returns a bar (tqdm-like:
    ``update``, ``close``) that advances per frame.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PianoedgeError(f"cannot create output folder {out_dir}: {exc.strerror}") from None
    # Write the performance first and render what the file holds, so labels match the MIDI tick for tick.
    midi_out = out_dir / f"{name}.mid"
    write_notes(midi_out, notes)
    notes = read_notes(midi_out)
    take = TakeRenderer(notes, seed, num_keys, **overrides)
    p = take.params
    video = out_dir / f"{name}.mp4"
    bar = progress(take.frame_count) if progress is not None else None
    with H264Writer(video, p.width, p.height, p.fps, crf=p.crf) as writer:
        for i in range(take.frame_count):
            writer.write(take.render(i))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    (out_dir / f"{name}.json").write_text(json.dumps(take.metadata(source, seed), indent=1))
    labels = frame_labels(notes, p.fps, take.frame_count)
    labels["depth"] = take.depth.astype(np.float16)
    labels["frame_times"] = take.times
    labels[KEY_CHANGE_LABEL] = keychange.key_change(take.renderer, take.samples, lock_of_take(Take(video, midi_out)))
    np.savez_compressed(out_dir / f"{name}.npz", **labels)
    return video


def studio_metadata(take: Take) -> dict:
    """The studio's record in a take's metadata (seed, parameters), or an error for a take the studio did not render."""
    studio = take.meta().get("studio")
    if not studio:
        raise PianoedgeError(f"{take.video} is not a studio take (its .json has no 'studio' entry): only studio takes can be planned again")
    return studio


def replanned(take: Take) -> TakeRenderer:
    """A studio take planned again from its MIDI, seed, keyboard size and pinned parameters as its metadata
    records them (takes from before it recorded the last two: as ``synth --generate`` plans them, the size
    given and nothing pinned), exactly as it was rendered: its parameters are checked, else an error."""
    meta = take.meta()
    studio = studio_metadata(take)
    pinned = dict(studio.get("overrides", {}))
    # touch parameters the take was rendered before: drawn apart, so all else is as it was; pinned to "none"
    missing = {name: value for name, value in LATER_TOUCH_PARAMS.items() if name not in studio["params"]}
    planned = TakeRenderer(take.notes(), int(studio["seed"]), studio.get("keys_given", int(meta["num_keys"])), **pinned, **missing)
    params = json.loads(json.dumps(planned.params.to_json()))
    for name in missing:
        del params[name]
    if params != studio["params"]:
        raise PianoedgeError(f"{take.video}: planned again, its scene differs from its metadata (rendered by pianoedge "
                             f"{studio.get('version', '?')}): render it again with pianoedge synth")
    return planned


def relabel(take: Take) -> None:
    """Add the key-change label (``keychange``) to a studio take rendered before the studio wrote it."""
    planned = replanned(take)
    labels = dict(np.load(take.labels_path)) if take.labels_path.is_file() else {}
    labels[KEY_CHANGE_LABEL] = keychange.key_change(planned.renderer, planned.samples, lock_of_take(take))
    np.savez_compressed(take.labels_path, **labels)
