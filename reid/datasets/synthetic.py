"""Synthetic video re-id data written in the official MARS / iLIDS-VID / PRID2011 layouts.

The tests and the demo run the real prep code (mars.py, ilidsvid.py, prid2011.py) on these
folders, so the generator writes exactly what those datasets distribute (docs/DESIGN.md
§4): images, name lists, .mat tables (same variable names, shapes and dtypes as the
real ones in reid/datasets/reference/mars_info), split files. It also writes
`synthetic_meta.json` (ground truth: identities, cameras, every tracklet's files and frame
numbers in order, and which frames were degraded and how).

What makes it a re-id problem rather than a colour-matching one:
- a person (Identity) is a fixed set of clothing colours, clothing patterns (stripes, checks,
  logo, ...), build, height, hair, sleeves, bag: the same in every camera;
- colours come from a small palette (smaller with higher difficulty), so many people share
  colours and differ only in pattern, build or accessories;
- cameras differ in illumination, colour cast, gamma, background, viewpoint (side/front, scale,
  walking direction), blur and noise, so the same person's colours shift between cameras;
- sequences show walking (legs and arms swing, the body bobs) and detector jitter;
- some frames are occluded, motion-blurred, noisy, dark or badly cropped: the frames the
  temporal attention of the paper (section 3.2) should learn to down-weight;

Switchable phenomena (SyntheticConfig; each is recorded in synthetic_meta.json, and switching
one off leaves every other draw of the dataset as it was, so that two datasets differ only
in it):
- for the TAM (paper 3.2), `corruptions`: which frame corruptions occur (comma-separated
  CORRUPTIONS, '' for none): besides occlusion by an object, blur, noise, dark and badly
  cropped frames, occlusion by another person walking past in front ('person_occlusion'),
  by the scene ('background_occlusion': a pillar or wall of the camera's own background) and
  detector misses ('detector_miss': the box holds scene and at most a sliver of the person);
  their share of frames is `degrade_prob`;
- for the SRM (paper 3.3), `camera_misalignment` (0 = off): each camera places people
  differently in its boxes (vertical and horizontal offset, scale), so the same body part
  falls on different pool5 cells in different cameras; `pose_change` (0/1): each camera sees
  people in its own pose (stride from standing still to long strides, arms raised or not);
- local identity cues, `local_cues` (0/1): a bag, a logo on the upper body, coloured shoes;
  off, nobody carries a bag or wears a logo and every shoe is dark, so only clothing colours,
  global patterns and body shape tell people apart.
- MARS layout: distractor (pid -1, folder 00-1: background boxes) and junk (pid 0: badly
  cropped people outside the identity set) tracklets in bbox_test.
A mean colour histogram per tracklet is therefore well above chance but far from perfect
(tests/test_data_synthetic.py checks this). Everything is drawn from one seeded RNG.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from . import ilidsvid as _ilids
from . import mars as _mars
from . import prid2011 as _prid
from ..outputs import claim_dir

LAYOUTS = ('mars', 'ilidsvid', 'prid2011')
META_NAME = 'synthetic_meta.json'

# BGR, ordered so that any prefix is a spread of hues; difficulty keeps a shorter prefix.
PALETTE = [
    (40, 40, 190), (170, 80, 30), (40, 190, 220), (60, 140, 50), (225, 225, 225), (35, 35, 35),
    (130, 50, 120), (40, 110, 220), (140, 140, 140), (90, 40, 25), (150, 185, 210),
    (40, 70, 110), (170, 120, 225), (140, 140, 40), (30, 30, 110), (40, 90, 40),
    (220, 170, 100), (75, 75, 75),
]
SKINS = [(110, 140, 200), (90, 120, 170), (60, 85, 130), (150, 175, 220)]
HAIRS = [(20, 20, 25), (30, 50, 80), (60, 110, 160), (120, 120, 120)]
UPPER_PATTERNS = ('plain', 'hstripes', 'vstripes', 'checks', 'logo', 'twotone', 'diagonal')
LOWER_PATTERNS = ('plain', 'sidestripe', 'checks', 'twotone')
CORRUPTIONS = ('occlusion', 'blur', 'noise', 'dark', 'misaligned', 'person_occlusion',
               'background_occlusion', 'detector_miss')
DEGRADATIONS = CORRUPTIONS          # the name the ground truth ('degraded') uses
DARK_SHOES = (35, 35, 35)
LABEL_SKIN, LABEL_HAIR, LABEL_UPPER, LABEL_LOWER, LABEL_SHOES, LABEL_BAG = 1, 2, 3, 4, 5, 6


# ---- configuration -----------------------------------------------------------------------------
@dataclass
class SyntheticConfig:
    """Size and difficulty of a generated dataset. None fields take per-layout defaults."""
    layout: str = 'mars'
    identities: int = 50                   # MARS: half train, half test; others: all, split x10
    cameras: int | None = None              # MARS 6; iLIDS-VID / PRID2011 are two-camera
    height: int | None = None               # frame size; default 128 x 64 (MARS 256 x 128 / 2)
    width: int | None = None
    min_len: int = 8                        # tracklet length range (frames)
    max_len: int = 24
    short_prob: float = 0.05                # share of tracklets with 2..5 frames (< T = 6)
    tracklets_per_camera: int = 2           # MARS: 1..this many tracklets per person and camera
    difficulty: float = 0.5                 # 0 easy .. 1 hard: palette size, camera shifts, ...
    degrade_prob: float | None = None       # share of degraded frames; default from difficulty
    distractors: int | None = None          # MARS pid -1 tracklets; default identities // 5
    junk: int | None = None                 # MARS pid 0 tracklets; default identities // 3
    extra_persons: int | None = None        # PRID2011: persons seen by only one camera
    prid_splits: list | None = None         # PRID2011: use these splits (e.g. the real file)
    shuffle_name_lists: bool = False        # MARS: list a tracklet's frames in random order
    jpeg_quality: int = 90
    seed: int = 0
    corruptions: str = ','.join(CORRUPTIONS)   # frame corruptions (TAM); '' = none
    camera_misalignment: float = 0.0        # per-camera box offset/scale, x frame size (SRM)
    pose_change: int = 0                    # 1: each camera its own pose (SRM)
    local_cues: int = 1                     # 1: bags, logos, coloured shoes

    def corruption_kinds(self) -> tuple:
        return tuple(k.strip() for k in (self.corruptions or '').split(',') if k.strip())

    def resolved(self) -> 'SyntheticConfig':
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        c = SyntheticConfig(**asdict(self))
        c.cameras = c.cameras or (6 if c.layout == 'mars' else 2)
        if c.layout != 'mars' and c.cameras != 2:
            raise ValueError(f"{c.layout} has exactly two cameras")
        c.height, c.width = c.height or 128, c.width or 64
        if c.degrade_prob is None:
            c.degrade_prob = 0.05 + 0.2 * c.difficulty
        if c.distractors is None:
            c.distractors = max(1, c.identities // 5)
        if c.junk is None:
            c.junk = max(1, c.identities // 3)
        if c.extra_persons is None:
            c.extra_persons = c.identities // 4
        unknown = set(c.corruption_kinds()) - set(CORRUPTIONS)
        if unknown:
            raise ValueError(f"corruptions: unknown {sorted(unknown)}; known: {CORRUPTIONS}")
        if not 2 <= c.min_len <= c.max_len:
            raise ValueError("need 2 <= min_len <= max_len")
        if c.identities < 2 or (c.layout == 'ilidsvid' and c.identities % 2):
            raise ValueError("need >= 2 identities (an even number for iLIDS-VID)")
        return c


@dataclass
class Identity:
    """What stays fixed across cameras: clothes, their patterns, body, accessories, gait."""
    pid: int
    upper: tuple
    upper2: tuple
    upper_pattern: str
    upper_freq: float
    lower: tuple
    lower2: tuple
    lower_pattern: str
    skin: tuple
    hair: tuple
    hair_long: bool
    shoes: tuple
    long_sleeves: bool
    shorts: bool
    bag: str                   # '' | 'backpack' | 'shoulder'
    bag_colour: tuple
    build: float               # width factor
    stature: float             # height factor
    gait_period: float         # frames per stride cycle
    stride: float              # leg swing amplitude (rad)


@dataclass
class Camera:
    """What a camera does to everyone: light, colour cast, background, viewpoint, optics."""
    cam: int
    gain: float
    cast: tuple
    gamma: float
    blur: float
    noise: float
    scale: float               # person height / box height
    y_shift: float
    side: float                # 1 = side view (full leg swing, narrow body), 0 = frontal
    facing: int                # walking direction (+1 right, -1 left)
    bg_seed: int
    offset: tuple = (0.0, 0.0, 0.0)   # box misalignment (dx, dy, dscale) in -1..1, x strength
    pose: tuple = (1.0, 0.0)          # (stride factor, arm raise in rad) when pose_change
    background: np.ndarray = field(repr=False, default=None)


# ---- random appearance -------------------------------------------------------------------------
def _palette_size(difficulty: float) -> int:
    return int(round(np.interp(difficulty, [0, 1], [len(PALETTE), 5])))


def random_identity(rng: np.random.Generator, pid: int, difficulty: float) -> Identity:
    pal = PALETTE[:_palette_size(difficulty)]
    pick = lambda: tuple(int(v) for v in pal[rng.integers(len(pal))])   # noqa: E731
    upper = pick()
    upper2 = pick()
    while upper2 == upper:
        upper2 = pick()
    lower = pick()
    lower2 = pick()
    while lower2 == lower:
        lower2 = pick()
    return Identity(
        pid=pid, upper=upper, upper2=upper2,
        upper_pattern=UPPER_PATTERNS[rng.integers(len(UPPER_PATTERNS))],
        upper_freq=float(rng.uniform(2.5, 5.5)),
        lower=lower, lower2=lower2, lower_pattern=LOWER_PATTERNS[rng.integers(len(LOWER_PATTERNS))],
        skin=SKINS[rng.integers(len(SKINS))], hair=HAIRS[rng.integers(len(HAIRS))],
        hair_long=bool(rng.random() < 0.3), shoes=tuple(int(v) for v in PALETTE[rng.integers(6)]),
        long_sleeves=bool(rng.random() < 0.6), shorts=bool(rng.random() < 0.2),
        bag=['', '', 'backpack', 'shoulder'][rng.integers(4)], bag_colour=pick(),
        build=float(rng.uniform(0.8, 1.25)), stature=float(rng.uniform(0.88, 1.04)),
        gait_period=float(rng.uniform(9, 15)), stride=float(rng.uniform(0.3, 0.5)))


def without_local_cues(ident: Identity) -> Identity:
    """The identity with its local cues taken away: no bag, no logo, dark shoes."""
    from dataclasses import replace
    return replace(ident, bag='', shoes=DARK_SHOES,
                   upper_pattern='plain' if ident.upper_pattern == 'logo' else ident.upper_pattern)


def random_camera(rng: np.random.Generator, cam: int, difficulty: float, h: int, w: int) -> Camera:
    d = difficulty
    cast = 1 + rng.uniform(-0.35, 0.35, 3) * d
    cast = cast / cast.mean()
    c = Camera(cam=cam, gain=float(rng.uniform(1 - 0.45 * d, 1 + 0.3 * d)),
               cast=tuple(float(v) for v in cast), gamma=float(np.exp(rng.uniform(-0.3, 0.3) * d)),
               blur=float(rng.uniform(0.3, 0.6 + 0.6 * d)), noise=float(rng.uniform(1, 3 + 5 * d)),
               scale=float(rng.uniform(0.80, 0.92)), y_shift=float(rng.uniform(-0.03, 0.03)),
               side=float(rng.uniform(0, 1)), facing=int(rng.choice([-1, 1])),
               bg_seed=int(rng.integers(1 << 31)))
    extra = np.random.default_rng([c.bg_seed, 1])     # drawn whatever the switches say
    c.offset = tuple(float(v) for v in extra.uniform(-1, 1, 3))
    c.pose = (float(extra.choice([0.0, 0.5, 1.0, 1.6])), float(extra.choice([0.0, 0.0, 1.2])))
    c.background = make_background(np.random.default_rng(c.bg_seed), h, w)
    return c


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A camera's scene: wall with panels/windows, a floor, lighting gradient, texture."""
    H, W = h + h // 4, w * 6

    def muted():                    # greyish scene colours, occasionally a saturated sign
        tint = rng.uniform(-25, 25, 3) if rng.random() < 0.85 else rng.uniform(-70, 70, 3)
        return np.clip(rng.uniform(60, 190) + tint, 20, 235)
    bg = np.empty((H, W, 3), np.float32)
    bg[:] = muted()
    for _ in range(rng.integers(4, 10)):                        # doors, windows, shop fronts
        x0, bw = rng.integers(0, W), rng.integers(w // 4, w * 2)
        y0, bh = rng.integers(0, H // 2), rng.integers(H // 5, H)
        bg[y0:y0 + bh, x0:x0 + bw] = muted()
    floor_y = int(H * rng.uniform(0.65, 0.8))
    bg[floor_y:] = muted() * 0.8
    for x in range(0, W, int(rng.integers(w // 3, w))):       # floor tile seams
        bg[floor_y:, x:x + 1] *= 0.8
    light = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.8, 1.2), W, dtype=np.float32)
    bg *= light[None, :, None]
    tex = cv2.GaussianBlur(rng.normal(0, 12, (H, W)).astype(np.float32), (0, 0), 1.5)
    bg += tex[..., None]
    return np.clip(bg, 0, 255).astype(np.float32)


# ---- drawing -----------------------------------------------------------------------------------
_SHIFT = 4
_ONE = 1 << _SHIFT


def _p(x, y):
    return (int(round(x * _ONE)), int(round(y * _ONE)))


def _line(lab, a, b, thick, label):
    cv2.line(lab, _p(*a), _p(*b), label, max(1, int(round(thick))), cv2.LINE_8, _SHIFT)
    cv2.circle(lab, _p(*b), int(round(thick / 2 * _ONE)), label, -1, cv2.LINE_8, _SHIFT)


def draw_person(lab: np.ndarray, ident: Identity, g: dict, phase: float, side: float, facing: int,
                pose: tuple = (1.0, 0.0)):
    """Draw an identity's body parts as labels into `lab`; return the pattern frame.
    pose: (stride factor, arm raise in rad), (1, 0) is the identity's own walk."""
    hp, cx, feet = g['hp'], g['cx'], g['feet']
    top = feet - hp
    r = 0.062 * hp
    shoulder, hip = top + 2.2 * r + 0.02 * hp, top + 0.53 * hp
    view_w = 1 - 0.35 * side
    sw, hw = 0.12 * hp * ident.build * view_w, 0.10 * hp * ident.build * view_w
    amp = ident.stride * (0.25 + 0.75 * side) * pose[0]
    legs, arms = [], []
    for k, ph in enumerate((phase, phase + math.pi)):          # k = 0 near side, 1 far side
        th = amp * math.sin(ph)
        hx = cx + (1 - 2 * k) * 0.045 * hp * ident.build * (1 - 0.7 * side)
        leg_len = feet - hip
        bend = 0.5 * max(0.0, -math.cos(ph))
        knee = (hx + facing * 0.5 * leg_len * math.sin(th), hip + 0.5 * leg_len * math.cos(th))
        foot = (knee[0] + facing * 0.5 * leg_len * math.sin(th - bend),
                knee[1] + 0.5 * leg_len * math.cos(th - bend))
        legs.append(((hx, hip), knee, foot))
        ax = cx + (1 - 2 * k) * (sw - 0.03 * hp) * (1 - 0.8 * side)
        ta = -0.8 * th + pose[1] * (1 if k == 0 else 0.6)
        sh = (ax, shoulder + 0.02 * hp)
        elbow = (ax + facing * 0.17 * hp * math.sin(ta), sh[1] + 0.17 * hp * math.cos(ta))
        hand = (elbow[0] + facing * 0.16 * hp * math.sin(ta + 0.3 * abs(ta)),
                elbow[1] + 0.16 * hp * math.cos(ta + 0.3 * abs(ta)))
        arms.append((sh, elbow, hand))
    leg_t, arm_t = 0.085 * hp * ident.build, 0.05 * hp * ident.build
    lower_leg_label = LABEL_SKIN if ident.shorts else LABEL_LOWER

    def leg(k):
        h, kn, f = legs[k]
        _line(lab, h, kn, leg_t, LABEL_LOWER)
        _line(lab, kn, f, leg_t * 0.85, lower_leg_label)
        cv2.ellipse(lab, _p(f[0] + facing * 0.02 * hp * side, f[1]),
                    _p(0.045 * hp * (0.6 + 0.4 * side), 0.022 * hp), 0, 0, 360, LABEL_SHOES,
                    -1, cv2.LINE_8, _SHIFT)

    def arm(k):
        s, e, hnd = arms[k]
        _line(lab, s, e, arm_t, LABEL_UPPER)
        _line(lab, e, hnd, arm_t * 0.9, LABEL_UPPER if ident.long_sleeves else LABEL_SKIN)
        cv2.circle(lab, _p(*hnd), int(round(0.026 * hp * _ONE)), LABEL_SKIN, -1, cv2.LINE_8, _SHIFT)

    hc = (cx + facing * 0.012 * hp * side, top + r)
    if ident.hair_long:
        cv2.rectangle(lab, _p(hc[0] - 0.95 * r, hc[1]), _p(hc[0] + 0.95 * r, shoulder + 0.07 * hp),
                      LABEL_HAIR, -1, cv2.LINE_8, _SHIFT)
    if ident.bag == 'backpack' and side > 0.4:
        bx = cx - facing * sw
        cv2.rectangle(lab, _p(bx - 0.07 * hp, shoulder + 0.02 * hp),
                      _p(bx + 0.07 * hp, shoulder + 0.24 * hp), LABEL_BAG, -1, cv2.LINE_8, _SHIFT)
    arm(1)
    leg(1)
    torso = np.array([_p(cx - sw, shoulder), _p(cx + sw, shoulder), _p(cx + hw, hip + 0.03 * hp),
                      _p(cx - hw, hip + 0.03 * hp)], np.int32)
    cv2.fillConvexPoly(lab, torso, LABEL_UPPER, cv2.LINE_8, _SHIFT)
    cv2.rectangle(lab, _p(cx - 0.035 * hp, shoulder - 0.03 * hp), _p(cx + 0.035 * hp, shoulder),
                  LABEL_SKIN, -1, cv2.LINE_8, _SHIFT)                          # neck
    leg(0)
    if ident.bag == 'backpack' and side <= 0.4:               # straps, seen from the front
        for sx in (-0.55, 0.55):
            _line(lab, (cx + sx * sw, shoulder), (cx + sx * sw * 0.9, shoulder + 0.2 * hp),
                  0.018 * hp + 0.5, LABEL_BAG)
    if ident.bag == 'shoulder':
        _line(lab, (cx - 0.8 * sw, shoulder), (cx + 0.8 * hw, hip), 0.02 * hp + 0.5, LABEL_BAG)
        bx = cx + 0.7 * hw
        cv2.rectangle(lab, _p(bx, hip - 0.06 * hp), _p(bx + 0.12 * hp, hip + 0.05 * hp),
                      LABEL_BAG, -1, cv2.LINE_8, _SHIFT)
    arm(0)
    cv2.ellipse(lab, _p(*hc), _p(0.85 * r, r), 0, 0, 360, LABEL_SKIN, -1, cv2.LINE_8, _SHIFT)
    cv2.ellipse(lab, _p(hc[0], hc[1] - 0.15 * r), _p(0.9 * r, 0.9 * r), 0, 180, 360, LABEL_HAIR,
                -1, cv2.LINE_8, _SHIFT)
    return {'cx': cx, 'sw': sw, 'shoulder': shoulder, 'hip': hip, 'feet': feet}


def _pattern(kind: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray | None:
    """Where the second colour goes, in body coordinates (u across, v down, both ~0..1)."""
    if kind == 'plain':
        return None
    if kind == 'hstripes':
        return np.floor(v * freq * 1.5) % 2 == 1
    if kind == 'vstripes':
        return np.floor(u * freq) % 2 == 1
    if kind == 'checks':
        return (np.floor(u * freq) + np.floor(v * freq)) % 2 == 1
    if kind == 'diagonal':
        return np.floor((u + v) * freq) % 2 == 1
    if kind == 'logo':
        return (np.abs(u - 0.5) < 0.2) & (np.abs(v - 0.35) < 0.15)
    if kind == 'twotone':
        return v > 0.5
    if kind == 'sidestripe':
        return np.abs(np.abs(u - 0.5) - 0.33) < 0.06
    raise ValueError(kind)


class Renderer:
    """Renders frames of one size: person labels -> colours -> scene -> camera -> degradation."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def person_layer(self, ident: Identity, g: dict, phase: float, side: float, facing: int,
                     pose: tuple = (1.0, 0.0)):
        lab = np.zeros((self.h, self.w), np.uint8)
        fr = draw_person(lab, ident, g, phase, side, facing, pose)
        u_up = (self.xx - (fr['cx'] - fr['sw'])) / (2 * fr['sw'])
        v_up = (self.yy - fr['shoulder']) / (fr['hip'] - fr['shoulder'])
        v_lo = (self.yy - fr['hip']) / (fr['feet'] - fr['hip'])
        for label, pat, v in ((LABEL_UPPER, ident.upper_pattern, v_up),
                              (LABEL_LOWER, ident.lower_pattern, v_lo)):
            pm = _pattern(pat, u_up, v, ident.upper_freq)
            if pm is not None:
                lab[(lab == label) & pm] = label + 4          # second colour: 7 upper, 8 lower
        table = np.array([(0, 0, 0), ident.skin, ident.hair, ident.upper, ident.lower, ident.shoes,
                          ident.bag_colour, ident.upper2, ident.lower2], np.float32)
        img = table[lab]
        # Rounded-body shading: darker towards the silhouette's sides.
        shade = 1 - 0.3 * np.clip(np.abs(self.xx - fr['cx']) / (1.4 * fr['sw']), 0, 1) ** 2
        img *= shade[..., None]
        return img, lab > 0

    def scene(self, cam: Camera, x0: int, y0: int) -> np.ndarray:
        return cam.background[y0:y0 + self.h, x0:x0 + self.w].copy()

    def camera(self, img: np.ndarray, cam: Camera, rng, gain: float = 1.0) -> np.ndarray:
        img = img * (np.asarray(cam.cast, np.float32) * (cam.gain * gain / 255))
        img = 255 * cv2.pow(np.clip(img, 0, 1), cam.gamma)
        img = cv2.GaussianBlur(img, (0, 0), cam.blur)
        img += rng.standard_normal(img.shape, dtype=np.float32) * cam.noise
        return img


def _degradation_plan(rng, n: int, p: float, kinds=CORRUPTIONS) -> list[str | None]:
    """Per frame None or a corruption of `kinds`; events last 2..5 frames (occlusions pass
    by). No kinds: no corruption."""
    plan: list[str | None] = [None] * n
    if not kinds:
        return plan
    i, p_start = 0, p / (3.5 * max(1e-6, 1 - p))
    while i < n:
        if rng.random() < p_start:
            kind = kinds[rng.integers(len(kinds))]
            for j in range(i, min(n, i + int(rng.integers(2, 6)))):
                plan[j] = kind
            i = j + 1
        else:
            i += 1
    return plan


def render_tracklet(rnd: Renderer, rng, ident: Identity | None, cam: Camera, n: int,
                    cfg: SyntheticConfig, kind: str = 'person',
                    crng=None) -> tuple[list[np.ndarray], list]:
    """n frames (uint8 BGR) of ident walking in cam, and the corruption of each frame.

    kind 'person' (ordinary), 'junk' (a badly cropped person: MARS pid 0) or 'distractor'
    (a box of background with at most a sliver of someone: MARS pid -1). Corruptions draw
    from crng alone (default: rng), so switching them leaves the other draws as they were.
    """
    crng = rng if crng is None else crng
    h, w = rnd.h, rnd.w
    bgH, bgW = cam.background.shape[:2]
    x0, y0 = int(rng.integers(0, bgW - w)), int(rng.integers(0, bgH - h))
    drift = float(rng.uniform(-1.0, 1.0))
    facing = cam.facing if rng.random() < 0.85 else -cam.facing
    scale = cam.scale * float(rng.uniform(0.95, 1.05))
    phase0 = float(rng.uniform(0, 2 * math.pi))
    cx0 = w / 2 + float(rng.normal(0, 0.03 * w))
    plan = (_degradation_plan(crng, n, cfg.degrade_prob, cfg.corruption_kinds())
            if kind == 'person' else [None] * n)
    mis = cfg.camera_misalignment
    cx0 += cam.offset[0] * mis * w
    pose = cam.pose if cfg.pose_change else (1.0, 0.0)
    passer = None
    if kind == 'junk':                   # detector boxes that cut people in half
        cx0 += float(rng.choice([-1, 1]) * rng.uniform(0.35, 0.6) * w)
        scale *= float(rng.uniform(1.0, 1.8))
    elif kind == 'distractor':
        cx0 += float(rng.choice([-1, 1]) * rng.uniform(0.65, 0.9) * w)
    occluder = None
    frames = []
    for t in range(n):
        xs = int(np.clip(round(x0 + drift * t), 0, bgW - w))
        img = rnd.scene(cam, xs, y0)
        deg = plan[t]
        jitter = float(rng.normal(0, 0.01 * w)) if ident is not None else 0.0   # detector
        if ident is not None and deg != 'detector_miss':
            hp = scale * h * ident.stature * (1 + 0.5 * mis * cam.offset[2])
            feet = h * (0.5 + scale / 2) + cam.y_shift * h + mis * cam.offset[1] * h
            phase = phase0 + 2 * math.pi * t / ident.gait_period
            feet -= abs(math.sin(phase)) * 0.015 * hp                       # bobbing
            cx = cx0 + jitter
            if deg == 'misaligned':
                cx += float(crng.choice([-1, 1]) * crng.uniform(0.25, 0.4) * w)
                feet += float(crng.uniform(0.1, 0.25) * h)
            layer, mask = rnd.person_layer(ident, {'hp': hp, 'cx': cx, 'feet': feet},
                                           phase, cam.side, facing, pose)
            img[mask] = layer[mask]
        elif ident is not None:          # detector miss: the box holds a sliver at most
            side_ = float(crng.choice([-1, 1]))
            layer, mask = rnd.person_layer(
                ident, {'hp': scale * h * ident.stature, 'cx': cx0 + side_ * 0.8 * w,
                        'feet': h * (0.5 + scale / 2)}, phase0, cam.side, facing, pose)
            img[mask] = layer[mask]
        if deg == 'person_occlusion':     # someone walks past between camera and person
            if passer is None:
                passer = [random_identity(crng, -1, cfg.difficulty),
                          float(crng.choice([-1, 1])) * 0.6 * w, float(crng.uniform(1.05, 1.2))]
            other, dx, near = passer
            layer, mask = rnd.person_layer(other, {'hp': near * scale * h, 'cx': w / 2 + dx,
                                                   'feet': h * (0.5 + near * scale / 2)},
                                           phase0 + t, cam.side, -facing)
            img[mask] = layer[mask]
            passer[1] -= math.copysign(0.25 * w, dx)
        else:
            passer = None
        if deg == 'background_occlusion':  # a pillar / wall of the scene in front
            if occluder is None:
                occluder = _random_occluder(crng, h, w)
            _, (ax, ay, bx, by) = occluder
            other = rnd.scene(cam, int(np.clip(xs + w, 0, bgW - w)), y0)
            img[ay:by, ax:bx] = other[ay:by, ax:bx]
        if deg == 'occlusion':
            if occluder is None:
                occluder = _random_occluder(crng, h, w)
            c, (ax, ay, bx, by) = occluder
            img[ay:by, ax:bx] = c
            shift = int(round(0.08 * w))
            occluder = (c, (ax + shift, ay, bx + shift, by))
        elif deg != 'background_occlusion':
            occluder = None
        img = rnd.camera(img, cam, rng, gain=0.3 if deg == 'dark' else 1.0)
        if deg == 'blur':
            k = int(crng.integers(5, 10))
            kern = np.zeros((k, k), np.float32)
            kern[k // 2] = 1 / k
            img = cv2.filter2D(img, -1, kern)
        elif deg == 'noise':
            img += crng.standard_normal(img.shape, dtype=np.float32) * 35
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames, plan


def _random_occluder(rng, h, w):
    """A pole, a passer-by's body or a box covering 30-60% of the person."""
    c = rng.uniform(20, 230, 3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:                        # pole / pillar
        bw = int(w * rng.uniform(0.3, 0.5))
        ax = int(rng.integers(-bw // 2, w - bw // 2))
        return c, (max(ax, 0), 0, max(ax + bw, 1), h)
    if kind == 1:                        # someone passing in front (lower body)
        ay = int(h * rng.uniform(0.35, 0.6))
        return c, (0, ay, w, h)
    ax, ay = int(w * rng.uniform(0, 0.4)), int(h * rng.uniform(0.2, 0.5))
    return c, (ax, ay, min(w, ax + int(w * 0.7)), min(h, ay + int(h * 0.45)))


def savemat(path: Path, variables: dict) -> None:
    """scipy.io.savemat with a fixed header text (scipy stamps the current time, which would
    make two runs with the same seed differ)."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables)
    data = bytearray(buf.getvalue())
    data[:116] = b'MATLAB 5.0 MAT-file, written by reid.datasets.synthetic'.ljust(116)
    Path(path).write_bytes(bytes(data))


# ---- layouts -----------------------------------------------------------------------------------
class _Writer:
    """Shared state of one generation: config, RNG, renderer, cameras, ground-truth log."""

    def __init__(self, cfg: SyntheticConfig, out: Path):
        self.cfg, self.out = cfg, out
        self.rng = np.random.default_rng(cfg.seed)
        self.rnd = Renderer(cfg.height, cfg.width)
        self.cams = {c: random_camera(self.rng, c, cfg.difficulty, cfg.height, cfg.width)
                     for c in range(1, cfg.cameras + 1)}
        self.tracklets: list[dict] = []
        self.identities: dict[int, Identity] = {}

    def identity(self, pid: int) -> Identity:
        if pid not in self.identities:
            ident = random_identity(self.rng, pid, self.cfg.difficulty)
            self.identities[pid] = ident if self.cfg.local_cues else without_local_cues(ident)
        return self.identities[pid]

    def length(self) -> int:
        if self.rng.random() < self.cfg.short_prob:
            return int(self.rng.integers(2, 6))
        return int(self.rng.integers(self.cfg.min_len, self.cfg.max_len + 1))

    def tracklet(self, pid: int, cam: int, n: int, paths: list[Path], frames: list[int],
                 kind: str = 'person', split: str = '', ident: Identity | None = None) -> dict:
        """Render and write one tracklet; paths[i] gets frame number frames[i]."""
        if kind == 'person':
            ident = self.identity(pid)
        crng = np.random.default_rng([self.cfg.seed, len(self.tracklets), 2])
        imgs, plan = render_tracklet(self.rnd, self.rng, ident, self.cams[cam], n, self.cfg,
                                     kind if kind in ('junk', 'distractor') else 'person', crng)
        for i in self.rng.permutation(n):       # write order != frame order (listdir order)
            p = paths[i]
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.suffix == '.jpg':
                ok, buf = cv2.imencode('.jpg', imgs[i],
                                       [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            else:
                ok, buf = cv2.imencode('.png', imgs[i], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            p.write_bytes(buf.tobytes())
        rec = {'pid': pid, 'cam': cam, 'kind': kind, 'split': split, 'frames': list(frames),
               'files': [str(p.relative_to(self.out)) for p in paths],
               'degraded': {str(f): d for f, d in zip(frames, plan) if d}}
        self.tracklets.append(rec)
        return rec

    def meta(self, extra: dict) -> dict:
        cams = []
        for c in self.cams.values():
            d = asdict(c)
            d.pop('background')
            cams.append(d)
        return {'config': asdict(self.cfg),
                'identities': [asdict(i) for i in self.identities.values()],
                'cameras': cams, 'tracklets': self.tracklets, **extra}


def _write_mars(wr: _Writer) -> dict:
    cfg, rng, out = wr.cfg, wr.rng, wr.out
    n = cfg.identities
    pids = sorted(rng.choice(np.arange(1, max(2 * n + 2, 10)), n, replace=False).tolist())
    test_pids = set(rng.choice(pids, n - n // 2, replace=False).tolist())
    rows = {'train': [], 'test': []}          # (pid, trk, cam, names, rec) in table order
    trk_no: dict[int, int] = {}

    def add(split, pid, cam, kind='person', ident=None):
        trk_no[pid] = trk_no.get(pid, 0) + 1
        length = wr.length()
        f0 = int(rng.integers(1, 50))
        frames = list(range(f0, f0 + length))
        names = [_mars.mars_name(pid, cam, trk_no[pid], f) for f in frames]
        folder = out / f'bbox_{split}' / _mars.mars_folder(pid)
        rec = wr.tracklet(pid, cam, length, [folder / nm for nm in names], frames, kind, split,
                          ident)
        rows[split].append((pid, trk_no[pid], cam, names, rec))

    for pid in pids:
        split = 'test' if pid in test_pids else 'train'
        k = int(rng.integers(2, min(cfg.cameras, 4) + 1))
        for cam in sorted(rng.choice(np.arange(1, cfg.cameras + 1), k, replace=False).tolist()):
            for _ in range(int(rng.integers(1, cfg.tracklets_per_camera + 1))):
                add(split, pid, int(cam))
    for _ in range(cfg.distractors):
        add('test', -1, int(rng.integers(1, cfg.cameras + 1)), 'distractor',
            random_identity(rng, -1, cfg.difficulty))
    for _ in range(cfg.junk):
        add('test', 0, int(rng.integers(1, cfg.cameras + 1)), 'junk',
            random_identity(rng, 0, cfg.difficulty))

    info = out / 'info'
    info.mkdir(parents=True, exist_ok=True)
    query_rows = []
    for split, (list_name, mat_name, var) in _mars.TABLES.items():
        # The real lists are in name order: pid folder ('00-1' < '0000' < '0001'), then name.
        rs = sorted(rows[split], key=lambda r: (r[0], r[1]))
        lines, table, seen = [], [], set()
        for row, (pid, trk, cam, names, rec) in enumerate(rs, start=1):
            listed = list(names)
            if cfg.shuffle_name_lists:
                rng.shuffle(listed)
            table.append([len(lines) + 1, len(lines) + len(names), pid, cam])
            lines += listed
            rec['table_row'] = row
            if split == 'test' and pid > 0 and (pid, cam) not in seen:
                seen.add((pid, cam))               # one query per person and camera
                query_rows.append(row)
                rec['query'] = True
        (info / list_name).write_text('\n'.join(lines) + '\n')
        savemat(info / mat_name, {var: np.array(table, np.int32).reshape(-1, 4)})
    qdtype = np.uint16 if max(query_rows) < 65536 else np.uint32
    savemat(info / _mars.QUERY[0], {_mars.QUERY[1]: np.array([sorted(query_rows)], qdtype)})
    return {'train_pids': sorted(set(pids) - test_pids), 'test_pids': sorted(test_pids),
            'num_queries': len(query_rows)}


def _write_ilidsvid(wr: _Writer) -> dict:
    cfg, rng, out = wr.cfg, wr.rng, wr.out
    n = cfg.identities
    # The real person numbers have gaps (300 persons numbered up to 319).
    pids = sorted((rng.choice(np.arange(1, int(n * 1.07) + 2), n, replace=False)).tolist())
    if max(pids) > 999:
        raise ValueError("iLIDS-VID person folders have 3 digits: at most 999 persons")
    seq = out / _ilids.SEQ_DIR
    for pid in pids:
        for cam in _ilids.CAMS:
            length = wr.length()
            f0 = int(rng.integers(0, 2000))
            frames = list(range(f0, f0 + length))
            folder = seq / f'cam{cam}' / _ilids.person_folder(pid)
            wr.tracklet(pid, cam, length, [folder / _ilids.frame_name(cam, pid, f) for f in frames],
                        frames)
    ls_set = np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.float64)
    spath = out / _ilids.SPLITS_FILE
    spath.parent.mkdir(parents=True, exist_ok=True)
    savemat(spath, {_ilids.SPLITS_VAR: ls_set})
    half = n // 2
    splits = [{'train': [pids[i - 1] for i in row[half:].astype(int)],
               'test': [pids[i - 1] for i in row[:half].astype(int)]} for row in ls_set]
    return {'pids': pids, 'splits': splits}


def _write_prid2011(wr: _Writer) -> dict:
    cfg, rng, out = wr.cfg, wr.rng, wr.out
    n = cfg.identities
    if cfg.prid_splits is not None:
        used = sorted({int(p.split('_')[1]) for s in cfg.prid_splits for part in ('train', 'test')
                       for p in s[part]})
        if used[-1] > n:
            raise ValueError(f"the given PRID2011 splits name person {used[-1]} > identities={n}")
        splits_json = cfg.prid_splits
    else:
        # As in the real data, some persons seen by both cameras are left out of the protocol.
        m = n - max(0, round(0.11 * n))
        m -= m % 2
        used = sorted((rng.choice(np.arange(1, n + 1), m, replace=False) + 0).tolist())
        splits_json = []
        for _ in range(10):
            perm = rng.permutation(used).tolist()
            splits_json.append({'test': [_prid.person_folder(p) for p in sorted(perm[:m // 2])],
                                'train': [_prid.person_folder(p) for p in sorted(perm[m // 2:])]})
    shot = out / _prid.SHOT_DIR
    extra = {1: cfg.extra_persons, 2: 2 * cfg.extra_persons}     # real: 385 / 749 persons
    for cam, cam_dir in _prid.CAMS.items():
        for pid in range(1, n + extra[cam] + 1):
            length = wr.length()
            frames = list(range(1, length + 1))
            folder = shot / cam_dir / _prid.person_folder(pid)
            # Persons > n are different people in each camera (as in the real dataset).
            ident = None if pid <= n else random_identity(rng, -pid, cfg.difficulty)
            rec = wr.tracklet(pid, cam, length, [folder / _prid.frame_name(f) for f in frames],
                              frames, 'person' if ident is None else 'single', '', ident)
            rec['used'] = pid in set(used)
    spath = out / 'splits_prid2011.json'
    spath.write_text(json.dumps(splits_json, indent=4))
    return {'used_pids': used, 'splits_file': str(spath.relative_to(out)),
            'splits': [{k: [int(p.split('_')[1]) for p in s[k]] for k in ('train', 'test')}
                       for s in splits_json]}


def generate(out: str | os.PathLike, config: SyntheticConfig | None = None, *,
             replace: bool = False, **kw) -> dict:
    """Write a synthetic dataset in config.layout's official layout to `out`; return its meta.

    An existing `out` is replaced only if it is empty or an earlier generate() wrote it
    (reid.outputs marker), or with replace=True; otherwise OutputError. Keyword arguments
    override config fields, e.g. generate('out/mars', layout='mars', identities=40, seed=1).
    """
    cfg = SyntheticConfig(**{**asdict(config or SyntheticConfig()), **kw}).resolved()
    out = claim_dir(out, 'make_synthetic', '--replace (replace=True)', replace)
    wr = _Writer(cfg, out)
    writers = {'mars': _write_mars, 'ilidsvid': _write_ilidsvid, 'prid2011': _write_prid2011}
    extra = writers[cfg.layout](wr)
    meta = wr.meta({'layout': cfg.layout, **extra})
    (out / META_NAME).write_text(json.dumps(meta))
    return meta


def load_meta(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / META_NAME).read_text())



def degraded_frames(folder: str | os.PathLike) -> dict:
    """{tracklet source ('bbox_test/0001/0001C1T0001'): {frame number: degradation}} of a
    generated MARS-layout folder (its ground truth, synthetic_meta.json)."""
    out = {}
    for t in load_meta(folder)['tracklets']:
        key = os.path.splitext(t['files'][0])[0].rsplit('F', 1)[0]
        out[key] = {int(f): d for f, d in t['degraded'].items()}
    return out


def synthetic_mars(out_dir: str | os.PathLike, identities: int = 20, seed: int = 1,
                   progress: bool = False, **kw) -> str:
    """A synthetic MARS-layout dataset generated and prepared with the real prep code;
    returns the prepared folder (reused when already there)."""
    prepared = os.path.join(out_dir, 'mars')
    if not os.path.exists(os.path.join(prepared, 'index.json')):
        source = os.path.join(out_dir, 'source')
        generate(source, layout='mars', identities=identities, seed=seed, **kw)
        _mars.prepare_mars(source, prepared, progress=progress)
    return prepared
