"""Frame store: one LMDB file of Caffe `Datum`s holding the original encoded image bytes.

docs/DESIGN.md §4: frames are stored encoded (JPEG/PNG bytes, `encoded: true`, label =
identity), keyed b"%08d" % global_frame (index.frame_key), so a tracklet's frames are one
cursor range. The LMDB is a single file (subdir=False) so that publishing a build is one
atomic rename: `AtomicLmdbWriter` writes `.frames.lmdb.tmp-*` next to the target, and only
`finalize()` renames it (and then the index JSON) into place. The index JSON is also stored
inside the LMDB (META_INDEX) with the same build id, so the LMDB alone is always a
self-consistent database even if a build dies between the two renames.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import cv2
import lmdb
import numpy as np

from ..outputs import OutputError, disk_full_note, os_problem
from .index import frame_key

# Meta keys sort after every b"%08d" frame key ('_' > '9'), so frame cursors never see them.
META_BUILD = b'__meta__'
META_INDEX = b'__index__'
TMP_MARK = '.tmp-'

_caffe_pb2 = None


def caffe_pb2():
    """Caffe's generated protobuf module (pycaffe); imported lazily because it loads _caffe."""
    global _caffe_pb2
    if _caffe_pb2 is None:
        from caffe.proto import caffe_pb2 as pb2
        _caffe_pb2 = pb2
    return _caffe_pb2


class CorruptImageError(ValueError):
    """An image file that cannot be decoded (message names the file and the reason)."""


class CorruptDatabaseError(ValueError):
    """A frame LMDB that is truncated or damaged (message names the file and the key)."""


# ---- images --------------------------------------------------------------------------------
def check_image_bytes(data: bytes, where: str) -> tuple[int, int, int]:
    """Decode-check encoded image bytes; return (channels, height, width) or raise.

    libjpeg happily decodes a truncated JPEG into a grey-padded image (only printing a
    warning), so the container is checked too: JPEG needs its EOI marker, PNG its IEND chunk.
    """
    if len(data) == 0:
        raise CorruptImageError(f"{where}: empty file")
    if data[:2] == b'\xff\xd8':
        if b'\xff\xd9' not in data[-64:]:
            raise CorruptImageError(f"{where}: truncated JPEG (no end-of-image marker)")
    elif data[:8] == b'\x89PNG\r\n\x1a\n':
        if b'IEND' not in data[-16:]:
            raise CorruptImageError(f"{where}: truncated PNG (no IEND chunk)")
    if data[:2] == b'\xff\xd8':
        img, warning = _decode_jpeg_warnings(data)
        if warning:
            raise CorruptImageError(f"{where}: corrupt JPEG data (libjpeg: {warning})")
    else:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CorruptImageError(f"{where}: not a decodable image")
    h, w = img.shape[:2]
    return 3, h, w


_stderr_lock = threading.Lock()
_capture = None


def _decode_jpeg_warnings(data: bytes):
    """(image, libjpeg's warning or ''). libjpeg decodes a JPEG with damaged data (garbage in
    the middle, a bad Huffman code) anyway and only prints a warning to stderr, naming no
    file; OpenCV does not pass it on. So stderr (fd 2) is redirected to a file around the
    decode, under a lock because fd 2 belongs to the whole process. Text of other threads
    caught in the window is not libjpeg's and is written back to stderr."""
    global _capture
    with _stderr_lock:
        if _capture is None:                  # one unlinked scratch file per process
            _capture, name = tempfile.mkstemp(prefix='reid-libjpeg-')
            os.unlink(name)
        os.ftruncate(_capture, 0)
        os.lseek(_capture, 0, os.SEEK_SET)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(_capture, 2)
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        text = os.pread(_capture, 1 << 16, 0).decode(errors='replace').replace('\0', '')
    ours = [l for l in text.splitlines() if re.search(r'jpeg|huffman', l, re.I)]
    other = ''.join(l for l in text.splitlines(True) if not re.search(r'jpeg|huffman', l, re.I))
    if other:
        sys.stderr.write(other)
    return img, '; '.join(l.strip() for l in ours)


