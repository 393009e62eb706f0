"""Synthetic dataset generator (reid.datasets.synthetic): layouts, determinism, and that the
data is learnable but not trivial (a mean colour histogram is well above chance and well
below 100% rank-1; removing the camera colour shift, which a network can learn, helps)."""
import hashlib
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from reid.datasets import ilidsvid, mars
from reid.datasets.reference import mars_kit_info_dir, prid2011_splits_path
from reid.datasets.synthetic import DEGRADATIONS, draw_person, generate, load_meta, random_identity

REAL_MARS = mars_kit_info_dir()
REAL_PRID = prid2011_splits_path()
TINY = dict(identities=6, min_len=3, max_len=6, height=32, width=16)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob('*')):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize('layout', ['mars', 'ilidsvid', 'prid2011'])
def test_seed_makes_it_deterministic(tmp_path, layout):
    generate(tmp_path / 'a', layout=layout, seed=4, **TINY)
    generate(tmp_path / 'b', layout=layout, seed=4, **TINY)
    generate(tmp_path / 'c', layout=layout, seed=5, **TINY)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')
    assert _digest(tmp_path / 'a') != _digest(tmp_path / 'c')


def test_mars_tables_look_like_the_real_ones(tmp_path):
    meta = generate(tmp_path, layout='mars', seed=1, **TINY)
    for f, v in (('tracks_train_info.mat', 'track_train_info'),
                 ('tracks_test_info.mat', 'track_test_info'), ('query_IDX.mat', 'query_IDX')):
        ours, real = scipy.io.loadmat(tmp_path / 'info' / f)[v], scipy.io.loadmat(REAL_MARS / f)[v]
        assert ours.dtype == real.dtype and ours.ndim == real.ndim == 2
        assert ours.shape[1] == real.shape[1] if v != 'query_IDX' else ours.shape[0] == 1
    te = scipy.io.loadmat(tmp_path / 'info' / 'tracks_test_info.mat')['track_test_info']
    # Same conventions as the kit: contiguous 1-based row ranges, sorted by pid (-1, 0 first).
    assert te[0, 0] == 1 and (te[1:, 0] == te[:-1, 1] + 1).all()
    assert (np.diff(te[:, 2]) >= 0).all() and te[0, 2] == -1
    n_lines = len((tmp_path / 'info' / 'test_name.txt').read_text().split())
    assert te[-1, 1] == n_lines
    assert sorted(os.listdir(tmp_path / 'bbox_test'))[:2] == ['00-1', '0000']
    assert len(os.listdir(tmp_path / 'bbox_test' / '00-1')) == sum(
        len(r['files']) for r in meta['tracklets'] if r['kind'] == 'distractor')
    assert not {'00-1', '0000'} & set(os.listdir(tmp_path / 'bbox_train'))
    # Every query has a same-identity tracklet in another camera (MARS "good" images).
    q = scipy.io.loadmat(tmp_path / 'info' / 'query_IDX.mat')['query_IDX'].ravel()
    for row in q:
        pid, cam = te[row - 1, 2:]
        assert pid > 0 and ((te[:, 2] == pid) & (te[:, 3] != cam)).any()


def test_two_camera_split_files_look_like_the_real_ones(tmp_path):
    generate(tmp_path / 'i', layout='ilidsvid', seed=1, **TINY)
    ls = scipy.io.loadmat(tmp_path / 'i' / ilidsvid.SPLITS_FILE)['ls_set']
    assert ls.shape == (10, 6) and all(sorted(r) == list(range(1, 7)) for r in ls)
    generate(tmp_path / 'p', layout='prid2011', seed=1, **TINY)
    ours = json.loads((tmp_path / 'p' / 'splits_prid2011.json').read_text())
    real = json.loads(REAL_PRID.read_text())
    assert len(ours) == len(real) == 10
    assert all(set(s) == set(real[0]) for s in ours)
    assert all(n.startswith('person_') and len(n) == 11 for s in ours for n in s['test'])
    assert len(ours[0]['test']) == len(ours[0]['train'])


def test_identity_fixed_and_cameras_differ(tmp_path):
    meta = generate(tmp_path, layout='mars', seed=2, identities=12, height=64, width=32)
    ids = {i['pid']: i for i in meta['identities']}
    persons = [r for r in meta['tracklets'] if r['kind'] == 'person']
    assert {r['pid'] for r in persons} == set(ids)               # one appearance per person
    cams_of = {}
    for r in persons:
        cams_of.setdefault(r['pid'], set()).add(r['cam'])
    assert min(len(c) for c in cams_of.values()) >= 2            # everyone seen by 2+ cameras
    cams = meta['cameras']
    assert len({tuple(np.round(c['cast'], 3)) for c in cams}) == len(cams)
    assert len({round(c['gain'], 3) for c in cams}) == len(cams)
    # Backgrounds differ between cameras: mean colour of the box borders.
    border = {}
    for r in persons:
        im = cv2.imread(str(tmp_path / r['files'][0])).astype(float)
        sides = np.r_[im[:, :4].reshape(-1, 3), im[:, -4:].reshape(-1, 3)]
        border.setdefault(r['cam'], []).append(sides.mean(0))
    means = np.array([np.mean(v, 0) for v in border.values()])
    assert np.ptp(means, axis=0).max() > 20


