"""Tests of the studio's music: invariants every performance keeps, and exercises that do what they are named."""
from __future__ import annotations

import re
import time
from collections import defaultdict

import numpy as np
import pytest
from music21 import note, stream, tie

from pianoedge.notes import Note, read_notes, write_notes
from pianoedge.studio import music

SECONDS = 20.0
RANGES = [(21, 108), (36, 96)]  # 88 and 61 keys
SEEDS = range(3)
CORPUS_SEEDS = range(8)


def exercise(kind: str, seed: int, lowest: int = 21, highest: int = 108) -> music.Performance:
    return music.exercise(kind, np.random.default_rng(seed), SECONDS, lowest, highest)


def corpus_piece(seed: int, lowest: int = 21, highest: int = 108) -> music.Performance:
    return music.corpus_piece(np.random.default_rng(seed), SECONDS, lowest, highest)


def by_hand(notes) -> dict[str, list[Note]]:
    hands = defaultdict(list)
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        hands[n.hand].append(n)
    return hands


def restrikes(notes) -> list[tuple[Note, Note]]:
    """Each strike of a key and the key's next strike, in time order."""
    strikes = defaultdict(list)
    for n in sorted(notes, key=lambda n: n.start):
        strikes[n.pitch].append(n)
    return [pair for same_key in strikes.values() for pair in zip(same_key, same_key[1:])]


def assert_playable(perf: music.Performance, lowest: int, highest: int) -> None:
    """Every invariant a performance must keep."""
    assert perf.notes, perf.name
    assert re.fullmatch(r"[A-Za-z0-9_-]+", perf.name), perf.name
    for n in perf.notes:
        assert lowest <= n.pitch <= highest, n
        assert 0.0 <= n.start < SECONDS and n.start < n.end <= SECONDS + music.RELEASE_S, n
        assert isinstance(n.velocity, int) and 1 <= n.velocity <= 127, n
        assert n.hand in ("left", "right"), n
    for previous, following in restrikes(perf.notes):
        assert previous.end <= music.restrike_release(following.start, following.velocity) + 1e-9, (previous, following)
    for hand_notes in by_hand(perf.notes).values():
        for n in hand_notes:  # a hand's sounding set only grows at an onset, so checking onsets covers all times
            sounding = [m.pitch for m in hand_notes if m.start <= n.start < m.end]
            assert len(sounding) <= music.MAX_NOTES_PER_HAND, (n, sounding)
            assert max(sounding) - min(sounding) <= music.MAX_HAND_SPAN, (n, sounding)


def test_kinds_list_matches_generators():
    assert music.EXERCISE_KINDS == tuple(music._EXERCISES)
    assert len(music.EXERCISE_KINDS) == 9


@pytest.mark.parametrize("lowest,highest", RANGES)
@pytest.mark.parametrize("kind", music.EXERCISE_KINDS)
def test_exercise_invariants(kind, lowest, highest):
    for seed in SEEDS:
        perf = exercise(kind, seed, lowest, highest)
        assert_playable(perf, lowest, highest)
        assert perf.source == f"exercise:{kind}"
        assert max(n.start for n in perf.notes) > SECONDS / 2, "an exercise fills its time"


@pytest.mark.parametrize("kind", music.EXERCISE_KINDS)
def test_exercise_is_deterministic(kind):
    assert exercise(kind, 7).notes == exercise(kind, 7).notes
    assert exercise(kind, 7).notes != exercise(kind, 8).notes


@pytest.mark.parametrize("kind", [k for k in music.EXERCISE_KINDS if k != "hand_crossing"])
def test_left_hand_plays_lower(kind):
    for seed in SEEDS:
        hands = by_hand(exercise(kind, seed).notes)
        if hands["left"] and hands["right"]:
            assert np.mean([n.pitch for n in hands["left"]]) < np.mean([n.pitch for n in hands["right"]])


