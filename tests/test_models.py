"""The keypress/velocity model, its training, the note decoder and the scoring."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from pianoedge import keys as K
from pianoedge.errors import PianoedgeError
from pianoedge.models.decode import MIN_FILE_NOTE_SECONDS, NoteTracker, Thresholds, decode, events_to_notes
from pianoedge.models.evaluate import score
from pianoedge.notes import Note

torch = pytest.importorskip("torch", reason="the models are host-side: install the host extra (torch)")

from pianoedge.models import train  # noqa: E402
from pianoedge.models.data import STRIP_SIZE, TakeData, black_flags, context_stride, key_pool  # noqa: E402
from pianoedge.models.net import (AHEAD, BLOCK_CHANNELS, CONTEXT, FEATURES, INPUTS, STEM_MAPS, PianoNet, grown_front, grown_motion,  # noqa: E402
                                  grown_stem, widened)

FPS = 25.0


def decoded_take(name: str, notes: list[Note], posteriors: np.ndarray, lowest: int = 60) -> TakeData:
    """A take to score hand-made ``posteriors`` against: its true notes, one (empty) strip per frame."""
    frames, keys = posteriors.shape[:2]
    return TakeData(name, np.zeros((frames, 1, 1), np.uint8), np.zeros((1, 1), np.uint8), {}, notes, lowest, keys, FPS)


def posteriors_for(frames: int, keys: int = 88) -> np.ndarray:
    p = np.zeros((frames, keys, 4), np.float32)
    p[..., 3] = 0.5
    return p


@pytest.mark.parametrize("size", [88, 76, 61])
def test_model_outputs_every_key_of_every_size(size):
    lowest = K.KEYBOARD_SIZES[size][0]
    net = PianoNet(STRIP_SIZE[1])
    pool = key_pool(size, lowest, STRIP_SIZE[0])
    assert pool.shape == (size, STRIP_SIZE[0]) and np.allclose(pool.sum(axis=1), 1.0)
    assert black_flags(size, lowest).sum() == len(K.layout(size, lowest).blacks)
    clips = torch.randint(0, 256, (2, CONTEXT + 3, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=torch.uint8)
    rest = torch.randint(0, 256, (2, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=torch.uint8)
    out = net(clips, rest, torch.from_numpy(pool), torch.from_numpy(black_flags(size, lowest)))
    assert out.shape == (2, 4, size, 4)
    assert torch.all((out[..., 3] >= 0) & (out[..., 3] <= 1))  # velocity is a fraction of 127
    # at 60 fps the context frames are every other frame: fewer frames have a full context behind them
    longer = torch.cat([clips, clips], dim=1)  # 2 * (CONTEXT + 3) frames, a span of 2 * (CONTEXT - 1) + 1
    out = net(longer, rest, torch.from_numpy(pool), torch.from_numpy(black_flags(size, lowest)), 2)
    assert out.shape == (2, 2 * (CONTEXT + 3) - 2 * (CONTEXT - 1), size, 4)
    # the offline head needs AHEAD more frames after the one it labels
    out = net(clips, rest, torch.from_numpy(pool), torch.from_numpy(black_flags(size, lowest)), head="offline")
    assert out.shape == (2, 4 - AHEAD, size, 4)


def test_the_live_head_never_sees_later_frames_and_the_offline_head_does():
    net = PianoNet(STRIP_SIZE[1]).eval()
    pool, black = torch.from_numpy(key_pool(88, 21, STRIP_SIZE[0])), torch.from_numpy(black_flags(88, 21))
    clips = torch.randint(0, 256, (1, CONTEXT + AHEAD + 2, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=torch.uint8)
    rest = torch.randint(0, 256, (1, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=torch.uint8)
    changed = clips.clone()
    changed[:, -1] = 255 - changed[:, -1]  # only the last frame differs
    with torch.no_grad():
        live, live_changed = (net(c, rest, pool, black) for c in (clips, changed))
        offline, offline_changed = (net(c, rest, pool, black, head="offline") for c in (clips, changed))
    assert torch.equal(live[:, :-1], live_changed[:, :-1]) and not torch.equal(live[:, -1], live_changed[:, -1])
    assert not torch.equal(offline[:, -1], offline_changed[:, -1])  # the frame AHEAD before the last sees it
    assert offline.shape[1] == live.shape[1] - AHEAD


def test_context_frames_are_about_a_30th_of_a_second_apart_at_any_frame_rate():
    assert [context_stride(fps) for fps in (24, 25, 30, 40, 50, 60, 120)] == [1, 1, 1, 1, 2, 2, 4]
    assert context_stride(60, None) == 1  # a model trained on consecutive frames keeps them


def test_decoder_onsets_repeats_flicker_and_hovering():
    p = posteriors_for(40)
    # key 40: a long note whose frame output flickers (0.45) but never drops: one note
    p[2:30, 40, 0] = 0.95
    p[12, 40, 0] = 0.45
    p[2, 40, 1] = 0.9
    p[2, 40, 3] = 100 / 127
    # key 50: a repeated note: the key stays down, a second onset peak re-triggers it
    p[5:35, 50, 0] = 0.9
    p[5, 50, 1], p[6, 50, 1] = 0.8, 0.7  # one onset over two frames: one strike
    p[20, 50, 1] = 0.85
    # key 60: a finger hovering (frame output unsure, no onset): no note
    p[:, 60, 0] = 0.6
    notes = decode(p, 21, FPS, as_file=False)  # the tracker's own frames (peak timing: the next test)
    by_pitch = {}
    for n in notes:
        by_pitch.setdefault(n.pitch, []).append(n)
    assert sorted(by_pitch) == [61, 71]
    (long,) = by_pitch[61]
    assert long.start == pytest.approx(2 / FPS) and long.end == pytest.approx(30 / FPS) and long.velocity == 100
    first, second = by_pitch[71]
    assert (first.start, first.end, second.start, second.end) == pytest.approx((5 / FPS, 20 / FPS, 20 / FPS, 35 / FPS))


def test_a_file_s_notes_start_at_their_onset_posterior_s_peak_end_where_p_down_falls_and_last_a_minimum_time():
    """The tracker starts a note on the first frame above the onset threshold, early on a posterior that
    rises over several frames, and ends it on the first frame below the release level; a file's notes
    start at the peak, between frames, never reaching past the key's next note, end where P(down) fell
    through the release level, between frames, and last at least MIN_FILE_NOTE_SECONDS without running
    into the key's next note."""
    p = posteriors_for(40)
    frames = np.arange(40)
    p[:, 10, 1] = np.exp(-(((frames - 11.3) / 1.5) ** 2))  # key 31's onset posterior peaks 0.3 frames after frame 11
    p[10:25, 10, 0] = 0.95
    p[25, 10, 0] = 0.15  # falls through the release level (0.35) three quarters of the way to frame 25
    p[:, 20, 1] = 0.8 * np.exp(-(((frames - 30.0) / 0.6) ** 2))  # key 41: a repeat 2 frames after the first onset,
    p[:, 20, 1] += np.exp(-(((frames - 32.4) / 0.9) ** 2))  # its posterior higher on frame 32 than the first's peak
    p[29:38, 20, 0] = 0.95
    p[5, 30, 1], p[5, 30, 0] = 0.9, 0.9  # key 51: struck, but the frame output lets it go after one frame
    shipped_like = Thresholds(onset=0.3, rearm=0.18)
    live, timed = (decode(p, 21, FPS, shipped_like, as_file=as_file) for as_file in (False, True))
    assert [(n.pitch, round(n.start * FPS)) for n in live] == [(51, 5), (31, 10), (41, 30), (41, 32)]  # first frames above 0.3
    assert [n.pitch for n in timed] == [51, 31, 41, 41]
    short, long, first, repeat = timed
    assert long.start * FPS == pytest.approx(11.3, abs=0.15)
    assert first.start * FPS == pytest.approx(30.0, abs=0.15)  # its window stops short of the repeat's frame
    assert repeat.start * FPS == pytest.approx(32.4, abs=0.15)
    assert live[0].end - live[0].start == pytest.approx(1 / FPS) and short.end - short.start == pytest.approx(MIN_FILE_NOTE_SECONDS)
    assert first.end == repeat.start  # lengthened up to the repeat, not over it
    assert live[1].end * FPS == pytest.approx(25) and long.end * FPS == pytest.approx(24.75)
    assert repeat.end * FPS == pytest.approx(37 + 0.6 / 0.95) and live[3].end * FPS == pytest.approx(38)
    assert [n.velocity for n in timed] == [n.velocity for n in live]


