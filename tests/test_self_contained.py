"""The repository stands on its own: nothing in it points outside it, and the tests that read
the reference tables (reid/datasets/reference) pass from a copy of the tracked files in an
empty folder, with nothing beside it. Removing any reference table makes them fail."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reid.datasets import reference

ROOT = Path(__file__).resolve().parents[1]
# Paths outside the repository that a checkout must not depend on: the team's side folders,
# user homes, temporary folders. Not scanned: .gitignore / .dockerignore (their patterns start
# with '/' to anchor them at the repository root) and this file (it holds the examples).
OUTSIDE = re.compile(r'(?<![\w.~-])/(?:work|shared|home|Users|mnt|tmp)/|\.\./shared\b|'
                     r'(?<![\w.~-])/work\b')
NOT_SCANNED = {'.gitignore', '.dockerignore', Path(__file__).name}
BINARY = ('.png', '.mat', '.caffemodel', '.lmdb')
# Every test that reads a reference table, and one that uses the PRID2011 default splits.
USERS = ['tests/test_data_mars_real_tables.py', 'tests/test_eval_protocols.py',
         'tests/test_eval_rerank.py', 'tests/test_data_synthetic.py',
         'tests/test_data_prep.py::test_prid_with_the_real_splits_file']
TABLES = [f'mars_info/{f}' for f in reference.MARS_KIT_FILES] + [reference.PRID2011_SPLITS]


# What a checkout holds besides its files: builds, outputs, caches (.gitignore, .dockerignore).
NOT_SOURCE = {'.git', '.caffe', '.venv', 'out', 'work', '__pycache__', '.pytest_cache',
              '.gpu_bundle', '.gl', '.whl'}


def tracked_files():
    """The repository's files: git's list in a checkout; in a copy without git (a Docker
    image, a tarball) every file but builds, outputs and caches."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True,
                             check=True)
        return [f for f in out.stdout.decode().split('\0') if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for top, dirs, names in os.walk(ROOT):
            dirs[:] = sorted(d for d in dirs if d not in NOT_SOURCE)
            files += [os.path.relpath(os.path.join(top, n), ROOT) for n in sorted(names)
                      if not n.endswith('.pyc') and not n.startswith('.reid-')]
        return files


def outside_references(path: Path):
    """Lines of a text file that name a path outside the repository, as 'line: text'."""
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError:
        return []
    return [f"{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)]


def test_the_pattern_catches_outside_paths():
    shelf = "sha" + "red"   # spelled apart so that this file itself names no outside path
    bad = [f'REAL = Path("/work/{shelf}/datasets/mars/info")', f"see ../{shelf}/DESIGN.md",
           "cd /work && make", "--out /tmp/syn", "/home/me/data"]
    good = ["work/mars/all/snap_iter_2000", "out/work/x", "~/.cache/reid-caffe",
            "docs/DESIGN.md §4", "reid/datasets/reference/mars_info", "${TMPDIR:-/tmp}"]
    assert all(OUTSIDE.search(s) for s in bad)
    assert not any(OUTSIDE.search(s) for s in good)


def test_no_tracked_file_points_outside_the_repository():
    offenders = []
    for f in tracked_files():
        if f.startswith('docs/') or Path(f).name in NOT_SCANNED or f.endswith(BINARY):
            continue
        offenders += [f"{f}:{hit}" for hit in outside_references(ROOT / f)]
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_reference_tables_are_tracked_once():
    files = tracked_files()
    for table in TABLES:
        assert f'reid/datasets/reference/{table}' in files
        name = Path(table).name
        copies = [f for f in files if Path(f).name == name]
        assert copies == [f'reid/datasets/reference/{table}'], copies


@pytest.fixture(scope='module')
def bare_copy(tmp_path_factory):
    """The tracked files copied into tmp/x/repo, nothing beside them; .caffe and .venv are
    links to this checkout's builds (they are build outputs, not part of the repository)."""
    repo = tmp_path_factory.mktemp('x') / 'repo'
    for f in tracked_files():
        dst = repo / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst, follow_symlinks=False)
    for built in ('.caffe', '.venv'):
        os.symlink((ROOT / built).resolve(), repo / built)
    assert sorted(p.name for p in repo.parent.iterdir()) == ['repo']
    return repo


def run_pytest(repo, *args):
    """bin/python -m pytest in the copy; bin/reid-env puts the copy first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'REID_ROOT')}
    return subprocess.run([str(repo / 'bin' / 'python'), '-m', 'pytest', '-q', '-p',
                           'no:cacheprovider', *args], cwd=repo, env=env,
                          capture_output=True, text=True)


def test_reference_table_tests_pass_from_a_bare_copy(bare_copy):
    r = run_pytest(bare_copy, '-x', *USERS)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert ' passed' in r.stdout and 'skipped' not in r.stdout, r.stdout[-2000:]
    # The copy's own modules ran, not this checkout's.
    probe = subprocess.run([str(bare_copy / 'bin' / 'python'), '-c',
                            'import reid; print(reid.__file__)'], cwd=bare_copy,
                           capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()).resolve().is_relative_to(bare_copy.resolve())


@pytest.mark.parametrize('table', TABLES)
def test_a_missing_table_fails_clearly(bare_copy, table):
    path = bare_copy / 'reid' / 'datasets' / 'reference' / table
    hidden = path.with_name(path.name + '.away')
    path.rename(hidden)
    try:
        r = run_pytest(bare_copy, '--collect-only', *[u.split('::')[0] for u in USERS])
    finally:
        hidden.rename(path)
    assert r.returncode != 0
    assert f"{path.name}: reference table missing from the repository" in r.stdout + r.stderr
