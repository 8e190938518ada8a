"""``hf-mmfusion push``: a saved checkpoint (weights, code, processor, model card) to the Hub in one commit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..hub import build_model_card, card_metrics, push_to_hub
from ..inference.checkpoints import load_pretrained
from . import first_line


def build_parser() -> argparse.ArgumentParser:
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


def read_card_metrics(path: str | None) -> tuple[dict[str, float], str]:
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
    return card_metrics(values)


def check_push_access(token: str | None) -> None:
    """Fail before any work when the Hub cannot be reached or no credentials are set."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise ValueError("the Hub is in offline mode (HF_HUB_OFFLINE=1); unset it to push")
    if not (token or get_token()):
        raise ValueError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token")


def run_push(args: argparse.Namespace):
    check_push_access(args.token)
    if not Path(args.checkpoint).is_dir():
        raise ValueError(f"checkpoint {args.checkpoint!r} is not a directory written by `hf-mmfusion train`")
    card = None
    if not args.keep_card:
        metrics, split = read_card_metrics(args.metrics_file)
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
        raise ValueError(f"pushing to {args.repo_id} failed ({type(err).__name__}: {first_line(err)}); "
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



def main(argv: list[str] | None = None) -> int:
    run_push(build_parser().parse_args(argv))
    return 0
