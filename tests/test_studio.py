"""The studio's takes: files in the CONTRACTS layout, labels that match the MIDI, geometry that matches the key layout."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pretty_midi
import pytest

from pianoedge import keys as K
from pianoedge.studio.camera import Camera
from pianoedge.notes import Note
from pianoedge.studio.take import TakeRenderer, render_take
from pianoedge.takes import find_takes

from .conftest import performance

VIEWS = [  # (name, overrides): every camera position, with and without lens distortion
    ("overhead", dict(view="overhead", piano="digital", width=1280, height=720, fps=30.0, k1=-0.13)),
    ("stand", dict(view="stand", piano="digital", width=960, height=540, fps=25.0, k1=0.0)),
    ("oblique", dict(view="oblique", piano="acoustic", width=1280, height=720, fps=24.0, k1=-0.05)),
    ("yawed", dict(view="yawed", piano="acoustic", width=1280, height=720, fps=60.0, k1=0.03, yaw_deg=-30.0)),
]


def scales(seconds: float = 3.0) -> list[Note]:
    """Both hands run outwards across the keyboard, so no key stays covered for long."""
    whites = [p for p in range(21, 109) if not K.is_black(p)]
    up = [p for p in whites if p >= 60][:24]
    down = [p for p in reversed(whites) if p <= 55][:24]
    step = (seconds - 0.6) / 24
    notes = [Note(p, 0.3 + i * step, 0.3 + (i + 0.8) * step, 40 + 3 * i, "right") for i, p in enumerate(up)]
    notes += [Note(p, 0.3 + i * step, 0.3 + (i + 0.8) * step, 100 - 2 * i, "left") for i, p in enumerate(down)]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


@pytest.fixture(scope="module")
def takes(tmp_path_factory):
    out = tmp_path_factory.mktemp("takes")
    notes = scales()
    for i, (name, overrides) in enumerate(VIEWS):
        # geometry is under test, not visibility: an even light so that every key gap can be measured
        render_take(notes, out, name, seed=10 + i, source="test", num_keys=88, noise_sd=2.0, blur_sigma=0.0, exposure=1.0,
                    ambient=0.45, vignette=0.1, specular=0.2, fill=0.9, **overrides)
    return out


def read_frames(path, indices=None):
    cap = cv2.VideoCapture(str(path))
    frames = []
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if indices is None or i in indices:
            frames.append(frame)
        i += 1
    return frames, i


@pytest.mark.slow
def test_takes_follow_the_data_set_layout(takes):
    found = find_takes(takes)
    assert sorted(t.name for t in found) == sorted(v[0] for v in VIEWS)
    for take in found:
        meta = json.loads(take.meta_path.read_text())
        for field in ("fps", "frames", "image_size", "corners", "lowest_key", "num_keys", "offset_s", "lens", "studio"):
            assert field in meta
        cap = cv2.VideoCapture(str(take.video))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == meta["frames"]
        assert abs(cap.get(cv2.CAP_PROP_FPS) - meta["fps"]) < 0.01
        assert [int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))] == meta["image_size"]
        labels = np.load(take.labels_path)
        for name in ("pressed", "onset", "offset", "velocity", "depth", "onset_shift"):
            assert labels[name].shape == (meta["frames"], K.NUM_SLOTS)
        params = meta["studio"]["params"]
        assert params["view"] == take.name and meta["studio"]["seed"] >= 10


@pytest.mark.slow
def test_labels_agree_with_the_midi_read_by_pretty_midi(takes):
    for take in find_takes(takes):
        meta = json.loads(take.meta_path.read_text())
        labels = np.load(take.labels_path)
        fps, frames = meta["fps"], meta["frames"]
        times = np.arange(frames) / fps
        pressed = np.zeros((frames, 88), bool)
        velocity = np.zeros((frames, 88), int)
        onsets = 0
        for inst in pretty_midi.PrettyMIDI(str(take.midi)).instruments:
            for n in inst.notes:
                inside = (times >= n.start) & (times < n.end)
                pressed[inside, n.pitch - 21] = True
                velocity[inside, n.pitch - 21] = n.velocity
                onsets += 1
                near = int(np.argmin(np.abs(times - n.start)))
                assert labels["onset"][max(near - 1, 0) : near + 2, n.pitch - 21].any()
        assert (labels["pressed"] == pressed).all()
        assert (labels["velocity"][pressed] == velocity[pressed]).all()
        assert labels["onset"].sum() == onsets == len(scales())
        # the rendered key is fully down whenever the label says pressed, and up when no note is near
        assert (labels["depth"][labels["pressed"]] > 0.99).all()
        near_note = np.zeros_like(pressed)
        span = int(np.ceil(0.12 * fps))
        for dt in range(-span, span + 1):
            near_note |= np.roll(pressed, dt, axis=0)
        assert (labels["depth"][~near_note] == 0).all()


def test_a_pressed_key_shows_at_its_edges_while_its_top_changes_little():
    """A press shows where real ones do (the neighbours' side walls, the front edge, the key's shift), not as
    a repainted top: seen from above, a real pressed white key's top changes by about one grey level."""
    notes = performance(0)
    for view in ("overhead", "stand", "oblique", "yawed"):
        take = TakeRenderer(notes, 3, num_keys=88, view=view, width=960, height=540)
        renderer = take.renderer
        up = renderer.render(np.zeros((1, 88)), finish=False)
        for pitch in (60, 61, 64, 70, 21, 108):
            depth = np.zeros((1, 88))
            depth[0, pitch - 21] = 1.0
            down = renderer.render(depth, finish=False)
            key = renderer.piano.keys[pitch - 21]
            top = np.zeros(up.shape[:2], np.uint8)
            cv2.fillConvexPoly(top, np.round(renderer.camera.project(key.top.vertices)).astype(np.int32), 255)
            diff = np.abs(down.astype(int) - up.astype(int)).max(axis=2)
            around = cv2.dilate(top, np.ones((7, 7), np.uint8)) > 0
            assert (diff[around] > 20).sum() >= 10, f"{view}: key {pitch} pressed looks the same as at rest"
            if view == "overhead" and not key.black:
                assert diff[top > 0].mean() < 15, f"overhead: key {pitch}'s top repainted when pressed"
            far = np.ones_like(top)
            x0, y0, x1, y1 = renderer._key_bbox(pitch - 21, 1.0).round().astype(int)
            far[max(y0 - 40, 0) : y1 + 40, max(x0 - 60, 0) : x1 + 60] = 0
            assert diff[far > 0].max() == 0, f"{view}: pressing key {pitch} changed pixels far from it"


