"""Every randomised parameter of a studio take, with its documented range, sampled from one seed."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: (width, height) choices, 480p to 1080p
RESOLUTIONS = ((640, 480), (854, 480), (960, 540), (1280, 720), (1920, 1080))
FRAME_RATES = (24.0, 25.0, 30.0, 50.0, 60.0)

#: camera views: overhead from the player's side, on the music stand looking back, oblique, yawed
VIEWS = ("overhead", "stand", "oblique", "yawed")

#: the documented ranges of every continuous parameter (docs/studio.md lists them)
RANGES = {
    "tilt_deg": {"overhead": (0, 15), "stand": (15, 40), "oblique": (20, 45), "yawed": (5, 35)},
    "yaw_deg": {"overhead": (-8, 8), "stand": (-10, 10), "oblique": (-10, 10), "yawed": (25, 45)},
    "roll_deg": (-12, 12),
    "hfov_deg": (45, 85),
    "fill": (0.72, 0.97),
    "k1": (-0.18, 0.04),
    "light_elevation_deg": (35, 85),
    "light_azimuth_deg": (0, 360),
    "ambient": (0.25, 0.6),
    "exposure": (0.55, 1.25),
    "colour_temperature": (-0.35, 0.2),
    "specular": (0.0, 0.8),
    "vignette": (0.0, 0.45),
    "noise_sd": (1.0, 7.0),
    "blur_sigma": (0.0, 1.1),
    "crf": (18, 32),
    "exposure_fraction": (0.25, 1.0),
    "hover_mm": (4, 28),
    "black_key_gloss": (0.2, 1.0),
    "nameboard_mm": (35, 90),
    "hand_scale": (0.95, 1.2),
    # a pressed key's top tilts ~1.4 degrees (the light model shades it and moves its glare) and sinks
    # between its neighbours: extra darkening at full depth. On the real clip the back of a pressed
    # white key changes by <1 grey level (scripts/press_contrast.py measures it)
    "press_shade": (0.0, 0.05),
    # how high the striking finger lifts before a full-velocity strike (a soft one lifts a quarter of
    # it): legato players press from the key's surface, and on the real clip an onset moves the hand
    # no more than the half second after it does (docs/studio.md: hands)
    "lift_mm": (2, 40),
    # legato: the finger lands on its key up to this long before pressing it and rests there, so the
    # press is the key going down under a still finger (each chord draws its own share of it). The real
    # clip's D#5 is played so: the finger rests on the key's front end, then a small downward motion
    "early_touch_s": (0.0, 0.5),
    # how often a thumb strikes a white key at its very front edge, from in front of the keys (the
    # hand's palm in front of the keyboard), as on the real clip, where thumbs play A3 and E4 so
    "thumb_edge_share": (0.0, 0.8),
    # real hands never hold still: the wrist and the free fingers wander by up to this much
    "fidget_mm": (0, 8),
    # the hand's posture: how far its fingertips reach forward of the knuckle line, and how high the
    # knuckles ride above the white keys. Curled and high (55, 44) to long and flat (90, 24), as on the
    # real clip, where the palms lie in front of the keyboard and the fingers reach far onto the keys
    "reach_mm": (55, 90),
    "knuckle_height_mm": (24, 44),
}

# Key colours (BGR) from bright white to aged ivory, and case finishes.
WHITE_KEY_COLOURS = ((242, 243, 242), (232, 236, 238), (214, 228, 236), (190, 214, 228), (170, 200, 220))
CASE_FINISHES = {
    "acoustic": ((18, 18, 20), (22, 34, 58), (30, 52, 92), (235, 235, 232)),  # ebony, mahogany, walnut, white
    "digital": ((24, 24, 26), (46, 46, 48), (70, 74, 78), (210, 212, 214), (40, 60, 90)),
}
# Skin tones (BGR), light to dark; sleeves are any fabric colour.
SKIN_TONES = ((190, 205, 245), (160, 185, 232), (120, 160, 215), (90, 130, 190), (60, 95, 150), (40, 62, 100), (32, 45, 70))


def _fabric(rng: np.random.Generator) -> tuple[int, int, int]:
    """A clothing colour: mostly muted, sometimes saturated."""
    grey = rng.uniform(20, 200)
    tint = rng.uniform(-0.5, 0.5, 3) * (0.4 if rng.random() < 0.8 else 1.0)
    return tuple(int(c) for c in np.clip(grey * (1 + tint), 0, 255))


def _uniform(rng: np.random.Generator, bounds) -> float:
    return float(rng.uniform(*bounds))


@dataclass
class SceneParams:
    """One take's look: instrument, camera, light, hands and video settings."""

    num_keys: int
    piano: str  # "acoustic" or "digital"
    view: str
    width: int
    height: int
    fps: float
    tilt_deg: float
    yaw_deg: float
    roll_deg: float
    hfov_deg: float
    fill: float
    k1: float
    white_key_bgr: tuple[int, int, int]
    black_key_gloss: float
    case_bgr: tuple[int, int, int]
    nameboard_mm: float
    light_elevation_deg: float
    light_azimuth_deg: float
    ambient: float
    exposure: float
    colour_temperature: float
    specular: float
    vignette: float
    noise_sd: float
    blur_sigma: float
    crf: int
    exposure_fraction: float
    skin_bgr: tuple[int, int, int]
    sleeve_bgr: tuple[int, int, int] | None
    hand_scale: float
    hover_mm: float
    press_shade: float = 0.0
    lift_mm: float = 40.0
    fidget_mm: float = 0.0
    reach_mm: float = 70.0
    knuckle_height_mm: float = 36.0
    early_touch_s: float = 0.0  # takes rendered before it: none
    thumb_edge_share: float = 0.0  # takes rendered before it: none

    def to_json(self) -> dict:
        return asdict(self)


