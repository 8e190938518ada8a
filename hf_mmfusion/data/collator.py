"""``MMFusionDataCollator``: per-batch (dynamic) padding of processed rows, for ``Trainer`` or a DataLoader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL_KEYS = ("labels", "label", "label_ids")


@dataclass
class MMFusionDataCollator:
    r"""
    Pads a list of processed rows (``MMFusionProcessor(..., padding=False)`` outputs, e.g. a dataset built
    with ``preprocess_dataset``) into one batch of tensors.

    Text is padded by the tokenizer, ``dependency_heads`` with -1, acoustic / visual frames by their feature
    extractors (with masks); all through ``processor.pad``. Labels (``labels``, ``label`` or ``label_ids``)
    become ``labels [B]``: float32 for float values (regression), int64 for integers (classification),
    unless ``label_dtype`` says otherwise. Keys that are not model inputs or labels (``id``...) are dropped.

    Args:
        processor (`MMFusionProcessor`):
            The processor that produced the rows (its tokenizer and extractors do the padding).
        pad_to_multiple_of (`int`, *optional*):
            Round every padded length up to a multiple of this.
        label_dtype (`str`, *optional*):
            ``"float"`` or ``"long"`` to force the label type.
        return_tensors (`str`, *optional*, defaults to `"pt"`):
            ``"pt"`` or ``"np"``.

    Example:
        ```python
        collator = MMFusionDataCollator(processor)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
        ```
    """

    processor: Any
    pad_to_multiple_of: int | None = None
    label_dtype: str | None = None
    return_tensors: str = "pt"

    def __post_init__(self):
        if self.label_dtype not in (None, "float", "long"):
            raise ValueError(f"label_dtype must be None, 'float' or 'long', got {self.label_dtype!r}")

    def _labels(self, values: list):
        arr = np.asarray(values)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]  # [B, 1] regression targets as some datasets store them
        if arr.ndim != 1:
            raise ValueError(f"labels must be one value per row ([batch]), got shape {list(arr.shape)}")
        kind = self.label_dtype or ("long" if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool else "float")
        if kind == "float" and not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"labels must be numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float32 if kind == "float" else np.int64)
        if self.return_tensors == "pt":
            import torch

            return torch.from_numpy(arr)
        return arr

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise ValueError("MMFusionDataCollator got an empty list of rows")
        label_key = next((k for k in LABEL_KEYS if k in features[0]), None)
        batch = dict(
            self.processor.pad(features, return_tensors=self.return_tensors, pad_to_multiple_of=self.pad_to_multiple_of)
        )
        if label_key is not None:
            batch["labels"] = self._labels([row[label_key] for row in features])
        return batch
