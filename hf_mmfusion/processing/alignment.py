# Copyright 2026 The hf_mmfusion Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Word-piece dependency heads for a whole batch in one set of array operations.

Same rules and signature as ``dependency_parser.heads_from_offsets`` (SSU spec 4.3): a piece with
offsets ``(s, e)``, ``s < e``, that is real and not special belongs to the word whose span contains
``s`` (else the next word overlapping ``[s, e)``); the first piece of a word points to the first piece of
its head word (``-1`` for the root, or when the head lost every piece to truncation); other pieces point
to their word's first piece; specials, padding and uncovered pieces get ``-1``. Whitespace tokens are
not words.

Per-sample Python work is one ``Doc.to_array`` call; the lookup of every piece of every row happens in
flat numpy over the batch, which is what keeps the processor's text path close to the speed of spaCy
plus the tokenizer alone.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from .arrays import to_numpy


def rows_to_array(rows: list) -> np.ndarray:
    """Equal-length rows of ints -> int64 ``[B, T]``.

    One flat ``np.fromiter`` over the chained rows: ``np.asarray`` inspects every nested list, which for a
    tokenised batch costs several times more.
    """
    if not isinstance(rows, list) or (rows and not isinstance(rows[0], (list, tuple))):
        return np.asarray(rows, dtype=np.int64)                                  # flat already, e.g. a mapping
    width = len(rows[0]) if rows else 0
    return np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=len(rows) * width).reshape(len(rows), width)


def encodings_offsets(encodings: list) -> np.ndarray:
    """Character offsets ``[B, T, 2]`` int64 of equal-length fast-tokenizer ``Encoding``s, in one flat pass.

    Streaming every row's ``offsets`` into ``np.fromiter`` costs little more than fetching them, about half of
    collecting the lists first (as ``return_offsets_mapping`` does) and converting those.
    """
    width = len(encodings[0].offsets) if encodings else 0
    flat = chain.from_iterable(chain.from_iterable(e.offsets for e in encodings))
    return np.fromiter(flat, dtype=np.int64, count=len(encodings) * width * 2).reshape(len(encodings), width, 2)


def _pad_rows(rows: list, fill, width: int | None = None, trailing: tuple = ()) -> np.ndarray:
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width, *trailing), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = np.asarray(row, dtype=np.int64).reshape(len(row), *trailing)
    return out


def _word_table(docs: list, check_parsed: bool = True) -> dict[str, np.ndarray]:
    """Concatenated non-space words of ``docs``: doc index, start, end, global head word, root flag."""
    from spacy.attrs import HEAD, IDX, IS_SPACE, LENGTH

    arrays, kept, counts = [], [], []
    for d, doc in enumerate(docs):
        if len(doc) == 0:
            continue
        if check_parsed and not doc.has_annotation("DEP"):
            raise ValueError(
                f"docs[{d}] has no dependency parse; use a spaCy pipeline with a parser or build the Doc "
                "with `heads=` and `deps=`"
            )
        arrays.append(doc.to_array([IDX, LENGTH, HEAD, IS_SPACE]))
        kept.append(d)
        counts.append(len(doc))
    if not arrays:
        empty = np.zeros(0, dtype=np.int64)
        return {"doc": empty, "start": empty, "end": empty, "head": empty, "root": empty.astype(bool)}
    # All docs' tokens in one array; HEAD is a relative offset, so it stays valid after concatenation
    # (uint64 storage wraps negative offsets; the int64 view restores them).
    tokens = np.concatenate(arrays).astype(np.int64)
    doc_of = np.repeat(np.asarray(kept, dtype=np.int64), counts)
    word = tokens[:, 3] == 0
    position = np.cumsum(word) - 1  # global word index of each token
    head_tok = np.arange(len(tokens)) + tokens[:, 2]
    root = tokens[:, 2] == 0
    # A whitespace head counts as no head, as in the per-row reference implementation.
    head_word = np.where(~root & word[head_tok], position[head_tok], -1)
    return {
        "doc": doc_of[word],
        "start": tokens[word, 0],
        "end": tokens[word, 0] + tokens[word, 1],
        "head": head_word[word],
        "root": root[word],
    }


