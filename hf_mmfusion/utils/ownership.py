"""What this package's commands can prove they wrote: marker files and scratch folders.

A marker is a hidden JSON file, one name per command (``{"written": [entry names]}``), in a folder the
command writes into; it lists the entries the command wrote there, so that a later run replaces exactly
those and never a file the user added.

A scratch folder is where a command writes before its result moves into place. It carries a lock file
that its process holds (``flock``) for as long as it lives; the kernel drops the lock when the process
dies, however it dies. So a later run can tell an abandoned folder (lock file present, lock free) from a
live run's (lock held) and from a look-alike the user made (no lock file), and removes only the first kind.

Only the standard library is used here, so that every layer can build on it: the converters (``data/``)
as well as the commands (:mod:`hf_mmfusion.outputs` holds the commands' rules for their output folders).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

LOCK_NAME = ".hf_mmfusion.lock"
# Prefix of the folder a save writes into before renaming its files into place; one left by a killed run
# belongs to that run.
STAGING_PREFIX = ".staging-"
_WRITTEN_KEY = "written"
# Read as well: explain's markers listed their files under this key before all commands shared one format.
_EARLIER_KEYS = ("files",)


def is_bookkeeping(name: str, marker: str) -> bool:
    """Whether ``name`` is one of the files a command keeps beside its entries (marker, lock, staging)."""
    return name in (marker, LOCK_NAME) or name.startswith((STAGING_PREFIX, f"{marker}.tmp-"))


def _plain_name(name, marker: str) -> bool:
    # A marker never points outside its folder, nor at the bookkeeping files themselves.
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and not is_bookkeeping(name, marker)


def written_entries(folder: str | os.PathLike, marker: str) -> set[str] | None:
    """The names ``marker`` in ``folder`` records as written by its command; ``None`` when there is no marker.

    An empty or unreadable marker file (written before markers listed their entries) records nothing; names
    that are not plain entries of ``folder`` are ignored.
    """
    path = Path(folder) / marker
    if path.is_symlink() or not path.is_file() or Path(folder).is_symlink():
        return None
    text = path.read_text().strip()
    if not text:
        return set()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return set()
    names = []
    if isinstance(payload, dict):
        key = next((k for k in (_WRITTEN_KEY, *_EARLIER_KEYS) if k in payload), _WRITTEN_KEY)
        names = payload.get(key, [])
    if not isinstance(names, list):
        return set()
    return {name for name in names if _plain_name(name, marker)}


def record_written(folder: str | os.PathLike, marker: str, names: Iterable[str] = (), reset: bool = False) -> None:
    """Add ``names`` (entries directly under ``folder``) to its marker, creating the marker when absent.

    The marker is replaced atomically, so an interrupted write leaves the previous list."""
    folder = Path(folder)
    known = set() if reset else (written_entries(folder, marker) or set())
    known.update(str(name) for name in names)
    tmp = folder / f"{marker}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({_WRITTEN_KEY: sorted(known)}, indent=1) + "\n")
    os.replace(tmp, folder / marker)


SCRATCH_LOCK = ".hf_mmfusion_writing"
# The names scratch folders get beside or inside an output: ``.<output name>.partial-<random>``.
STAGING_PATTERN = r"\..+\.partial-.+"


def creation_mode(directory: bool = False) -> int:
    """The permission bits the process's umask gives a new file (or folder): ``mkstemp`` / ``mkdtemp``
    create private ones, and a result moved out of them should look like any other new file."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def is_scratch(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a scratch folder of this package, live or abandoned (it carries the lock file)."""
    path = Path(path)
    return not path.is_symlink() and path.is_dir() and (path / SCRATCH_LOCK).is_file()


def remove_abandoned_scratch(parent: str | os.PathLike, pattern: str = STAGING_PATTERN) -> list[Path]:
    """Remove the folders of ``parent`` named like ``pattern`` (a full-match regex) that a process of this
    package wrote and that no living process writes any more; returns those removed.

    A folder counts only when it carries :data:`SCRATCH_LOCK` and that lock can be taken: one without the
    file is not provably ours, one whose lock is held belongs to a running command.
    """
    import fcntl

    removed = []
    try:
        children = list(Path(parent).iterdir())
    except OSError:
        return removed
    for child in children:
        if not re.fullmatch(pattern, child.name) or child.is_symlink() or not child.is_dir():
            continue
        try:
            if child.stat().st_uid != os.getuid():
                continue
            with open(child / SCRATCH_LOCK, "rb") as handle:
                # Removed while holding the lock, so a process cannot take the folder up in between.
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(child)
        except OSError:
            continue
        removed.append(child)
    return removed


def scratch_entries(path: str | os.PathLike) -> list[str]:
    """The names written into the scratch folder ``path``, without its lock file."""
    return sorted(p.name for p in Path(path).iterdir() if p.name != SCRATCH_LOCK)


class ScratchDirectory:
    """A new folder ``parent/<prefix>XXXX`` that this process writes in, locked while the process lives.

    Leaving the ``with`` block removes it (unless :meth:`seal` was called and it was renamed away); a run
    killed before that leaves it behind, and :func:`remove_abandoned_scratch` of a later run removes it.
    ``mode`` (such as ``creation_mode(directory=True)``) replaces ``mkdtemp``'s private 0700.
    """

    def __init__(self, parent: str | os.PathLike, prefix: str, mode: int | None = None):
        import fcntl

        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            if mode is not None:
                self.path.chmod(mode)
            # Locked under a private name, then renamed: a cleaner never sees the lock file unlocked.
            pending = self.path / f"{SCRATCH_LOCK}.{os.getpid()}"
            self._handle = open(pending, "w")  # noqa: SIM115  (held until close)
            try:
                fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # A file system without locks: the folder stays unmarked, so no later run removes it.
                pending.unlink()
            else:
                self._handle.write(f"{os.getpid()}\n")
                self._handle.flush()
                os.replace(pending, self.path / SCRATCH_LOCK)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

    def entries(self) -> list[str]:
        return scratch_entries(self.path)

    def seal(self) -> None:
        """Drop the lock file before the folder becomes a result (the lock is held until :meth:`close`)."""
        (self.path / SCRATCH_LOCK).unlink(missing_ok=True)

    def close(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path, ignore_errors=True)
        self._handle.close()

    def __enter__(self) -> ScratchDirectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