def test_decoder_starts_a_clearly_held_key_without_onset_and_releases_everything_at_the_end():
    p = posteriors_for(10)
    p[3:, 10, 0] = 0.97  # no onset seen (e.g. occluded strike) but clearly down for two frames
    tracker = NoteTracker(21, 88, FPS)
    events = [e for frame in p for e in tracker.step(frame[:, 0], frame[:, 1], frame[:, 2], frame[:, 3])]
    assert [(e.pitch, e.time) for e in events] == [(31, pytest.approx(4 / FPS))]
    offs = tracker.finish()
    assert [(e.pitch, e.velocity) for e in offs] == [(31, 0)]  # nothing left sounding
    assert len(events_to_notes(events + offs)) == 1


def test_decoder_thresholds_come_from_the_manifest():
    p = posteriors_for(10)
    p[3:, 10, 0] = 0.7  # a key fairly sure to be down, no onset: a note only for a decoder tuned to trust it
    assert decode(p, 21, FPS) == []
    trusting = Thresholds.of({"decoder": {"frame_hold": 0.65}})
    assert trusting.frame_hold == 0.65 and trusting.onset == Thresholds().onset
    assert [n.pitch for n in decode(p, 21, FPS, trusting)] == [31]


def test_note_velocities_follow_the_fitted_line():
    p = posteriors_for(10)
    p[2:6, 10, 0], p[2, 10, 1], p[2, 10, 3] = 0.95, 0.9, 0.8  # one note, velocity output 0.8
    assert [n.velocity for n in decode(p, 21, FPS)] == [round(0.8 * 127)]  # no line: the output as it is
    line = Thresholds(velocity_shift=0.3, velocity_scale=0.25)
    assert [n.velocity for n in decode(p, 21, FPS, line)] == [round((0.3 + 0.25 * 0.8) * 127)]
    assert Thresholds(velocity_shift=0.9, velocity_scale=1.0).velocity(0.8) == 127  # clipped to MIDI's range
    assert Thresholds(velocity_shift=-0.5).velocity(0.1) == 1


