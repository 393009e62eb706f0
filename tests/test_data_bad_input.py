"""Bad input to the prep tools and the reader: clear messages naming the file,
corrupt frames reported and skipped (never silently), atomic and re-runnable builds."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from reid.datasets import LayoutError, ShortTrackletError, open_dataset
from reid.datasets import build as B
from reid.datasets import ilidsvid, mars, prid2011
from reid.datasets.build import CorruptFrameWarning, ShortTrackletWarning
from reid.datasets.lmdb_store import BuildLock
from reid.datasets.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(min_len=4, max_len=8, height=32, width=16, short_prob=0, seed=11)


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp('bad')
    metas = {}
    for layout, n in (('mars', 8), ('ilidsvid', 6), ('prid2011', 8)):
        metas[layout] = generate(base / layout, layout=layout, identities=n, **SMALL)
    return base, metas


@pytest.fixture
def copy(sources, tmp_path):
    """copy(layout) -> a private copy of the generated source folder, and its meta."""
    base, metas = sources

    def make(layout):
        dst = tmp_path / layout
        shutil.copytree(base / layout, dst)
        return dst, metas[layout]
    return make


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return fn(*a, progress=False, **kw)


def _prep_cli(layout, src, out, *extra):
    return subprocess.run([sys.executable, str(ROOT / 'data_prep' / f'prep_{layout}.py'),
                           str(src), str(out), '--no-progress', *extra],
                          capture_output=True, text=True)


# ---- info / split files --------------------------------------------------------------------
@pytest.mark.parametrize('name', ['train_name.txt', 'test_name.txt', 'tracks_train_info.mat',
                                  'tracks_test_info.mat', 'query_IDX.mat'])
def test_mars_missing_info_file_is_named(copy, name):
    src, _ = copy('mars')
    (src / 'info' / name).unlink()
    with pytest.raises(LayoutError, match=f"{src / 'info' / name}: file not found"):
        mars.parse_mars(src)


def test_mars_malformed_mat_files(copy):
    src, _ = copy('mars')
    info = src / 'info'
    good = scipy.io.loadmat(info / 'tracks_test_info.mat')['track_test_info']

    def expect(match, **variables):
        scipy.io.savemat(info / 'tracks_test_info.mat', variables)
        with pytest.raises(LayoutError, match=match):
            mars.parse_mars(src)
    (info / 'tracks_test_info.mat').write_bytes(b'this is not MATLAB')
    with pytest.raises(LayoutError, match=r"tracks_test_info.mat: not a readable .mat file"):
        mars.parse_mars(src)
    expect(r"tracks_test_info.mat: variable 'track_test_info' missing \(has \['tracks'\]\)",
           tracks=good)
    expect(r"tracks_test_info.mat: 'track_test_info' must be n x 4", track_test_info=good[:, :3])
    bad = good.copy()
    bad[2, 1] = 10 ** 6
    expect(r"tracks_test_info.mat: row 3 .* is invalid .* lines of test_name.txt",
           track_test_info=bad)
    bad = good.copy()
    bad[1, 0] = bad[0, 1]                                # row 2 starts inside row 1
    expect(r"tracks_test_info.mat: rows 1 and 2 overlap", track_test_info=bad)
    bad = good.copy()
    bad[-1, 3] = bad[-1, 3] % 6 + 1                      # camera disagrees with the names
    expect(rf"tracks_test_info.mat: row {len(good)} .* does not match test_name.txt line",
           track_test_info=bad)
    bad = good.astype(float) + 0.5
    expect(r"tracks_test_info.mat: variable 'track_test_info' must hold integers",
           track_test_info=bad)


def test_mars_malformed_query_and_name_list(copy):
    src, _ = copy('mars')
    info = src / 'info'
    n_test = len(scipy.io.loadmat(info / 'tracks_test_info.mat')['track_test_info'])
    scipy.io.savemat(info / 'query_IDX.mat', {'query_IDX': np.array([[1, n_test + 1]])})
    with pytest.raises(LayoutError, match=rf"query_IDX.mat: query row {n_test + 1} outside"):
        mars.parse_mars(src)
    scipy.io.savemat(info / 'query_IDX.mat', {'query_IDX': np.array([[2, 2]])})
    with pytest.raises(LayoutError, match=r"query_IDX.mat: a query row is listed twice"):
        mars.parse_mars(src)
    lines = (info / 'train_name.txt').read_text().split('\n')
    lines[3] = 'IMG_0001.jpg'
    (info / 'train_name.txt').write_text('\n'.join(lines))
    with pytest.raises(LayoutError, match=r"train_name.txt, line 4: 'IMG_0001.jpg' is not a MARS"):
        mars.parse_mars(src)


def test_folder_that_is_not_the_layout(copy, tmp_path):
    ilids_src, _ = copy('ilidsvid')
    with pytest.raises(LayoutError, match=r"info: folder not found \(MARS info/"):
        mars.parse_mars(ilids_src)
    with pytest.raises(LayoutError, match=r"i-LIDS-VID/sequences: folder not found"):
        ilidsvid.parse_ilidsvid(tmp_path)
    with pytest.raises(LayoutError, match=r"prid_2011/multi_shot: folder not found"):
        prid2011.parse_prid2011(ilids_src)
    mars_src, _ = copy('mars')
    shutil.rmtree(mars_src / 'bbox_train')
    with pytest.raises(LayoutError, match=r"bbox_train: folder not found"):
        mars.parse_mars(mars_src)
    r = _prep_cli('mars', ilids_src, tmp_path / 'o')
    assert r.returncode == 2 and r.stderr.startswith(f"error: {ilids_src / 'info'}")
    assert not (tmp_path / 'o').exists()


def test_ilidsvid_bad_splits_and_folders(copy):
    src, _ = copy('ilidsvid')
    spath = src / ilidsvid.SPLITS_FILE
    good = scipy.io.loadmat(spath)['ls_set']
    scipy.io.savemat(spath, {'ls_set': good[:, :-1]})
    with pytest.raises(LayoutError, match=r"train_test_splits_ilidsvid.mat: 'ls_set' has shape "
                                          r"\(10, 5\); expected \(10, 6\)"):
        ilidsvid.parse_ilidsvid(src)
    bad = good.copy()
    bad[3, 0] = bad[3, 1]
    scipy.io.savemat(spath, {'ls_set': bad})
    with pytest.raises(LayoutError, match=r"'ls_set' row 4 is not a permutation of 1..6"):
        ilidsvid.parse_ilidsvid(src)
    spath.unlink()
    with pytest.raises(LayoutError, match=f"{spath}: file not found"):
        ilidsvid.parse_ilidsvid(src)
    scipy.io.savemat(spath, {'ls_set': good})
    cam2 = src / ilidsvid.SEQ_DIR / 'cam2'
    victim = sorted(cam2.iterdir())[2]
    shutil.rmtree(victim)
    with pytest.raises(LayoutError, match=f"{victim}: missing \\(every iLIDS-VID person"):
        ilidsvid.parse_ilidsvid(src)


def test_ilidsvid_bad_file_names(copy):
    src, _ = copy('ilidsvid')
    person = sorted((src / ilidsvid.SEQ_DIR / 'cam1').iterdir())[0]
    frame = sorted(person.iterdir())[0]
    odd = person / 'snapshot.png'
    shutil.copy(frame, odd)
    with pytest.raises(LayoutError, match=f"{odd}: unexpected file name"):
        ilidsvid.parse_ilidsvid(src)
    odd.unlink()
    # Same frame number written twice (unpadded): refuse rather than pick one.
    num = int(frame.stem.split('_')[-1])
    dup = person / f"{frame.stem.rsplit('_', 1)[0]}_{num}.png"
    shutil.copy(frame, dup)
    with pytest.raises(LayoutError, match=f"frame number {num} appears twice"):
        ilidsvid.parse_ilidsvid(src)
    dup.unlink()
    for f in person.iterdir():
        f.unlink()
    with pytest.raises(LayoutError, match=f"{person}: person folder holds no frames"):
        ilidsvid.parse_ilidsvid(src)


def test_prid_bad_splits_json(copy):
    src, _ = copy('prid2011')
    spath = src / 'splits_prid2011.json'
    good = json.loads(spath.read_text())
    spath.write_text(spath.read_text()[:-20])
    with pytest.raises(LayoutError, match=f"{spath}: malformed JSON"):
        prid2011.parse_prid2011(src, spath)
    bad = json.loads(json.dumps(good))
    bad[2]['test'][0] = 'p1'
    spath.write_text(json.dumps(bad))
    with pytest.raises(LayoutError, match=r"split 2 test: 'p1' is not person_NNNN"):
        prid2011.parse_prid2011(src, spath)
    bad = json.loads(json.dumps(good))
    bad[1]['train'].append(bad[1]['test'][0])
    spath.write_text(json.dumps(bad))
    with pytest.raises(LayoutError, match=r"split 1 has persons in both train and test"):
        prid2011.parse_prid2011(src, spath)
    spath.write_text(json.dumps(good))
    victim = src / prid2011.SHOT_DIR / 'cam_b' / good[0]['test'][0]
    shutil.rmtree(victim)
    with pytest.raises(LayoutError, match=f"1 person folder named by the splits file {spath} "
                                          f"is missing \\(e.g. cam_b/{victim.name}\\)"):
        prid2011.parse_prid2011(src, spath)
    with pytest.raises(LayoutError, match=f"{src / 'nope.json'}: file not found"):
        prid2011.parse_prid2011(src, src / 'nope.json')


# ---- images --------------------------------------------------------------------------------
def _victims(src, meta, k=3):
    """k frames (relative paths) from the middle of different test tracklets of length >= 5."""
    recs = [r for r in meta['tracklets'] if len(r['files']) >= 5 and r['kind'] == 'person']
    return [(r, r['files'][2]) for r in recs[:k]]


def test_corrupt_images_are_reported_and_skipped(copy, tmp_path):
    src, meta = copy('mars')
    (r1, f1), (r2, f2), (r3, f3) = _victims(src, meta)
    data = (src / f1).read_bytes()
    (src / f1).write_bytes(data[:len(data) // 2])                 # truncated JPEG
    (src / f2).write_bytes(b'\x00' * 100)                         # garbage
    (src / f3).unlink()
    (src / f3).mkdir()                                            # unreadable as a file
    with pytest.warns(CorruptFrameWarning) as rec:
        report = mars.prepare_mars(src, tmp_path / 'o', progress=False)
    msgs = [str(w.message) for w in rec if w.category is CorruptFrameWarning]
    assert any(str(src / f1) in m and 'truncated JPEG' in m for m in msgs)
    assert any(str(src / f2) in m and 'not a decodable image' in m for m in msgs)
    assert any(str(src / f3) in m and 'unreadable' in m for m in msgs)
    assert {d['file'] for d in report.skipped} == {str(src / f) for f in (f1, f2, f3)}
    assert 'skipped' in report.summary() and str(src / f1) in report.summary()
    with open_dataset(tmp_path / 'o') as ds:
        assert {d['file'] for d in ds.index.meta['skipped']} == {str(src / f) for f in (f1, f2, f3)}
        for r in (r1, r2, r3):
            t = next(t for t in ds.tracklets if t.pid == r['pid'] and t.cam == r['cam']
                     and t.frames == [f for f in r['frames'] if f != r['frames'][2]])
            assert t.num_frames == len(r['frames']) - 1
            ds.read(t.tid, 0, t.num_frames)                       # the rest reads fine
        assert ds.index.total_frames == sum(len(r['frames']) for r in meta['tracklets']) - 3


def test_cli_reports_skipped_frames(copy, tmp_path):
    src, meta = copy('ilidsvid')
    victim = next(f for r in meta['tracklets'] for f in r['files'])
    (src / victim).write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    r = _prep_cli('ilidsvid', src, tmp_path / 'o')
    assert r.returncode == 0, r.stderr
    assert '1 corrupt/unreadable frames skipped' in r.stdout
    assert f"skipped {src / victim}: truncated PNG" in r.stdout


def test_tracklet_with_no_readable_frame_is_dropped_and_reported(copy, tmp_path):
    src, meta = copy('prid2011')
    rec = next(r for r in meta['tracklets'] if r.get('used'))
    for f in rec['files']:
        (src / f).write_bytes(b'')
    with pytest.warns(CorruptFrameWarning) as caught:
        report = prid2011.prepare_prid2011(src, tmp_path / 'o', src / 'splits_prid2011.json',
                                           progress=False)
    msgs = [str(w.message) for w in caught]
    assert sum('empty file; frame skipped' in m for m in msgs) == len(rec['files'])
    assert any(m.endswith('no readable frame; tracklet dropped') for m in msgs)
    assert len(report.dropped_tracklets) == 1 and 'empty file' in report.skipped[0]['reason']
    with open_dataset(tmp_path / 'o') as ds:
        assert not any(t.pid == rec['pid'] and t.cam == rec['cam'] for t in ds.tracklets)
        assert ds.index.meta['dropped_tracklets'] == report.dropped_tracklets


def test_listed_but_absent_image(copy, tmp_path):
    src, meta = copy('mars')
    (_, f1), (_, f2) = _victims(src, meta, 2)
    (src / f1).unlink()
    (src / f2).unlink()
    with pytest.raises(LayoutError, match=f"{src / f1}: image listed but absent \\(and 1 more\\)"):
        _quiet(mars.prepare_mars, src, tmp_path / 'o')
    assert not (tmp_path / 'o' / 'frames.lmdb').exists()
    r = _prep_cli('mars', src, tmp_path / 'o')
    assert r.returncode == 2 and f"{src / f1}: image listed but absent" in r.stderr
    report = _quiet(mars.prepare_mars, src, tmp_path / 'o', allow_missing=True)
    assert [d['reason'] for d in report.skipped] == ['listed but absent'] * 2


def test_tracklet_shorter_than_T(copy, tmp_path):
    src, meta = copy('ilidsvid')                      # generated lengths are 4..8
    rec = meta['tracklets'][0]
    for f in rec['files'][3:]:
        (src / f).unlink()                            # 3 frames left: shorter than T = 4
    with pytest.warns(ShortTrackletWarning, match=r"1 tracklets shorter than 4 frames \(first: "
                                                  r"cam1/person\d{3}\)"):
        report = ilidsvid.prepare_ilidsvid(src, tmp_path / 'o', min_frames=4, progress=False)
    assert report.short_tracklets == [f"cam1/{rec['files'][0].split('/')[-2]}"]
    with open_dataset(tmp_path / 'o') as ds:
        assert ds.tracklets[0].num_frames == 3
        with pytest.raises(ShortTrackletError,
                           match=r"tracklet 0 \(cam1/person\d{3}\) has 3 frames"):
            ds.read(0, 0, 4, loop=False)
        np.testing.assert_array_equal(ds.read(0, 0, 6), ds.read(0, 0, 3)[[0, 1, 2, 0, 1, 2]])


# ---- atomic, re-runnable builds ---------------------------------------------------------------
def _snapshot(out):
    with open_dataset(out) as ds:
        return ds.index.meta['build_id'], [ds.read(t.tid, 0, 2) for t in ds.tracklets[:5]], len(ds)


def _listing(out):
    return sorted(p.name for p in Path(out).iterdir())


def test_interrupted_build_keeps_previous_database(copy, tmp_path, monkeypatch):
    src, meta = copy('mars')
    out = tmp_path / 'o'
    _quiet(mars.prepare_mars, src, out)
    before = _snapshot(out)
    calls = {'n': 0}
    real = B.make_datum

    def dying(*a):
        calls['n'] += 1
        if calls['n'] == 40:
            raise KeyboardInterrupt                  # Ctrl-C in the middle of the build
        return real(*a)
    monkeypatch.setattr(B, 'make_datum', dying)
    with pytest.raises(KeyboardInterrupt):
        _quiet(mars.prepare_mars, src, out)
    after = _snapshot(out)
    assert after[0] == before[0] and after[2] == before[2]
    for a, b in zip(after[1], before[1]):
        np.testing.assert_array_equal(a, b)
    # no temporaries left
    assert _listing(out) == ['.reid-output.json', 'frames.lmdb', 'index.json']
    monkeypatch.setattr(B, 'make_datum', real)
    _quiet(mars.prepare_mars, src, out)              # re-run works
    assert _snapshot(out)[0] != before[0]


def test_killed_build_leaves_old_database_and_rerun_cleans_up(copy, tmp_path):
    """SIGKILL mid-build (no cleanup code runs): old DB intact; the next build removes debris."""
    src, meta = copy('mars')
    out = tmp_path / 'o'
    _quiet(mars.prepare_mars, src, out)
    before = _snapshot(out)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import reid.datasets.build as B
        from reid.datasets.mars import prepare_mars
        real, n = B.make_datum, [0]
        def dying(*a):
            n[0] += 1
            if n[0] == 50:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a)
        B.make_datum = dying
        prepare_mars({str(src)!r}, {str(out)!r}, progress=False)
    """)
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    debris = [n for n in _listing(out) if '.tmp-' in n]
    assert debris, 'the killed build should have left its temporary LMDB'
    after = _snapshot(out)
    assert after[0] == before[0]
    for a, b in zip(after[1], before[1]):
        np.testing.assert_array_equal(a, b)
    report = _quiet(mars.prepare_mars, src, out)
    assert sorted(report.removed_stale) == sorted(debris)
    assert _listing(out) == ['.reid-output.json', 'frames.lmdb', 'index.json']
    assert _snapshot(out)[2] == before[2]