def sample_params(rng: np.random.Generator, num_keys: int, **overrides) -> SceneParams:
    """Draw a take's parameters within RANGES; ``overrides`` pin any field (e.g. view="stand")."""
    view = overrides.get("view") or VIEWS[int(rng.integers(len(VIEWS)))]
    piano = overrides.get("piano") or ("acoustic" if rng.random() < 0.5 else "digital")
    width, height = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
    yaw = _uniform(rng, RANGES["yaw_deg"][view])
    if view == "yawed" and rng.random() < 0.5:
        yaw = -yaw  # from the left or the right end
    skin = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], float) * rng.uniform(0.9, 1.08, 3)
    case = CASE_FINISHES[piano][int(rng.integers(len(CASE_FINISHES[piano])))]
    touch_rng = rng.spawn(1)[0]  # the touch's own stream: every other draw of a seed stays what it was before it
    params = SceneParams(
        num_keys=num_keys,
        piano=piano,
        view=view,
        width=width,
        height=height,
        fps=FRAME_RATES[int(rng.integers(len(FRAME_RATES)))],
        tilt_deg=_uniform(rng, RANGES["tilt_deg"][view]),
        yaw_deg=yaw,
        roll_deg=_uniform(rng, RANGES["roll_deg"]) * (rng.random() < 0.6),
        hfov_deg=_uniform(rng, RANGES["hfov_deg"]),
        fill=_uniform(rng, RANGES["fill"]),
        k1=_uniform(rng, RANGES["k1"]) * (rng.random() < 0.7),
        white_key_bgr=WHITE_KEY_COLOURS[int(rng.integers(len(WHITE_KEY_COLOURS)))],
        black_key_gloss=_uniform(rng, RANGES["black_key_gloss"]),
        case_bgr=case,
        nameboard_mm=_uniform(rng, RANGES["nameboard_mm"]),
        light_elevation_deg=_uniform(rng, RANGES["light_elevation_deg"]),
        light_azimuth_deg=_uniform(rng, RANGES["light_azimuth_deg"]),
        ambient=_uniform(rng, RANGES["ambient"]),
        exposure=_uniform(rng, RANGES["exposure"]),
        colour_temperature=_uniform(rng, RANGES["colour_temperature"]),
        specular=_uniform(rng, RANGES["specular"]),
        vignette=_uniform(rng, RANGES["vignette"]),
        noise_sd=_uniform(rng, RANGES["noise_sd"]),
        blur_sigma=_uniform(rng, RANGES["blur_sigma"]),
        crf=int(rng.integers(RANGES["crf"][0], RANGES["crf"][1] + 1)),
        exposure_fraction=_uniform(rng, RANGES["exposure_fraction"]),
        skin_bgr=tuple(int(c) for c in np.clip(skin, 0, 255)),
        sleeve_bgr=_fabric(rng) if rng.random() < 0.6 else None,
        hand_scale=_uniform(rng, RANGES["hand_scale"]),
        hover_mm=_uniform(rng, RANGES["hover_mm"]),
        press_shade=_uniform(rng, RANGES["press_shade"]),
        lift_mm=_uniform(rng, RANGES["lift_mm"]),
        fidget_mm=_uniform(rng, RANGES["fidget_mm"]),
        reach_mm=_uniform(rng, RANGES["reach_mm"]),
        knuckle_height_mm=_uniform(rng, RANGES["knuckle_height_mm"]),
        early_touch_s=_uniform(touch_rng, RANGES["early_touch_s"]),
        thumb_edge_share=_uniform(touch_rng, RANGES["thumb_edge_share"]),
    )
    for name, value in overrides.items():
        if value is not None:
            setattr(params, name, value)
    return params
