"""Loading research pickles (MMSA, MISA) without running arbitrary code.

``pickle.load`` calls whatever callable the file names, so a crafted file can run shell commands. The
unpickler here resolves only numpy array / dtype / scalar reconstruction and plain builtin containers;
any other global (``os.system``, ``builtins.eval``, a class from some package ...) is refused with an
``UnsafePickleError`` before it is called.
"""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

SAFE_BUILTINS = ("list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float",
                 "complex", "bool", "slice", "range")


def _allowed_globals() -> dict[tuple[str, str], object]:
    import codecs

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _multiarray._reconstruct
        allowed[(module, "scalar")] = _multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = _numeric._frombuffer
    if hasattr(np, "dtypes"):
        for name in dir(np.dtypes):
            if name.endswith("DType"):
                allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    for name in SAFE_BUILTINS:
        allowed[("builtins", name)] = getattr(builtins, name)
        allowed[("__builtin__", name)] = getattr(builtins, name)  # Python 2 pickles
    # Protocol-2 pickles store bytes as `_codecs.encode(text, "latin1")`.
    allowed[("_codecs", "encode")] = codecs.encode
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    return allowed


_ALLOWED = _allowed_globals()


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle asked for a global outside the numpy / builtin allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only the allow-listed numpy and builtin names."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load `{module}.{name}` from a pickle: only numpy arrays and builtin containers are "
                "allowed (a pickle that names other callables can run arbitrary code)"
            ) from None


def safe_load(path: str | os.PathLike):
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    Raises ``UnsafePickleError`` (a ``ValueError``) for disallowed globals and ``ValueError`` for a missing,
    truncated or corrupt file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ValueError(f"cannot read pickle {path}: {err}") from err
    try:
        # latin1 lets Python-2 pickles of numpy arrays load (their raw bytes were stored as str).
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated / corrupt files raise many types (EOFError, UnpicklingError, ...)
        raise ValueError(f"{path} is not a readable pickle (truncated or corrupt?): {type(err).__name__}: {err}") from err
