"""What belongs together: weights files, solverstates, their snapshots and their dataset.

Caffe's own failure modes here are silent or unreadable (docs/DESIGN.md §3): `-weights`
with an empty file trains from random initialisation, a truncated solverstate is a bare
"DecodeError", a solverstate stores its caffemodel's path as written (so a copied run
folder resumes from the original run's weights), and nothing ties a snapshot to the data
it was trained on. This module checks each before Caffe runs:

* check_weights_file: a `-weights` file exists, is not empty and parses (binary proto or
  HDF5), else one IntegrityError line naming it.
* read_solverstate: a solverstate that parses, else one line naming it.
* relocate_learned_net: the solverstate's caffemodel is the one beside it (rewritten when a
  run folder was copied or moved).
* snapshot records (`<solverstate>.json`, written by the run machinery after each complete
  snapshot): the sizes and SHA-256 of both files and the dataset's identity, so that a
  truncated snapshot is never resumed and a rebuilt dataset is detected (dataset_identity).

`python -m reid.integrity --weights W --snapshot S --solver X` runs the checks for bin/caffe.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

RECORD_SUFFIX = '.json'
SEQUENCE_LAYER = 'python_layers.sequence_data'
ALLOW_ENV = 'REID_RESUME_ANY_DATASET'      # =1: a changed dataset is a warning, not an error


class IntegrityError(ValueError):
    """A weights file, solverstate, snapshot or dataset that does not belong (names the file)."""


def _pb2():
    from reid.datasets.lmdb_store import caffe_pb2
    return caffe_pb2()


def _parse(path, message, what):
    from reid.datasets.lmdb_store import parse_proto
    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"{path}: {what} not found")
    data = path.read_bytes()
    if not data:
        raise IntegrityError(f"{path}: {what} is empty (0 bytes)")
    return parse_proto(message, data, lambda why: IntegrityError(
        f"{path}: not a readable {what} (truncated or another file: {why})"))


# ---- weights and solverstates -----------------------------------------------------------------
def check_weights_file(path) -> None:
    """A `-weights` file Caffe can load: a binary NetParameter with layers, or HDF5 (.h5)."""
    path = Path(path)
    if str(path).endswith('.h5'):
        import h5py
        if not path.is_file() or path.stat().st_size == 0:
            why = 'is empty (0 bytes)' if path.is_file() else 'not found'
            raise IntegrityError(f"{path}: weights file (HDF5) {why}")
        try:
            with h5py.File(path, 'r') as f:
                if 'data' not in f:
                    raise IntegrityError(f"{path}: HDF5 file without Caffe's 'data' group")
        except OSError as e:
            raise IntegrityError(f"{path}: not a readable HDF5 weights file ({e})") from None
        return
    net = _parse(path, _pb2().NetParameter(), 'weights file (.caffemodel)')
    if not any(layer.blobs for layer in net.layer):
        raise IntegrityError(f"{path}: a net description without weights, not a .caffemodel")


def read_solverstate(path):
    """Caffe's SolverState of a `.solverstate` file, or IntegrityError naming the file."""
    return _parse(path, _pb2().SolverState(), 'solverstate')


def sibling_caffemodel(solverstate) -> Path:
    """X_iter_N.caffemodel beside X_iter_N.solverstate: the weights of the same snapshot."""
    s = Path(solverstate)
    return s.with_name(s.name[:-len('.solverstate')] + '.caffemodel')


def relocate_learned_net(solverstate, cwd=None) -> str | None:
    """Point the solverstate at the caffemodel beside it.

    Caffe resumes from the path stored in `learned_net` (absolute, or relative to the
    working directory): after a run folder is copied that is the original run's weights,
    after a move a missing file. The solverstate (the project's own snapshot) is rewritten
    atomically to the sibling's absolute path. Returns a note when rewritten, else None."""
    state = read_solverstate(solverstate)
    sibling = sibling_caffemodel(solverstate)
    if not sibling.is_file():
        raise IntegrityError(f"{solverstate}: its weights {sibling.name} are not beside it; "
                             f"copy the .caffemodel of the same iteration next to it")
    stored = Path(cwd or os.getcwd()) / state.learned_net if state.learned_net else None
    if stored is not None and stored.is_file() and os.path.samefile(stored, sibling):
        return None
    state.learned_net = str(sibling.resolve())
    tmp = Path(str(solverstate) + f'.tmp-{os.getpid()}')
    try:
        tmp.write_bytes(state.SerializeToString())
        os.replace(tmp, solverstate)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise IntegrityError(f"{solverstate}: stores weights {stored} instead of {sibling.name} "
                             f"beside it, and cannot be corrected ({e.strerror}); copy the run "
                             f"folder somewhere writable") from None
    rec = record_path(solverstate)
    if rec.is_file():                 # the record describes the corrected file from now on
        facts = json.loads(rec.read_text())
        _write_json(rec, dict(facts, solverstate=_file_facts(solverstate)))
    return f"{solverstate}: weights path {stored} -> {sibling} (the run folder was copied or moved)"