def decode_image(data: bytes, where: str = 'frame') -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CorruptImageError(f"{where}: stored image cannot be decoded")
    return img


# ---- Datum ---------------------------------------------------------------------------------
def make_datum(data: bytes, label: int, shape: tuple[int, int, int]) -> bytes:
    d = caffe_pb2().Datum()
    d.channels, d.height, d.width = shape
    d.data = data
    d.label = int(label)
    d.encoded = True
    return d.SerializeToString()


def parse_proto(message, data: bytes, fail):
    """`message` parsed from `data`; protobuf's bare DecodeError names nothing, so fail(reason)
    builds the exception raised instead (naming the file)."""
    from google.protobuf.message import DecodeError
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise fail(str(e)) from None
    return message


def parse_datum(buf: bytes, where: str = 'Datum'):
    """A Caffe Datum; CorruptDatabaseError naming `where` (file and key) if it does not parse."""
    return parse_proto(caffe_pb2().Datum(), buf, lambda why: CorruptDatabaseError(
        f"{where}: stored Datum cannot be parsed ({why}); the database is damaged, prepare "
        f"it again"))


def _is_frame_key(key: bytes) -> bool:
    return key[:1].isdigit()


# ---- writer --------------------------------------------------------------------------------
def remove_stale_temporaries(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Delete what an interrupted earlier build left (call with the build lock held)."""
    removed = []
    for e in os.scandir(folder):
        if any(e.name.startswith('.' + n + TMP_MARK) for n in names):
            os.remove(e.path)
            removed.append(e.name)
    return removed


class BuildLock:
    """Exclusive lock on an output folder so two builds never interleave their renames.

    The lock file (.build.lock) exists only while a build runs: it is removed before the
    lock is released, and a build that locked a file someone removed meanwhile (a stale
    inode) retries on the current one, so removing it never lets two builds in at once."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / '.build.lock'
        self.fd = None

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RuntimeError(f"{self.path}: another build of this dataset is running"
                                   ) from None
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self.fd = fd
                return self
            os.close(fd)                  # the previous holder removed this file: retry

    def __exit__(self, *exc):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class AtomicLmdbWriter:
    """Write frames into a temporary LMDB file; `finalize` renames it (and the index) into place.

    Until finalize() the previous database at `path` is untouched; on any exception the
    temporary files are deleted. A hard kill leaves `.<name>.tmp-*` files, which the next
    build removes (remove_stale_temporaries).
    """

    def __init__(self, path: str | os.PathLike, index_path: str | os.PathLike,
                 map_size: int = 1 << 26, batch: int = 1024):
        self.path, self.index_path = Path(path), Path(index_path)
        self.build_id = uuid.uuid4().hex
        tag = f"{TMP_MARK}{os.getpid()}-{self.build_id[:8]}"
        self.tmp = self.path.with_name('.' + self.path.name + tag)
        self.tmp_index = self.index_path.with_name('.' + self.index_path.name + tag)
        self.map_size = max(int(map_size), 1 << 20)
        self.env = lmdb.open(str(self.tmp), subdir=False, map_size=self.map_size,
                             sync=False, metasync=False, lock=True, readahead=False,
                             meminit=False, max_dbs=0)
        self.pending: list[tuple[bytes, bytes]] = []
        self.batch = batch
        self.count = 0

    def put(self, key: bytes, value: bytes) -> None:
        self.pending.append((key, value))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        while self.pending:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in self.pending:
                        # Frame keys arrive in ascending order: append mode is the fast path
                        # (and refuses, returning False, a key that is out of order).
                        if not txn.put(k, v, append=_is_frame_key(k)):
                            raise ValueError(f"{self.tmp}: key {k!r} out of order")
            except lmdb.MapFullError:
                self.map_size *= 2                               # txn aborted; grow and retry
                self.env.set_mapsize(self.map_size)
                continue
            except lmdb.Error as e:                              # e.g. the disk is full
                raise OutputError(f"{self.path}: cannot write the frame database "
                                  f"({e}{disk_full_note(self.path)})") from None
            self.count += sum(1 for k, _ in self.pending if _is_frame_key(k))
            self.pending = []

    def finalize(self, index_json: str) -> None:
        """Store build meta + index, sync, then publish: rename LMDB, then index JSON."""
        meta = json.dumps({'build_id': self.build_id, 'num_frames': self.count}).encode()
        self.put(META_BUILD, meta)
        self.put(META_INDEX, index_json.encode())
        self.flush()
        try:
            self.env.sync(True)
        except lmdb.Error as e:
            raise OutputError(f"{self.path}: cannot write the frame database "
                              f"({e}{disk_full_note(self.path)})") from None
        self.env.close()
        self.env = None
        self._remove(str(self.tmp) + '-lock')
        try:
            with open(self.tmp_index, 'w', encoding='utf-8') as f:
                f.write(index_json)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise OutputError(os_problem(self.index_path, e)) from None
        os.replace(self.tmp, self.path)
        os.replace(self.tmp_index, self.index_path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
        for p in (self.tmp, str(self.tmp) + '-lock', self.tmp_index):
            self._remove(p)

    @staticmethod
    def _remove(p) -> None:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- reader --------------------------------------------------------------------------------
class LmdbFrames:
    """Read-only access to a frame LMDB (open one per process; never share across fork)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: frame LMDB not found")
        try:
            self.env = lmdb.open(str(self.path), subdir=False, readonly=True, lock=False,
                                 readahead=False, max_readers=512)
        except lmdb.Error as e:
            raise CorruptDatabaseError(f"{self.path}: not a readable LMDB ({e})") from e
        self._check_size()
        self.txn = self.env.begin(buffers=False)

    def _check_size(self) -> None:
        """A partial copy ends before the last page the LMDB's meta page names; reading it
        through the memory map would kill the process with SIGBUS, so refuse it here."""
        need = (self.env.info()['last_pgno'] + 1) * self.env.stat()['psize']
        have = self.path.stat().st_size
        if have < need:
            self.env.close()
            self.env = None
            raise CorruptDatabaseError(f"{self.path}: truncated ({have} bytes; its last page "
                                       f"ends at byte {need}); copy or prepare it again")

    def key_name(self, global_frame: int) -> str:
        return f"{self.path} key {frame_key(global_frame).decode()}"

    def meta(self) -> dict:
        raw = self.txn.get(META_BUILD)
        if raw is None:
            raise ValueError(f"{self.path}: no build meta (not written by reid.datasets?)")
        return json.loads(raw)

    def num_frames(self) -> int:
        """Frame entries in the LMDB (every key but the build meta and the embedded index)."""
        return self.env.stat()['entries'] - sum(
            self.txn.get(k) is not None for k in (META_BUILD, META_INDEX))

    def embedded_index(self) -> bytes | None:
        return self.txn.get(META_INDEX)

    def get(self, global_frame: int) -> bytes:
        try:
            raw = self.txn.get(frame_key(global_frame))
        except lmdb.Error as e:
            raise CorruptDatabaseError(f"{self.key_name(global_frame)}: {e}") from None
        if raw is None:
            raise KeyError(f"{self.path}: frame key {frame_key(global_frame)!r} missing")
        return raw

    def get_range(self, start: int, count: int) -> list[bytes]:
        """`count` consecutive frames from global frame `start`: one cursor walk."""
        out = []
        try:
            with self.txn.cursor() as cur:
                if not cur.set_key(frame_key(start)):
                    raise KeyError(f"{self.path}: frame key {frame_key(start)!r} missing")
                for _, v in cur:
                    out.append(v)
                    if len(out) == count:
                        break
        except lmdb.Error as e:
            raise CorruptDatabaseError(f"{self.key_name(start + len(out))}: {e}") from None
        if len(out) != count:
            raise KeyError(f"{self.path}: only {len(out)} of {count} frames from {start}")
        return out

    def close(self) -> None:
        if self.env is not None:
            self.txn.abort()
            self.env.close()
            self.env = None