def test_the_velocity_line_is_fitted_by_least_absolute_error():
    rng = np.random.default_rng(0)
    predicted = rng.uniform(20, 120, 400)
    true = 15 + 0.5 * predicted + rng.laplace(0, 3, 400)
    true[:20] = 127  # outliers pull a least-squares line, not this one
    shift, scale = train.fit_velocity(true, predicted)
    assert scale == pytest.approx(0.5, abs=0.05) and shift == pytest.approx(15, abs=4)
    unrelated = rng.uniform(20, 120, 400)  # predictions that carry nothing: every note gets the median
    shift, scale = train.fit_velocity(true, unrelated)
    assert scale == 0.0 and shift == pytest.approx(np.median(true))


def test_the_decoder_grid_chooses_the_release_level_by_where_notes_end_as_well_as_start():
    """Onset F1 alone would keep a release level that splits two notes which a half-down key joins (one
    more onset found) while ending three held notes half a second early; the grid ranks onset plus
    onset+offset F1, so it takes the level that ends them right."""
    p = posteriors_for(50, keys=4)
    p[0, :, 1] = 0.9  # an onset on every key at the first frame, none for key 0's second note
    p[:12, 0, 0], p[12:17, 0, 0], p[17:30, 0, 0] = 0.95, 0.3, 0.95  # key 0: down, half up, down again: two notes
    p[:12, 1:, 0], p[12:25, 1:, 0] = 0.95, 0.3  # keys 1-3: down, then half up until they end
    truth = [Note(60, 0.0, 12 / FPS, 64), Note(60, 17 / FPS, 30 / FPS, 64)] + [Note(pitch, 0.0, 25 / FPS, 64) for pitch in (61, 62, 63)]
    take = decoded_take("held", truth, p)
    thresholds, metrics = train._best_thresholds(None, [take], {"offline": [p]})  # the head transcribe decodes, its notes as a file's
    assert thresholds.frame_off == min(train.DECODER_GRID["frame_off"])
    split = train.evaluate(None, [take], replace(thresholds, frame_off=0.5), [p])[0]
    assert split["onset_f1"] > metrics["offline_onset_f1"]  # what ranking by onset F1 alone would have chosen
    assert metrics["offline_onset_offset_f1"] > split["onset_offset_f1"]


