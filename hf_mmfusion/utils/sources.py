"""What a model or dataset argument names: a local folder or a Hub repository, decided before anything loads.

``transformers`` and ``datasets`` treat every name that is not an existing folder as a Hub id, so a mistyped
folder ends in a Hub error ("Repo id must be in the form ...") and an unreachable Hub costs a minute of
retries. These checks answer in the user's terms first: a path that looks local and does not exist is
"no such folder", a file is not a folder, and an unreachable Hub costs one quick request, after which only the
local Hub cache is read. The module imports nothing of the package, so every layer can use it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

# One request to the endpoint; a Hub that does not answer this fast is treated as unreachable for the process.
HUB_CHECK_TIMEOUT_S = 3.0


def _valid_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def looks_local(name: str | os.PathLike) -> bool:
    """Whether ``name`` means a local path: it exists, is spelt as a path (``./x``, ``../x``, ``/x``, ``~/x``,
    ``a/b/c``, a trailing slash, a backslash), starts in an existing folder (``runs/x`` where ``runs`` is
    one), or cannot be a Hub id at all."""
    text = os.fspath(name)
    if os.path.exists(text) or isinstance(name, Path):
        return True
    if text.startswith((".", "~")) or os.path.isabs(text) or "\\" in text or text.endswith("/") or text.count("/") > 1:
        return True
    if "/" in text and os.path.isdir(text.split("/", 1)[0]):
        return True
    return not _valid_repo_id(text)


def is_hub_id(name: str | os.PathLike) -> bool:
    """Whether ``name`` names a Hub repository rather than a local path (see :func:`looks_local`)."""
    return not looks_local(name)


@functools.lru_cache(maxsize=8)
def _unreachable(endpoint: str) -> str | None:
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=HUB_CHECK_TIMEOUT_S, follow_redirects=False)
    except Exception as err:  # any failure to get an answer (refused, DNS, timeout, proxy, TLS) means the same
        text = str(err).strip().splitlines()
        return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return None


def hub_unreachable() -> str | None:
    """Why the Hub cannot be used now (offline mode, or no answer from ``HF_ENDPOINT`` within
    ``HUB_CHECK_TIMEOUT_S``), or ``None`` when it answers. The request is made once per process and endpoint."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "the Hub is in offline mode (HF_HUB_OFFLINE=1)"
    reason = _unreachable(constants.ENDPOINT)
    return None if reason is None else f"the Hub at {constants.ENDPOINT} cannot be reached ({reason})"


def check_local_folder(name: str | os.PathLike, what: str, kind: str = "model") -> bool:
    """``True`` when ``name`` is an existing local folder, ``False`` when it names a Hub repository.

    Raises ``FileNotFoundError`` for a local-looking path that does not exist and ``ValueError`` for a file
    where a folder is needed; ``what`` (the argument, e.g. ``--dataset``) and ``kind`` word the message.
    """
    text = os.fspath(name)
    if os.path.isdir(text):
        return True
    if os.path.exists(text):
        raise ValueError(f"{what} {text!r} is a file, not a {kind} folder; pass the folder (or a Hub id)")
    if looks_local(name):
        raise FileNotFoundError(f"{what}: no such folder: {text!r}")
    return False


def model_source(
    name: str | os.PathLike, what: str = "model", revision: str | None = None, hint: str = ""
) -> dict:
    """Check a model argument before anything is loaded; returns extra ``from_pretrained`` keyword arguments.

    A local folder must exist. For a Hub id the Hub is asked once whether it answers: when it cannot be reached (or offline
    mode is set), the model must already be in the local Hub cache, which is then read without any network
    call (``local_files_only=True``, no retries); otherwise an ``OSError`` says so in one line, followed by
    ``hint``.
    """
    if check_local_folder(name, what):
        return {}
    reason = hub_unreachable()
    if reason is None:
        return {}
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(os.fspath(name), "config.json", revision=revision)
    if not isinstance(cached, str):
        raise OSError(
            f"{what} {os.fspath(name)!r} is not a local folder and not in the local Hub cache, and {reason}; "
            f"pass a folder holding the model, or load it once with the Hub reachable{'. ' + hint if hint else ''}"
        )
    return {"local_files_only": True}


@contextlib.contextmanager
def cache_only_when_unreachable():
    """Within the block, a Hub that cannot be reached is not asked at all: ``huggingface_hub`` (and
    ``transformers`` through it) works in offline mode and reads its cache, instead of retrying every file
    that is not cached for about half a minute each. The mode is restored on leaving."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or hub_unreachable() is None:
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False
