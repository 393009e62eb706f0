"""Build a prepared dataset (frame LMDB + tracklet index) from a parsed layout.

Output folder:  OUT/frames.lmdb (single-file LMDB of encoded Datums), OUT/index.json.
Both are published atomically at the end (lmdb_store.AtomicLmdbWriter); a failed or
interrupted build leaves any previous good database untouched, and re-running cleans up.

Bad input (docs/DESIGN.md §4): a listed image that is absent is an error naming the file
(unless allow_missing, then it is reported and skipped like a corrupt one); an unreadable
or corrupt image is reported (warning + index meta 'skipped') and skipped, never silently;
a tracklet left with no frames is dropped and reported; tracklets shorter than min_frames
are reported (readers loop them).
"""
from __future__ import annotations

import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..outputs import is_empty, make_dir, mark

from .index import TrackletIndex, frame_key
from .layout import LayoutError, SourceDataset, SourceTracklet
from .lmdb_store import (AtomicLmdbWriter, BuildLock, CorruptImageError, check_image_bytes,
                         make_datum, remove_stale_temporaries)

LMDB_NAME = 'frames.lmdb'
INDEX_NAME = 'index.json'


class CorruptFrameWarning(UserWarning):
    """A frame was skipped because its image could not be read or decoded."""


class ShortTrackletWarning(UserWarning):
    """A tracklet has fewer frames than the sequence length T the caller asked about."""


@dataclass
class BuildReport:
    out: Path
    num_tracklets: int = 0
    num_frames: int = 0
    skipped: list[dict] = field(default_factory=list)          # {'file', 'reason'}
    dropped_tracklets: list[str] = field(default_factory=list)  # sources left with 0 frames
    short_tracklets: list[str] = field(default_factory=list)    # sources with < min_frames
    removed_stale: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = (f"{self.out}: {self.num_tracklets} tracklets, {self.num_frames} frames; "
             f"{len(self.skipped)} corrupt/unreadable frames skipped, "
             f"{len(self.dropped_tracklets)} tracklets dropped (no readable frame), "
             f"{len(self.short_tracklets)} tracklets shorter than min_frames")
        for d in self.skipped[:20]:
            s += f"\n  skipped {d['file']}: {d['reason']}"
        if len(self.skipped) > 20:
            s += f"\n  ... and {len(self.skipped) - 20} more (see index.json meta.skipped)"
        for d in self.dropped_tracklets[:20]:
            s += f"\n  dropped tracklet {d}"
        return s


def find_missing(src: SourceDataset) -> list[str]:
    """Listed image files that do not exist (one listdir per folder, not one stat per file)."""
    listing: dict[str, set[str]] = {}
    missing = []
    for t in src.tracklets:
        for f in t.files:
            d, n = os.path.split(f)
            if d not in listing:
                try:
                    listing[d] = set(os.listdir(d))
                except (FileNotFoundError, NotADirectoryError):
                    listing[d] = set()
            if n not in listing[d]:
                missing.append(f)
    return missing


def _read_checked(path: str):
    """(bytes, shape, None) or (None, None, reason) for one image file."""
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except FileNotFoundError:
        return None, None, 'listed but absent'
    except OSError as e:
        return None, None, f'unreadable ({e.strerror or e})'
    try:
        shape = check_image_bytes(data, path)
    except CorruptImageError as e:
        return None, None, str(e).split(': ', 1)[-1]
    return data, shape, None


def build_dataset(src: SourceDataset, out: str | os.PathLike, *, min_frames: int = 1,
                  allow_missing: bool = False, workers: int = 2, progress: bool = True,
                  ) -> BuildReport:
    """Write OUT/frames.lmdb + OUT/index.json for a parsed layout. Returns a BuildReport."""
    out = Path(out)
    fresh = not out.exists() or is_empty(out)
    make_dir(out, 'prepared dataset folder')
    if fresh:                         # the project's own folder: the demo may replace it
        mark(out, 'prep')
    report = BuildReport(out=out)
    missing = find_missing(src)
    if missing and not allow_missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ''
        raise LayoutError(f"{missing[0]}: image listed but absent{more}; "
                          f"re-run with allow_missing to skip such frames")
    with BuildLock(out):
        report.removed_stale = remove_stale_temporaries(out, (LMDB_NAME, INDEX_NAME))
        firsts = [_size(t.files[0]) for t in src.tracklets if t.files]
        est = sum(firsts) // max(1, len(firsts)) * sum(t.num_frames for t in src.tracklets)
        writer = AtomicLmdbWriter(out / LMDB_NAME, out / INDEX_NAME, map_size=2 * est + (1 << 26))
        try:
            kept = _write_frames(src, writer, report, workers, progress)
            index = TrackletIndex.from_source(
                SourceDataset(src.name, src.root, kept, src.splits, src.info),
                meta={'build_id': writer.build_id, 'skipped': report.skipped,
                      'dropped_tracklets': report.dropped_tracklets})
            assert index.total_frames == writer.count
            report.num_tracklets, report.num_frames = len(index.tracklets), index.total_frames
            writer.finalize(index.to_json())
        except BaseException:
            writer.abort()
            raise
    report.short_tracklets = [t.source for t in kept if t.num_frames < min_frames]
    if report.short_tracklets:
        warnings.warn(f"{len(report.short_tracklets)} tracklets shorter than {min_frames} frames "
                      f"(first: {report.short_tracklets[0]}); readers will loop them",
                      ShortTrackletWarning, stacklevel=2)
    return report


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _write_frames(src, writer, report, workers, progress) -> list[SourceTracklet]:
    """Stream frames in index order into the writer; return the tracklets with kept frames."""
    total = sum(t.num_frames for t in src.tracklets)
    bar = tqdm(total=total, desc=f"prep {src.name}", unit='frame', disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    kept: list[SourceTracklet] = []
    g = 0
    # Threads overlap file reads and JPEG/PNG decode checks (cv2 releases the GIL);
    # map() keeps the order, so keys stay in frame order.
    pool = ThreadPoolExecutor(max(1, workers)) if workers > 1 else None
    try:
        for t in src.tracklets:
            results = pool.map(_read_checked, t.files) if pool else map(_read_checked, t.files)
            files, frames = [], []
            for path, fno, (data, shape, reason) in zip(t.files, t.frames, results):
                bar.update(1)
                if data is None:
                    report.skipped.append({'file': path, 'reason': reason})
                    warnings.warn(f"{path}: {reason}; frame skipped", CorruptFrameWarning,
                                  stacklevel=3)
                    continue
                writer.put(frame_key(g), make_datum(data, t.pid, shape))
                g += 1
                files.append(path)
                frames.append(fno)
            if not files:
                report.dropped_tracklets.append(t.source)
                warnings.warn(f"{t.source}: no readable frame; tracklet dropped",
                              CorruptFrameWarning, stacklevel=3)
                continue
            kept.append(SourceTracklet(t.pid, t.cam, files, frames, t.source, t.split, t.role,
                                       t.tag))
    finally:
        if pool:
            pool.shutdown()
        bar.close()
    writer.flush()
    return kept