def test_each_head_is_scored_as_the_product_times_its_notes():
    """The live head's notes are scored as ``run`` sends them (the frame that decided them), the offline
    head's as ``transcribe`` writes them (at the onset posterior's peak): a press whose onset posterior
    rises a frame before its peak is late live and on time in a file."""
    p = posteriors_for(40, keys=1)
    p[10:13, 0, 1] = 0.5, 0.9, 0.5  # the tracker fires at frame 10, the peak is frame 11
    p[10:30, 0, 0] = 0.95
    truth = [Note(60, 12 / FPS, 30 / FPS, 64)]  # 80 ms after frame 10, 40 ms after the peak
    take = decoded_take("late", truth, p)
    metrics = train.heads_metrics(None, [take], {"live": [p], "offline": [p]})
    assert metrics["onset_f1"] == 0.0 and metrics["offline_onset_f1"] == 1.0


def test_scores_on_a_known_answer():
    truth = [Note(60, 0.0, 0.5, 80), Note(64, 1.0, 1.5, 40)]
    perfect = score(truth, truth, FPS, 50)
    assert perfect["onset_f1"] == perfect["onset_offset_f1"] == perfect["frame_f1_white"] == 1.0
    assert perfect["velocity_mae"] == 0.0
    half = score(truth, [Note(60, 0.02, 0.5, 90), Note(64, 1.2, 1.5, 40)], FPS, 50)
    assert half["onset_f1"] == pytest.approx(0.5)  # second onset 200 ms late: unmatched
    assert half["velocity_mae"] == pytest.approx(10.0)  # over the one matched note


def test_training_draws_shift_the_rest_view_against_the_frames_in_about_half_the_clips():
    """A camera clipped to a piano moves a little after the lock: in about half the training clips the
    rest view is shifted against the frames (up to REST_SHIFT_PX each way), in the others it lines up."""
    import cv2

    from pianoedge.models.train import REST_SHIFT_PX, _jitter

    texture = cv2.GaussianBlur(np.random.default_rng(0).uniform(0, 255, (106, 884)).astype(np.float32), (0, 0), 2)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    shifts = []
    for seed in range(40):
        clip, rest, _ = _jitter(np.stack([texture, texture]), texture, np.random.default_rng(seed))
        (dx, dy), _ = cv2.phaseCorrelate(rest.astype(np.float32), clip[0].astype(np.float32))
        shifts.append(max(abs(dx), abs(dy)))
    moved = np.array(shifts) > 0.05
    assert 0.25 <= moved.mean() <= 0.75 and max(shifts) <= REST_SHIFT_PX + 0.35  # the estimate is good to a few tenths


