"""``hf-mmfusion predict``: scores for new inputs from a saved or Hub model."""

from __future__ import annotations

import argparse

from ..utils.cpu_memory import drop_kernel_cache, retain_freed_memory
from ..utils.cpu_threads import THREADS_HELP
from ..workflows import prediction
from ..workflows.prediction import run_predict


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help="saved model directory or Hub id (with its processor)")
    parser.add_argument("--text", action="append", help="a transcript (repeat for several records)")
    parser.add_argument("--audio", action="append", help="a .npy frame file, a .wav recording or a video (its audio track; repeatable)")
    parser.add_argument("--visual", action="append", help="a .npy frame file or a video file (repeatable)")
    parser.add_argument(
        "--video", action="append",
        help="a video file: its audio track, frames and (with the processor's asr_model) transcript (repeatable)",
    )
    parser.add_argument("--inputs", help="a .jsonl or .csv file of records (paths relative to the file)")
    parser.add_argument("--output", help="write predictions to a .csv or .jsonl file instead of stdout")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_text_length", type=int, default=128)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--no_progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = add_predict_arguments(argparse.ArgumentParser(prog="hf-mmfusion predict", description=prediction.__doc__))
    args = parser.parse_args(argv)
    retain_freed_memory()
    drop_kernel_cache()
    run_predict(args)
    return 0