def test_velocities_vary_from_soft_to_loud():
    velocities = [n.velocity for kind in music.EXERCISE_KINDS for seed in SEEDS for n in exercise(kind, seed).notes]
    assert min(velocities) < 40 and max(velocities) > 100
    means = [np.mean([n.velocity for n in exercise("scale", seed).notes]) for seed in range(8)]
    assert max(means) - min(means) > 25, "dynamics differ between takes"


def longest_run(hand_notes, accept) -> list[Note]:
    """Longest stretch of consecutive notes where every neighbouring pair passes ``accept(previous, following)``."""
    best, run = [], hand_notes[:1]
    for previous, following in zip(hand_notes, hand_notes[1:]):
        run = run + [following] if accept(previous, following) else [following]
        best = max(best, run, key=len)
    return best


def rate(run: list[Note]) -> float:
    return (len(run) - 1) / (run[-1].start - run[0].start)


def test_scale_moves_by_step():
    for seed in SEEDS:
        for hand_notes in by_hand(exercise("scale", seed).notes).values():
            steps = np.abs(np.diff([n.pitch for n in hand_notes]))
            assert np.mean((steps >= 1) & (steps <= 3)) > 0.95


def test_arpeggio_leaps_through_chords():
    for seed in SEEDS:
        hands = by_hand(exercise("arpeggio", seed).notes).values()
        leaps = [np.mean(np.isin(np.abs(np.diff([n.pitch for n in h])), range(3, 10))) for h in hands if len(h) > 12]
        assert max(leaps) > 0.55


def test_block_chords_sound_together_in_both_hands():
    for seed in SEEDS:
        hands = by_hand(exercise("block_chords", seed).notes)
        chord_sizes = [1]
        for previous, following in zip(hands["right"], hands["right"][1:]):
            if following.start - previous.start < 0.03:
                chord_sizes[-1] += 1
            else:
                chord_sizes.append(1)
        assert sum(size >= 3 for size in chord_sizes) >= 5
        assert hands["left"]


def test_repeated_notes_strike_one_key_again_and_again():
    for seed in SEEDS:
        strikes = defaultdict(list)
        for n in exercise("repeated_notes", seed).notes:
            strikes[n.pitch].append(n)
        runs = [longest_run(sorted(s, key=lambda n: n.start), lambda a, b: b.start - a.start < 1 / 2.9)
                for s in strikes.values()]
        longest = max(runs, key=len)
        assert len(longest) >= 4 and 2.9 <= rate(longest) <= 10.5


def longest_trill(hand_notes) -> list[Note]:
    """Longest stretch alternating two keys a semitone or a tone apart, each note within 0.2 s of the last."""
    best, run = [], []
    for n in hand_notes:
        neighbour = bool(run) and abs(n.pitch - run[-1].pitch) in (1, 2) and n.start - run[-1].start < 0.2
        if neighbour and (len(run) < 2 or n.pitch == run[-2].pitch):
            run = run + [n]
        else:
            run = [run[-1], n] if neighbour else [n]
        best = max(best, run, key=len)
    return best


def test_trill_alternates_neighbouring_keys_fast():
    for seed in SEEDS:
        trill = max((longest_trill(h) for h in by_hand(exercise("trill", seed).notes).values()), key=len)
        assert len(trill) >= 8 and len({n.pitch for n in trill}) == 2 and rate(trill) >= 8.0, seed


def test_held_under_moving_holds_long_notes_while_the_other_hand_moves():
    for seed in SEEDS:
        notes = exercise("held_under_moving", seed).notes
        held = [n for n in notes if n.end - n.start >= 2.0]
        assert held
        moving = [m for h in held for m in notes if m.hand != h.hand and h.start <= m.start < h.end]
        assert len(moving) >= 4 * len(held)