def test_training_jitter_moves_the_key_change_label_with_its_frames():
    """The side task's label (``studio.keychange``) must stay over the pixels it describes when a clip is
    shifted, scaled and relit: a bright bar in one row band of the strip and the label marking it agree
    after every jitter, to under a pixel along the keyboard and a third of a band across it."""
    from pianoedge.models.data import KEY_CHANGE_BANDS
    from pianoedge.models.train import _jitter

    width, height = STRIP_SIZE
    rows = height // KEY_CHANGE_BANDS
    strip = np.full((height, width), 60, np.uint8)
    strip[5 * rows : 6 * rows, 600:612] = 230
    label = np.zeros((1, KEY_CHANGE_BANDS, width), np.uint8)
    label[0, 5, 600:612] = 255
    for seed in range(12):
        clip, _, change = _jitter(strip[None], strip, np.random.default_rng(seed), label)
        bright = clip[0] > (clip[0].max() + clip[0].min()) / 2
        ys, xs = np.nonzero(bright)
        cols = change[0].sum(axis=0).astype(float)
        band_mass = change[0].sum(axis=1).astype(float)
        assert abs(np.average(np.arange(width), weights=cols) - xs.mean()) < 0.6, seed
        assert abs(np.average(np.arange(KEY_CHANGE_BANDS), weights=band_mass) - (ys.mean() - (rows - 1) / 2) / rows) < 0.35, seed


