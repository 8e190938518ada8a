"""Publish a checkpoint (weights, config, code for ``trust_remote_code``, processor, card) in one commit."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

logger = logging.getLogger(__name__)


def _missing_remote_code(folder: Path) -> list[str]:
    """Modules that ``auto_map`` entries of the saved configs name but the folder lacks."""
    missing = []
    for name in ("config.json", "processor_config.json", "preprocessor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        auto_map = json.loads(path.read_text()).get("auto_map") or {}
        for ref in auto_map.values():
            for item in ref if isinstance(ref, (list, tuple)) else [ref]:
                if item and "--" not in item and not (folder / (item.split(".")[0] + ".py")).is_file():
                    missing.append(f"{name}: {item}")
    return missing


def stage_checkpoint(model_or_dir, folder: str | os.PathLike, processor=None, card=None) -> Path:
    """Write everything a Hub repository needs into ``folder``.

    ``model_or_dir`` is a model (saved with its code files, so ``trust_remote_code=True`` works without
    this package) or a directory written by ``save_pretrained``. ``processor`` is saved beside it and
    ``card`` (a ``ModelCard`` or a string) becomes ``README.md``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model_or_dir, (str, os.PathLike)):
        source = Path(model_or_dir)
        if not (source / "config.json").is_file():
            raise ValueError(f"model_or_dir={str(source)!r} is not a saved checkpoint (no config.json)")
        shutil.copytree(source, folder, dirs_exist_ok=True)
    else:
        model_or_dir.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    if card is not None:
        (folder / "README.md").write_text(str(card), encoding="utf-8")
    missing = _missing_remote_code(folder)
    if missing:
        raise ValueError(f"the checkpoint's auto_map names code files that are not in it: {missing}")
    config = json.loads((folder / "config.json").read_text())
    if not config.get("auto_map"):
        logger.warning("config.json has no auto_map: the repository loads only where hf_mmfusion is installed")
    return folder


def push_to_hub(
    model_or_dir,
    repo_id: str,
    processor=None,
    card=None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload model, processor, code and model card",
    revision: str | None = None,
    api: HfApi | None = None,
):
    """Create ``repo_id`` if needed and upload the staged checkpoint as ONE commit.

    Returns the ``CommitInfo`` of ``HfApi.create_commit``. Nothing is uploaded when staging fails
    (e.g. a checkpoint whose ``auto_map`` names missing code).
    """
    api = api or HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf_mmfusion_push_") as tmp:
        folder = stage_checkpoint(model_or_dir, tmp, processor=processor, card=card)
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
            for path in sorted(folder.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".hf_mmfusion")
        ]
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            revision=revision,
            repo_type="model",
        )
