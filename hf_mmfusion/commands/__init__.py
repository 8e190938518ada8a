"""The ``hf-mmfusion`` command line: one module per command, each parsing its flags and calling a workflow.

``hf-mmfusion <command> --help`` lists a command's options; ``train`` accepts every ``TrainingArguments`` option
next to the model and data options.
"""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: hf-mmfusion <command> [options]

commands:
  train      train CLCR or SSU (all TrainingArguments flags; torchrun / accelerate launch work too)
  reproduce  train a model for several seeds (validation-selected), mean +- std table, optional text baseline
  evaluate   metrics on a split plus the noise / dropped-modality robustness table and plot
  predict    scores for new inputs (text, .npy frame files, .wav recordings) -> stdout, CSV or JSONL
  push       upload a saved checkpoint (weights, code, processor, model card) to the Hub in one commit
  convert    convert MMSA pickles / SDK files / clip folders into a datasets DatasetDict
  explain    the models' analyses (weights, budgets, graphs, occlusion) as explain.json, figures, index.html
  demo       train CLCR and SSU on the built-in synthetic data, evaluate, save, reload, print a table

run `hf-mmfusion <command> --help` for the options of a command."""


# What a user's input can raise: bad values, missing or unreadable files and checkpoints, missing extras.
USER_ERRORS = (ValueError, OSError, ImportError)


# Command name -> the module of this package that runs it (imported only when the command is run, so that
# `hf-mmfusion --help` stays fast).
COMMANDS = {
    "train": "train",
    "reproduce": "reproduce",
    "evaluate": "evaluate",
    "predict": "predict",
    "push": "push",
    "convert": "convert",
    "explain": "explain",
    "demo": "demo",
}


def main(argv: list[str] | None = None) -> int:
    """Run a command; user errors end with one ``error:`` line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hf-mmfusion: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f".{COMMANDS[command]}", __name__)
        if command == "convert":
            return module.main(rest, prog="hf-mmfusion convert")
        return module.main(rest)
    except USER_ERRORS as err:
        print(f"error: {first_line(err) if isinstance(err, OSError) else err}", file=sys.stderr)
        return 2


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