def _frames(folder, rec):
    return np.stack([cv2.imread(str(folder / f)).astype(np.float32) for f in rec['files']])


def test_degraded_frames_are_recorded_and_stand_out(tmp_path):
    meta = generate(tmp_path, layout='ilidsvid', seed=3, identities=20, min_len=16, max_len=24,
                    degrade_prob=0.25, height=64, width=32)
    recs = meta['tracklets']
    n_frames = sum(len(r['frames']) for r in recs)
    degraded = [d for r in recs for d in r['degraded'].values()]
    assert 0.1 < len(degraded) / n_frames < 0.45
    assert set(degraded) == set(DEGRADATIONS)
    dev_clean, dev_bad = [], []
    for r in recs:
        x = _frames(tmp_path, r)
        bad = np.array([str(f) in r['degraded'] for f in r['frames']])
        dev = np.abs(x - np.median(x, 0)).mean(axis=(1, 2, 3))  # distance to the typical frame
        dev_clean += list(dev[~bad])
        dev_bad += list(dev[bad])
    assert np.mean(dev_bad) > 1.5 * np.mean(dev_clean)
    assert load_meta(tmp_path)['layout'] == 'ilidsvid'


def test_walking_motion():
    """Legs and arms swing with the gait phase, periodically; the head does not move."""
    rng = np.random.default_rng(0)
    ident = random_identity(rng, 1, 0.5)
    ident.bag, ident.hair_long = '', False
    geom = {'hp': 110.0, 'cx': 32.0, 'feet': 120.0}

    def labels(phase, side=1.0):
        lab = np.zeros((128, 64), np.uint8)
        fr = draw_person(lab, ident, geom, phase, side, 1)
        return lab, fr
    a, fr = labels(0.0)
    b, _ = labels(math.pi / 2)
    c, _ = labels(2 * math.pi)
    hip, shoulder = int(fr['hip']), int(fr['shoulder'])
    legs = (a[hip + 5:] != b[hip + 5:]).mean()
    assert legs > 0.05                                           # legs moved
    assert (a[:shoulder - 4] == b[:shoulder - 4]).all()          # head did not
    assert (a == c).all()                                        # one full gait cycle
    front_a, front_b = labels(0.0, side=0.0)[0], labels(math.pi / 2, side=0.0)[0]
    assert (front_a[hip + 5:] != front_b[hip + 5:]).mean() < legs  # less swing seen frontally