# ---- dataset identity and snapshot records ----------------------------------------------------
def dataset_identity(folder) -> dict:
    """What makes a prepared dataset the same data: a hash of its index (tracklets, frames,
    splits; not the build id, so re-preparing the same source is the same data) and the
    frame LMDB's page statistics (they change when any stored image changes size)."""
    from reid.datasets import open_dataset
    with open_dataset(folder) as ds:
        index = json.loads(ds.index.to_json())
        index.get('meta', {}).pop('build_id', None)
        stat = ds.store.env.stat()
    digest = hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()
    return {'index_sha256': digest, 'lmdb': {k: stat[k] for k in (
        'entries', 'leaf_pages', 'branch_pages', 'overflow_pages', 'depth')}}


def data_sources(solver, cwd=None) -> list[str]:
    """The dataset folders of the sequence data layers of a solver's train net ([] when the
    solver or net cannot be read: Caffe itself then says what is wrong with them)."""
    import yaml
    from google.protobuf import text_format
    base = Path(cwd or os.getcwd())
    try:
        sp = text_format.Parse(Path(solver).read_text(), _pb2().SolverParameter())
        net_file = sp.train_net or sp.net
        net = text_format.Parse((base / net_file).read_text(), _pb2().NetParameter())
    except (OSError, text_format.ParseError):
        return []
    out = []
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.module == SEQUENCE_LAYER:
            p = yaml.safe_load(layer.python_param.param_str or '') or {}
            out.append(str(base / p.get('source', '')))
    return out


def _file_facts(path) -> dict:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return {'file': Path(path).name, 'bytes': os.path.getsize(path), 'sha256': h.hexdigest()}


def record_path(solverstate) -> Path:
    return Path(str(solverstate) + RECORD_SUFFIX)


def write_record(solverstate, datasets: dict) -> Path:
    """After a complete snapshot: `<solverstate>.json` with both files' facts and the
    identity of each dataset ({folder: dataset_identity})."""
    state = read_solverstate(solverstate)
    rec = {'iteration': int(state.iter), 'solverstate': _file_facts(solverstate),
           'caffemodel': _file_facts(sibling_caffemodel(solverstate)), 'datasets': datasets}
    return _write_json(record_path(solverstate), rec)


def _write_json(path: Path, obj) -> Path:
    """Write atomically (a crash or a full disk leaves the old file or none, never half)."""
    tmp = path.with_name(path.name + '.tmp')
    try:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path


class SnapshotWatcher:
    """Follows a `caffe train` log and records each snapshot once it is complete.

    Caffe logs "Snapshotting to binary proto file M" before writing the caffemodel and
    "Snapshotting solver state to binary proto file S" before the solverstate; the next log
    line (or a clean exit) means both are written, and `<S>.json` is recorded. If Caffe
    dies in between (a full disk), `discard_partial` deletes the files this run was writing,
    so a later resume never picks up a truncated snapshot."""

    MODEL = 'Snapshotting to binary proto file '
    STATE = 'Snapshotting solver state to binary proto file '

    def __init__(self, datasets: dict, cwd=None):
        self.datasets, self.cwd = datasets, Path(cwd or os.getcwd())
        self.writing: list[Path] = []      # files of the snapshot in progress
        self.state_logged = False
        self.recorded: list[Path] = []     # solverstates of complete snapshots
        self.unwritten: list[Path] = []    # ... whose record could not be written yet

    def line(self, text: str) -> None:
        for mark in (self.MODEL, self.STATE):
            if mark in text:
                if mark == self.MODEL:
                    self.writing = []
                self.writing.append(self.cwd / text.split(mark, 1)[1].strip())
                self.state_logged = mark == self.STATE
                return
        if self.state_logged and text.startswith('I'):    # Caffe went on (glog INFO), not
            self.finish()                                 # a fatal error ('F...')

    def finish(self) -> None:
        """The snapshot in progress is complete: record it."""
        if self.state_logged and self.writing:
            self.recorded.append(self.writing[-1])
            self.unwritten.append(self.writing[-1])
            self.write_records()
        self.writing, self.state_logged = [], False

    def write_records(self) -> None:
        """Write the records not written yet. Caffe may already be filling the disk with the
        next snapshot: a record that does not fit now is written after the run, once the
        partial snapshot is deleted (run.train calls this again)."""
        while self.unwritten:
            try:
                write_record(self.unwritten[0], self.datasets)
            except OSError:
                return
            self.unwritten.pop(0)

    def last_state(self) -> str | None:
        """The solverstate of the newest complete snapshot of this run, if any."""
        return str(self.recorded[-1]) if self.recorded else None

    def discard_partial(self) -> list[str]:
        """After a failed run: delete the snapshot files it was writing; returns them."""
        gone = [str(p) for p in self.writing if p.is_file()]
        for p in self.writing:
            p.unlink(missing_ok=True)
        self.writing, self.state_logged = [], False
        return gone


