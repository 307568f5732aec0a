"""Draws studio frames: a static layer rendered once, then only what moves (pressed keys, hands).

Faces are flat-shaded convex polygons drawn back to front (painter's algorithm) with sub-pixel,
anti-aliased OpenCV fills; spatial light falloff, glare, texture, vignetting, shadows, sensor noise,
defocus and lens distortion are image-space layers applied to the whole frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pianoedge import keys as K

from .camera import Camera, place_camera
from .params import SceneParams
from .scene import Face, Piano, plane_normal

SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices
ONE = 1 << SHIFT
LIGHT_MAP_ONE = 128  # light maps store gain x128 in uint8 (0 .. 2x)
# a skin cylinder: (width in radii, tone, shift towards the light in radii) from rim to highlight
CAPSULE_SHADING = ((2.0, 0.72, 0.0), (1.6, 0.86, 0.12), (1.0, 0.97, 0.28), (0.35, 1.06, 0.45))


@dataclass
class Capsule:
    """A tapered cylinder with round ends (a finger bone, a forearm), radius in mm."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    colour: np.ndarray


@dataclass
class Blob:
    """A rounded convex shape given by 3D outline points (the palm)."""

    outline: np.ndarray
    colour: np.ndarray


def _direction(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


class Renderer:
    """Renders frames of one take: ``render(depth_samples, hands)``."""

    def __init__(self, params: SceneParams, rng: np.random.Generator):
        self.params = params
        self.piano = Piano(params, rng)
        self.camera: Camera = place_camera(
            self.piano.extent, self.piano.extent.mean(axis=0), params.width, params.height, params.hfov_deg,
            params.tilt_deg, params.yaw_deg, params.roll_deg, params.fill, params.view == "stand", params.k1,
        )
        self.light = _direction(params.light_elevation_deg, params.light_azimuth_deg)
        self.size = (params.height, params.width)
        self._prepare_keys()
        self._prepare_light_maps(rng)
        self.base, self.occluders = self._render_static(rng)  # everything at rest, before glare
        self.static = cv2.add(self.base, self.glare)
        self.distortion = self.camera.distortion_maps()
        self.noise = [rng.normal(0, params.noise_sd, self.size + (3,)).astype(np.int16) for _ in range(4)]
        self._noise_rng = np.random.default_rng(int(rng.integers(2**31)))

    # ---- shading -------------------------------------------------------------------------------
    def _diffuse(self, normal: np.ndarray) -> float:
        return self.params.ambient + (1 - self.params.ambient) * max(0.0, float(normal @ self.light))

    def _shade(self, face: Face) -> np.ndarray:
        n = face.normal
        colour = face.colour * self._diffuse(n)
        if face.gloss and n[2] < 0.9:  # glossy sides and fronts catch a highlight; tops get the glare map
            view = self.camera.centre - face.centroid
            half = self.light + view / np.linalg.norm(view)
            colour = colour + 255 * face.gloss * self.params.specular * max(0.0, float(n @ half / np.linalg.norm(half))) ** 20
        return np.clip(colour, 0, 255)

    def _visible(self, face: Face) -> bool:
        return float(face.normal @ (self.camera.centre - face.centroid)) > 0

    def _prepare_keys(self) -> None:
        cam = self.camera
        self.key_faces = []  # per key: (F,4,3) rest vertices, (F,4) dip, (F,3) colours, top flags
        self.key_distance = np.array([np.linalg.norm(cam.centre - k.centre) for k in self.piano.keys])
        self.key_black = np.array([k.black for k in self.piano.keys])
        for key in self.piano.keys:
            faces = [f for f in key.faces if self._visible(f)]
            verts = np.stack([f.vertices for f in faces])
            dips = np.stack([f.dip for f in faces])
            # a white key's side walls face its neighbours across a 1 mm slot: little light reaches them
            occlusion = [0.3 if not key.black and abs(f.normal[0]) > 0.9 else 1.0 for f in faces]
            colours = np.stack([self._shade(f) * o for f, o in zip(faces, occlusion)])
            tops = np.array([f.normal[2] > 0.9 for f in faces])  # the top and its rim
            self.key_faces.append((verts, dips, colours, tops))
        self.keybed_z = -K.WHITE_KEY_FRONT_MM
        self.key_x_centres = np.array([k.centre[0] for k in self.piano.keys])
        self._rest_boxes = [self._key_bbox(i, 0.0) for i in range(len(self.piano.keys))]
        self._rest_px = [cam.project(v.reshape(-1, 3)).reshape(len(v), 4, 2) for v, _, _, _ in self.key_faces]
        self._rest_colours = [[tuple(float(x) for x in c) for c in colours] for _, _, colours, _ in self.key_faces]
        self._keybed_colour = np.array(self.params.case_bgr, float) * 0.25 + 8

    def _dipped(self, index: int, depth: float) -> np.ndarray:
        """A key's visible faces (F, 4, 3) at ``depth`` (0 up .. 1 down)."""
        verts, dips, _, _ = self.key_faces[index]
        return verts - (depth * dips)[..., None] * [0, 0, 1]

    def _key_bbox(self, index: int, depth: float) -> np.ndarray:
        px = self.camera.project(self._dipped(index, depth).reshape(-1, 3))
        return np.concatenate([px.min(axis=0), px.max(axis=0)])

    # ---- drawing primitives ----------------------------------------------------------------------
    def _fill(self, canvas: np.ndarray, px: np.ndarray, origin: np.ndarray, colour) -> None:
        pts = np.round((px - origin) * ONE).astype(np.int32)
        cv2.fillConvexPoly(canvas, pts, tuple(float(c) for c in np.atleast_1d(colour)), cv2.LINE_AA, SHIFT)

    def _draw_key(self, canvas: np.ndarray, origin: np.ndarray, index: int, depth: float) -> None:
        rest, _, colours, tops = self.key_faces[index]
        if depth:
            verts = self._dipped(index, depth)
            px = self.camera.project(verts.reshape(-1, 3)).reshape(len(verts), 4, 2)
            sunk = 1.0 - self.params.press_shade * depth  # into its neighbours' shade

            def tilted(c, moved, at_rest):  # the top tilts: the light model shades it
                return tuple(c * (self._diffuse(plane_normal(moved)) / self._diffuse(plane_normal(at_rest)) * sunk))

            colours = [tilted(c, m, r) if top else tuple(c) for c, m, r, top in zip(colours, verts, rest, tops)]
        else:
            px, colours = self._rest_px[index], self._rest_colours[index]
        pts = np.round((px - origin) * ONE).astype(np.int32)
        for face, colour in zip(pts, colours):
            cv2.fillConvexPoly(canvas, face, colour, cv2.LINE_AA, SHIFT)

    def _draw_keys(self, canvas: np.ndarray, origin: np.ndarray, indices: np.ndarray, depths: np.ndarray) -> None:
        """Keybed, then white keys, then black keys; lower and farther keys first."""
        whites = [i for i in indices if not self.key_black[i]]
        if whites:
            xs = self.key_x_centres[[whites[0], whites[-1]]] if len(whites) > 1 else self.key_x_centres[[whites[0]] * 2]
            z = self.keybed_z
            bed = np.array([[xs[0], 0, z], [xs[1], 0, z], [xs[1], K.WHITE_KEY_LENGTH_MM, z], [xs[0], K.WHITE_KEY_LENGTH_MM, z]])
            self._fill(canvas, self.camera.project(bed), origin, self._keybed_colour)
        for black in (False, True):
            group = [i for i in indices if self.key_black[i] == black]
            for i in sorted(group, key=lambda i: (-depths[i], -self.key_distance[i])):
                self._draw_key(canvas, origin, i, float(depths[i]))

    def _draw_faces(self, canvas: np.ndarray, faces: list[Face], mask: np.ndarray | None = None) -> None:
        origin = np.zeros(2)
        for face in sorted(faces, key=lambda f: -float(self.camera.depth(f.centroid))):
            if not self._visible(face) or (self.camera.depth(face.vertices) < 10).any():
                continue
            px = self.camera.project(face.vertices)
            self._fill(canvas, px, origin, self._shade(face))
            if mask is not None:
                self._fill(mask, px, origin, 255)

    # ---- static layer -----------------------------------------------------------------------------
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A room out of focus: a muted wall/floor colour with soft light and dark patches."""
        h, w = self.size
        grey = rng.uniform(25, 170)
        base = grey * (1 + rng.uniform(-0.25, 0.25, 3))  # low saturation, like real rooms
        blobs = cv2.resize(rng.normal(0, 1, (5, 7)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
        img = base * (1 + 0.3 * blobs[..., None]) + 5 * grain[..., None]
        return np.clip(img, 0, 255).astype(np.uint8)

    def _render_static(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        img = self._background(rng)
        self._draw_faces(img, self.piano.surroundings)
        img = cv2.GaussianBlur(img, (0, 0), 0.004 * self.size[1] + 1)  # out of focus below the keys
        w, b = self.piano.width_mm, K.WHITE_KEY_LENGTH_MM
        key_volume = np.array([[x, y, z] for x in (0, w) for y in (0, b) for z in (self.keybed_z, K.BLACK_KEY_HEIGHT_MM)])
        behind, in_front = [], []
        for face in self.piano.case_faces:  # a face whose plane has every key behind it may cover them
            covers = bool(((key_volume - face.centroid) @ face.normal < 1e-6).all())
            (in_front if covers else behind).append(face)
        self._draw_faces(img, behind)
        self._draw_reflection(img, behind)
        all_keys = np.arange(len(self.piano.keys))
        self._draw_keys(img, np.zeros(2), all_keys, np.zeros(len(all_keys)))
        occluders = np.zeros(self.size, np.uint8)
        self._draw_faces(img, in_front, occluders)
        for face in self.piano.panel_faces:  # on top of the case, in drawing order
            self._draw_faces(img, [face], occluders)
        return img, occluders > 127

    def _draw_reflection(self, img: np.ndarray, behind: list[Face]) -> None:
        """A glossy nameboard mirrors the keys (blurred): render them mirrored in its plane."""
        if self.params.piano != "acoustic":
            return
        board = [f for f in behind if f.normal[1] < -0.9 and f.centroid[1] >= K.WHITE_KEY_LENGTH_MM - 1]
        if not board:
            return
        mirror_y = 2 * K.WHITE_KEY_LENGTH_MM
        layer = np.zeros_like(img)
        for key in self.piano.keys:
            for face in key.faces:
                v = face.vertices.copy()
                v[:, 1] = mirror_y - v[:, 1]
                if (self.camera.depth(v) < 10).any():
                    continue
                self._fill(layer, self.camera.project(v), np.zeros(2), self._shade(face) * 0.8)
        mask = np.zeros(self.size, np.uint8)
        self._fill(mask, self.camera.project(board[0].vertices), np.zeros(2), 255)
        layer = cv2.GaussianBlur(layer, (0, 0), 1.5)
        alpha = (mask.astype(np.float32) / 255.0 * 0.3 * self.params.specular)[..., None]
        img[:] = np.clip(img * (1 - alpha) + layer * alpha, 0, 255).astype(np.uint8)

    def _prepare_light_maps(self, rng: np.random.Generator) -> None:
        """Point-light falloff, vignetting, texture, white balance and exposure in one gain map; glare on key tops."""
        p = self.params
        h, w = self.size
        sh, sw = h // 4, w // 4
        ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float64) * 4 + 2
        cam = self.camera
        # back-project pixels onto the key surface plane z = 0
        rays = np.linalg.solve(cam.K, np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])).T @ cam.R
        rays[np.abs(rays[:, 2]) < 1e-6, 2] = -1e-6
        s = -cam.centre[2] / rays[:, 2]
        s = np.where(s > 0, s, 1e5)
        world = cam.centre + rays * s[:, None]
        lamp = np.array([self.piano.width_mm / 2, K.WHITE_KEY_LENGTH_MM / 2, 0.0]) + float(rng.uniform(900, 2500)) * self.light
        to_lamp = lamp - world
        dist = np.linalg.norm(to_lamp, axis=1)
        centre_dist = np.linalg.norm(lamp - np.array([self.piano.width_mm / 2, 75, 0]))
        falloff = np.clip((centre_dist / dist) ** 2 * np.clip(to_lamp[:, 2] / dist, 0.05, 1) / max(self.light[2], 0.05), 0.3, 1.3)
        view = cam.centre - world
        half = to_lamp / dist[:, None] + view / np.linalg.norm(view, axis=1, keepdims=True)
        self.shininess = float(rng.uniform(20, 200))
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        self.half_map = half.reshape(sh, sw, 3)  # the mirror direction per pixel, for pressed keys' glare
        glare = p.specular * np.clip(half[:, 2], 0, 1) ** self.shininess
        r2 = ((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        vignette = 1 - p.vignette * r2.ravel()
        gain = (falloff * vignette * p.exposure).reshape(sh, sw)
        gain = cv2.resize(gain.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        texture = 1 + 0.03 * cv2.resize(rng.normal(0, 1, (h // 16 + 1, w // 16 + 1)).astype(np.float32), (w, h)) \
            + 0.015 * rng.normal(0, 1, (h, w)).astype(np.float32)
        balance = np.array([1 + 0.8 * p.colour_temperature, 1.0, 1 - 0.5 * p.colour_temperature], np.float32)
        self.light_map = np.clip((gain * texture)[..., None] * balance * LIGHT_MAP_ONE, 0, 255).astype(np.uint8)
        glare_img = cv2.resize(glare.reshape(sh, sw).astype(np.float32), (w, h)) * 200
        tops = np.zeros(self.size, np.uint8)
        for key in self.piano.keys:
            if self._visible(key.top):
                self._fill(tops, cam.project(key.top.vertices), np.zeros(2), 255 if not key.black else 255 * self.params.black_key_gloss)
        self.glare = np.clip(glare_img * (tops / 255.0), 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)

    # ---- per frame ----------------------------------------------------------------------------------
    def _dirty_runs(self, moving: np.ndarray) -> list[tuple[int, int]]:
        idx = np.flatnonzero(moving)
        runs: list[tuple[int, int]] = []
        for i in idx:
            if runs and i - runs[-1][1] <= 6:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        return runs

    def _draw_pressed(self, frame: np.ndarray, samples: np.ndarray) -> None:
        """Re-render the keys around every key that is down or moving, averaging exposure sub-samples."""
        n = len(self.piano.keys)
        for lo, hi in self._dirty_runs(samples.max(axis=0) > 1e-3):
            a, b = max(lo - 4, 0), min(hi + 4, n - 1)
            boxes = [self._rest_boxes[i] for i in range(a, b + 1)] + [self._key_bbox(i, 1.0) for i in range(lo, hi + 1)]
            box = np.array(boxes)
            x0, y0 = np.floor(box[:, :2].min(axis=0)).astype(int) - 2
            x1, y1 = np.ceil(box[:, 2:].max(axis=0)).astype(int) + 2
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, self.size[1]), min(y1, self.size[0])
            if x1 <= x0 or y1 <= y0:
                continue
            base, static = self.base[y0:y1, x0:x1], self.static[y0:y1, x0:x1]
            indices = np.arange(a, b + 1)
            moving = np.ptp(samples[:, lo : hi + 1], axis=0).max() > 1e-3
            steps = samples if moving else samples[:1]
            acc = None
            for depths in steps:
                canvas = base.copy()
                self._draw_keys(canvas, np.array([x0, y0], float), indices, depths)
                acc = canvas.astype(np.float32) if acc is None else acc + canvas
            roi = (acc / len(steps) + 0.5).astype(np.uint8) if len(steps) > 1 else canvas
            roi = cv2.add(roi, self._glare(x0, y0, x1, y1, samples.mean(axis=0)))
            # keep the static image outside the moved keys: redrawn neighbours differ at their anti-aliased edges
            moved = self._moved_mask(roi.shape[:2], np.array([x0, y0], float), range(lo, hi + 1), samples.max(axis=0))
            np.copyto(roi, static, where=(self.occluders[y0:y1, x0:x1] | ~moved)[..., None])
            frame[y0:y1, x0:x1] = roi

    def _moved_mask(self, shape: tuple[int, int], origin: np.ndarray, indices, depths: np.ndarray) -> np.ndarray:
        """Pixels covered by the given keys at rest or at their depth (what a press can change), plus a 2 px margin."""
        mask = np.zeros(shape, np.uint8)
        for i in indices:
            if depths[i] <= 1e-3:
                continue
            moved = self._dipped(i, depths[i])
            for face in np.concatenate([self._rest_px[i], self.camera.project(moved.reshape(-1, 3)).reshape(len(moved), 4, 2)]):
                self._fill(mask, face, origin, 255)
        return cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0

    def _project_capsules(self, capsules: list[Capsule]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel ends (N, 2, 2), pixel radii (N,) and mean depths (N,) of capsules, in one projection."""
        ends = np.array([(c.a, c.b) for c in capsules], float).reshape(-1, 3)
        depth = self.camera.depth(ends).reshape(-1, 2)
        px = self.camera.project(ends).reshape(-1, 2, 2)
        radius = np.array([c.radius for c in capsules]) * self.camera.K[0, 0] / np.maximum(depth[:, 0], 1.0)
        return px, radius, depth.mean(axis=1)

    def _glare(self, x0: int, y0: int, x1: int, y1: int, depths: np.ndarray) -> np.ndarray:
        """The glare map over a region; a pressed key's tilted top mirrors the light a little elsewhere
        (its glare scaled by the specular lobe at its tilted normal, one factor per key)."""
        glare = self.glare[y0:y1, x0:x1]
        pressed = np.flatnonzero(depths > 1e-3)
        if not len(pressed):
            return glare
        gain = np.ones(glare.shape[:2], np.float32)
        origin = np.array([x0, y0], float)
        hh, hw = self.half_map.shape[:2]
        for i in pressed:
            tops = self.key_faces[i][3]
            if tops.any():
                top = self._dipped(i, depths[i])[tops][0]
                px = self.camera.project(top)
                cx, cy = (px.mean(axis=0) // 4).astype(int)
                half = self.half_map[np.clip(cy, 0, hh - 1), np.clip(cx, 0, hw - 1)]
                ratio = (max(float(plane_normal(top) @ half), 0.0) / max(float(half[2]), 1e-6)) ** self.shininess
                self._fill(gain, px, origin, min(ratio, 2.0))
        return np.clip(glare * gain[..., None], 0, 255).astype(np.uint8)

    def _draw_shadows(self, frame: np.ndarray, capsules: list[Capsule], blobs: list[Blob]) -> None:
        """Soft shadows of the hands on the keys: project along the light onto z = 0, blur, darken."""
        h, w = self.size
        q = 4
        mask = np.zeros((h // q + 1, w // q + 1), np.uint8)
        lz = max(self.light[2], 0.2)

        def drop(p: np.ndarray) -> np.ndarray:
            return p - (np.maximum(p[:, 2:3], 0) / lz) * self.light

        dropped = [Capsule(drop(c.a[None])[0], drop(c.b[None])[0], c.radius, c.colour) for c in capsules]
        px, radius, _ = self._project_capsules(dropped)
        for (p0, p1), r in zip(np.round(px / q * ONE).astype(int), radius / q):
            cv2.line(mask, tuple(p0), tuple(p1), 255, max(int(2 * r), 1), cv2.LINE_AA, SHIFT)
        for b in blobs:
            hull = cv2.convexHull(np.round(self.camera.project(drop(b.outline)) / q * ONE).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_AA, SHIFT)
        mask = cv2.GaussianBlur(mask, (0, 0), 3.0)
        strength = 0.65 * (1 - self.params.ambient)
        shade = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        keep = (255 - (shade.astype(np.float32) * strength)).astype(np.uint8)
        cv2.multiply(frame, cv2.merge([keep, keep, keep]), frame, scale=1 / 255)

    def _draw_hands(self, frame: np.ndarray, capsules: list[Capsule], blobs: list[Blob]) -> None:
        """Skin as shaded cylinders and a rounded palm, far parts first, lit from the light's side, softened."""
        cam = self.camera
        light_px = cam.project(self.light[None] * 100)[0] - cam.project(np.zeros((1, 3)))[0]
        light_px = light_px / (np.linalg.norm(light_px) + 1e-6)
        px, radius, depth = self._project_capsules(capsules)
        items = [(depth[i], i) for i in range(len(capsules))]
        items += [(float(cam.depth(b.outline).mean()), b) for b in blobs]
        lo = np.floor(px.reshape(-1, 2).min(axis=0) - radius.max() - 4).astype(int)
        hi = np.ceil(px.reshape(-1, 2).max(axis=0) + radius.max() + 4).astype(int)
        x0, y0 = np.maximum(lo, 0)
        x1, y1 = min(hi[0], self.size[1]), min(hi[1], self.size[0])
        if x1 <= x0 or y1 <= y0:
            return
        roi = frame[y0:y1, x0:x1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        origin = np.array([x0, y0], float)
        # every capsule's shading passes at once: (N, passes, 2 ends, 2) fixed-point ends, widths, colours
        shading = np.array(CAPSULE_SHADING)
        offsets = light_px * (radius[:, None] * shading[None, :, 2])[..., None]
        ends = np.round((px[:, None] + offsets[:, :, None] - origin) * ONE).astype(int).tolist()
        widths = np.maximum(np.round(radius[:, None] * shading[None, :, 0]), 1).astype(int).tolist()
        tones = np.array([c.colour for c in capsules])[:, None] * shading[None, :, 1, None]
        colours = [[tuple(c) for c in row] for row in np.clip(tones, 0, 255).tolist()]
        for _, item in sorted(items, key=lambda it: -it[0]):
            if isinstance(item, Blob):
                hull = cv2.convexHull(cam.project(item.outline).astype(np.float32))[:, 0].astype(float)
                centre = hull.mean(axis=0)
                for scale, tone in ((1.0, 0.8), (0.75, 0.92), (0.45, 1.0)):
                    shifted = centre + (hull - centre) * scale + light_px * (1 - scale) * 6
                    self._fill(roi, shifted, origin, np.clip(item.colour * tone, 0, 255))
                self._fill(mask, hull, origin, 255)
                continue
            for (a, b), thickness, colour in zip(ends[item], widths[item], colours[item]):
                cv2.line(roi, a, b, colour, thickness, cv2.LINE_AA, SHIFT)
            (a, b), thickness = ends[item][0], widths[item][0]
            cv2.line(mask, a, b, 255, thickness, cv2.LINE_AA, SHIFT)
        # skin scatters light: soften the drawn hand (not the keys around it)
        sigma = max(0.6, 0.18 * float(np.median(radius)))
        soft = cv2.GaussianBlur(roi, (0, 0), sigma)
        np.copyto(roi, soft, where=mask[..., None] > 0)

    def render(self, samples: np.ndarray, capsules: list[Capsule] = (), blobs: list[Blob] = (), finish: bool = True) -> np.ndarray:
        """One frame: ``samples`` (S, num_keys) key depths over the exposure; hand geometry at mid-exposure."""
        frame = self.static.copy()
        self._draw_pressed(frame, np.atleast_2d(samples))
        if capsules:
            self._draw_shadows(frame, list(capsules), list(blobs))
            self._draw_hands(frame, list(capsules), list(blobs))
        return self.finish(frame) if finish else frame

    def finish(self, frame: np.ndarray, noise: int | None = None) -> np.ndarray:
        """Light, sensor noise, defocus and the lens: what turns a render into a recording. ``noise``: which
        of the take's sensor-noise frames to add (default: one at random, as a camera would)."""
        cv2.multiply(frame, self.light_map, frame, scale=1 / LIGHT_MAP_ONE)
        index = int(self._noise_rng.integers(len(self.noise))) if noise is None else noise
        frame = cv2.add(frame, self.noise[index], dtype=cv2.CV_8U)
        if self.params.blur_sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), self.params.blur_sigma)
        if self.distortion is not None:
            frame = cv2.remap(frame, *self.distortion, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return frame

    def image_corners(self) -> tuple[np.ndarray, np.ndarray]:
        """Keyboard corners (CONTRACTS order) in the recorded image and in the undistorted image."""
        ideal = self.camera.project(self.piano.surface_corners)
        return self.camera.distort(ideal), ideal
