"""Two hands that play the notes: fingering, hand travel, strikes scaled by velocity, hovering fingers.

Each note is given to a hand (its tag, else by pitch) and a finger; the hand's knuckle line glides
to where its next chord lies just before the strike; the striking finger lifts (higher for a louder
note, by the take's lift), comes down with the key and rests on it until release (or, as legato
players do, lands on the key up to the take's ``early_touch_s`` before and rests there until it
presses it, so that the strike itself is only the key going down), while the other
fingers hover a few millimetres above their keys or rest on them, on a key's middle as real fingers
do: the hard negatives of the seed paper. The wrist and the free fingers fidget all the time, as
real hands do, so that motion alone does not give a strike away.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from pianoedge import keys as K
from pianoedge.notes import Note

from .motion import travel_time
from .params import SceneParams
from .render import Blob, Capsule
from .scene import KEY_PIVOT_MM

FINGERS = 5  # 0 thumb .. 4 little finger
TIP_OFFSET_MM = np.array([-58.0, -29.0, 0.0, 25.0, 47.0])  # right hand, fingertip x at rest from the middle knuckle
KNUCKLE_OFFSET_MM = np.array([-38.0, -28.0, -8.0, 12.0, 30.0])
KNUCKLE_BACK_MM = np.array([42.0, 4.0, 0.0, 3.0, 10.0])  # the thumb's base (CMC joint) lies behind the knuckle line
PHALANX_MM = np.array([[46, 32, 26], [44, 26, 20], [48, 29, 22], [45, 28, 21], [36, 21, 19]], float)  # thumb from its metacarpal
RADIUS_MM = np.array([10.5, 9.2, 9.4, 8.9, 8.0])
CHORD_S = 0.04  # onsets closer than this form one chord
PREP_S = 0.12  # the finger lifts this long before touching the key
RELEASE_S = 0.08  # and takes this long to leave it after the release
HAND_STAYS_MM = 12.0  # the hand moves less than this (half a white key) between chords: its fingers may land early
FOREARM_MM = 260.0
NAIL_BGR = np.array([200.0, 195.0, 235.0])
FIDGET_HZ = (0.3, 2.5)  # how fast the wrist and free fingers wander
WHITE_STRIKE_Y_MM = (4.0, 55.0)  # where a finger strikes a white key, mm behind the keyboard's front edge (the real clip: often at it)
BLACK_STRIKE_Y_MM = (K.BLACK_FRONT_MM + 3.0, 128.0)  # and a black key: from just behind its front end to far back, ...
BLACK_STRIKE_FRONT_POWER = 2.0  # ... mostly near the front end, as real players strike them (u ** power across the range)
THUMB_EDGE_Y_MM = (0.0, 8.0)  # a thumb striking a white key at its very front edge (the take's ``thumb_edge_share`` of them), ...
THUMB_EDGE_TUCK_MM = 30.0  # ... the hand placed as if it struck this much further back: the other fingers stay on the keys


@dataclass
class FingerNote:
    note: Note
    key_x: float
    key_y: float
    key_z: float
    touch: float  # time the key starts to go down under the finger
    early: float = 0.0  # how long before ``touch`` the finger lands on the key and rests there
    stays: bool = False  # it never left the key since its last note (the same key again)


def _reach_cost(anchors: np.ndarray, current: float) -> float:
    """How far a set of fingered keys pulls the hand apart (spread of implied positions) and away."""
    return float(anchors.var() * 4 + (anchors.mean() - current) ** 2 * 0.05)


def _pull_to_nearest(x: float, centres: np.ndarray) -> float:
    """Pull ``x`` towards the nearest of ``centres`` (sorted), continuously: a free finger lingers on a
    key's middle and crosses the gaps quickly, as a real finger resting on the keys does."""
    if not centres[0] < x < centres[-1]:
        return x
    i = int(np.searchsorted(centres, x)) - 1
    c0, c1 = centres[i], centres[i + 1]
    u = (x - c0) / (c1 - c0)
    return float(c0 + (c1 - c0) * (u - np.sin(2 * np.pi * u) / (2 * np.pi)))


