"""The shipped `evaluate` modules against hand-computed values (MMSA semantics)."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import evaluate  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hf_mmfusion.metrics import load_metric, metric_path  # noqa: E402

# Hand-worked example: zeros in the references (idx 1, 6), a 0.5 tie (idx 0, 1), a 1.5 tie (idx 2),
# a prediction beyond the 7-class range (idx 7).
PREDS = [2.5, -0.5, 1.5, -2.6, 0.1, 0.4, -1.2, 3.7]
TRUTH = [2.0, 0.0, 2.0, -3.0, -0.4, 1.0, 0.0, 2.4]


@pytest.fixture(scope="module")
def msa():
    return load_metric("msa", keep_in_memory=True)


def test_msa_matches_hand_computed_values(msa):
    out = msa.compute(predictions=PREDS, references=TRUTH)
    assert out["mae"] == pytest.approx(5.5 / 8)
    assert out["corr"] == pytest.approx(np.corrcoef(PREDS, TRUTH)[0, 1])
    # has-0: truth >= 0 is [T T T F F T T T], preds >= 0 is [T F T F T T F T].
    assert out["acc2_has0"] == pytest.approx(5 / 8)
    assert out["f1_has0"] == pytest.approx((6 * 8 / 11 + 2 * 2 / 5) / 8)
    # non-0 drops idx 1 and 6; only idx 4 (pred 0.1, truth -0.4) is wrong.
    assert out["acc2_non0"] == pytest.approx(5 / 6)
    assert out["f1_non0"] == pytest.approx((4 * 8 / 9 + 2 * 2 / 3) / 6)
    # 7 classes: 2.5 -> 2 and -0.5 -> -0 (half to even) agree with the truth; idx 5, 6, 7 do not.
    assert out["acc7"] == pytest.approx(5 / 8)
    # 5 classes: clipping to [-2, 2] makes idx 7 agree (2 vs 2).
    assert out["acc5"] == pytest.approx(6 / 8)


def test_half_to_even_rounding_not_half_away_from_zero(msa):
    preds = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
    truth = [0.0, 2.0, 2.0, 0.0, -2.0, -2.0]
    out = msa.compute(predictions=preds, references=truth)
    assert out["acc7"] == 1.0
    # Rounding half away from zero would give 1, 2, 3, -1, -2, -3: only the two 1.5 cases agree.
    away = [math.copysign(math.floor(abs(p) + 0.5), p) for p in preds]
    assert msa.compute(predictions=away, references=truth)["acc7"] == pytest.approx(2 / 6)


def test_mult_convention_counts_zero_as_negative(msa):
    out = msa.compute(predictions=PREDS, references=TRUTH, zero_as="negative")
    # truth > 0 is [T F T F F T F T], preds > 0 is [T F T F T T F T]: only idx 4 differs.
    assert out["acc2_has0"] == pytest.approx(7 / 8)
    assert out["f1_has0"] == pytest.approx((4 * 8 / 9 + 4 * 6 / 7) / 8)
    # The non-0 variants ignore the convention.
    assert out["acc2_non0"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="zero_as"):
        msa.compute(predictions=PREDS, references=TRUTH, zero_as="positive")


def test_corr_is_nan_for_constant_predictions_and_non0_nan_without_nonzero_truth(msa):
    out = msa.compute(predictions=[0.3, 0.3, 0.3], references=[1.0, -1.0, 2.0])
    assert math.isnan(out["corr"])
    assert out["mae"] == pytest.approx((0.7 + 1.3 + 1.7) / 3)
    zeros = msa.compute(predictions=[0.3, -0.2], references=[0.0, 0.0])
    assert math.isnan(zeros["acc2_non0"]) and math.isnan(zeros["f1_non0"])
    assert zeros["acc2_has0"] == pytest.approx(0.5)


def test_sims_binning(msa):
    preds = [-1.0, -0.1, 0.0, 0.1, 0.7, 2.0]
    truth = [-0.8, -0.2, 0.05, 0.1, 0.75, 0.9]
    out = msa.compute(predictions=preds, references=truth, binning="sims")
    assert set(out) == {"mae", "corr", "acc2", "acc3", "acc5", "f1"}
    assert out["mae"] == pytest.approx(0.5 / 6)  # after clipping 2.0 -> 1.0
    assert out["acc2"] == pytest.approx(5 / 6)  # 0.0 falls in the lower bin (-1.01, 0]
    assert out["acc3"] == pytest.approx(1.0)  # -0.1 and 0.1 sit on upper bin edges
    assert out["acc5"] == pytest.approx(5 / 6)  # 0.7 -> (0.1, 0.7], 0.75 -> (0.7, 1.01]
    assert out["f1"] == pytest.approx((4 * 6 / 7 + 2 * 4 / 5) / 6)


def test_msa_rejects_bad_input_and_rounds_on_request(msa):
    with pytest.raises(ValueError, match="predictions"):
        msa.compute(predictions=[0.1, 0.2], references=[0.1])
    with pytest.raises(ValueError, match="finite"):
        msa.compute(predictions=[float("nan"), 0.2], references=[0.1, 0.3])
    with pytest.raises(ValueError, match="binning"):
        msa.compute(predictions=[0.1, 0.2], references=[0.1, 0.3], binning="iemocap")
    out = msa.compute(predictions=PREDS, references=TRUTH, decimals=4)
    assert out["f1_has0"] == round((6 * 8 / 11 + 2 * 2 / 5) / 8, 4)


def test_polarity_boundary_for_other_label_scales(msa):
    # ICT-MMMO ratings 1-5, >= 3.5 positive.
    preds = [4.2, 3.0, 1.5, 3.6, 3.4]
    truth = [4.5, 4.0, 1.0, 3.5, 2.0]
    out = msa.compute(predictions=preds, references=truth, boundary=3.5)
    # has-0: truth >= 3.5 is [T T F T F], preds >= 3.5 is [T F F T F]: idx 1 differs.
    assert out["acc2_has0"] == pytest.approx(4 / 5)
    assert out["f1_has0"] == pytest.approx((3 * 4 / 5 + 2 * 4 / 5) / 5)
    # non-0 drops idx 3 (truth exactly 3.5): [T T F F] versus [T F F F].
    assert out["acc2_non0"] == pytest.approx(3 / 4)
    # zero_as="negative": truth > 3.5 is [T T F F F], preds > 3.5 is [T F F T F].
    assert msa.compute(predictions=preds, references=truth, boundary=3.5, zero_as="negative")["acc2_has0"] == 3 / 5
    # Every label is positive against the default boundary 0, so all predictions are "right" there.
    assert msa.compute(predictions=preds, references=truth)["acc2_has0"] == 1.0
    # Acc-5 / Acc-7 are grades of the [-3, 3] scale: not reported on another scale.
    assert set(out) == {"mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"}
    assert out["mae"] == pytest.approx(np.mean(np.abs(np.subtract(preds, truth))))
    assert {"acc5", "acc7"} <= set(msa.compute(predictions=preds, references=truth, boundary=0))
    for bad in (float("nan"), "3.5", None, True):
        with pytest.raises(ValueError, match="boundary"):
            msa.compute(predictions=preds, references=truth, boundary=bad)
    with pytest.raises(ValueError, match="boundary applies to binning='mosi'"):
        msa.compute(predictions=preds, references=truth, binning="sims", boundary=0.5)


def test_invalid_decimals_are_refused(msa):
    for bad in (-1, 2.5, "4", True):
        with pytest.raises(ValueError, match="decimals must be a non-negative integer"):
            msa.compute(predictions=PREDS, references=TRUTH, decimals=bad)
    assert msa.compute(predictions=PREDS, references=TRUTH, decimals=0)["acc7"] == 1.0  # 0.625 rounds up


def test_extreme_finite_values_give_finite_metrics_or_a_clear_error(msa):
    out = msa.compute(predictions=[1e308, -1e308], references=[1, 0])
    assert out["corr"] == pytest.approx(1.0)
    assert out["mae"] == pytest.approx(1e308)
    scaled = msa.compute(predictions=[3e300, -2e300, 1e300], references=[1.0, 0.0, 2.0])
    assert scaled["corr"] == pytest.approx(np.corrcoef([3.0, -2.0, 1.0], [1.0, 0.0, 2.0])[0, 1])
    with pytest.raises(ValueError, match="mae"):
        msa.compute(predictions=[1.7e308, 1.7e308], references=[-1.7e308, -1.7e308])
    sims = msa.compute(predictions=[1e308, -1e308], references=[1, 0], binning="sims")
    assert math.isfinite(sims["mae"]) and math.isfinite(sims["corr"])


def test_classification_metric():
    clf = load_metric("classification", keep_in_memory=True)
    preds, refs = [0, 1, 2, 2, 1, 0], [0, 1, 1, 2, 2, 2]
    out = clf.compute(predictions=preds, references=refs)
    # Per-class F1: 2/3 (support 1), 1/2 (support 2), 2/5 (support 3).
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 5) / 3)
    assert out["f1_weighted"] == pytest.approx((1 * 2 / 3 + 2 * 1 / 2 + 3 * 2 / 5) / 6)
    # A class absent from the batch still weighs in the macro average when named.
    wide = clf.compute(predictions=preds, references=refs, labels=[0, 1, 2, 3])
    assert wide["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 5) / 4)


def test_modules_load_by_plain_evaluate_path_offline():
    assert evaluate.load(metric_path("msa"), keep_in_memory=True).name == "msa"
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("bleu")


def test_classification_metric_refuses_float_and_negative_ids():
    clf = load_metric("classification", keep_in_memory=True)
    with pytest.raises(ValueError, match="non-integer values"):
        clf.compute(predictions=[0.7, 1.2], references=[0, 1])
    with pytest.raises(ValueError, match=">= 0"):
        clf.compute(predictions=[0, 1], references=[-1, 1])
    with pytest.raises(ValueError, match="non-integer"):
        clf.add_batch(predictions=[float("nan")], references=[0])
    assert clf.compute(predictions=[1.0, 0.0], references=[1, 1])["accuracy"] == 0.5
