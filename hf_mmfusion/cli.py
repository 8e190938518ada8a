"""``hf-mmfusion``: train, reproduce, evaluate, predict, push, convert, explain, demo.

Each subcommand owns its flags (``hf-mmfusion <command> --help``). ``train`` accepts every
``TrainingArguments`` option next to the model and data options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def _push_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-mmfusion push", description="Upload a saved checkpoint to the Hub.")
    parser.add_argument("checkpoint", help="directory written by `hf-mmfusion train` (model + processor)")
    parser.add_argument("repo_id", help="target repository, e.g. org/clcr-mosei")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--metrics_file", help="JSON of metrics for the card (e.g. all_results.json; test_* keys used)")
    parser.add_argument("--dataset_name", default=None, help="pretty dataset name for the card")
    parser.add_argument("--dataset_id", default=None, help="Hub dataset id for the card metadata")
    parser.add_argument("--keep_card", action="store_true", help="upload the checkpoint's README.md unchanged")
    parser.add_argument("--commit_message", default="Upload model, processor, code and model card")
    parser.add_argument("--token", default=None)
    return parser


def _card_metrics(path: str | None) -> dict[str, float]:
    return _card_metrics_and_split(path)[0]


def _card_metrics_and_split(path: str | None) -> tuple[dict[str, float], str]:
    """Quality metrics of a metrics file for the card (test ones, else validation ones) and their split."""
    if not path:
        return {}, "test"
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"--metrics_file {path}: cannot read it ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--metrics_file {path} is not JSON ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"--metrics_file {path} must hold a JSON object of metric names and values "
            f"(as all_results.json does), got a {type(values).__name__}"
        )
    test = {k.removeprefix("test_"): v for k, v in values.items() if k.startswith("test_")}
    validation = {k.removeprefix("eval_"): v for k, v in values.items() if k.startswith("eval_")}
    chosen = test or validation or values
    skip = ("loss", "runtime", "per_second", "epoch")
    split = "test" if test else "validation" if validation else "test"
    return {k: float(v) for k, v in chosen.items() if isinstance(v, (int, float)) and not any(s in k for s in skip)}, split


def check_push_access(token: str | None) -> None:
    """Fail before any work when the Hub cannot be reached or no credentials are set."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise ValueError("the Hub is in offline mode (HF_HUB_OFFLINE=1); unset it to push")
    if not (token or get_token()):
        raise ValueError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token")


def run_push(args: argparse.Namespace):
    from .evaluation import load_pretrained
    from .hub import build_model_card, push_to_hub

    check_push_access(args.token)
    if not Path(args.checkpoint).is_dir():
        raise ValueError(f"checkpoint {args.checkpoint!r} is not a directory written by `hf-mmfusion train`")
    card = None
    if not args.keep_card:
        metrics, split = _card_metrics_and_split(args.metrics_file)
        model, _ = load_pretrained(args.checkpoint)
        card = build_model_card(
            model,
            metrics,
            eval_split=split,
            dataset_name=args.dataset_name or args.dataset_id or "the training dataset",
            dataset_id=args.dataset_id,
            repo_id=args.repo_id,
        )
    try:
        info = push_to_hub(
            args.checkpoint, args.repo_id, card=card, private=args.private or None, token=args.token,
            commit_message=args.commit_message,
        )
    except Exception as err:
        if not isinstance(err, hub_connection_errors()):
            raise
        raise ValueError(f"pushing to {args.repo_id} failed ({type(err).__name__}: {_first_line(err)}); "
                         "check the network, the token's write access and the repository id") from err
    print(f"pushed {args.checkpoint} to {args.repo_id}: {getattr(info, 'commit_url', info)}")
    return info


def hub_connection_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the Hub cannot be reached or refuses a request.

    Its HTTP library changes between releases (requests, httpx, httpx2), so the base class is taken from
    ``huggingface_hub.errors``, which imports it, rather than named here.
    """
    from huggingface_hub import errors

    library_error = getattr(errors, "HTTPError", None)
    found = [errors.HfHubHTTPError, errors.OfflineModeIsEnabled, OSError]
    if isinstance(library_error, type) and issubclass(library_error, BaseException):
        found.append(library_error)
    return tuple(found)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# What a user's input can raise: bad values, missing or unreadable files and checkpoints, missing extras.
USER_ERRORS = (ValueError, OSError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Run a command; user errors end with one ``error:`` line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    try:
        return _dispatch(argv[0], argv[1:])
    except USER_ERRORS as err:
        print(f"error: {_first_line(err) if isinstance(err, OSError) else err}", file=sys.stderr)
        return 2


def _dispatch(command: str, rest: list[str]) -> int:
    if command == "train":
        from .training import main as train_main

        return train_main(rest)
    if command == "reproduce":
        from .reproduce import main as reproduce_main

        return reproduce_main(rest)
    if command == "evaluate":
        from .evaluation import main as evaluate_main

        return evaluate_main(rest)
    if command == "predict":
        from .predict import main as predict_main

        return predict_main(rest)
    if command == "push":
        run_push(_push_parser().parse_args(rest))
        return 0
    if command == "convert":
        from .data.convert import main as convert_main

        return convert_main(rest, prog="hf-mmfusion convert")
    if command == "explain":
        from .commands.explain import main as explain_main

        return explain_main(rest)
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(rest)
    print(f"hf-mmfusion: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