def fingertips(take: TakeRenderer, index: int) -> np.ndarray:
    """(10, 4) fingertip centres and radii of both hands: the end of every finger's last bone."""
    capsules, _ = take.hand_geometry(index)
    tips = []
    for hand in range(2):
        hand_caps = capsules[hand * (len(capsules) // 2) : (hand + 1) * (len(capsules) // 2)]
        bones = hand_caps[:-2]  # the last two capsules are wrist and forearm
        tips += [np.append(c.b, c.radius) for c in bones[2::4]]  # three bones and a nail a finger, thumb included
    return np.array(tips)


def test_a_finger_rests_on_every_pressed_key_and_hovering_fingers_press_nothing():
    notes = performance(4, seconds=4.0)
    take = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0)
    labels_pressed = take.depth[:, :] > 0.99
    layout = take.renderer.piano.layout
    hover_over_unpressed = 0
    for i in range(take.frame_count):
        tips = fingertips(take, i)
        pressed = np.flatnonzero(labels_pressed[i])
        for slot in pressed:
            span = layout.key(slot + 21)
            x0, x1 = span.left * K.WHITE_KEY_PITCH_MM, span.right * K.WHITE_KEY_PITCH_MM
            top = K.BLACK_KEY_HEIGHT_MM if span.black else 0.0
            on_key = (tips[:, 0] > x0 - 3) & (tips[:, 0] < x1 + 3) & (tips[:, 2] - tips[:, 3] < top + 2)
            assert on_key.any(), f"frame {i}: key {slot + 21} is down with no finger on it"
        for x, y, z, r in tips:
            slot = next((k.pitch - 21 for k in layout.keys if k.left * 23.5 <= x < k.right * 23.5 and not k.black), None)
            if slot is not None and 0 <= y <= 150 and 1.0 < z - r < 15 and not labels_pressed[i, slot]:
                hover_over_unpressed += 1
    assert hover_over_unpressed > 50, "fingers should hover just above unpressed keys (hard negatives)"


def test_free_fingers_resting_on_keys_lie_on_their_middles():
    """Real fingers rest on a key, not on the gap between two: a resting finger off a key's middle
    would tell a model that a finger on a key's middle is pressing (the real clip's false notes)."""
    notes = performance(4, seconds=4.0)
    take = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0, hover_mm=1.0)
    whites = take.renderer.piano.layout.whites
    centres = np.array([k.centre for k in whites]) * K.WHITE_KEY_PITCH_MM
    off_middle = []
    for i in range(take.frame_count):
        for x, y, z, r in fingertips(take, i):
            nearest = int(np.abs(centres - x).argmin())
            if 0 <= y <= 45 and z - r < 2.0 and take.depth[i, whites[nearest].pitch - K.LOWEST_PITCH] < 0.99:
                off_middle.append(abs(centres[nearest] - x))
    assert len(off_middle) > 100, "fingers should rest on unpressed keys"
    assert np.median(off_middle) < 3.5, f"resting fingertips lie {np.median(off_middle):.1f} mm off the key's middle (median)"


