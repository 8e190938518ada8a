"""``hf-mmfusion explain``: the models' analyses (weights, budgets, graphs, occlusion) of a saved model over a
dataset split or a file of records, as ``explain.json``, figures and ``index.html``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..data.datasets import DataArguments, load_any_dataset
from ..inference.checkpoints import load_pretrained
from ..inference.records import read_records
from ..models.configuration_common import MODALITIES
from ..utils.cpu_memory import retain_freed_memory
from ..utils.cpu_threads import THREADS_HELP, model_threads
from ..workflows.explanation import Explanation, core, explain
from ..workflows.explanation.core import check_explainable, check_report_dir


def select_ids(split, ids: Sequence[str]):
    """The rows of ``split`` whose ``id`` is in ``ids``, in the order asked for."""
    if "id" not in split.column_names:
        raise ValueError("--ids: the split has no `id` column; select samples with --max_samples instead")
    position = {str(v): i for i, v in enumerate(split["id"])}
    missing = [i for i in ids if str(i) not in position]
    if missing:
        raise ValueError(f"--ids: {missing[:10]} are not ids of the split (its first ids: {list(position)[:5]})")
    return split.select([position[str(i)] for i in ids])



def add_explain_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    defaults = DataArguments()
    parser.add_argument("model", help="saved model directory or Hub id (with its processor)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=None, help="'synthetic', a save_to_disk directory or a Hub dataset id")
    source.add_argument("--inputs", help="a .jsonl or .csv file of records (text / audio / visual, optional id, label)")
    parser.add_argument("--dataset_config", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--ids", nargs="+", default=None, help="explain only these sample ids (default: the split)")
    parser.add_argument("--max_samples", type=int, default=None, help="explain the first N samples of the split")
    parser.add_argument("-o", "--output_dir", default=None, help="report directory (default: <model>/explain)")
    parser.add_argument("--examples", type=int, default=3, help="samples drawn one by one (token strips, graphs)")
    parser.add_argument("--tsne", action="store_true", help="map CLCR's summaries with t-SNE instead of PCA")
    parser.add_argument("--no_svg", action="store_true", help="PNG only")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_text_length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    synthetic = parser.add_argument_group("synthetic data (with --dataset synthetic)")
    synthetic.add_argument("--synthetic_sizes", type=int, nargs=3, default=defaults.synthetic_sizes)
    synthetic.add_argument("--synthetic_modalities", nargs="+", default=None, choices=MODALITIES,
                           help="default: the model's modalities")
    synthetic.add_argument("--synthetic_audio_dim", type=int, default=defaults.synthetic_audio_dim)
    synthetic.add_argument("--synthetic_visual_dim", type=int, default=defaults.synthetic_visual_dim)
    synthetic.add_argument("--synthetic_seed", type=int, default=defaults.synthetic_seed)
    synthetic.add_argument("--synthetic_text_words", type=int, nargs=2, default=defaults.synthetic_text_words)
    synthetic.add_argument("--synthetic_audio_frames", type=int, nargs=2, default=defaults.synthetic_audio_frames)
    synthetic.add_argument("--synthetic_visual_frames", type=int, nargs=2, default=defaults.synthetic_visual_frames)
    return parser


def _load_split(args, model):

    data_args = DataArguments(
        dataset=args.dataset, dataset_config=args.dataset_config, synthetic_sizes=args.synthetic_sizes,
        synthetic_audio_dim=args.synthetic_audio_dim, synthetic_visual_dim=args.synthetic_visual_dim,
        synthetic_seed=args.synthetic_seed, synthetic_modalities=args.synthetic_modalities or list(model.config.modalities),
        synthetic_text_words=args.synthetic_text_words, synthetic_audio_frames=args.synthetic_audio_frames,
        synthetic_visual_frames=args.synthetic_visual_frames,
    )
    raw = load_any_dataset(args.dataset, config_name=args.dataset_config, **data_args.synthetic_kwargs())
    if args.split not in raw:
        raise ValueError(f"--split: dataset {args.dataset!r} has no split {args.split!r}; it has {list(raw)}")
    split = raw[args.split]
    if args.ids:
        split = select_ids(split, args.ids)
    if args.max_samples is not None:
        split = split.select(range(min(args.max_samples, len(split))))
    return split


def run_explain(args: argparse.Namespace) -> Explanation:
    if not args.dataset and not args.inputs:
        raise ValueError("pass --dataset (with --split) or --inputs")
    if args.examples < 0 or args.batch_size < 1:
        raise ValueError("--examples must be >= 0 and --batch_size >= 1")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError(f"--max_samples must be at least 1, got {args.max_samples}")
    output_dir = Path(args.output_dir) if args.output_dir else (
        Path(args.model) / "explain" if Path(args.model).is_dir() else Path("explain")
    )
    check_report_dir(output_dir)
    model, processor = load_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    check_explainable(model)
    base_dir = None
    if args.inputs:
        data = read_records(args.inputs)
        if not data:
            raise ValueError(f"--inputs: {args.inputs} holds no records")
        if args.ids:
            wanted = {str(i) for i in args.ids}
            data = [r for r in data if str(r.get("id")) in wanted]
            if not data:
                raise ValueError(f"--ids: none of {args.ids[:10]} is the id of a record in {args.inputs}")
        if args.max_samples is not None:
            data = data[: args.max_samples]
        base_dir = Path(args.inputs).resolve().parent
    else:
        data = _load_split(args, model)
    with model_threads(model, threads):
        explanation = explain(
            model, processor, data, output_dir, tsne=args.tsne, examples=args.examples, batch_size=args.batch_size,
            max_length=args.max_text_length, seed=args.seed, base_dir=base_dir, svg=not args.no_svg,
        )
    print(f"explained {len(explanation.samples)} samples: {output_dir}/index.html, explain.json and figures",
          file=sys.stderr)
    return explanation


def main(argv: list[str] | None = None) -> int:
    parser = add_explain_arguments(argparse.ArgumentParser(prog="hf-mmfusion explain", description=core.__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    retain_freed_memory()
    run_explain(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
