"""Where a command may write, checked before any work is done.

Every command that writes a file or a folder asks here first. An output is refused (one line,
exit status 2, nothing written) when it is:

* the input itself, or a file of an input run directory (``export --out RUNDIR/taxonomy.json``);
* a file a run directory or a ``detect`` output folder owns, in any run directory;
* a device, a FIFO, a socket or a folder where a file is expected (``--out /dev/stdout``);
* below a folder that cannot be written.

A symbolic link as the output is written through: its target is replaced and the link stays
(:func:`bailclio.atomic.through_link`). Output folders are checked by
:func:`bailclio.rundir.check_out_dir` (what ``--force`` may replace) and, here, against the inputs:
a run directory is never replaced by a run whose input lives inside it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from bailclio import atomic, rundir
from bailclio.errors import UserError


def kind_of(path: Path) -> str:
    """What a path that is not a regular file is, in words."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "unreadable"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


def _owner(target: Path) -> str | None:
    """The run directory or detect folder whose own file ``target`` is, if any."""
    parent = target.parent
    if target.name in rundir.RUN_FILES and rundir.is_run_dir(parent):
        return f"a file of the run directory {parent}"
    if target.name in rundir.DETECT_FILES and rundir.is_detect_dir(parent):
        return f"a file of the detect output folder {parent}"
    return None


def _writable_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable(path: Path, shown: Path) -> None:
    """``path`` (a file or folder to be created or replaced) can be written: its nearest existing
    folder is a folder we may write in."""
    base = _writable_ancestor(path.parent)
    if not base.is_dir():
        raise UserError(f"{shown}: cannot write there: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{shown}: cannot write there: permission denied on {base}")


def check_output_file(out: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """The path a command will write ``out`` to, once it is known to be safe (see the module
    docstring); ``inputs`` are the files and run directories the command reads."""
    shown = Path(out)
    if shown.exists() and not shown.is_file():  # followed through links: /dev/stdout is a pipe
        raise UserError(f"{shown}: is {kind_of(shown)}; the output must be a regular file")
    target = atomic.through_link(shown)
    if target.exists() and not target.is_file():
        raise UserError(f"{shown}: is {kind_of(target)}; the output must be a regular file")
    for item in inputs:
        source = Path(item)
        if _same(target, source):
            raise UserError(f"{shown}: is the input {source}; choose another output")
    owner = _owner(target)
    if owner is not None:
        raise UserError(f"{shown}: is {owner}; writing it would damage that run; choose another output")
    check_writable(target, shown)
    return target


def check_output_dir(out: str | Path, force: bool, inputs: Iterable[str | Path] = ()) -> Path:
    """The folder a command will build its outputs in, once it is safe to replace (with
    ``force``) or create: :func:`bailclio.rundir.check_out_dir`, and no input lives inside it."""
    shown = Path(out)
    target = rundir.check_out_dir(shown, force)
    for item in inputs:
        source = Path(item)
        if target.exists() and _inside(source, target):
            raise UserError(
                f"{shown}: holds the input {source}; replacing it would delete the input; "
                "choose another output folder"
            )
    check_writable(target, shown)
    return target


def check_detect_dir(out: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """A folder ``detect`` may write into: absent, empty, a previous detect output folder, or one
    holding only detect's own files (an interrupted detect); never a run directory or a folder
    with other files, whose names detect's outputs could take."""
    shown = Path(out)
    target = atomic.through_link(shown)
    if target.exists() and not target.is_dir():
        raise UserError(f"{shown}: exists and is not a directory")
    if target.exists() and not rundir.is_detect_dir(target):
        extra = rundir.foreign_files(target, rundir.DETECT_FILES)
        if extra or rundir.is_run_dir(target):
            what = "a run directory" if rundir.is_run_dir(target) else f"a folder holding {extra[0]!r}"
            raise UserError(f"{shown}: is {what}, not a detect output folder; choose an empty or new folder")
    for item in inputs:
        if _same(target / rundir.BAILS, Path(item)) or _same(target / rundir.DETECTIONS, Path(item)):
            raise UserError(f"{shown}: holds the input {item}; choose another output folder")
    check_writable(target, shown)
    return target
