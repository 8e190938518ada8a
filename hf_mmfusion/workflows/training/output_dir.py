"""A training run's output folder: which run owns it, which checkpoints are complete, and what
``--overwrite_output_dir`` may delete."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from transformers import TrainerCallback

from ...utils.outputs import (
    LOCK_NAME,
    check_not_input,
    foreign_entries,
    record_written,
    remove_written,
    run_lock,
    written_entries,
)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Trainer writes ``trainer_state.json`` after the weights: both present means the save finished."""
    path = Path(path)
    return (path / "trainer_state.json").is_file() and any((path / name).is_file() for name in WEIGHT_FILES)


def last_valid_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-<step>`` in ``output_dir`` (an interrupted save is skipped)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = []
    for child in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if match and child.is_dir():
            steps.append((int(match.group(1)), child))
    for _, child in sorted(steps, reverse=True):
        if is_complete_checkpoint(child):
            return str(child)
    return None


RUN_MARKER = ".hf_mmfusion_run"


_CHECKPOINT_NAME = re.compile(r"checkpoint-\d+")


def _trainer_checkpoint(path: Path) -> bool:
    """A ``checkpoint-<step>`` folder that ``Trainer`` wrote, for runs that did not record it in their marker.

    The name alone proves nothing (a user's ``checkpoint-99`` folder has it too): ``Trainer`` writes
    ``training_args.bin`` into every checkpoint, and ``trainer_state.json`` last.
    """
    return (
        path.is_dir()
        and not path.is_symlink()
        and _CHECKPOINT_NAME.fullmatch(path.name) is not None
        and any((path / name).is_file() for name in ("training_args.bin", "trainer_state.json"))
    )


@contextlib.contextmanager
def claim_run_dir(output_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False, inputs=()):
    """Hold an exclusive lock on ``output_dir`` for the whole run, after checking it may be written.

    A second run into the same folder fails at once instead of mixing its files with the first one's.
    A non-empty folder is refused unless the run resumes it, or ``overwrite`` is set and the folder is a
    previous training run holding only what that run wrote (then those go first, so no file of the old model
    survives, and no file the user put there is ever deleted). ``inputs`` (the dataset folder, the starting
    checkpoint) may neither be the output folder nor contain it.
    """
    folder = Path(output_dir)
    check_not_input(folder, inputs)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output_dir {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder, "training"):
        contents = [
            child.name for child in folder.iterdir()
            if child.name not in (LOCK_NAME, RUN_MARKER) and not child.name.startswith(f"{RUN_MARKER}.tmp-")
        ]
        not_checkpoints = sorted(name for name in contents if not _trainer_checkpoint(folder / name))
        if resume and not_checkpoints and written_entries(folder, RUN_MARKER) is None:
            # A resumed run saves its model, card and metrics here: only into a folder a run wrote.
            raise ValueError(
                f"--output_dir {folder} holds files that are not a training run ({', '.join(not_checkpoints[:5])}); "
                "a resumed run writes its model there: choose an empty folder or the run's own --output_dir"
            )
        if contents and not resume:
            if not overwrite:
                raise ValueError(
                    f"--output_dir {folder} is not empty; pass --overwrite_output_dir to replace the previous run, "
                    "--resume_from_checkpoint latest to continue it, or choose another folder"
                )
            if written_entries(folder, RUN_MARKER) is None:
                raise ValueError(
                    f"--output_dir {folder} holds files that are not a training run; refusing to delete them "
                    "with --overwrite_output_dir (choose an empty or new folder)"
                )
            foreign = foreign_entries(folder, RUN_MARKER, also_ours=_trainer_checkpoint)
            if foreign:
                raise ValueError(
                    f"--output_dir {folder} holds files the previous training run did not write "
                    f"({', '.join(foreign[:5])}); --overwrite_output_dir deletes only a run's own files: move "
                    "them away or choose another folder"
                )
            record_written(folder, RUN_MARKER, [name for name in contents if _trainer_checkpoint(folder / name)])
            remove_written(folder, RUN_MARKER, contents)
            record_written(folder, RUN_MARKER, reset=True)
        elif written_entries(folder, RUN_MARKER) is None:
            record_written(folder, RUN_MARKER)
        yield folder



class RecordCheckpoints(TrainerCallback):
    """Lists each checkpoint in the run's marker before ``Trainer`` writes it, so that a save cut short is still
    known as this run's (``--overwrite_output_dir`` may then delete it)."""

    def on_step_end(self, args, state, control, **kwargs):
        self._record(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._record(args, state, control)

    @staticmethod
    def _record(args, state, control):
        if control.should_save and state.is_world_process_zero and Path(args.output_dir).is_dir():
            record_written(args.output_dir, RUN_MARKER, [f"checkpoint-{state.global_step}"])