def test_black_keys_are_struck_mostly_near_their_front_end():
    """Real players strike a black key a little behind its front end (the real clip's D#5: every time);
    a model that saw fingertips far back on black keys read those presses at half the confidence."""
    rng = np.random.default_rng(1)
    blacks = [p for p in range(61, 80) if K.is_black(p)]
    notes = [Note(int(rng.choice(blacks)), t, t + 0.25, 64, "right") for t in np.arange(0.2, 14.5, 0.35)]
    take = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0)
    layout = take.renderer.piano.layout
    behind_front = []  # mm from the black key's front end to the fingertip on it, each frame it is down
    for i in range(take.frame_count):
        tips = fingertips(take, i)
        for slot in np.flatnonzero(take.depth[i] > 0.99):
            span = layout.key(slot + K.LOWEST_PITCH)
            on_key = ((tips[:, 0] > span.left * K.WHITE_KEY_PITCH_MM - 3) & (tips[:, 0] < span.right * K.WHITE_KEY_PITCH_MM + 3)
                      & (tips[:, 2] - tips[:, 3] < K.BLACK_KEY_HEIGHT_MM + 2))
            if on_key.any():
                behind_front.append(tips[on_key, 1].min() - K.BLACK_FRONT_MM)
    assert len(behind_front) > 200
    behind_front = np.array(behind_front)
    off_key = np.mean((behind_front < 0) | (behind_front > K.BLACK_KEY_LENGTH_MM))  # a frame as a finger lifts off a key still down
    assert off_key < 0.01, f"fingertips must strike the black key itself ({off_key:.1%} of the pressed frames do not)"
    assert np.median(behind_front) < 25, f"black keys struck {np.median(behind_front):.0f} mm behind their front end (median)"
    assert np.percentile(behind_front, 10) < 8, "some strikes should land just behind the front end"


