"""Atomic replacement of files and directories: a reader sees the old version or the new one.

Every output file is written to a hidden temporary file beside it and renamed over it only once
it is complete (:func:`write_file`, :func:`write_text`, :func:`write_json`); a process killed
mid-write leaves the previous file intact (and at worst a ``.<name>.<pid>.tmp`` file beside it).
A directory of outputs is built in a staging directory beside its destination and swapped in as
a whole once complete (:func:`replacing_dir`): the previous directory is deleted only after the
new one is in its place.

This module depends on nothing else of bailclio, so every layer may use it.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_text(d / "a.txt", "one")
    >>> with replacing_dir(d / "out") as staging:
    ...     write_text(staging / "b.txt", "two")
    >>> (d / "out" / "b.txt").read_text()
    'two'
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _temp_beside(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def through_link(path: Path) -> Path:
    """Where writing ``path`` lands: the target of a symbolic link (so the link is written
    through, never replaced by a file), else ``path`` itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def write_file(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then rename it over
    ``path``. On any failure the temporary file is removed and ``path`` is untouched. A symbolic
    link at ``path`` is written through (its target is replaced, the link stays)."""
    dest = through_link(Path(path))
    tmp = _temp_beside(dest, "tmp")
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _raise_for(exc, dest)
        raise


def os_error_text(exc: OSError) -> tuple[int | None, str]:
    """The error number and its words, also for errors raised by libraries (polars, pyarrow) that
    give only a message such as "No space left on device (os error 28)"."""
    number = exc.errno
    if number is None:
        found = re.search(r"os error (\d+)|errno[ =:]*(\d+)", str(exc), re.I)
        number = int(found.group(1) or found.group(2)) if found else None
    if number is not None:
        return number, os.strerror(number)
    return None, (str(exc).splitlines() or ["input/output error"])[0]


def _raise_for(exc: BaseException, dest: Path) -> None:
    """Name the destination, not the temporary file, in an operating-system error."""
    if isinstance(exc, OSError) and not isinstance(exc, Busy):
        number, words = os_error_text(exc)
        raise OSError(number, f"cannot write: {words}", str(dest)) from exc


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    write_file(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def write_bytes(path: str | Path, data: bytes) -> None:
    write_file(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    platform or the file system cannot."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def swap_in(staging: Path, dest: Path) -> None:
    """Put the complete directory ``staging`` at ``dest``; the directory that was at ``dest``
    (if any) is deleted only once the new one is in place."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    if _exchange(staging, dest):  # staging now holds the previous directory
        shutil.rmtree(staging, ignore_errors=True)
        return
    old = _temp_beside(dest, "old")
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def make_staging_dir(dest: str | Path) -> Path:
    """A new empty hidden directory beside ``dest`` (same file system, so the swap is a rename)."""
    d = Path(dest)
    staging = _temp_beside(d, "partial")
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        _raise_for(exc, d)
        raise
    return staging


@contextlib.contextmanager
def replacing_dir(dest: str | Path, before_swap: Callable[[], Any] | None = None) -> Iterator[Path]:
    """Yield a staging directory beside ``dest``; when the block completes it replaces ``dest``
    (after ``before_swap()``, which may raise to keep ``dest``), when it raises (or the process
    dies) ``dest`` is left as it was and the staging is removed. A symbolic link at ``dest`` is
    written through: its target is replaced, the link stays."""
    d = through_link(Path(dest))
    staging = make_staging_dir(d)
    try:
        yield staging
        if before_swap is not None:
            before_swap()
        swap_in(staging, d)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def stale_temporaries(dest: str | Path) -> list[Path]:
    """Leftovers of killed writers beside ``dest`` (staging dirs, temp files) whose process is
    gone."""
    d = Path(dest)
    out = []
    for p in d.parent.glob(f".{d.name}.*"):
        pid = p.name[len(d.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            out.append(p)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(dest: str | Path) -> None:
    """Remove what killed writers left beside ``dest``."""
    for p in stale_temporaries(dest):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def write_files(writers: dict[Path, Callable[[Path], Any]]) -> None:
    """Write several files as one change: every file is written to its temporary name first,
    then all are renamed into place (in the order given: put the file that marks a complete
    output last). A failure while writing leaves every destination untouched."""
    temps: list[tuple[Path, Path]] = []
    try:
        for dest, write in writers.items():
            tmp = _temp_beside(Path(dest), "tmp")
            temps.append((tmp, Path(dest)))
            write(tmp)
        for tmp, dest in temps:
            os.replace(tmp, dest)
    except BaseException as exc:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if temps:
            _raise_for(exc, temps[-1][1])
        raise


class Busy(OSError):
    """Another process holds the lock on a destination."""


def lock_path(dest: str | Path) -> Path:
    d = Path(dest)
    return d.with_name(f".{d.name}.lock")


@contextlib.contextmanager
def locked(dest: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dest`` (a ``.<name>.lock`` file beside it) for the block; raise
    :class:`Busy` at once when another process holds it. The lock file is removed on release."""
    path = lock_path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"another process is writing {dest} (lock {path})") from None
        try:  # the file may have been removed by the holder just before we locked it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
