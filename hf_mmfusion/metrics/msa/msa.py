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
Regression metrics for sentiment scores (CMU-MOSI / CMU-MOSEI in [-3, 3], CH-SIMS in [-1, 1], or any
other scale such as ICT-MMMO's ratings 1-5) as the MMSA toolkit computes them, so numbers are comparable
with published tables. Accuracies and F1 are fractions in [0, 1], not percentages.

MOSI/MOSEI binning (`binning="mosi"`, the default):
- `mae`: mean absolute error; `corr`: Pearson correlation (`np.corrcoef`). Corr is NaN when the
  predictions (or the references) are constant: the correlation is undefined there, and reporting 0
  would hide a collapsed model.
- `acc2_has0` / `f1_has0`: negative (< 0) versus non-negative (>= 0) over all samples. With
  `zero_as="negative"` (the MulT convention) the split is <= 0 versus > 0 instead.
- `acc2_non0` / `f1_non0`: samples whose reference is exactly 0 are dropped, then < 0 versus > 0.
  NaN when every reference is 0.
- `boundary` (default 0) moves the polarity split for labels on another scale: every "0" above becomes
  `boundary` (has-0: < boundary versus >= boundary; non-0 drops references equal to it). ICT-MMMO's
  usual binary protocol (ratings 1-5, >= 3.5 positive) is `boundary=3.5`.
- F1 scores are scikit-learn's `f1_score(references, predictions, average="weighted")`.
- `acc5` / `acc7`: clip both to [-2, 2] / [-3, 3], round with `np.round` (half to even: 2.5 -> 2,
  -0.5 -> -0), compare. These classes are the integer sentiment grades of the [-3, 3] scale, so they are
  reported only with `boundary=0`; with any other boundary the labels are on another scale and the two
  keys are absent from the result.
- MAE and Corr are computed without overflow for any finite inputs (Pearson's r on the values scaled by
  their largest magnitude, which it does not depend on); an MAE beyond the float64 range raises a
  `ValueError` instead of reporting `inf`.

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
    boundary (`float`, defaults to 0.0): the polarity boundary of `acc2_*` / `f1_*` (`binning="mosi"`
        only): references and predictions >= boundary are positive (> boundary with `zero_as="negative"`).
        Use 3.5 for ICT-MMMO's ratings 1-5. `acc5` / `acc7` are reported only when it is 0.
    decimals (`int`, *optional*): round every value to this many decimals (MMSA reports 4); a
        non-negative integer.
Returns:
    `dict`: `mae`, `corr`, `acc2_has0`, `f1_has0`, `acc2_non0`, `f1_non0`, `acc5`, `acc7` for
    `binning="mosi"` (without `acc5` / `acc7` when `boundary` is not 0); `mae`, `corr`, `acc2`, `acc3`,
    `acc5`, `f1` for `binning="sims"`.
Examples:
    >>> msa = evaluate.load("hf_mmfusion/metrics/msa")
    >>> msa.compute(predictions=[2.5, -0.5, 1.2], references=[2.0, 0.0, 1.4])["acc7"]
    1.0
    >>> msa.compute(predictions=[4.2, 3.0, 1.5], references=[4.5, 4.0, 1.0], boundary=3.5)["acc2_has0"]
    0.6666666666666666
"""

_SIMS_EDGES = {
    "acc2": np.array([-1.01, 0.0, 1.01]),
    "acc3": np.array([-1.01, -0.1, 0.1, 1.01]),
    "acc5": np.array([-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]),
}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    # r does not depend on the scale of either variable; scaling by the largest magnitude keeps the sums of
    # squares inside the float64 range for any finite inputs (1e308 would overflow them).
    x, y = x / np.max(np.abs(x)), y / np.max(np.abs(y))
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))


def _mae(preds: np.ndarray, truth: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(preds))), float(np.max(np.abs(truth))))
    if scale == 0.0:
        return 0.0
    # Differences of values near the float64 limit overflow; their mean after scaling need not.
    with np.errstate(over="ignore"):
        mae = float(np.mean(np.abs(preds / scale - truth / scale)) * scale)
    if not np.isfinite(mae):
        raise ValueError(
            f"mae: the mean absolute error of these finite predictions and references exceeds the float64 range "
            f"(largest magnitude {scale:.3g}); check the predictions' scale"
        )
    return mae


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


def mosi_metrics(
    preds: np.ndarray, truth: np.ndarray, zero_as: str = "non_negative", boundary: float = 0.0
) -> dict[str, float]:
    if zero_as == "non_negative":
        has0_truth, has0_preds = truth >= boundary, preds >= boundary
    elif zero_as == "negative":
        has0_truth, has0_preds = truth > boundary, preds > boundary
    else:
        raise ValueError(f"zero_as must be 'non_negative' (MMSA) or 'negative' (MulT), got {zero_as!r}")
    acc2_has0, f1_has0 = _binary(has0_truth, has0_preds)
    non0 = truth != boundary
    acc2_non0, f1_non0 = _binary(truth[non0] > boundary, preds[non0] > boundary)
    out = {
        "mae": _mae(preds, truth),
        "corr": _pearson(preds, truth),
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
        "acc2_non0": acc2_non0,
        "f1_non0": f1_non0,
    }
    if boundary == 0.0:
        out["acc5"] = _rounded_accuracy(preds, truth, 2.0)
        out["acc7"] = _rounded_accuracy(preds, truth, 3.0)
    return out


def _check_boundary(boundary) -> float:
    if isinstance(boundary, bool) or not isinstance(boundary, (int, float, np.integer, np.floating)):
        raise ValueError(f"boundary must be a finite number (the polarity boundary), got {boundary!r}")
    if not np.isfinite(boundary):
        raise ValueError(f"boundary must be a finite number (the polarity boundary), got {boundary!r}")
    return float(boundary)


def _check_decimals(decimals):
    if decimals is None:
        return None
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)) or decimals < 0:
        # round(x, -1) rounds to tens: every fraction in [0, 1] would read 0.0.
        raise ValueError(f"decimals must be a non-negative integer (MMSA reports 4), got {decimals!r}")
    return int(decimals)


def sims_metrics(preds: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    preds, truth = np.clip(preds, -1.0, 1.0), np.clip(truth, -1.0, 1.0)
    bins = {name: (_sims_bins(preds, e), _sims_bins(truth, e)) for name, e in _SIMS_EDGES.items()}
    out = {"mae": _mae(preds, truth), "corr": _pearson(preds, truth)}
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

    def _compute(self, predictions, references, binning="mosi", zero_as="non_negative", boundary=0.0, decimals=None):
        boundary = _check_boundary(boundary)
        decimals = _check_decimals(decimals)
        preds = np.asarray(predictions, dtype=np.float64).reshape(-1)
        truth = np.asarray(references, dtype=np.float64).reshape(-1)
        if preds.shape != truth.shape or preds.size == 0:
            raise ValueError(
                f"predictions and references must be non-empty and of equal length, got {preds.size} and {truth.size}"
            )
        if not (np.isfinite(preds).all() and np.isfinite(truth).all()):
            raise ValueError("predictions and references must be finite (no NaN or inf)")
        if binning in ("mosi", "mosei"):
            out = mosi_metrics(preds, truth, zero_as=zero_as, boundary=boundary)
        elif binning == "sims":
            if boundary != 0.0:
                raise ValueError("boundary applies to binning='mosi'; CH-SIMS' bins have fixed edges")
            out = sims_metrics(preds, truth)
        else:
            raise ValueError(f"binning must be 'mosi', 'mosei' or 'sims', got {binning!r}")
        if decimals is not None:
            out = {k: round(v, decimals) for k, v in out.items()}
        return out