def test_strikes_lift_by_the_takes_lift_height_and_free_fingers_fidget():
    """Legato players press from near the key; real hands never hold still (on the real clip they move
    as much after an onset as into it), so an onset must not be the only motion in the frame."""
    notes = performance(4, seconds=4.0)

    def tips(**params):
        take = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0, hover_mm=4.0, **params)
        return np.array([fingertips(take, i) for i in range(take.frame_count)])

    low, high, fidgety = tips(lift_mm=2.0, fidget_mm=0.0), tips(lift_mm=40.0, fidget_mm=0.0), tips(lift_mm=2.0, fidget_mm=8.0)
    assert (high[..., 2] - low[..., 2]).max() > 15, "a high lift should raise the striking finger well above a low one"
    moved = np.linalg.norm(fidgety[..., :3] - low[..., :3], axis=2)  # same seed: the fidget is the only difference
    assert moved.mean() > 1.0 and moved.max() < 30, f"fidget moved fingertips by {moved.mean():.1f} mm (max {moved.max():.1f})"


def test_legato_fingers_land_on_their_key_early_and_rest_there_until_it_goes_down():
    """The real clip's D#5: the finger rests on the key's front end, and the press is the key going down
    under it. With the take's early touch, fingers land on their keys before the strike and lie still
    there, the key up, until it goes down; without it they never do. Every other draw of the seed is as before."""
    motif = [Note(75 if i % 2 else 76, 0.3 + 0.6 * i, 0.5 + 0.6 * i, 60, "right") for i in range(8)]
    chords = [Note(p, 5.2 + 0.6 * i, 5.6 + 0.6 * i, 70, "right") for i in range(3) for p in (64 + 3 * i, 67 + 3 * i)]
    take = TakeRenderer(motif + chords, 5, num_keys=88, view="overhead", fps=30.0, early_touch_s=0.5)
    plain = TakeRenderer(motif + chords, 5, num_keys=88, view="overhead", fps=30.0, early_touch_s=0.0)
    landed = [fn for fns in take.hands["right"].fingers for fn in fns if fn.early > 2 / 30]
    assert len(landed) >= 5 and not [fn for fns in plain.hands["right"].fingers for fn in fns if fn.early > 0]
    resting = 0  # frames with a landed finger on its key while the key is up (one staying on a repeated key rides it up first)
    for fn in landed:
        for i in np.flatnonzero((take.times >= fn.touch - fn.early + 0.01) & (take.times < fn.touch - 0.01)):
            if take.depth[i, fn.note.pitch - K.LOWEST_PITCH] == 0:
                resting += 1
                assert np.linalg.norm(fingertips(take, i)[:, :2] - [fn.key_x, fn.key_y], axis=1).min() < 0.5
    assert resting >= 10, resting
    assert {k: v for k, v in take.params.to_json().items() if k != "early_touch_s"} == \
           {k: v for k, v in plain.params.to_json().items() if k != "early_touch_s"}
    assert np.array_equal(take.depth, plain.depth)  # the same performance: only the fingers' timing differs
    held = [Note(60 + 2 * i, 0.2 + 0.05 * i, 3.0, 70, "right") for i in range(5)]  # every finger busy when 72 comes
    busy = TakeRenderer([*held, Note(72, 1.0, 1.4, 70, "right")], 5, num_keys=88, early_touch_s=0.5)
    assert sum(len(notes) for notes in busy.hands["right"].fingers) == 5  # planned: the sixth note has no finger free