def test_index_from_another_build_falls_back_to_embedded_index(copy, tmp_path):
    """A crash between the two renames leaves a new LMDB beside an old index.json."""
    src, _ = copy('mars')
    out = tmp_path / 'o'
    _quiet(mars.prepare_mars, src, out)
    old_index = (out / 'index.json').read_text()
    _quiet(mars.prepare_mars, src, out)
    new_id = json.loads((out / 'index.json').read_text())['meta']['build_id']
    (out / 'index.json').write_text(old_index)
    with pytest.warns(UserWarning, match='from another build'):
        ds = open_dataset(out)
    assert ds.index.meta['build_id'] == new_id
    ds.read(0)
    ds.close()
    (out / 'index.json').unlink()
    with open_dataset(out) as ds:                   # the LMDB alone is a complete database
        assert ds.index.meta['build_id'] == new_id


def test_concurrent_builds_are_refused(copy, tmp_path):
    src, _ = copy('prid2011')
    out = tmp_path / 'o'
    out.mkdir()
    with BuildLock(out):
        with pytest.raises(RuntimeError, match='another build of this dataset is running'):
            _quiet(prid2011.prepare_prid2011, src, out, src / 'splits_prid2011.json')
        assert (out / '.build.lock').exists()
    assert not (out / '.build.lock').exists()       # nothing left behind once released


