"""Multimodal sentiment analysis (MSA) regression metrics with the community's (MMSA) definitions.

Loadable offline by path: ``evaluate.load("<package>/hf_mmfusion/metrics/msa")`` or
``hf_mmfusion.load_metric("msa")``.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

_CITATION = """\
@inproceedings{zadeh2018multimodal,
  title={Multimodal Language Analysis in the Wild: {CMU-MOSEI} Dataset and Interpretable Dynamic Fusion Graph},
  author={Zadeh, AmirAli Bagher and Liang, Paul Pu and Poria, Soujanya and Cambria, Erik and Morency, Louis-Philippe},
  booktitle={ACL},
  year={2018}
}
@inproceedings{yu2020chsims,
  title={{CH-SIMS}: A {Chinese} Multimodal Sentiment Analysis Dataset with Fine-grained Annotation of Modality},
  author={Yu, Wenmeng and Xu, Hua and Meng, Fanyang and Zhu, Yilin and Ma, Yixiao and Wu, Jiele and Zou, Jiyun and Yang, Kaicheng},
  booktitle={ACL},
  year={2020}
}
"""

_DESCRIPTION = """\
Regression metrics for sentiment scores (CMU-MOSI / CMU-MOSEI in [-3, 3], CH-SIMS in [-1, 1]) as the
MMSA toolkit computes them, so numbers are comparable with published tables. Accuracies and F1 are
fractions in [0, 1], not percentages.

MOSI/MOSEI binning (`binning="mosi"`, the default):
- `mae`: mean absolute error; `corr`: Pearson correlation (`np.corrcoef`). Corr is NaN when the
  predictions (or the references) are constant: the correlation is undefined there, and reporting 0
  would hide a collapsed model.
- `acc2_has0` / `f1_has0`: negative (< 0) versus non-negative (>= 0) over all samples. With
  `zero_as="negative"` (the MulT convention) the split is <= 0 versus > 0 instead.
- `acc2_non0` / `f1_non0`: samples whose reference is exactly 0 are dropped, then < 0 versus > 0.
  NaN when every reference is 0.
- F1 scores are scikit-learn's `f1_score(references, predictions, average="weighted")`.
- `acc5` / `acc7`: clip both to [-2, 2] / [-3, 3], round with `np.round` (half to even: 2.5 -> 2,
  -0.5 -> -0), compare.

CH-SIMS binning (`binning="sims"`): clip both to [-1, 1] (MAE and Corr are computed after the clip,
as MMSA does), then bins (lower, upper] with edges [-1.01, 0, 1.01] for `acc2`, [-1.01, -0.1, 0.1, 1.01]
for `acc3` and [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01] for `acc5`; `f1` is the weighted F1 of the 2-class bins.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted sentiment scores.
    references (`list` of `float`): gold sentiment scores.
    binning (`str`, defaults to `"mosi"`): `"mosi"` (also for MOSEI) or `"sims"`.
    zero_as (`str`, defaults to `"non_negative"`): where a score of exactly 0 goes in `acc2_has0` /
        `f1_has0`: `"non_negative"` (MMSA) or `"negative"` (MulT).
    decimals (`int`, *optional*): round every value to this many decimals (MMSA reports 4).
Returns:
    `dict`: `mae`, `corr`, `acc2_has0`, `f1_has0`, `acc2_non0`, `f1_non0`, `acc5`, `acc7` for
    `binning="mosi"`; `mae`, `corr`, `acc2`, `acc3`, `acc5`, `f1` for `binning="sims"`.
Examples:
    >>> msa = evaluate.load("hf_mmfusion/metrics/msa")
    >>> msa.compute(predictions=[2.5, -0.5, 1.2], references=[2.0, 0.0, 1.4])["acc7"]
    1.0
"""

_SIMS_EDGES = {
    "acc2": np.array([-1.01, 0.0, 1.01]),
    "acc3": np.array([-1.01, -0.1, 0.1, 1.01]),
    "acc5": np.array([-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]),
}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _rounded_accuracy(preds: np.ndarray, truth: np.ndarray, bound: float) -> float:
    # np.round is half-to-even, which is what published MOSI/MOSEI numbers use.
    return float(np.mean(np.round(np.clip(preds, -bound, bound)) == np.round(np.clip(truth, -bound, bound))))


def _binary(truth: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    if truth.size == 0:
        return float("nan"), float("nan")
    return float(accuracy_score(truth, preds)), float(f1_score(truth, preds, average="weighted"))


def _sims_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bin i holds edges[i] < x <= edges[i + 1].
    return np.searchsorted(edges, values, side="left") - 1


def mosi_metrics(preds: np.ndarray, truth: np.ndarray, zero_as: str = "non_negative") -> dict[str, float]:
    if zero_as == "non_negative":
        has0_truth, has0_preds = truth >= 0, preds >= 0
    elif zero_as == "negative":
        has0_truth, has0_preds = truth > 0, preds > 0
    else:
        raise ValueError(f"zero_as must be 'non_negative' (MMSA) or 'negative' (MulT), got {zero_as!r}")
    acc2_has0, f1_has0 = _binary(has0_truth, has0_preds)
    non0 = truth != 0
    acc2_non0, f1_non0 = _binary(truth[non0] > 0, preds[non0] > 0)
    return {
        "mae": float(np.mean(np.abs(preds - truth))),
        "corr": _pearson(preds, truth),
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
        "acc2_non0": acc2_non0,
        "f1_non0": f1_non0,
        "acc5": _rounded_accuracy(preds, truth, 2.0),
        "acc7": _rounded_accuracy(preds, truth, 3.0),
    }


def sims_metrics(preds: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    preds, truth = np.clip(preds, -1.0, 1.0), np.clip(truth, -1.0, 1.0)
    bins = {name: (_sims_bins(preds, e), _sims_bins(truth, e)) for name, e in _SIMS_EDGES.items()}
    out = {"mae": float(np.mean(np.abs(preds - truth))), "corr": _pearson(preds, truth)}
    out.update({name: float(np.mean(p == t)) for name, (p, t) in bins.items()})
    out["f1"] = float(f1_score(bins["acc2"][1], bins["acc2"][0], average="weighted"))
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Msa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            reference_urls=["https://github.com/thuiar/MMSA"],
        )

    def _compute(self, predictions, references, binning="mosi", zero_as="non_negative", decimals=None):
        preds = np.asarray(predictions, dtype=np.float64).reshape(-1)
        truth = np.asarray(references, dtype=np.float64).reshape(-1)
        if preds.shape != truth.shape or preds.size == 0:
            raise ValueError(
                f"predictions and references must be non-empty and of equal length, got {preds.size} and {truth.size}"
            )
        if not (np.isfinite(preds).all() and np.isfinite(truth).all()):
            raise ValueError("predictions and references must be finite (no NaN or inf)")
        if binning in ("mosi", "mosei"):
            out = mosi_metrics(preds, truth, zero_as=zero_as)
        elif binning == "sims":
            out = sims_metrics(preds, truth)
        else:
            raise ValueError(f"binning must be 'mosi', 'mosei' or 'sims', got {binning!r}")
        if decimals is not None:
            out = {k: round(v, decimals) for k, v in out.items()}
        return out
