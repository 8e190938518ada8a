"""Classification metrics for multimodal tasks (emotion, action, polarity classes).

Loadable offline by path: ``hf_mmfusion.load_metric("classification")``.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

_DESCRIPTION = """\
Accuracy, macro F1 and weighted F1 (scikit-learn definitions) for single-label classification, as
fractions in [0, 1]. Predictions are class ids; pass `logits=True` with 2-D scores to take the argmax.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): gold class ids.
    labels (`list` of `int`, *optional*): the full label set, so classes absent from this batch still
        count in the macro average (scikit-learn gives them F1 = 0).
Returns:
    `dict`: `accuracy`, `f1_macro`, `f1_weighted`.
Examples:
    >>> clf = evaluate.load("hf_mmfusion/metrics/mm_classification")
    >>> clf.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]
    0.6666666666666666
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MmClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of class ids (checked: integers >= 0)."""
        _check_class_ids(predictions, "predictions")
        _check_class_ids(references, "references")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one prediction / reference pair of class ids (checked: integers >= 0)."""
        _check_class_ids([prediction], "predictions")
        _check_class_ids([reference], "references")
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Accuracy and F1 of class ids (checked: integers >= 0, never truncated)."""
        # evaluate casts to int64 silently (2.7 -> 2, True -> 1): ids are checked on the raw values.
        if predictions is not None:
            _check_class_ids(predictions, "predictions")
        if references is not None:
            _check_class_ids(references, "references")
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, labels=None):
        preds = np.asarray(predictions, dtype=np.int64)
        truth = np.asarray(references, dtype=np.int64)
        if preds.shape != truth.shape or preds.size == 0:
            raise ValueError(
                f"predictions and references must be non-empty and of equal length, got {preds.size} and {truth.size}"
            )
        return {
            "accuracy": float(accuracy_score(truth, preds)),
            "f1_macro": float(f1_score(truth, preds, average="macro", labels=labels, zero_division=0)),
            "f1_weighted": float(f1_score(truth, preds, average="weighted", labels=labels, zero_division=0)),
        }


def _check_class_ids(values, name: str) -> None:
    if values is None:
        return
    array = np.asarray(values)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` must be integer class ids, got {array.dtype} values")
    if array.dtype.kind == "f" and (not np.isfinite(array).all() or (array != np.round(array)).any()):
        raise ValueError(
            f"`{name}` must be integer class ids, got non-integer values (take the argmax of scores first)"
        )
    if array.size and array.min() < 0:
        raise ValueError(f"`{name}` must be class ids >= 0, got {array.min()}")