def test_not_a_prepared_dataset(tmp_path):
    with pytest.raises(LayoutError, match=f"{tmp_path / 'frames.lmdb'}: not found"):
        open_dataset(tmp_path)
    (tmp_path / 'frames.lmdb').write_bytes(os.urandom(5000))
    with pytest.raises(ValueError, match='frames.lmdb'):
        open_dataset(tmp_path)


# ---- damaged databases and images -------------------------------------------------------------
def _open_and_read_all(out):
    """Open a prepared dataset and read every tracklet in a child process (a bus error there
    must not take pytest down); returns the CompletedProcess."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from reid.datasets import open_dataset
        with open_dataset({str(out)!r}) as ds:
            for t in ds.tracklets:
                ds.read(t.tid, 0, t.num_frames)
    """)
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)


def test_truncated_lmdb_is_a_named_error_not_a_bus_error(copy, tmp_path):
    src, _ = copy('mars')
    out = tmp_path / 'o'
    _quiet(mars.prepare_mars, src, out)
    lmdb_file = out / 'frames.lmdb'
    size = lmdb_file.stat().st_size
    with open(lmdb_file, 'r+b') as f:                    # a partial copy
        f.truncate(size // 2)
    r = _open_and_read_all(out)
    assert r.returncode == 1, (r.returncode, r.stderr[-500:])       # not -SIGBUS
    assert f"CorruptDatabaseError: {lmdb_file}: truncated ({size // 2} bytes" in r.stderr


def test_overwritten_frame_names_the_file_and_key(copy, tmp_path):
    src, meta = copy('mars')
    out = tmp_path / 'o'
    _quiet(mars.prepare_mars, src, out)
    with open_dataset(out) as ds:
        t = ds.tracklets[3]
        jpeg = ds.read_raw(t.tid, 1)
        key = t.start + 1
    lmdb_file = out / 'frames.lmdb'
    data = bytearray(lmdb_file.read_bytes())
    # Every copy of the frame's bytes (LMDB may keep a stale copy on a freed page).
    found = [m.start() for m in re.finditer(re.escape(bytes(jpeg)), data)]
    assert found and found[0] > 0
    for at in found:
        data[at - 3:at] = b'\xff\xff\xff'             # the Datum's length field and tag
    lmdb_file.write_bytes(bytes(data))
    with open_dataset(out) as ds:
        with pytest.raises(ValueError) as err:
            ds.read(t.tid, 0, t.num_frames)
    assert f"{lmdb_file} key {key:08d} (tracklet {t.tid})" in str(err.value)
    r = _open_and_read_all(out)
    assert r.returncode == 1 and f"{lmdb_file} key {key:08d}" in r.stderr


def test_jpeg_with_garbage_in_the_middle_is_skipped_and_named(copy, tmp_path):
    src, meta = copy('mars')
    (_, victim), = _victims(src, meta, 1)
    data = bytearray((src / victim).read_bytes())
    mid = (data.find(b'\xff\xda') + len(data)) // 2     # the middle of the scan data
    data[mid:mid + 8] = b'\xff\x55' * 4                 # garbage with false markers
    (src / victim).write_bytes(bytes(data))
    assert cv2_decodes(bytes(data)), 'libjpeg decodes it anyway (and only warns)'
    with pytest.warns(CorruptFrameWarning) as rec:
        report = mars.prepare_mars(src, tmp_path / 'o', progress=False)
    msgs = [str(w.message) for w in rec if w.category is CorruptFrameWarning]
    assert any(m.startswith(f"{src / victim}: corrupt JPEG data (libjpeg: ") for m in msgs), msgs
    assert [d['file'] for d in report.skipped] == [str(src / victim)]


def cv2_decodes(data):
    import cv2
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


@pytest.mark.parametrize('option, value', [('--workers', '-3'), ('--min-frames', '-1'),
                                           ('--workers', 'two')])
def test_prep_refuses_meaningless_numbers(copy, tmp_path, option, value):
    src, _ = copy('mars')
    r = _prep_cli('mars', src, tmp_path / 'o', option, value)
    assert r.returncode == 2 and f"argument {option}: " in r.stderr, r.stderr
    assert not (tmp_path / 'o').exists()