def _rest_centres(layout: K.KeyboardLayout) -> tuple[np.ndarray, np.ndarray]:
    """Where free fingertips settle (mm across): white-key middles in front, and behind the black keys'
    front ends (``K.BLACK_FRONT_MM``) the middles of the black keys and of the white between them."""
    front = np.array([k.centre for k in layout.whites])
    back = []
    for k in layout.keys:
        if k.black:
            back.append(k.centre)
            continue
        left = max((b.right for b in layout.blacks if b.left < k.left < b.right), default=k.left)
        right = min((b.left for b in layout.blacks if b.left < k.right < b.right), default=k.right)
        back.append(0.5 * (left + right))
    return front * K.WHITE_KEY_PITCH_MM, np.array(back) * K.WHITE_KEY_PITCH_MM


def _smooth(s):
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3 - 2 * s)


class Hand:
    """One hand's plan: keyframes of the knuckle line and the notes of each finger."""

    def __init__(self, side: str, notes: list[Note], layout: K.KeyboardLayout, params: SceneParams,
                 rng: np.random.Generator, duration: float):
        self.side = side
        self.sign = 1.0 if side == "right" else -1.0
        self.scale = params.hand_scale
        self.lift_mm, self.early_touch_s, self.thumb_edge_share = params.lift_mm, params.early_touch_s, params.thumb_edge_share
        self.reach_mm, self.knuckle_height_mm = params.reach_mm, params.knuckle_height_mm  # the posture (``params.RANGES``)
        self.layout = layout
        self.fingers: list[list[FingerNote]] = [[] for _ in range(FINGERS)]
        self.hover_phase = rng.uniform(0, 2 * np.pi, FINGERS)
        self.hover_level = rng.uniform(0.0, 1.3, FINGERS) * params.hover_mm  # 0: resting on its key (real fingers often do)
        # two sine waves per axis for the wrist (row 0) and each finger (rows 1-5)
        self.fidget_amp = params.fidget_mm * rng.uniform(0.3, 1.0, (FINGERS + 1, 3, 2)) / 2
        self.fidget_hz = rng.uniform(*FIDGET_HZ, (FINGERS + 1, 3, 2))
        self.fidget_phase = rng.uniform(0, 2 * np.pi, (FINGERS + 1, 3, 2))
        self.keyframes: list[tuple[float, float, float, float]] = []  # (arrive, x, y, move seconds)
        self.front_centres, self.back_centres = _rest_centres(layout)
        self.black_spans = np.array([[k.left, k.right] for k in layout.blacks]) * K.WHITE_KEY_PITCH_MM
        # early touches and thumb edges come from streams of their own, so that every other draw is as before they existed
        touches = rng.spawn(1)[0]
        self._plan(notes, rng, touches, touches.spawn(1)[0], duration)

    def _tips(self) -> np.ndarray:
        return self.sign * TIP_OFFSET_MM * self.scale

    def _key_point(self, pitch: int, rng: np.random.Generator) -> tuple[float, float, float]:
        span = self.layout.key(pitch)
        x = span.centre * K.WHITE_KEY_PITCH_MM + rng.normal(0, 1.5)
        if span.black:
            near, far = BLACK_STRIKE_Y_MM
            return x, near + (far - near) * float(rng.uniform()) ** BLACK_STRIKE_FRONT_POWER, K.BLACK_KEY_HEIGHT_MM
        return x, float(rng.uniform(*WHITE_STRIKE_Y_MM)), 0.0

    def _plan(self, notes: list[Note], rng: np.random.Generator, touches: np.random.Generator, edges: np.random.Generator,
              duration: float) -> None:
        chords: list[list[Note]] = []
        for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
            if chords and n.start - chords[-1][0].start < CHORD_S:
                chords[-1].append(n)
            else:
                chords.append([n])
        x = (self.layout.num_white / 2 + self.sign * 6) * K.WHITE_KEY_PITCH_MM
        if chords:
            x = self.layout.key(chords[0][0].pitch).centre * K.WHITE_KEY_PITCH_MM
        y = -25.0
        busy_until = np.full(FINGERS, -1.0)
        holding: dict[int, tuple[float, float]] = {}  # finger -> (key x, key y) of the note it holds
        ends: list[float] = []
        last = 0.0
        self.keyframes.append((-1.0, x, y, 0.0))
        tips = self._tips()
        for chord in chords:
            touch = min(n.start - travel_time(n.velocity) for n in chord)
            self._wander(last, touch - 0.5, rng)
            held = {f: holding[f] for f in range(FINGERS) if busy_until[f] >= touch}
            free = [f for f in range(FINGERS) if f not in held]
            points = [self._key_point(n.pitch, rng) for n in chord]
            order = np.argsort([p[0] * self.sign for p in points])[: len(free)]  # thumb side first
            xs = np.array([points[i][0] for i in order])

            # fingers in keyboard order, chosen so that held and new notes are all within reach
            held_anchors = [hx - tips[f] for f, (hx, _) in held.items()]
            combo = min(combinations(free, len(order)),
                        key=lambda c: _reach_cost(np.concatenate([xs - tips[list(c)], held_anchors]), x))
            targets = {f: int(i) for f, i in zip(combo, order)}
            thumb, tuck = targets.get(0), 0.0
            if thumb is not None and not self.layout.key(chord[thumb].pitch).black and edges.uniform() < self.thumb_edge_share:
                points[thumb] = (points[thumb][0], float(edges.uniform(*THUMB_EDGE_Y_MM)), points[thumb][2])
                tuck = THUMB_EDGE_TUCK_MM
            anchors = [points[i][0] - tips[f] for f, i in targets.items()] + [hx - tips[f] for f, (hx, _) in held.items()]
            ys = [points[i][1] + (tuck if f == 0 else 0.0) for f, i in targets.items()] + [hy for hx, hy in held.values()]
            new_x = float(np.mean(anchors))
            new_y = float(np.mean(ys)) - self.reach_mm * self.scale
            move = float(np.clip(abs(new_x - x) / 700 + 0.06, 0.06, 0.35))
            released = max((e for e in ends if e <= touch), default=-1.0)  # the hand leaves only after releasing
            wanted = float(touches.uniform(0.0, self.early_touch_s))  # how early this chord's fingers would land
            hand_stays = abs(new_x - x) <= HAND_STAYS_MM
            landing = {f: self._landing(f, chord[i], points[i], wanted, -1.0 if hand_stays else released + move)
                       for f, i in targets.items()}
            earliest = max((e for _, e, _ in landing.values()), default=0.0)  # none when every finger is busy holding
            self.keyframes.append((max(touch - earliest - PREP_S * 0.5, released + move), new_x, new_y, move))
            x, y = new_x, new_y
            for f, i in targets.items():
                n = chord[i]
                point, early, stays = landing[f]
                self.fingers[f].append(FingerNote(n, *point, n.start - travel_time(n.velocity), early, stays))
                busy_until[f] = n.end + 0.05
                holding[f] = point[:2]
                ends.append(n.end)
            last = max(last, max(n.end for n in chord))
        self._wander(last, duration, rng)
        self.keyframes.sort(key=lambda k: k[0])
        self._arrive = np.array([k[0] for k in self.keyframes])

    def _landing(self, f: int, note: Note, point: tuple, wanted: float, hand_arrives: float) -> tuple[tuple, float, bool]:
        """Where finger ``f`` strikes ``note``, how long before the key goes down it lands there (at most
        ``wanted``: only once it has left its last key and the hand is there, at ``hand_arrives``, negative
        when it is there already), and whether it stays on the key from its last release instead (the
        same key again, under a still hand, as legato players repeat a note)."""
        touch = note.start - travel_time(note.velocity)
        last = self.fingers[f][-1] if self.fingers[f] else None
        if last is not None and last.note.pitch == note.pitch and hand_arrives < 0 and wanted >= touch - last.note.end:
            return (last.key_x, last.key_y, last.key_z), touch - last.note.end, True
        free_at = max(hand_arrives, last.note.end + RELEASE_S if last is not None else -1.0)
        return point, min(wanted, max(0.0, touch - PREP_S - free_at)), False

    def _wander(self, start: float, end: float, rng: np.random.Generator) -> None:
        """Hands drift and hover over the keys in long gaps, without pressing."""
        t = start + 0.4
        while t < end - 0.3:
            _, x, y, _ = self.keyframes[-1]
            self.keyframes.append((t, float(x + rng.normal(0, 45)), float(np.clip(y + rng.normal(0, 15), -60, 20)), 0.35))
            t += float(rng.uniform(0.5, 1.0))

    def _fidget(self, row: int, t: float) -> np.ndarray:
        """The wander (x, y, z mm) of the wrist (row 0) or a free finger (1-5) at time ``t``."""
        return (self.fidget_amp[row] * np.sin(2 * np.pi * self.fidget_hz[row] * t + self.fidget_phase[row])).sum(axis=1)

    def knuckle_anchor(self, t: float) -> tuple[float, float]:
        k = int(np.searchsorted(self._arrive, t, side="right"))
        if k >= len(self.keyframes):
            return self.keyframes[-1][1], self.keyframes[-1][2]
        arrive, x1, y1, move = self.keyframes[k]
        _, x0, y0, _ = self.keyframes[k - 1] if k > 0 else self.keyframes[0]
        s = _smooth((t - (arrive - move)) / move) if move > 0 else 1.0
        return x0 + (x1 - x0) * s, y0 + (y1 - y0) * s

    def _settle_on_key(self, tip: np.ndarray) -> float:
        """Move a free fingertip onto the middle of the key under it (in place); returns the height of
        that key's surface, which the finger rests on or hovers above."""
        behind = float(np.clip((tip[1] - K.BLACK_FRONT_MM + 5) / 10, 0, 1))  # blend across the black keys' front ends
        tip[0] = (1 - behind) * _pull_to_nearest(tip[0], self.front_centres) + behind * _pull_to_nearest(tip[0], self.back_centres)
        on_black = behind > 0.5 and bool(((self.black_spans[:, 0] < tip[0]) & (tip[0] < self.black_spans[:, 1])).any())
        return K.BLACK_KEY_HEIGHT_MM if on_black else 0.0

    def _finger_tip(self, f: int, t: float, anchor: tuple[float, float], depth_of) -> np.ndarray:
        s = self.scale
        hover = self.hover_level[f] * (1 + 0.25 * np.sin(2 * np.pi * 0.7 * t + self.hover_phase[f]))
        rest = np.array([anchor[0] + self._tips()[f], anchor[1] + (self.reach_mm - 0.5 * KNUCKLE_BACK_MM[f]) * s, hover + RADIUS_MM[f] * s])
        rest += self._fidget(f + 1, t) * [1, 1, 0.5]
        surface = self._settle_on_key(rest)
        rest[2] = surface + max(rest[2], RADIUS_MM[f] * s)  # a free finger goes no lower than the key's surface
        for fn in reversed(self.fingers[f]):
            lands = fn.touch - fn.early  # on the key from here
            if (lands if fn.stays else lands - PREP_S) <= t < fn.note.end + RELEASE_S:
                key = np.array([fn.key_x, fn.key_y, fn.key_z + RADIUS_MM[f] * 0.8])
                lift = self.lift_mm * (0.25 + 0.75 * fn.note.velocity / 127)
                if t < lands:  # lift, then come down onto the key
                    s = (t - (lands - PREP_S)) / PREP_S
                    pos = rest + (key - rest) * _smooth(s * 2)
                    pos[2] = key[2] + lift * np.sin(np.pi * min(s * 1.25, 1.0)) * (1 - s) ** 0.5 if s < 1 else key[2]
                    return pos
                if t < fn.note.end:  # on the key, resting until it goes down, then down with it
                    dip = depth_of(fn.note.pitch, t) * K.KEY_TRAVEL_MM * (KEY_PIVOT_MM - fn.key_y) / KEY_PIVOT_MM
                    return key - np.array([0, 0, dip])
                return key + (rest - key) * _smooth((t - fn.note.end) / RELEASE_S)
        return rest

    def geometry(self, t: float, depth_of, skin: np.ndarray, sleeve: np.ndarray | None, crossing: bool,
                 player_x: float) -> tuple[list[Capsule], list[Blob]]:
        """The hand's capsules and palm at time ``t``; ``depth_of(pitch, t)`` gives key depth."""
        s = self.scale
        ax, ay = self.knuckle_anchor(t)
        wx, wy, wz = self._fidget(0, t)
        ax, ay = ax + wx, ay + wy
        az = self.knuckle_height_mm * s + (35 if crossing else 0) + wz
        caps: list[Capsule] = []
        knuckles = []
        for f in range(FINGERS):
            base = np.array([ax + self.sign * KNUCKLE_OFFSET_MM[f] * s, ay - KNUCKLE_BACK_MM[f] * s, az - (14 if f == 0 else 0)])
            tip = self._finger_tip(f, t, (ax, ay), depth_of)
            bones, base = self._finger(base, tip, PHALANX_MM[f] * s, RADIUS_MM[f] * s, skin * (1 + 0.03 * (f - 2) / 2))
            caps += bones
            knuckles.append(base)
        wrist = np.array([ax + self.sign * 4, ay - 92 * s, az - 4])
        elbow_at = np.array([player_x + self.sign * 210, -430, 60.0])  # forearms reach back to the player's sides
        elbow = wrist + (elbow_at - wrist) * (FOREARM_MM * s / np.linalg.norm(elbow_at - wrist))
        edge = np.array([self.sign * 9 * s, 0, 0])
        palm = [knuckles[1] - edge + [0, 0, 8], knuckles[4] + edge + [0, 0, 6], wrist + [self.sign * 34 * s, 0, 6],
                wrist + [-self.sign * 32 * s, 0, 6], knuckles[0] - edge + [0, 0, 4], (knuckles[1] + knuckles[4]) / 2 + [0, 0, 14]]
        cuff = wrist + (elbow - wrist) * 0.18
        caps.append(Capsule(wrist, cuff, 27 * s, skin))
        caps.append(Capsule(cuff, elbow, 34 * s, sleeve if sleeve is not None else skin))
        return caps, [Blob(np.array(palm), skin)]

    @staticmethod
    def _finger(base: np.ndarray, tip: np.ndarray, lengths: np.ndarray, radius: float, colour: np.ndarray) -> tuple[list[Capsule], np.ndarray]:
        """Bend a finger from its knuckle to its tip (two-link IK, joints bulging upwards); returns bones and knuckle."""
        l1, l2 = lengths[0], lengths[1] + lengths[2]
        v = tip - base
        d = float(np.linalg.norm(v))
        reach = (l1 + l2) * 0.97
        if d > reach:  # out of reach: the hand stretches and turns, carrying this knuckle towards the key
            base = tip - v * (reach / d)
            v, d = tip - base, reach
        u = v / d
        up = np.array([0, 0, 1.0]) - u[2] * u
        up /= np.linalg.norm(up) + 1e-9
        cos_a = np.clip((l1**2 + d**2 - l2**2) / (2 * l1 * d), -1, 1)
        joint = base + l1 * (cos_a * u + np.sqrt(1 - cos_a**2) * up)
        mid = joint + (tip - joint) * (lengths[1] / l2) + up * 3
        bones = [Capsule(base, joint, radius, colour), Capsule(joint, mid, radius * 0.93, colour), Capsule(mid, tip, radius * 0.85, colour)]
        nail_from = mid + (tip - mid) * 0.5 + up * radius * 0.4  # on the back of the last bone
        nail = Capsule(nail_from, tip + up * radius * 0.35, radius * 0.5, colour * 0.6 + NAIL_BGR * 0.4)
        return bones + [nail], base


def assign_hands(notes: list[Note]) -> list[Note]:
    """Notes without a hand tag go to the left hand below middle C, else the right."""
    return [n if n.hand else replace(n, hand="left" if n.pitch < 60 else "right") for n in notes]