def test_the_side_task_adds_its_loss_on_labelled_clips_only_and_reaches_the_trunk(tiny_take):
    """The key-change side task: its loss is added for clips whose take has the label, its gradient
    changes the trunk, and weight 0 (or no head) leaves the loss as the heads' alone."""
    torch.manual_seed(0)
    data = train.load_takes([tiny_take])
    assert data[0].key_change is not None and data[0].key_change.any()  # studio takes carry the label
    settings = train.Settings(batch=2, key_change_weight=1.0)
    batch = train._batch(data, settings, np.random.default_rng(0))
    net, side = PianoNet(STRIP_SIZE[1]), train.key_change_head()
    plain = train.step_loss(net, batch, settings)
    with_side = train.step_loss(net, batch, settings, side)
    assert with_side > plain + 0.1
    assert train.step_loss(net, batch, replace(settings, key_change_weight=0.0), side) == plain
    unlabelled = (*batch[:-1], (batch[-1][0], torch.zeros(2)))
    assert train.step_loss(net, unlabelled, settings, side) == plain
    stem = net.trunk.convs[0].weight
    grads = []
    for loss_of_batch in (lambda: train.step_loss(net, batch, settings), lambda: train.step_loss(net, batch, settings, side)):
        net.zero_grad()
        loss_of_batch().backward()
        grads.append(stem.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.slow
def test_a_short_training_run_lowers_the_loss(tiny_take):
    torch.manual_seed(0)
    data = train.load_takes([tiny_take])
    assert data[0].num_keys == 61 and data[0].strips.shape[1:] == (STRIP_SIZE[1], STRIP_SIZE[0])
    settings = train.Settings(batch=2)
    batch = train._batch(data, settings, np.random.default_rng(0))
    net = PianoNet(STRIP_SIZE[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = train.step_loss(net, batch, settings)  # both heads
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow
def test_train_checkpoints_resumes_and_evaluates(tiny_take, tmp_path):
    settings = train.Settings(epochs=1, steps_per_epoch=2, batch=1, key_change_weight=1.0)
    train.train([tiny_take], tmp_path, [tiny_take], settings, log=lambda _: None)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "pianonet.pt").is_file()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["side"] is not None  # the key-change side task trained
    assert set(torch.load(tmp_path / "pianonet.pt", weights_only=True)) == set(PianoNet(STRIP_SIZE[1]).state_dict())  # shipped without it
    tuned = json.loads((tmp_path / "pianonet.json").read_text())
    assert set(tuned["decoder"]) == set(asdict(Thresholds())) and tuned["decoder_tuned_on"] == ["tiny"]
    assert train.load_thresholds(tmp_path) == Thresholds(**tuned["decoder"])
    assert tuned["decoder"]["onset"] in train.DECODER_GRID["onset"]
    tuned["decoder"]["onset"] = 0.45  # off the grid: a velocity-only retune keeps it
    (tmp_path / "pianonet.json").write_text(json.dumps(tuned))
    train.retune(tmp_path, train.load_takes([tiny_take]), log=lambda _: None, velocity_only=True)
    kept = json.loads((tmp_path / "pianonet.json").read_text())
    assert kept["decoder"]["onset"] == 0.45 and kept["velocity_tuned_on"] == ["tiny"]
    settings.epochs = 2
    logged = []
    train.train([tiny_take], tmp_path, None, settings, log=logged.append)
    assert logged[:2] == [train.SIDE_TASK_LOG, logged[1]] and logged[1].startswith("resumed") and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    with pytest.raises(PianoedgeError, match="other settings .*lr 0.003 -> 0.001"):  # never resume a different run silently
        train.train([tiny_take], tmp_path, None, train.Settings(epochs=3, steps_per_epoch=2, batch=1, lr=1e-3, key_change_weight=1.0),
                    log=lambda _: None)
    manifest = json.loads((tmp_path / "pianonet.json").read_text())
    assert manifest["strip_size"] == list(STRIP_SIZE) and manifest["context"] == CONTEXT
    net = train.load_weights(tmp_path)
    assert train.posteriors(net, train.load_takes([tiny_take])[0]).shape[1:] == (61, 4)
    # fine-tuning starts from given weights (lr 0: the convolutions stay exactly those weights)
    train.train([tiny_take], tmp_path / "tuned", None, train.Settings(epochs=1, steps_per_epoch=1, batch=1, lr=0.0),
                log=lambda _: None, init=tmp_path)
    tuned = train.load_weights(tmp_path / "tuned")
    assert torch.equal(tuned.trunk.convs[1][0].weight, net.trunk.convs[1][0].weight)


@pytest.mark.slow
def test_the_offline_head_trains_alone_on_a_trained_model(tiny_take, tmp_path):
    """Weights from before the offline head load with the live head only; --heads offline gives them one,
    trained on the frozen trunk: the trunk (batch-norm statistics included) and the live head stay as they were."""
    old = PianoNet(STRIP_SIZE[1], offline=False)
    train.save_weights(old, tmp_path / "old", {})
    assert set(train.load_weights(tmp_path / "old").heads()) == {"live"}
    settings = train.Settings(epochs=1, steps_per_epoch=3, batch=1, heads="offline")
    with pytest.raises(PianoedgeError, match="--init"):
        train.train([tiny_take], tmp_path / "scratch", None, settings, log=lambda _: None)
    train.train([tiny_take], tmp_path / "new", None, settings, log=lambda _: None, init=tmp_path / "old")
    new = train.load_weights(tmp_path / "new")
    assert set(new.heads()) == {"live", "offline"}
    before, after = old.state_dict(), new.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((tmp_path / "new" / "pianonet.json").read_text())["heads"] == {"live": 0, "offline": AHEAD}


def test_a_widened_trunk_computes_what_it_did_and_its_copies_learn_apart(tmp_path):
    """``net.widened`` (``train --width``): the trunk's blocks twice as wide give the same outputs (batch-norm
    statistics included); the copies of a channel move apart in training; the weights load at their width."""
    torch.manual_seed(0)
    net = PianoNet(STRIP_SIZE[1])
    rng = np.random.default_rng(0)
    strips, previous, rest = (torch.from_numpy(rng.integers(0, 256, (n, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=np.uint8)) for n in (3, 3, 1))
    clips = torch.from_numpy(rng.integers(0, 256, (1, CONTEXT + AHEAD + 2, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=np.uint8))
    pool, black = torch.from_numpy(key_pool(88, 21, STRIP_SIZE[0])), torch.from_numpy(black_flags(88, 21))
    with torch.no_grad():
        net.key_features(strips, rest, pool, previous)  # batch-norm statistics away from their start
    net.eval()
    wide = widened(net, 2)
    assert wide.width == 2 and [block[0].out_channels for block in wide.trunk.convs[1:]] == [2 * c for c in BLOCK_CHANNELS]
    with torch.no_grad():
        for head in ("live", "offline"):
            assert torch.allclose(wide(clips, rest, pool, black, head=head), net(clips, rest, pool, black, head=head), atol=1e-5)
    first, copies = wide.trunk.convs[1][0].weight, BLOCK_CHANNELS[0]
    assert torch.equal(first[:copies], first[copies:])  # the first block's copies start alike; the next block splits them apart
    wide.train()
    loss = wide(clips, rest, pool, black).square().mean()
    loss.backward()
    torch.optim.SGD(wide.parameters(), lr=0.1).step()
    assert not torch.allclose(first[:copies], first[copies:])
    train.save_weights(wide.eval(), tmp_path, {})
    loaded = train.load_weights(tmp_path)
    assert loaded.width == 2 and all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), wide.state_dict().values()))
    with pytest.raises(PianoedgeError, match="multiple"):
        widened(wide, 3)


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(PianoedgeError, match="model weights not found"):
        train.load_weights(tmp_path)


def test_seed_paper_models_take_key_crops_and_give_one_output_each():
    from pianoedge.models.seed import CROP, KINDS, SeedCNN, SeedLSTM, crop_keys

    strip = np.random.default_rng(0).integers(0, 256, (K.CANONICAL_SIZE[1], K.CANONICAL_SIZE[0]), dtype=np.uint8)
    spans = K.layout(88).spans_px()
    for mode, black in KINDS:
        keys = [k for k, key in enumerate(K.layout(88).keys) if key.black == black]
        crops = crop_keys(strip, spans, keys, mode, black)
        w, h = CROP[(mode, black)]
        assert crops.shape == (len(keys), h, w)
        assert SeedCNN((w, h))(torch.from_numpy(crops)).shape == (len(keys),)
    velocity = SeedLSTM()(torch.randn(3, 5, 128))
    assert velocity.shape == (3,) and torch.all((velocity > 0) & (velocity < 1))


@pytest.mark.slow
def test_seed_paper_baseline_trains_and_transcribes(tiny_take, tmp_path):
    from pianoedge.models import seed
    from pianoedge.takes import find_takes

    seed.train_seed([tiny_take], tmp_path, epochs=1, lstm_epochs=1, log=lambda _: None)
    manifest = json.loads((tmp_path / "seed.json").read_text())
    assert manifest["model"] == "seed" and manifest["samples"]["single-white"] > 0
    notes, fps, frames = seed.SeedTranscriber(tmp_path).transcribe_take(find_takes(tiny_take)[0])
    assert fps == 25.0 and frames == len(train.load_takes([tiny_take])[0].strips)
    assert all(36 <= n.pitch <= 96 and 1 <= n.velocity <= 127 for n in notes)


def test_shipped_weights_load_and_carry_their_card():
    manifest = json.loads((train.WEIGHTS / "pianonet.json").read_text())
    assert manifest["strip_size"] == list(STRIP_SIZE) and manifest["context"] == CONTEXT
    assert 0.0 <= manifest["metrics"]["onset_f1"] <= 1.0
    assert (train.WEIGHTS / "README.md").is_file()  # the model card
    net = train.load_weights()
    rest = torch.zeros(1, STRIP_SIZE[1], STRIP_SIZE[0], dtype=torch.uint8)
    feats = net.key_features(rest, rest, torch.from_numpy(key_pool(88, 21, STRIP_SIZE[0])))
    assert feats.shape == (1, 88, 48) and torch.isfinite(feats).all()


def test_weights_of_a_model_without_the_front_margin_grow_rows_it_gives_zero_weight():
    """Runs up to 27 read the canonical strip alone (106 rows): their weights load (``--init``) into a model
    that also reads the rows in front of the keys, each feature channel's old rows where they were and
    the new ones last, with zero weight; weights for a taller strip than this version's are refused."""
    old_net, net = PianoNet(K.CANONICAL_SIZE[1]), PianoNet(STRIP_SIZE[1])
    old = old_net.state_dict()
    grown = grown_front(old, net)
    net.load_state_dict(grown)
    channels = net.trunk.convs[-1][0].out_channels
    before = old["trunk.mix.0.weight"].reshape(FEATURES, channels, -1, 1)
    after = net.trunk.mix[0].weight.detach().reshape(FEATURES, channels, -1, 1)
    assert after.shape[2] > before.shape[2]
    assert torch.equal(after[:, :, :before.shape[2]], before) and not after[:, :, before.shape[2]:].any()
    current = net.state_dict()
    assert grown_front(current, net) is current
    with pytest.raises(PianoedgeError, match="taller strip"):
        grown_front(current, old_net)


def test_weights_of_the_half_size_model_grow_a_stem_that_sees_what_it_saw():
    """Runs 1-14 saw the strip at half size and had no stem: their weights load (``--init``) with a stem
    that averages 2x2, as the half-size warp did, and adds maps the first block gives zero weight."""
    state = PianoNet(STRIP_SIZE[1]).state_dict()
    old = {k: v for k, v in state.items() if not k.startswith("trunk.convs.")}
    for key, value in state.items():
        if key.startswith("trunk.convs.") and not key.startswith("trunk.convs.0."):
            index, rest = key[len("trunk.convs."):].split(".", 1)
            old[f"trunk.convs.{int(index) - 1}.{rest}"] = value[:, :2] if key == "trunk.convs.1.0.weight" else value
    net = PianoNet(STRIP_SIZE[1])
    net.load_state_dict(grown_stem(old, net))
    x = torch.rand(1, INPUTS, STRIP_SIZE[1], STRIP_SIZE[0])
    with torch.no_grad():
        assert torch.allclose(net.trunk.convs[0](x)[:, :2], torch.nn.functional.avg_pool2d(x[:, :2], 2), atol=1e-6)
    first = net.trunk.convs[1][0].weight
    assert torch.equal(first[:, :2], old["trunk.convs.0.0.weight"]) and not first[:, 2:].any() and first.shape[1] == 2 + STEM_MAPS
    current = net.state_dict()
    assert grown_stem(current, net) is current  # weights with the stem load as they are


def test_weights_from_before_motion_load_blind_to_it_and_a_new_model_sees_it():
    """Runs up to 28 read a strip and its difference from the rest view; their weights load with the
    motion input (the strip's difference from a frame before) at zero weight, so they give what they
    gave whatever the frame before; a model trained with it reads it."""
    net = PianoNet(STRIP_SIZE[1]).eval()
    old = {**net.state_dict(), "trunk.convs.0.weight": net.state_dict()["trunk.convs.0.weight"][:, :2].clone()}
    grown = PianoNet(STRIP_SIZE[1]).eval()
    grown.load_state_dict(grown_motion(old, grown))
    rng = np.random.default_rng(0)
    strips, previous, rest = (torch.from_numpy(rng.integers(0, 256, (n, STRIP_SIZE[1], STRIP_SIZE[0]), dtype=np.uint8)) for n in (2, 2, 1))
    pool = torch.from_numpy(key_pool(88, 21, STRIP_SIZE[0]))
    with torch.no_grad():
        still, moving = (grown.key_features(strips, rest, pool, p) for p in (None, previous))
        assert torch.equal(still, moving)
        assert not torch.allclose(net.key_features(strips, rest, pool), net.key_features(strips, rest, pool, previous))
    current = net.state_dict()
    assert grown_motion(current, net) is current