def test_fast_run_plays_ten_to_sixteen_notes_per_second():
    for seed in SEEDS:
        hands = by_hand(exercise("fast_run", seed).notes).values()
        runs = [longest_run(h, lambda a, b: b.start - a.start < 0.15) for h in hands]
        longest = max(runs, key=len)
        assert len(longest) >= 8 and 9.5 <= rate(longest) <= 16.5


def test_hand_crossing_puts_the_left_hand_above_the_right():
    for seed in SEEDS:
        hands = by_hand(exercise("hand_crossing", seed).notes)
        crossings = [left for left in hands["left"]
                     if any(right.pitch < left.pitch and right.start < left.end + 0.25 and right.end > left.start - 0.25
                            for right in hands["right"])]
        assert len(crossings) >= 3


def test_hovering_leaves_long_silences():
    for seed in SEEDS:
        notes = sorted(exercise("hovering", seed).notes, key=lambda n: n.start)
        silences, sounding_until = [], 0.0
        for n in notes:
            silences.append(n.start - sounding_until)
            sounding_until = max(sounding_until, n.end)
        assert sum(s >= 2.0 for s in silences) >= 2
        assert sum(silences) > SECONDS / 2
        assert all(not (a.start < b.end and b.start < a.end) for a, b in zip(notes, notes[1:])), "single notes only"


def test_corpus_pieces_are_playable_and_varied():
    sources = set()
    for seed in CORPUS_SEEDS:
        perf = corpus_piece(seed)
        assert_playable(perf, 21, 108)
        assert perf.name.startswith("corpus-")
        path = re.fullmatch(r"music21:(\S+) bars (\d+)-(\d+)", perf.source).group(1)
        assert path in music.KEYBOARD_WORKS + music.PART_WORKS
        sources.add(path)
        assert {n.hand for n in perf.notes} == {"left", "right"}
    assert len(sources) >= 3


def test_corpus_piece_fits_a_small_keyboard_and_is_deterministic():
    for seed in range(3):
        perf = music.corpus_piece(np.random.default_rng(seed), SECONDS, 36, 96)
        assert_playable(perf, 36, 96)
        assert perf == music.corpus_piece(np.random.default_rng(seed), SECONDS, 36, 96)
    assert corpus_piece(0).notes != corpus_piece(1).notes


@pytest.mark.parametrize("path", music.KEYBOARD_WORKS + music.PART_WORKS)
def test_every_listed_work_parses_into_two_hands(path):
    work = music._load_work(path)
    assert work is not None and work.length > 16
    assert {e[3] for e in work.events} == {"left", "right"}
    left = np.mean([e[2] for e in work.events if e[3] == "left"])
    right = np.mean([e[2] for e in work.events if e[3] == "right"])
    assert left < right


def test_a_one_part_work_splits_by_pitch_and_joins_ties():
    part = stream.Part()
    for pitch, tie_type in ((48, None), (72, "start"), (72, "stop"), (55, None)):
        n = note.Note(pitch, quarterLength=1.0)
        if tie_type:
            n.tie = tie.Tie(tie_type)
        part.append(n)
    score = stream.Score([part])
    work = music._score_work("test", score)
    assert work.events == ((0.0, 1.0, 48, "left"), (1.0, 3.0, 72, "right"), (3.0, 4.0, 55, "left"))


def test_clean_enforces_restrike_gap_and_hand_limits():
    notes = [Note(60, 0.0, 1.0, 80, "right"), Note(60, 0.5, 1.0, 80, "right"),  # re-struck while held
             *[Note(p, 2.0, 3.0, 80, "right") for p in (60, 62, 64, 65, 67, 69, 72, 79)]]  # too many, too wide
    cleaned = music._clean(notes)
    first = [n for n in cleaned if n.pitch == 60 and n.start < 1.0]
    assert [round(n.end, 6) for n in first] == [round(music.restrike_release(0.5, 80), 6), 1.0]
    chord = [n for n in cleaned if n.start == 2.0 and n.hand == "right"]
    assert len(chord) <= music.MAX_NOTES_PER_HAND and max(n.pitch for n in chord) == 79
    assert max(n.pitch for n in chord) - min(n.pitch for n in chord) <= music.MAX_HAND_SPAN
    assert {n.pitch for n in cleaned if n.hand == "left"} == {60, 62, 64}, "the lowest notes pass to the free left hand"