# ---- learnable but not trivial --------------------------------------------------------------
def _centre(im):
    h, w = im.shape[:2]
    return im[int(0.1 * h):int(0.95 * h), w // 4:3 * w // 4]


def _hist(frames, gain=None, bins=4):
    """Mean colour histogram (4 x 4 x 4 BGR) of the central person region over a tracklet."""
    h = np.zeros(bins ** 3)
    for im in frames:
        im = _centre(im).astype(np.float32)
        if gain is not None:
            im = np.clip(im * gain, 0, 255)
        h += cv2.calcHist([im.astype(np.uint8)], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
    return h / h.sum()


def _rank1(src, feats):
    """MARS protocol rank-1: gallery = test minus pid -1 minus same pid + same camera."""
    pid = np.array([t.pid for t in src.tracklets])
    cam = np.array([t.cam for t in src.tracklets])
    test = np.array([t.split == 'test' for t in src.tracklets])
    hits = []
    for i in [k for k, t in enumerate(src.tracklets) if t.role == 'query']:
        g = np.flatnonzero(test & (pid != -1) & ~((pid == pid[i]) & (cam == cam[i])))
        d = ((np.sqrt(feats[g]) - np.sqrt(feats[i])) ** 2).sum(1)   # Hellinger
        hits.append(pid[g[np.argmin(d)]] == pid[i])
    chance = 1 / len({pid[k] for k, t in enumerate(src.tracklets) if t.role == 'query'})
    return float(np.mean(hits)), chance


def _baselines(folder, **kw):
    generate(folder, layout='mars', height=64, width=32, **kw)
    src = mars.parse_mars(folder)
    frames = [[cv2.imread(f) for f in t.files] for t in src.tracklets]
    raw = np.array([_hist(f) for f in frames])
    # Per-camera grey world: undo each camera's mean colour (what a network can learn to do).
    cams = np.array([t.cam for t in src.tracklets])
    mean_of = {c: np.mean([_centre(im).reshape(-1, 3).mean(0) for k in np.flatnonzero(cams == c)
                           for im in frames[k]], 0) for c in set(cams)}
    overall = np.mean(list(mean_of.values()), 0)
    norm = np.array([_hist(f, overall / mean_of[c]) for f, c in zip(frames, cams)])
    return _rank1(src, raw), _rank1(src, norm)[0]


def test_colour_histogram_is_above_chance_but_far_from_perfect(tmp_path):
    (raw, chance), camnorm = _baselines(tmp_path / 'd', identities=60, seed=0)
    assert 3 * chance < raw < 0.6, (raw, chance)
    assert camnorm > raw + 0.1, (camnorm, raw)


def test_difficulty_makes_colour_matching_harder(tmp_path):
    (easy, _), _ = _baselines(tmp_path / 'e', identities=40, seed=1, difficulty=0.0)
    (hard, chance), _ = _baselines(tmp_path / 'h', identities=40, seed=1, difficulty=1.0)
    assert easy > hard + 0.3, (easy, hard)


# ---- switchable phenomena -------------------------------------------------------------------
PHEN = dict(layout='mars', identities=8, min_len=8, max_len=10, height=64, width=32, seed=7,
            degrade_prob=0.4)


def _frame_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*.jpg'))}


def _kinds(meta):
    return {d for r in meta['tracklets'] for d in r['degraded'].values()}


@pytest.mark.parametrize('kind', ['person_occlusion', 'background_occlusion', 'detector_miss'])
def test_each_corruption_is_written_and_off_when_switched_off(tmp_path, kind):
    on = generate(tmp_path / 'on', corruptions=kind, **PHEN)
    off = generate(tmp_path / 'off', corruptions='', **PHEN)
    assert _kinds(on) == {kind} and _kinds(off) == set()
    a, b = _frame_bytes(tmp_path / 'on'), _frame_bytes(tmp_path / 'off')
    assert a.keys() == b.keys()
    changed = {f for f in a if a[f] != b[f]}
    corrupted = {f for r in on['tracklets'] for f, n in zip(r['files'], r['frames'])
                 if str(n) in r['degraded']}
    # exactly the corrupted frames differ: switching corruptions touches nothing else
    assert changed == corrupted and corrupted


def test_detector_misses_take_the_person_out_of_the_box(tmp_path):
    """A missed frame differs from the same frame without the miss where the person's torso
    is (the centre of the box), far more than a clean frame's noise."""
    meta = generate(tmp_path / 'on', corruptions='detector_miss', **PHEN)
    generate(tmp_path / 'off', corruptions='', **PHEN)
    missed = []
    for r in meta['tracklets']:
        for f, n in zip(r['files'], r['frames']):
            if str(n) in r['degraded']:
                a = cv2.imread(str(tmp_path / 'on' / f)).astype(np.float32)
                b = cv2.imread(str(tmp_path / 'off' / f)).astype(np.float32)
                missed.append(np.abs(a - b)[20:40, 12:20].mean())
    assert len(missed) > 5 and np.median(missed) > 20


@pytest.mark.parametrize('switch,value', [('camera_misalignment', 0.2), ('pose_change', 1),
                                          ('local_cues', 0)])
def test_srm_and_identity_switches_change_frames_and_nothing_else(tmp_path, switch, value):
    base = dict(PHEN, corruptions='')
    default = {'camera_misalignment': 0.0, 'pose_change': 0, 'local_cues': 1}[switch]
    on = generate(tmp_path / 'on', **{switch: value}, **base)
    off = generate(tmp_path / 'off', **{switch: default}, **base)
    a, b = _frame_bytes(tmp_path / 'on'), _frame_bytes(tmp_path / 'off')
    assert a.keys() == b.keys() and a != b
    assert on['cameras'] == off['cameras']         # same cameras, drawn whatever the switch
    assert [r['frames'] for r in on['tracklets']] == [r['frames'] for r in off['tracklets']]
    if switch == 'local_cues':
        ids = off['identities']
        assert any(i['bag'] or i['upper_pattern'] == 'logo' for i in ids)
        assert not any(i['bag'] or i['upper_pattern'] == 'logo' for i in on['identities'])
        assert {tuple(i['shoes']) for i in on['identities']} == {(35, 35, 35)}


def test_misaligned_cameras_place_people_differently(tmp_path):
    """With camera_misalignment the person's vertical extent differs between cameras more
    than without it (a mask of non-background rows, median over a tracklet)."""
    def spread(folder, meta):
        tops = {}
        for r in meta['tracklets']:
            if r['kind'] != 'person':
                continue
            x = _frames(folder, r)
            col = np.abs(np.diff(x.mean(2), axis=0)).mean(axis=(0, 2))   # motion per row
            rows = np.flatnonzero(col > col.max() * 0.3)
            tops.setdefault(r['cam'], []).append(rows.max() if rows.size else 0)
        return np.std([np.median(v) for v in tops.values()])
    base = dict(PHEN, corruptions='', identities=10)
    on = generate(tmp_path / 'on', camera_misalignment=0.25, **base)
    off = generate(tmp_path / 'off', **base)
    assert spread(tmp_path / 'on', on) > spread(tmp_path / 'off', off)
