"""Output folders: create them with one clear error, and delete only what the project wrote.

A folder the project creates for its own output (a synthetic dataset, a prepared dataset, a
training run, a demo's output) gets a marker file, MARKER, naming the tool that wrote it.
Replacing or clearing a folder is allowed only when the marker proves the project wrote it
(docs/DESIGN.md §4); anything else is refused with one line that names the folder and the
option that overrides the refusal. Errors on the output path itself (a file where a folder
should be, a read-only file system, a full disk) are one OutputError line naming the path.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

MARKER = '.reid-output.json'


class OutputError(ValueError):
    """An output path cannot be written or must not be replaced (message names the path)."""


def os_problem(path, e: OSError) -> str:
    """'PATH: the problem' for an OSError raised while writing PATH."""
    why = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
           errno.EROFS: 'read-only file system', errno.EACCES: 'permission denied',
           errno.EPERM: 'permission denied', errno.ENOTDIR: 'a parent is a file, not a folder',
           errno.EEXIST: 'exists and is not a folder'}.get(e.errno, e.strerror or str(e))
    return f"{path}: cannot write ({why})"


def disk_full_note(path, room: int = 1 << 20) -> str:
    """'; the disk is full (N bytes free)' when PATH's file system has less than `room` left
    (LMDB and Caffe report a full disk as an I/O error or a failed check), else ''."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return ''
    return f"; the disk is full ({free} bytes free)" if free < room else ''


def make_dir(folder, what: str = 'output folder') -> Path:
    """mkdir -p FOLDER, or OutputError naming it (a file in the way, read-only, no space)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: {what} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f'.write-test-{os.getpid()}'
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise OutputError(os_problem(folder, e)) from None
    return folder


def written_by(folder) -> str | None:
    """The tool named in FOLDER's marker, or None when the project did not write FOLDER."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())['writer']
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark(folder, writer: str) -> None:
    """Record that `writer` (a tool name) created FOLDER, so that it may later replace it."""
    (Path(folder) / MARKER).write_text(json.dumps({'writer': writer}) + '\n')


def is_empty(folder) -> bool:
    return Path(folder).is_dir() and not any(os.scandir(folder))


def claim_dir(folder, writer: str, override: str, replace: bool = False) -> Path:
    """An empty FOLDER for `writer`'s output, marked as the project's.

    An existing FOLDER is emptied only when it is empty already, carries the marker, or
    `replace` is set (the user's explicit `override` option); otherwise OutputError names
    FOLDER and `override`."""
    folder = Path(folder)
    if folder.exists() and not is_empty(folder):
        remove_owned(folder, override, force=replace)
    make_dir(folder)
    mark(folder, writer)
    return folder


def remove_owned(folder, override: str, force: bool = False) -> bool:
    """Delete FOLDER if the project wrote it (its marker) or `force`; refuse otherwise.

    Returns whether something was deleted. A checkout (.git) is never deleted."""
    folder = Path(folder)
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not an output folder; "
                          f"remove it yourself or choose another folder")
    if (folder / '.git').exists():
        raise OutputError(f"{folder}: is a git checkout; refusing to delete it")
    if written_by(folder) is None and not force:
        raise OutputError(f"{folder}: exists and was not written by this project (no {MARKER})"
                          f"; refusing to delete it. Choose another folder, or pass {override} "
                          f"to delete it and everything in it")
    try:
        shutil.rmtree(folder)
    except OSError as e:
        raise OutputError(os_problem(folder, e)) from None
    return True
