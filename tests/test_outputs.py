"""Output folders (docs/DESIGN.md §4): the tools delete only what the project wrote, and an
output path that cannot be written (a file, a read-only file system, a full disk) is one
line naming it, never a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reid.datasets.synthetic import generate
from reid.outputs import MARKER, OutputError, remove_owned
from reid.testing import small_mount

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--identities', '4', '--min-len', '3', '--max-len', '4', '--height', '16',
        '--width', '8']


def _tool(name, *args):
    return subprocess.run([sys.executable, str(ROOT / 'data_prep' / name), *map(str, args)],
                          capture_output=True, text=True)


def _user_folder(path):
    path.mkdir(parents=True)
    (path / 'my_snapshot.caffemodel').write_bytes(b'precious')
    return path


def test_make_synthetic_keeps_a_folder_it_did_not_write(tmp_path):
    out = _user_folder(tmp_path / 'mine')
    r = _tool('make_synthetic.py', '--layout', 'mars', '--out', out, *TINY)
    assert r.returncode == 2
    assert f"{out}: exists and was not written by this project" in r.stderr
    assert '--replace' in r.stderr and 'Traceback' not in r.stderr
    assert (out / 'my_snapshot.caffemodel').read_bytes() == b'precious'
    # its own output it replaces (and an explicit --replace overrides the refusal)
    own = tmp_path / 'own'
    assert _tool('make_synthetic.py', '--layout', 'mars', '--out', own, *TINY).returncode == 0
    (own / 'stale.txt').write_text('left by the last run')
    assert _tool('make_synthetic.py', '--layout', 'mars', '--out', own, *TINY).returncode == 0
    assert not (own / 'stale.txt').exists() and (own / MARKER).is_file()
    r = _tool('make_synthetic.py', '--layout', 'mars', '--out', out, '--replace', *TINY)
    assert r.returncode == 0 and not (out / 'my_snapshot.caffemodel').exists()


def test_remove_owned_refuses_unmarked_folders_and_checkouts(tmp_path):
    mine = _user_folder(tmp_path / 'mine')
    with pytest.raises(OutputError, match='--fresh'):
        remove_owned(mine, '--fresh')
    assert (mine / 'my_snapshot.caffemodel').exists()
    (mine / MARKER).write_text('{"writer": "demo"}')
    (mine / '.git').mkdir()
    with pytest.raises(OutputError, match='git checkout'):
        remove_owned(mine, '--fresh', force=True)
    (mine / '.git').rmdir()
    assert remove_owned(mine, '--fresh') and not mine.exists()


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp('src') / 'mars'
    generate(src, layout='mars', identities=6, min_len=4, max_len=8, height=64, width=32,
             seed=2)
    return src


def test_prep_output_path_problems_are_one_line(source, tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    cases = [(afile, f"{afile}: prepared dataset folder is a file, not a folder"),
             (afile / 'sub', f"{afile / 'sub'}: cannot write (a parent is a file")]
    with small_mount(tmp_path / 'ro', readonly=True) as ro, \
            small_mount(tmp_path / 'full', '96k') as full:
        cases += [(ro / 'o', f"{ro / 'o'}: cannot write (read-only file system)"),
                  (full / 'o', f"{full / 'o'}")]
        for out, message in cases:
            r = _tool('prep_mars.py', source, out, '--no-progress')
            assert r.returncode == 2, (out, r.stderr)
            assert message in r.stderr and 'Traceback' not in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert 'the disk is full' in r.stderr      # LMDB itself says 'Input/output error'
        assert not [p for p in (full / 'o').iterdir() if '.tmp-' in p.name]


def _demo(out, *extra):
    return subprocess.run([sys.executable, str(ROOT / 'tools' / 'demo.py'), '--out', str(out),
                           '--tiny', '--until', 'nets', '--quiet', *extra],
                          capture_output=True, text=True, cwd=ROOT)


def test_demo_keeps_folders_it_did_not_write(tmp_path):
    """The demo replaces data/source, data/mars and run/ when their settings change, but
    only if it wrote them; --fresh deletes --out only if it wrote it."""
    out = tmp_path / 'demo'
    users = [_user_folder(out / sub) for sub in ('data/mars', 'data/source', 'run')]
    for i, blocked in enumerate(users):
        r = _demo(out)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{blocked}: exists and was not written by this project" in r.stderr
        assert '--overwrite' in r.stderr and 'Traceback' not in r.stderr
        for u in users[i:]:
            assert (u / 'my_snapshot.caffemodel').read_bytes() == b'precious'
        os.rename(blocked, tmp_path / blocked.name)       # the user moves it away
    assert _demo(out).returncode == 0
    r = _demo(out, '--fresh')                  # --out existed before the demo: not its own
    assert r.returncode == 1 and f"{out}: exists and was not written" in r.stderr
    assert (out / 'run' / 'solver.prototxt').is_file()
    fresh = tmp_path / 'fresh'
    assert _demo(fresh).returncode == 0
    (fresh / 'notes.txt').write_text('mine')   # inside the demo's own folder: --fresh may go
    assert _demo(fresh, '--fresh').returncode == 0 and not (fresh / 'notes.txt').exists()
    assert _demo(out, '--overwrite', '--fresh').returncode == 0    # the explicit override
