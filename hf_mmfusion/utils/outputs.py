"""Output folders of the commands: which ones a command may write into, and writing there without losing files.

A command writes only into a folder it creates, or into one that carries its marker file from an earlier run.
The marker (a hidden JSON file, one name per command) lists the entries the command wrote there, so that
replacing an earlier output removes exactly those and never a file the user added. A folder is never both a
command's input and its output. A run holds a lock file with its process id for as long as it writes, so a
second run into the same folder stops before it touches anything. What a run writes first goes into a
locked scratch folder, so one a killed run left is removed by the next run. The marker format and the
scratch folders themselves live in :mod:`hf_mmfusion.ownership`, which the converters use too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from .ownership import (  # noqa: F401  (markers and scratch folders are part of this module's interface)
    LOCK_NAME,
    SCRATCH_LOCK,
    STAGING_PATTERN,
    STAGING_PREFIX,
    ScratchDirectory,
    creation_mode,
    is_bookkeeping,
    is_scratch,
    record_written,
    remove_abandoned_scratch,
    scratch_entries,
    written_entries,
)
from .text import listed


def foreign_entries(
    folder: str | os.PathLike, marker: str, also_ours: Callable[[Path], bool] | None = None
) -> list[str]:
    """Entries of ``folder`` that its marker does not record (all of them when it has no marker), except the
    marker and the lock; ``also_ours(path)`` may accept more (such as a trainer's interrupted checkpoint)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    written = written_entries(folder, marker) or set()
    return sorted(
        child.name
        for child in folder.iterdir()
        if not is_bookkeeping(child.name, marker)
        and child.name not in written
        and not (also_ours is not None and also_ours(child))
    )


def check_not_input(output: str | os.PathLike, inputs: Iterable, flag: str = "--output_dir") -> None:
    """Refuse an output folder that is one of the command's local inputs or lies inside one. (An input inside
    the output folder is safe: the commands replace only entries their marker records.)"""
    out = Path(output).resolve()
    for item in inputs:
        if item in (None, "") or not os.path.exists(item):
            continue
        path = Path(item).resolve()
        if path == out or path in out.parents:
            raise ValueError(
                f"{flag} {output} overlaps the input {str(item)!r}; a command never writes into its own input: "
                "choose an output folder outside it"
            )


def check_output_dir(
    folder: str | os.PathLike, marker: str, command: str, inputs: Iterable = (), flag: str = "--output_dir"
) -> Path:
    """``folder`` once ``command`` may write into it: absent, empty, or carrying ``marker``; else a ``ValueError``
    that names the files it would put at risk. Nothing is created here."""
    folder = Path(folder)
    check_not_input(folder, inputs, flag)
    if folder.is_symlink() and not folder.is_dir():
        raise ValueError(f"{flag} {folder} is a broken symbolic link; choose a folder")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {folder} is a file, not a folder")
    if not folder.exists():
        return folder
    others = [c.name for c in folder.iterdir() if not is_bookkeeping(c.name, marker)]
    if others and written_entries(folder, marker) is None:
        raise ValueError(
            f"{flag} {folder} holds files that hf-mmfusion {command} did not write ({listed(sorted(others))}); "
            "it never writes over them: choose an empty or new folder"
        )
    return folder


def claim_output_dir(folder: str | os.PathLike, marker: str, names: Iterable[str] = ()) -> Path:
    """Create ``folder`` (when absent) and record ``names`` in its marker before anything is written there, so
    that an interrupted run still leaves a folder its next run recognises as its own."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record_written(folder, marker, names)
    return folder


def remove_written(folder: str | os.PathLike, marker: str, names: Iterable[str]) -> None:
    """Delete ``names`` under ``folder``; each must be recorded in its marker or be a staging folder left by an
    interrupted save (a ``ValueError`` otherwise)."""
    folder = Path(folder)
    written = written_entries(folder, marker) or set()
    for name in names:
        ours = name in written or (name.startswith(STAGING_PREFIX) and (folder / name).is_dir())
        if not ours or "/" in name or name in ("", ".", ".."):
            raise ValueError(f"refusing to delete {folder / name}: it was not written by this command")
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _lock_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold ``folder``'s lock file for the block, with this process's id in it.

    The lock is an ``flock`` on the file: the kernel releases it when its process ends, however it ends, so
    a lock left by a killed run never blocks the next one, and a held lock always belongs to a live process.
    A second run fails at once with a ``ValueError`` naming the process that holds it.
    """
    import fcntl

    folder = Path(folder)
    path = folder / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115  (held until the block ends)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _lock_pid(path)
            holder = f" (process {pid})" if pid else ""
            raise ValueError(
                f"another {what} run is writing to {folder}{holder}; wait for it to finish or choose another "
                "--output_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield folder
    finally:
        handle.close()


def lock_holder(folder: str | os.PathLike) -> int | None:
    """The id of the live process that holds ``folder``'s lock (0 when it wrote none), or ``None``."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _lock_pid(path) or 0
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike, last: Sequence[str] = ()) -> Iterator[Path]:
    """A hidden staging folder inside ``folder`` for the block to write into; afterwards each entry moves into
    ``folder`` by rename (``last`` ones at the end), so ``folder`` never holds half of what the block wrote.

    On an error in the block the staging folder is removed and ``folder`` is as before; one a killed run left
    is removed by the next call. Entries of ``folder`` with the same names are replaced: the caller makes sure
    they are its own. List what was staged with :func:`scratch_entries` (it leaves out the lock file).
    """
    folder = Path(folder)
    remove_abandoned_scratch(folder, re.escape(STAGING_PREFIX) + ".+")
    with ScratchDirectory(folder, STAGING_PREFIX) as scratch:
        staging = scratch.path
        yield staging
        names = scratch.entries()
        for name in [n for n in names if n not in last] + [n for n in last if n in names]:
            target = folder / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(staging / name, target)
