"""The 3D piano: keys as pivoting boxes at real dimensions, and the case around them.

Geometry only (world millimetres, see ``camera``); drawing lives in ``render``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianoedge import keys as K

from .params import SceneParams

KEY_PIVOT_MM = 420.0  # distance from the white keys' front edge to the balance rail (key lever)
KEYBED_Z_MM = -K.WHITE_KEY_FRONT_MM
BLACK_TOP_INSET_MM = 1.3  # black keys taper towards their top
BEVEL_MM = 0.8  # width of a white key's rounded top edge


def plane_normal(vertices: np.ndarray) -> np.ndarray:
    """Unit normal of a planar polygon, from its first three vertices (counter-clockwise seen from outside)."""
    n = np.cross(vertices[1] - vertices[0], vertices[2] - vertices[0])
    return n / np.linalg.norm(n)


@dataclass
class Face:
    """A convex planar polygon: rest vertices (4, 3), how each vertex dips per unit key depth, colour."""

    vertices: np.ndarray
    dip: np.ndarray  # (4,) mm of downward motion per unit of key depth
    colour: np.ndarray  # BGR albedo, 0..255 floats
    gloss: float = 0.0

    @property
    def normal(self) -> np.ndarray:
        return plane_normal(self.vertices)

    @property
    def centroid(self) -> np.ndarray:
        return self.vertices.mean(axis=0)


def _dip(points: np.ndarray) -> np.ndarray:
    """Downward travel per unit depth at each point: keys pivot at the balance rail behind the fallboard."""
    return K.KEY_TRAVEL_MM * np.clip((KEY_PIVOT_MM - points[:, 1]) / KEY_PIVOT_MM, 0, None)


def box_faces(x0, x1, y0, y1, z0, z1, colour, gloss=0.0, top_inset=0.0, moving=False) -> list[Face]:
    """The six outward-facing faces of a box (top optionally inset, as on a black key)."""
    a = top_inset
    b = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]
    t = [(x0 + a, y0 + a, z1), (x1 - a, y0 + a, z1), (x1 - a, y1, z1), (x0 + a, y1, z1)]
    quads = [
        [t[0], t[1], t[2], t[3]],  # top (normal +z)
        [b[0], b[3], b[2], b[1]],  # bottom
        [b[0], b[1], t[1], t[0]],  # front (-y)
        [b[1], b[2], t[2], t[1]],  # high side (+x)
        [b[2], b[3], t[3], t[2]],  # back (+y)
        [b[3], b[0], t[0], t[3]],  # low side (-x)
    ]
    faces = []
    for q in quads:
        v = np.array(q, float)
        dip = _dip(v) if moving else np.zeros(4)
        faces.append(Face(v, dip, np.asarray(colour, float), gloss))
    return faces


@dataclass
class PianoKey:
    pitch: int
    black: bool
    faces: list[Face]
    top: Face

    @property
    def centre(self) -> np.ndarray:
        return self.top.centroid


class Piano:
    """Keys and case of one instrument, built from the scene parameters."""

    def __init__(self, params: SceneParams, rng: np.random.Generator):
        self.layout = K.layout(params.num_keys)
        self.width_mm = self.layout.num_white * K.WHITE_KEY_PITCH_MM
        self.keys = [self._key(span, params, rng) for span in self.layout.keys]
        self.case_faces = self._case(params, rng)
        self.panel_faces = self._panel(params, rng) if params.piano == "digital" else []
        clothes = rng.uniform(20, 110) * rng.uniform(0.7, 1.3, 3)
        self.player_x = self.width_mm / 2 + float(rng.uniform(-150, 150))
        self.surroundings = box_faces(self.player_x - 260, self.player_x + 260, -560, -200, -300, -120, clothes)  # the lap

    def _key(self, span: K.KeySpan, params: SceneParams, rng: np.random.Generator) -> PianoKey:
        u = K.WHITE_KEY_PITCH_MM
        if span.black:
            colour = np.array([22, 20, 20], float) * rng.uniform(0.8, 1.3)
            x0, x1 = span.left * u, span.right * u
            y0, y1 = K.BLACK_FRONT_MM, K.WHITE_KEY_LENGTH_MM
            faces = box_faces(x0, x1, y0, y1, 0.0, K.BLACK_KEY_HEIGHT_MM, colour, params.black_key_gloss,
                              BLACK_TOP_INSET_MM, moving=True)
        else:
            tint = rng.normal(0, 2.0, 3)  # keys age unevenly
            colour = np.clip(np.array(params.white_key_bgr, float) + tint, 0, 255)
            g = K.WHITE_KEY_GAP_MM / 2
            x0, x1 = span.left * u + g, span.right * u - g
            faces = box_faces(x0, x1, 0.0, K.WHITE_KEY_LENGTH_MM, KEYBED_Z_MM, 0.0, colour, 0.35, moving=True)
        # bottom and back are never seen; the top goes last: from above it covers the key's own sides
        faces = [faces[2], faces[3], faces[5], faces[0]]
        if not span.black:  # rounded top edges catch less light: a darker rim around an inset top
            rim = faces[-1]
            rim.colour = rim.colour * 0.7
            inset = rim.vertices + np.array([[BEVEL_MM, BEVEL_MM, 0], [-BEVEL_MM, BEVEL_MM, 0], [-BEVEL_MM, 0, 0], [BEVEL_MM, 0, 0]])
            faces.append(Face(inset, _dip(inset), colour, rim.gloss))
        return PianoKey(span.pitch, span.black, faces, faces[-1])

    def _case(self, params: SceneParams, rng: np.random.Generator) -> list[Face]:
        colour = np.array(params.case_bgr, float)
        gloss = 0.8 if params.piano == "acoustic" else 0.3
        w = self.width_mm
        cheek = float(rng.uniform(15, 45))
        cheek_h = float(rng.uniform(15, 60))
        back = K.WHITE_KEY_LENGTH_MM
        depth = float(rng.uniform(90, 260))
        nb = params.nameboard_mm
        faces = []
        faces += box_faces(-cheek, 0.0, -45, back + depth, -80, cheek_h, colour, gloss)
        faces += box_faces(w, w + cheek, -45, back + depth, -80, cheek_h, colour, gloss)
        faces += box_faces(-cheek, w + cheek, -45, -3, -90, -K.WHITE_KEY_FRONT_MM - 3, colour, gloss)
        faces += box_faces(-cheek, w + cheek, back, back + depth, -40, nb, colour, gloss)
        faces += box_faces(-cheek, w + cheek, 60, back + depth, -700, -90, colour * 0.8, gloss)  # body below the keys
        if params.view != "stand":  # the upright cabinet rises behind the keys (the stand camera sits on it)
            faces += box_faces(-cheek, w + cheek, back + depth, back + depth + 40, nb, nb + float(rng.uniform(150, 500)), colour * 0.9, gloss)
        return faces

    def _panel(self, params: SceneParams, rng: np.random.Generator) -> list[Face]:
        """A digital piano's controls on the case behind the keys: a lit display, buttons, a speaker grille."""
        z = params.nameboard_mm + 0.3
        y0 = K.WHITE_KEY_LENGTH_MM + float(rng.uniform(15, 40))
        case = np.array(params.case_bgr, float)

        def flat(x0, x1, ya, yb, colour, gloss=0.2):
            v = np.array([[x0, ya, z], [x1, ya, z], [x1, yb, z], [x0, yb, z]], float)
            return Face(v, np.zeros(4), np.asarray(colour, float), gloss)

        x = self.width_mm * float(rng.uniform(0.3, 0.55))
        glow = np.array([(90, 230, 120), (230, 190, 80), (60, 160, 250), (200, 230, 230)][int(rng.integers(4))], float)
        faces = [flat(x, x + 95, y0, y0 + 30, (18, 22, 20), 0.9), flat(x + 6, x + 89, y0 + 6, y0 + 24, glow * rng.uniform(0.5, 1.0))]
        button = np.clip(case + rng.choice([-60.0, 60.0]), 10, 245)
        for i in range(int(rng.integers(4, 13))):
            bx = x + 110 + i * 16
            faces.append(flat(bx, bx + 10, y0 + 8, y0 + 18, button))
            if rng.random() < 0.3:  # a lit button LED
                faces.append(flat(bx + 3, bx + 7, y0 + 20, y0 + 23, (40, 40, 240)))
        faces.append(flat(30, self.width_mm * 0.25, y0, y0 + 30, case * 0.6))  # speaker grille
        faces.append(flat(self.width_mm * 0.8, self.width_mm - 30, y0, y0 + 30, case * 0.6))
        return faces

    @property
    def surface_corners(self) -> np.ndarray:
        """The white-key playing surface at rest in CONTRACTS order: back-low, back-high, front-high, front-low."""
        w, b = self.width_mm, K.WHITE_KEY_LENGTH_MM
        return np.array([[0, b, 0], [w, b, 0], [w, 0, 0], [0, 0, 0]], float)

    @property
    def extent(self) -> np.ndarray:
        """Points the camera must see: the keyboard and a little case around it."""
        w, b = self.width_mm, K.WHITE_KEY_LENGTH_MM
        return np.array([[-20, -40, 0], [w + 20, -40, 0], [w + 20, b + 30, 0], [-20, b + 30, 0]], float)