def test_humanize_jitters_and_stays_clean():
    notes = list(exercise("block_chords", 3).notes)
    played = music.humanize(notes, np.random.default_rng(1), timing_ms=12.0, velocity_sd=8.0)
    assert played == music.humanize(notes, np.random.default_rng(1))
    assert len(played) >= 0.95 * len(notes)
    shifts = np.array([p.start - n.start for n, p in zip(notes, played) if p.pitch == n.pitch])
    assert 0.004 < np.std(shifts) < 0.05
    assert any(p.velocity != n.velocity for n, p in zip(notes, played))
    assert_playable(music.Performance("humanized", tuple(played), "test"), 21, 108)
    # a re-strike pushed too close by jitter is fixed
    tight = [Note(60, 0.0, 0.06, 64, "right"), Note(60, 0.08, 0.14, 64, "right")]
    for seed in range(20):
        again = music.humanize(tight, np.random.default_rng(seed), timing_ms=15.0)
        assert all(a.end <= music.restrike_release(b.start, b.velocity) + 1e-9 for a, b in zip(again, again[1:]))


@pytest.mark.parametrize("kind", ["repeated_notes", "block_chords"])
def test_a_key_struck_again_rises_on_screen_first(kind):
    """Between two strikes of one key the rendered key comes most of the way up, even with the slowest
    release and the softest strikes (before, a re-strike 30 ms after a release left the key down throughout)."""
    from pianoedge import keys as K
    from pianoedge.studio import motion

    for seed in SEEDS:
        notes = list(exercise(kind, seed).notes)
        times = np.arange(0.0, SECONDS, 0.002)
        depth = motion.key_depths(notes, np.full(len(notes), motion.RELEASE_S[1]), times)
        pairs = restrikes(notes)
        assert pairs, "the exercise strikes keys again"
        for a, b in pairs:
            between = depth[(times >= a.end) & (times <= b.start), a.pitch - K.LOWEST_PITCH]
            assert between.min() < 0.4, (a, b, between.min())


def test_midi_round_trip_keeps_notes(tmp_path):
    for perf in (exercise("trill", 2), exercise("block_chords", 4), corpus_piece(5)):
        path = tmp_path / f"{perf.name}.mid"
        write_notes(path, list(perf.notes))
        back = sorted(read_notes(path), key=lambda n: (n.pitch, n.start))  # a key's strikes are >= 30 ms apart
        original = sorted(perf.notes, key=lambda n: (n.pitch, n.start))
        assert len(back) == len(original)
        for a, b in zip(original, back):
            assert (a.pitch, a.velocity, a.hand) == (b.pitch, b.velocity, b.hand)
            assert abs(a.start - b.start) <= 0.002 and abs(a.end - b.end) <= 0.002


def test_generate_mixes_all_kinds_and_corpus_quickly():
    began = time.perf_counter()
    performances = music.generate(np.random.default_rng(0), 20, SECONDS)
    assert time.perf_counter() - began < 60
    assert len(performances) == 20
    assert len({p.name for p in performances}) == 20
    kinds = {p.source.split(":")[1] for p in performances if p.source.startswith("exercise:")}
    assert kinds == set(music.EXERCISE_KINDS)
    assert sum(p.source.startswith("music21:") for p in performances) == 10
    for p in performances:
        assert_playable(p, 21, 108)
    assert [p.notes for p in performances] == [p.notes for p in music.generate(np.random.default_rng(0), 20, SECONDS)]
    assert len(music.generate(np.random.default_rng(1), 4, 5.0, corpus_fraction=0.0)) == 4