def run_datasets(solver, cwd=None) -> dict:
    """{folder: dataset_identity} of the datasets a solver's train net reads."""
    return {str(Path(f).resolve()): dataset_identity(f) for f in data_sources(solver, cwd)
            if Path(f).is_dir()}


def check_snapshot(solverstate) -> dict | None:
    """The snapshot's record after checking both files against it (None if it has none)."""
    path = record_path(solverstate)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    for key, file in (('solverstate', Path(solverstate)),
                      ('caffemodel', sibling_caffemodel(solverstate))):
        want = rec[key]['bytes']
        have = file.stat().st_size if file.is_file() else None
        if have != want:
            raise IntegrityError(f"{file}: {have} bytes, but the snapshot was {want} bytes "
                                 f"when written (truncated or replaced); resume from an "
                                 f"earlier snapshot")
    return rec


def latest_resumable(states: dict) -> tuple[int | None, list[str]]:
    """The newest of {iteration: solverstate} whose snapshot is complete (its record's
    sizes match; without a record, both files parse), and notes on the newer ones skipped."""
    notes = []
    for it in sorted(states, reverse=True):
        try:
            if check_snapshot(states[it]) is None:
                read_solverstate(states[it])
                check_weights_file(sibling_caffemodel(states[it]))
            return it, notes
        except IntegrityError as e:
            notes.append(f"skipping the snapshot of iteration {it}: {e}")
    return None, notes


def check_dataset(rec: dict, folder) -> str | None:
    """Refuse (or, with REID_RESUME_ANY_DATASET=1, warn) when the dataset a snapshot was
    trained on is not the one it would resume on. Returns a warning or None."""
    before = rec.get('datasets', {})
    if not before:
        return None
    now = dataset_identity(folder)
    want = before.get(str(Path(folder).resolve()))
    if (now == want) if want is not None else now in before.values():
        return None
    msg = (f"{folder}: not the dataset this snapshot was trained on (it was rebuilt or "
           f"replaced since: index or LMDB differ); a resumed run would not see the "
           f"batches of an uninterrupted one")
    if os.environ.get(ALLOW_ENV) == '1':
        return 'warning: ' + msg
    raise IntegrityError(msg + f". Start a fresh run, or set {ALLOW_ENV}=1 to resume anyway")


def check_resume(solverstate, solver=None, cwd=None) -> list[str]:
    """Every check before `caffe train -snapshot`: returns notes to print; raises otherwise."""
    read_solverstate(solverstate)
    notes = []
    rec = check_snapshot(solverstate)
    if rec is None:
        notes.append(f"note: {solverstate} has no snapshot record ({record_path(solverstate).name}"
                     f"); its completeness and dataset are not checked")
    elif solver:
        for folder in data_sources(solver, cwd):
            notes.append(check_dataset(rec, folder))
    notes.append(relocate_learned_net(solverstate, cwd))
    check_weights_file(sibling_caffemodel(solverstate))
    return [n for n in notes if n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="bin/caffe's checks of -weights and -snapshot")
    ap.add_argument('--weights', help="Caffe's -weights (comma-separated list)")
    ap.add_argument('--snapshot')
    ap.add_argument('--solver')
    a = ap.parse_args(argv)
    try:
        for w in filter(None, (a.weights or '').split(',')):
            check_weights_file(w)
        if a.snapshot:
            for note in check_resume(a.snapshot, a.solver):
                print(note, file=sys.stderr)
    except IntegrityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