def batch_heads_from_offsets(
    docs,
    offset_mapping,
    special_tokens_mask=None,
    attention_mask=None,
    sample_mapping=None,
    check_parsed: bool = True,
):
    """``dependency_heads`` ``[B, T]`` for parsed ``docs`` and a fast tokenizer's ``offset_mapping``.

    Args and return container as ``dependency_parser.heads_from_offsets``: offsets ``[B, T, 2]`` (tensor,
    array or per-row lists, possibly ragged), optional ``special_tokens_mask`` / ``attention_mask``
    ``[B, T]`` and ``sample_mapping`` ``[B]`` (row -> doc, for overflowing tokens). Lists in, lists out;
    a tensor in, a ``LongTensor`` out. ``check_parsed=False`` skips the check that every non-empty doc has
    a parse, for callers that made it already.
    """
    docs = list(docs)
    reference = offset_mapping
    ragged = isinstance(offset_mapping, (list, tuple))
    if ragged:
        lengths = [len(r) for r in offset_mapping]
        offsets = _pad_rows(list(offset_mapping), 0, trailing=(2,))
    else:
        offsets = to_numpy(offset_mapping).astype(np.int64, copy=False)
        if offsets.ndim != 3 or offsets.shape[-1] != 2:
            raise ValueError(f"`offset_mapping` must have shape [batch, tokens, 2], got {list(offsets.shape)}")
        lengths = [offsets.shape[1]] * offsets.shape[0]
    B, T = offsets.shape[:2]
    mapping = np.arange(B) if sample_mapping is None else to_numpy(sample_mapping).astype(np.int64).reshape(-1)
    if mapping.shape[0] != B:
        raise ValueError(f"`sample_mapping` has {mapping.shape[0]} entries for {B} tokenised rows")
    if sample_mapping is None and len(docs) != B:
        raise ValueError(f"got {len(docs)} docs for a batch of {B} tokenised rows")
    if B and not (0 <= mapping.min() and mapping.max() < len(docs)):
        raise ValueError(f"`sample_mapping` refers to doc {int(mapping.max())} but only {len(docs)} docs were given")

    def mask(value, default):
        if value is None:
            return np.full((B, T), default, dtype=bool)
        rows = _pad_rows(list(value), 0, T) if ragged else to_numpy(value).astype(np.int64)
        if rows.shape != (B, T):
            raise ValueError(f"masks must have shape [batch, tokens] = {[B, T]}, got {list(rows.shape)}")
        return rows.astype(bool)

    real = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    usable = real & ~mask(special_tokens_mask, False) & mask(attention_mask, True)
    starts, ends = offsets[..., 0], offsets[..., 1]
    usable &= starts < ends

    words = _word_table(docs, check_parsed)
    heads = np.full((B, T), -1, dtype=np.int64)
    W = words["start"].shape[0]
    rows_idx, cols = np.nonzero(usable)  # row-major, so pieces of a row come in ascending order
    if W and rows_idx.size:
        # Sort key (doc, character) makes one searchsorted serve every row.
        span = int(max(words["end"].max(), ends.max())) + 1
        word_keys = words["doc"] * span + words["start"]
        doc_of = mapping[rows_idx]
        s, e = starts[rows_idx, cols], ends[rows_idx, cols]
        k = np.searchsorted(word_keys, doc_of * span + s, side="right") - 1
        k_safe = np.clip(k, 0, W - 1)
        inside = (k >= 0) & (words["doc"][k_safe] == doc_of) & (s < words["end"][k_safe])
        nxt = np.clip(k + 1, 0, W - 1)
        overlaps_next = (k + 1 < W) & (words["doc"][nxt] == doc_of) & (words["start"][nxt] < e)
        word = np.where(inside, k_safe, np.where(overlaps_next, nxt, -1))
        keep = word >= 0
        rows_idx, cols, word = rows_idx[keep], cols[keep], word[keep]
        # First sub-token of each (row, word): the first occurrence in ascending piece order. Pieces of a
        # row map to words in text order, so the keys are already sorted and runs mark the words.
        key = rows_idx * W + word
        if key.size and np.all(key[1:] >= key[:-1]):
            first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            unique_keys = key[first]
        else:
            unique_keys, first = np.unique(key, return_index=True)
        first_col = cols[first]

        def first_piece(row, w):
            q = row * W + np.clip(w, 0, None)
            pos = np.clip(np.searchsorted(unique_keys, q), 0, len(unique_keys) - 1)
            return np.where((w >= 0) & (unique_keys[pos] == q), first_col[pos], -1)

        own_first = first_piece(rows_idx, word)
        head_word = np.where(words["root"][word], -1, words["head"][word])
        heads[rows_idx, cols] = np.where(own_first == cols, first_piece(rows_idx, head_word), own_first)
    if ragged:
        return [heads[i, :n].tolist() for i, n in enumerate(lengths)]
    if hasattr(reference, "detach"):
        import torch

        return torch.as_tensor(heads, dtype=torch.long, device=reference.device)
    return heads
