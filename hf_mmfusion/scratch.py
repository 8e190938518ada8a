"""Scratch folders a command writes into before its result moves into place, and the removal of those a
killed run left behind.

A scratch folder carries a lock file that its process holds (``flock``) for as long as it lives; the kernel
drops the lock when the process dies, however it dies. So a later run can tell an abandoned folder (lock
file present, lock free) from a live run's (lock held) and from a look-alike the user made (no lock file),
and removes only the first kind.

Only the standard library is used here: the converters (``data/``) and the commands both build on it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

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
