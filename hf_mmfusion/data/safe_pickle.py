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


# Builtins a pickle may call with a size or a lazy iterable (``bytearray(3 << 30)``, ``list(range(n))``):
# they are checked against the budget before anything is allocated.
_SIZED_BUILTINS = ("bytearray", "bytes", "list", "tuple", "set", "frozenset", "str")


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only the allow-listed numpy and builtin names.

    ``max_items`` bounds what a single builtin call may build (bytes, or elements of a container). Real
    data is stored in the stream itself, so nothing legitimate is larger than the file; a call asking for
    more is an allocation bomb and is refused before it runs.
    """

    def __init__(self, *args, max_items: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_items = max_items

    def find_class(self, module: str, name: str):
        try:
            found = _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load `{module}.{name}` from a pickle: only numpy arrays and builtin containers are "
                "allowed (a pickle that names other callables can run arbitrary code)"
            ) from None
        if self.max_items is not None and module in ("builtins", "__builtin__") and name in _SIZED_BUILTINS:
            return self._bounded(found, name)
        if self.max_items is not None and found is _multiarray._reconstruct:
            return self._bounded_array(found, f"{module}.{name}")
        return found

    def _bounded_array(self, factory, name: str):
        limit = self.max_items

        def build(*args, **kwargs):
            # _reconstruct(subtype, shape, dtype) allocates before any data arrives.
            shape = args[1] if len(args) > 1 else ()
            dtype = args[2] if len(args) > 2 else "b"
            try:
                dims = [int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
                nbytes = int(np.prod(dims, dtype=object)) * np.dtype(dtype if not isinstance(dtype, bytes) else "b").itemsize
            except (TypeError, ValueError):
                nbytes = 0  # numpy itself rejects what cannot be read as a shape or dtype
            if nbytes > limit:
                raise UnsafePickleError(
                    f"refusing `{name}` of shape {shape} in a pickle: {nbytes} bytes is far more than the file holds"
                )
            return factory(*args, **kwargs)

        return build

    def _bounded(self, factory, name: str):
        limit = self.max_items

        def build(*args, **kwargs):
            for arg in args:
                size = arg if isinstance(arg, int) and not isinstance(arg, bool) else None
                if size is None and isinstance(arg, range):
                    size = len(arg)
                if size is not None and size > limit:
                    raise UnsafePickleError(
                        f"refusing `{name}({size})` in a pickle: it would allocate far more than the file holds "
                        f"(limit {limit} items)"
                    )
            return factory(*args, **kwargs)

        return build


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
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1", max_items=max(1 << 20, 4 * len(data))).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated / corrupt files raise many types (EOFError, UnpicklingError, ...)
        raise ValueError(f"{path} is not a readable pickle (truncated or corrupt?): {type(err).__name__}: {err}") from err