def test_thumbs_strike_white_keys_at_their_front_edge_by_the_take_s_share():
    """The real clip's A3 and E4: a thumb presses the key at its very front edge, the hand in front of
    the keys. With the take's thumb-edge share most thumb strikes on white keys land within 8 mm of the
    edge, the thumb on that spot while the key is down; without it none do (white keys are struck 4-55 mm
    back). The other fingers' strikes, the performance and every other draw of the seed are as before."""
    notes = performance(4, seconds=12.0)
    edge = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0, thumb_edge_share=0.8)
    plain = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0, thumb_edge_share=0.0)

    def thumb_on_whites(take):
        return [(side, fn) for side, hand in take.hands.items() for fn in hand.fingers[0] if fn.key_z == 0]

    assert min(fn.key_y for _, fn in thumb_on_whites(plain)) >= 4
    at_edge = [(side, fn) for side, fn in thumb_on_whites(edge) if fn.key_y <= 8]
    assert len(at_edge) >= 3 and len(at_edge) >= 0.5 * len(thumb_on_whites(edge)), [fn.key_y for _, fn in thumb_on_whites(edge)]
    for side, fn in at_edge:
        down = np.flatnonzero((edge.depth[:, fn.note.pitch - K.LOWEST_PITCH] > 0.99) & (edge.times > fn.note.start) & (edge.times < fn.note.end))
        thumb = fingertips(edge, int(down[len(down) // 2]))[0 if side == "left" else 5]
        assert np.linalg.norm(thumb[:2] - [fn.key_x, fn.key_y]) < 0.5 and thumb[1] <= 8
    for side in ("left", "right"):
        for f in range(1, 5):
            assert edge.hands[side].fingers[f] == plain.hands[side].fingers[f]
    assert {k: v for k, v in edge.params.to_json().items() if k != "thumb_edge_share"} == \
           {k: v for k, v in plain.params.to_json().items() if k != "thumb_edge_share"}
    assert np.array_equal(edge.depth, plain.depth)


def test_a_take_rendered_before_a_touch_parameter_existed_plans_again_as_it_was_rendered(tmp_path):
    """``replanned`` (``synth --relabel``) of a take whose metadata predates the early touches and thumb
    edges plans it without them, as it was rendered, and its parameter check passes."""
    from pianoedge.studio.take import replanned
    from pianoedge.takes import Take

    notes = performance(4, seconds=1.5)
    none = {"early_touch_s": 0.0, "thumb_edge_share": 0.0}
    video = render_take(notes, tmp_path, "t", seed=3, width=640, height=360, fps=24.0, **none)
    meta = json.loads((tmp_path / "t.json").read_text())
    for name in none:
        del meta["studio"]["params"][name], meta["studio"]["overrides"][name]
    (tmp_path / "t.json").write_text(json.dumps(meta))
    planned = replanned(Take(video, tmp_path / "t.mid"))
    rendered = TakeRenderer(Take(video, tmp_path / "t.mid").notes(), 3, width=640, height=360, fps=24.0, **none)
    assert planned.params == rendered.params
    assert all(planned.hands[side].fingers == rendered.hands[side].fingers for side in ("left", "right"))


def test_the_hand_s_posture_follows_the_take_s_reach_and_knuckle_height():
    """From curled and high to long and flat (the real clip's: palms in front of the keyboard, fingers
    reaching far onto the keys): the same notes, the knuckles further forward and lower as drawn."""
    notes = performance(4, seconds=3.0)

    def knuckles(**posture):
        take = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0, **posture)
        bases = []
        for i in range(0, take.frame_count, 3):
            capsules, _ = take.hand_geometry(i)
            for hand in range(2):
                bones = capsules[hand * (len(capsules) // 2) : (hand + 1) * (len(capsules) // 2)][:-2]
                bases += [c.a for c in bones[4::4]]  # each finger's first bone starts at its knuckle (thumb left out)
        return np.array(bases)

    curled, flat = knuckles(reach_mm=55.0, knuckle_height_mm=44.0), knuckles(reach_mm=90.0, knuckle_height_mm=24.0)
    forward, lower = curled[:, 1].mean() - flat[:, 1].mean(), curled[:, 2].mean() - flat[:, 2].mean()
    assert forward > 15 and lower > 10, f"long flat fingers put the knuckles {forward:.0f} mm further forward and {lower:.0f} mm lower"


def canonical_profile(take_dir, name):
    meta = json.loads((take_dir / f"{name}.json").read_text())
    w, h = meta["image_size"]
    frames, _ = read_frames(take_dir / f"{name}.mp4", set(range(0, meta["frames"], 4)))
    lens = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], float)
    cw, ch = K.CANONICAL_SIZE
    target = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    H = cv2.getPerspectiveTransform(np.array(meta["lens"]["corners_undistorted"], np.float32), target)
    strips = []
    for frame in frames:
        ideal = cv2.undistort(frame, lens, np.array([meta["lens"]["k1"], 0, 0, 0], float))
        strips.append(cv2.cvtColor(cv2.warpPerspective(ideal, H, (cw, ch), flags=cv2.INTER_CUBIC), cv2.COLOR_BGR2GRAY))
    strips = np.stack(strips).astype(np.float32)
    strip = np.percentile(strips, 90, axis=0)  # hands (darker than white keys) move on: the keys show
    covered = (np.abs(strips - strip).mean(axis=1) > 12).mean(axis=0)  # per column: share of frames under a hand
    return strip, covered, meta


@pytest.mark.slow
@pytest.mark.parametrize("name", [v[0] for v in VIEWS])
def test_warping_with_the_take_corners_puts_white_key_boundaries_in_place(takes, name):
    strip, covered, meta = canonical_profile(takes, name)
    profile = strip[int(0.78 * 106) : int(0.95 * 106)].mean(axis=0)  # front of the white keys, below the black keys
    expected = K.layout(meta["num_keys"]).white_boundaries_px()[1:-1]
    errors, measured_at = [], []
    for index, x in enumerate(expected):
        a, b = int(np.floor(x)) - 4, int(np.ceil(x)) + 5
        window = profile[a:b]
        darkness = np.clip(np.median(window) - window - 2, 0, None)  # the dip below the key tops, past the noise
        if darkness.sum() < 5 or covered[a:b].max() > 0.5:
            continue  # no visible gap, or under a hand in most frames
        measured = a + (darkness * np.arange(len(window))).sum() / darkness.sum()
        errors.append(measured - x)
        measured_at.append(index)
    errors = np.abs(np.array(errors))
    # forearms hide the front of the keys from a low camera: most, not all, gaps are measurable,
    # and they must reach both ends of the keyboard
    assert len(errors) >= 0.65 * len(expected), f"only {len(errors)} boundaries visible"
    assert measured_at[0] < 8 and measured_at[-1] > len(expected) - 9, f"measured only between {measured_at[0]} and {measured_at[-1]}"
    assert np.median(errors) < 0.5 and np.percentile(errors, 95) < 1.0, f"{name}: errors {np.round(np.sort(errors)[-5:], 2)}"


def test_recorded_corners_are_the_lens_applied_to_the_ideal_corners(takes):
    for name, _ in VIEWS:
        meta = json.loads((takes / f"{name}.json").read_text())
        w, h = meta["image_size"]
        cam = Camera(np.eye(3), np.eye(3), np.zeros(3), w, h, meta["lens"]["k1"])
        np.testing.assert_allclose(cam.distort(np.array(meta["lens"]["corners_undistorted"])), meta["corners"], atol=0.01)
        corners = np.array(meta["corners"])
        # CONTRACTS order is physical: back-low, back-high, front-high, front-low
        back_mid, front_mid = corners[:2].mean(axis=0), corners[2:].mean(axis=0)
        if name == "stand":  # looking back at the player: the back edge is nearest the camera (image bottom)
            assert back_mid[1] > front_mid[1] and corners[0][0] > corners[1][0]
        elif name == "overhead":
            assert back_mid[1] < front_mid[1] and corners[0][0] < corners[1][0]


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    notes = performance(5, seconds=1.5)
    small = dict(width=640, height=480, fps=24.0)
    for folder, seed in (("a", 7), ("b", 7), ("c", 8)):
        render_take(notes, tmp_path / folder, "t", seed=seed, **small)
    for suffix in (".mp4", ".mid", ".json", ".npz"):
        assert (tmp_path / "a" / f"t{suffix}").read_bytes() == (tmp_path / "b" / f"t{suffix}").read_bytes(), suffix
    assert (tmp_path / "a" / "t.mp4").read_bytes() != (tmp_path / "c" / "t.mp4").read_bytes()


def test_a_key_put_back_at_rest_under_the_same_noise_changes_only_its_own_pixels():
    """What ``scripts/press_visibility.py`` measures: one frame rendered as played and with one pressed key
    alone at rest, the hands and the sensor noise the same, differs on that key and nowhere else."""
    notes = performance(4, seconds=4.0)
    width = 640
    take = TakeRenderer(notes, 5, num_keys=88, view="overhead", fps=30.0, width=width, height=360)
    frame = next(i for i in range(take.frame_count) if (take.samples[i].min(axis=0) > 0.99).any())
    key = int(np.flatnonzero(take.samples[frame].min(axis=0) > 0.99)[0])
    capsules, blobs = take.hand_geometry(frame)
    at_rest = take.samples[frame].copy()
    at_rest[:, key] = 0.0

    def finished(samples):
        return take.renderer.finish(take.renderer.render(samples, capsules, blobs, finish=False), noise=0).astype(int)

    played = finished(take.samples[frame])
    assert np.array_equal(played, finished(take.samples[frame]))  # the same noise: the same frame
    _, xs = np.nonzero(np.abs(played - finished(at_rest)).max(axis=2) >= 16)
    white_key_px = width * take.params.fill / K.layout(88).num_white
    assert len(xs) > 20 and np.ptp(xs) < 3 * white_key_px  # a visible change, one key wide


@pytest.mark.slow
def test_the_key_change_label_shows_the_pressed_keys_and_never_the_hands(takes):
    """The studio's key-change label (``studio.keychange``): where a key is held down its columns change;
    before the first press the hands are already over the keys, and the label is empty."""
    from pianoedge.models.data import KEY_CHANGE_BANDS, KEY_CHANGE_LABEL, STRIP_SIZE

    notes = scales()
    for take in find_takes(takes):
        meta = json.loads(take.meta_path.read_text())
        change = np.load(take.labels_path)[KEY_CHANGE_LABEL]
        assert change.shape == (meta["frames"], KEY_CHANGE_BANDS, STRIP_SIZE[0]) and change.dtype == np.uint8
        fps = meta["fps"]
        assert not change[: int(0.25 * fps)].any()  # hands over the keys, nothing pressed yet
        spans = K.layout(88).spans_px(STRIP_SIZE[0])
        for note in notes[::6]:
            frame = int(round((note.start + 0.6 * (note.end - note.start)) * fps))
            left, right = spans[note.pitch - 21]
            over_key = change[frame][:, int(left) + 1 : int(right)].sum()
            assert over_key > 255 * 2, (take.name, note.pitch)
            assert change[frame].sum() < 12 * over_key  # the two hands' keys and their gaps, not the whole strip


def test_relabelling_an_old_studio_take_writes_the_label_it_would_have_been_rendered_with(tmp_path, capsys):
    """``pianoedge synth --relabel``: a take rendered before the studio wrote the key-change label gains
    exactly the label a new render writes; a take that is not the studio's is a clear error."""
    from pianoedge.cli import main
    from pianoedge.models.data import KEY_CHANGE_LABEL

    render_take(performance(4, seconds=1.5), tmp_path / "old", "t", seed=3, width=640, height=360, fps=24.0)
    npz = tmp_path / "old" / "t.npz"
    labels = dict(np.load(npz))
    rendered = labels.pop(KEY_CHANGE_LABEL)
    assert rendered.any()
    np.savez_compressed(npz, **labels)
    assert main(["synth", "--relabel", "-o", str(tmp_path / "old"), "--workers", "1"]) == 0
    again = np.load(npz)
    assert np.array_equal(again[KEY_CHANGE_LABEL], rendered) and np.array_equal(again["pressed"], labels["pressed"])
    meta = json.loads((tmp_path / "old" / "t.json").read_text())
    del meta["studio"]
    (tmp_path / "old" / "t.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["synth", "--relabel", "-o", str(tmp_path / "old")]) != 0
    assert "not a studio take" in capsys.readouterr().err
