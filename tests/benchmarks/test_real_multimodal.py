"""``benchmarks/real_multimodal.py`` on tiny synthetic arrays: folds, tables, test predictions, selection."""

from __future__ import annotations

import csv
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from workflow_helpers import one_torch_thread  # noqa: F401  (autouse fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import real_multimodal as bench  # noqa: E402


def av_split(rng, n: int, prefix: str, with_label: bool = True, steps: int = 6) -> dict:
    audio = rng.normal(size=(n, steps, 6)).astype(np.float32) * 50
    vision = rng.normal(size=(n, steps, 5)).astype(np.float32)
    for i in range(n):
        front, back = i % 3, (i // 3) % 2  # all-zero steps at either end are padding
        audio[i, :front] = vision[i, :front] = 0
        if back:
            audio[i, -back:] = vision[i, -back:] = 0
    out = {f"{prefix}_id": np.array([f"{prefix}{i}" for i in range(n)]), f"{prefix}_audio": audio,
           f"{prefix}_vision": vision}
    if with_label:
        signal = audio[:, :, 0].sum(1) / 200 + vision[:, :, 0].sum(1)
        out[f"{prefix}_label"] = np.clip(3 + signal, 1, 5).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def mmmo_files(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("mmmo")
    np.savez(folder / "data.npz", **av_split(rng, 24, "train"), **av_split(rng, 8, "valid"))
    np.savez(folder / "test.npz", **av_split(rng, 5, "test", with_label=False))
    return folder / "data.npz", folder / "test.npz"


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| model") and "---" not in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def run_mmmo(tmp_path, data, name, *extra):
    out = tmp_path / name
    argv = ["mmmo", "--data", str(data), "--seeds", "1", "2", "--output-dir", str(out), "--models", "ridge", "clcr",
            "--num_train_epochs", "3", "--no-progress", *extra]
    assert bench.main(argv) == 0
    return out


def test_ridge_features_pool_real_steps_only():
    frames = np.zeros((6, 2), dtype=np.float32)
    frames[1] = [1, 2]
    frames[3] = [3, 4]  # the zero step inside stays: only the ends are padding
    split = {"id": ["a", "b"], "audio": np.stack([frames, frames]), "visual": np.stack([frames, np.zeros_like(frames)])}
    pooled = bench.pooled_features(split)
    np.testing.assert_allclose(pooled[0], np.concatenate([frames[1:4].mean(0), frames[1:4].std(0)] * 2))
    # A video without visual steps pools to zeros for that modality.
    np.testing.assert_allclose(pooled[1, 4:], 0.0)


def test_fold_assignment_keeps_videos_whole_and_depends_on_cv_seed():
    groups = [f"video{v}" for v in range(12) for _ in range(1 + v % 4)]
    first = bench.fold_assignment(groups, 4, cv_seed=0)
    for video in set(groups):
        assert len({f for g, f in zip(groups, first) if g == video}) == 1, video
    assert set(first.tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(first, bench.fold_assignment(groups, 4, cv_seed=0))
    videos_by_fold = [
        {frozenset(g for g, f in zip(groups, bench.fold_assignment(groups, 4, cv_seed=s)) if f == k) for k in range(4)}
        for s in range(4)
    ]
    assert len({frozenset(v) for v in videos_by_fold}) > 1, "the folds do not depend on --cv-seed"
    with pytest.raises(ValueError, match="--folds"):
        bench.fold_assignment(groups, 13, cv_seed=0)


def test_mmmo_two_seeds_table_arithmetic_and_test_predictions(tmp_path, mmmo_files):
    data, test = mmmo_files
    out = run_mmmo(tmp_path, data, "run", "--test", str(test))
    rows = table_rows((out / "results.md").read_text())
    assert list(rows) == ["ridge", "clcr"]
    for model in ("ridge", "clcr"):
        values = {k: [] for k in ("mae", "corr", "acc2")}
        for seed in (1, 2):
            directory = out / model / f"seed-{seed}"
            result = json.loads((directory / "result.json").read_text())
            metrics = result["validation"] if model == "ridge" else result["mmmo_validation"]
            for key in values:
                values[key].append(metrics[key])
            with (directory / "test_predictions.csv").open() as handle:
                predictions = list(csv.DictReader(handle))
            assert [p["id"] for p in predictions] == [f"test{i}" for i in range(5)]
            assert all(math.isfinite(float(p["prediction"])) for p in predictions)
        for column, key in enumerate(("mae", "corr", "acc2")):
            mean, std = float(np.mean(values[key])), float(np.std(values[key], ddof=1))
            assert rows[model][column] == f"{mean:.3f} ± {std:.3f}"
        assert rows[model][3] == "2"


def test_mmmo_selection_uses_validation_only(tmp_path, mmmo_files):
    data, test = mmmo_files
    with_test = run_mmmo(tmp_path, data, "with-test", "--test", str(test))
    rng = np.random.default_rng(5)
    other = tmp_path / "other-test.npz"
    np.savez(other, **av_split(rng, 7, "test", with_label=False))
    with_other = run_mmmo(tmp_path, data, "with-other-test", "--test", str(other))
    without = run_mmmo(tmp_path, data, "without-test")
    assert (with_test / "results.md").read_text().split("\n\n")[0] == (without / "results.md").read_text().split("\n\n")[0]
    for seed in (1, 2):
        results = [json.loads((d / "clcr" / f"seed-{seed}" / "result.json").read_text())
                   for d in (with_test, with_other, without)]
        assert len({r["best_checkpoint_step"] for r in results}) == 1
        assert len({json.dumps(r["mmmo_validation"]) for r in results}) == 1
        # The kept checkpoint is the epoch with the lowest validation MAE.
        state = json.loads((without / "clcr" / f"seed-{seed}" / "trainer_state.json").read_text())
        evals = [(e["eval_mae"], e["step"]) for e in state["log_history"] if "eval_mae" in e]
        assert results[0]["best_checkpoint_step"] == min(evals)[1]


def test_mmmo_cv_folds_partition_the_pooled_videos_and_depend_on_cv_seed():
    folds = bench.mmmo_cv_folds(30, 5, 6, cv_seed=0)
    held = np.concatenate([f[2] for f in folds])
    assert sorted(held.tolist()) == list(range(30))  # every video is held out exactly once
    for train, valid, held_out in folds:
        assert len(valid) == 6 and len(held_out) == 6 and len(train) == 18
        assert sorted(np.concatenate([train, valid, held_out]).tolist()) == list(range(30))
    again = bench.mmmo_cv_folds(30, 5, 6, cv_seed=0)
    assert all(np.array_equal(a, b) for f, g in zip(folds, again) for a, b in zip(f, g))
    other = bench.mmmo_cv_folds(30, 5, 6, cv_seed=1)
    assert any(not np.array_equal(f[2], g[2]) for f, g in zip(folds, other))
    with pytest.raises(ValueError, match="--valid-videos"):
        bench.mmmo_cv_folds(30, 5, 24, cv_seed=0)  # nothing left to train on
    with pytest.raises(ValueError, match="--folds"):
        bench.mmmo_cv_folds(30, 1, 6, cv_seed=0)


def test_mmmo_cv_trains_and_selects_without_the_held_out_fold(tmp_path, mmmo_files):
    data, _ = mmmo_files
    out = tmp_path / "cv"
    argv = ["mmmo-cv", "--data", str(data), "--folds", "2", "--valid-videos", "4", "--seeds", "1", "2",
            "--output-dir", str(out), "--models", "ridge", "clcr", "--num_train_epochs", "1", "--no-progress"]
    assert bench.main(argv) == 0
    record = json.loads((out / "folds.json").read_text())
    source = np.load(data)
    pooled = {k: np.concatenate([source[f"train_{k}"], source[f"valid_{k}"]]) for k in ("id", "audio", "vision", "label")}
    with (out / "per_run.csv").open() as handle:
        per_run = list(csv.DictReader(handle))
    assert len(per_run) == 2 * 2 * 2  # models x folds x seeds
    for fold, split in enumerate(record["splits"]):
        fold_data = np.load(out / f"fold-{fold}" / "data.npz")
        assert set(fold_data["train_id"]) == set(split["train"]) and set(fold_data["valid_id"]) == set(split["valid"])
        assert not set(split["held_out"]) & (set(split["train"]) | set(split["valid"]))
        held = np.isin(pooled["id"], split["held_out"])
        with (out / f"fold-{fold}" / "clcr" / "seed-1" / "heldout_predictions.csv").open() as handle:
            assert [r["id"] for r in csv.DictReader(handle)] == pooled["id"][held].tolist()
        # The ridge row is the ridge fitted on the fold's training videos, scored on the held-out fold.
        ridge = bench.fit_ridge({"id": fold_data["train_id"], "audio": fold_data["train_audio"],
                                 "visual": fold_data["train_vision"], "label": fold_data["train_label"]})
        expected = bench.mmmo_metrics(ridge.predict(bench.pooled_features(
            {"id": pooled["id"][held], "audio": pooled["audio"][held], "visual": pooled["vision"][held]})),
            pooled["label"][held])
        row = next(r for r in per_run if r["model"] == "ridge" and r["fold"] == str(fold) and r["seed"] == "1")
        assert float(row["mae"]) == pytest.approx(expected["mae"])
    rows = table_rows((out / "results.md").read_text())
    assert rows["clcr"][3] == "4" and rows["clcr"][0] != rows["ridge"][0]


def test_mmmo_cv_table_pairs_each_model_with_the_ridge():
    per_run = [
        {"model": m, "fold": f, "seed": seed, "mae": mae, "corr": 0.5, "acc2": acc}
        for m, by_fold in (("ridge", ((1.0, 0.7), (1.2, 0.6))), ("ssu", ((0.9, 0.8), (1.4, 0.7))))
        for f, (mae, acc) in enumerate(by_fold)
        for seed in (1, 2)
    ]
    rows = table_rows(bench.mmmo_cv_table(per_run, ["ridge", "ssu"]))
    assert rows["ssu"] == ["1.150 ± 0.289", "0.500 ± 0.000", "0.750 ± 0.058", "4"]  # over folds and seeds
    diff = np.array([-0.1, -0.1, 0.2, 0.2])
    half = 3.182446305284263 * diff.std(ddof=1) / 2  # t(0.975, 3) * s / sqrt(4)
    assert rows["ssu − ridge"] == ["+0.050", f"[{0.05 - half:+.3f}, {0.05 + half:+.3f}]", "+0.100", "1 of 2"]
    assert "ridge − ridge" not in rows


def test_output_dir_not_written_by_the_benchmark_is_refused(tmp_path, mmmo_files, capsys):
    data, _ = mmmo_files
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert bench.main(["mmmo", "--data", str(data), "--output-dir", str(folder), "--models", "ridge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --output-dir")
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_mmmo_test_file_without_arrays_is_refused_before_training(tmp_path, mmmo_files, capsys):
    data, _ = mmmo_files
    bad = tmp_path / "bad.npz"
    np.savez(bad, test_id=np.array(["a"]))
    out = tmp_path / "out"
    assert bench.main(["mmmo", "--data", str(data), "--test", str(bad), "--output-dir", str(out)]) == 2
    assert "test_audio" in capsys.readouterr().err
    assert not out.exists()


def test_mmmo_files_with_other_widths_or_repeated_ids_are_refused_before_training(tmp_path, mmmo_files, capsys):
    data, test = mmmo_files
    arrays = dict(np.load(data))
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, **{**arrays, "valid_audio": arrays["valid_audio"][:, :, :4]})
    repeated = tmp_path / "repeated.npz"
    np.savez(repeated, **{**arrays, "valid_id": arrays["train_id"][:8]})
    bad_test = tmp_path / "bad_test.npz"
    np.savez(bad_test, **{**dict(np.load(test)), "test_vision": np.zeros((5, 6, 3), np.float32)})
    cases = [(narrow, None, "valid_audio must be [N=8, steps, 6]"), (repeated, None, "valid_id and train_id share"),
             (data, bad_test, "test_vision must be [N=5, steps, 5]")]
    for source, test_file, message in cases:
        out = tmp_path / f"out-{source.stem}-{test_file is not None}"
        argv = ["mmmo", "--data", str(source), "--output-dir", str(out), "--models", "ridge"]
        assert bench.main(argv + (["--test", str(test_file)] if test_file else [])) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_mmmo_folder_of_other_inputs_is_refused(tmp_path, mmmo_files, capsys):
    data, test = mmmo_files
    out = tmp_path / "out"
    argv = ["mmmo", "--data", str(data), "--seeds", "1", "--output-dir", str(out), "--models", "ridge"]
    assert bench.main(argv) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # Finished runs keep no weights: a later --test could not predict with them, nor may runs of other data
    # share their table.
    relabelled = tmp_path / "relabelled.npz"
    np.savez(relabelled, **{**dict(np.load(data)), "train_label": np.full(24, 5.0, np.float32)})
    for extra, what in ((["--test", str(test)], "--test contents"), (["--num_train_epochs", "1"], "--num_train_epochs")):
        assert bench.main(argv + extra) == 2
        assert what in capsys.readouterr().err
    assert bench.main(["mmmo", "--data", str(relabelled), *argv[3:]]) == 2
    assert "--data contents" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert bench.main(argv) == 0  # the same inputs resume


def test_cv_table_paired_difference():
    per_run = [
        {"model": m, "fold": f, "seed": 1, "mae": mae, "corr": 0.5, "acc2_has0": 0.7, "acc7": 0.3}
        for m, maes in (("clcr_t", (1.0, 0.8, 0.9)), ("clcr_tav", (0.9, 0.8, 0.7)))
        for f, mae in enumerate(maes)
    ]
    table = bench.cv_table(per_run, ["clcr_t", "clcr_tav"])
    rows = table_rows(table)
    assert rows["clcr_t"][0] == "0.900 ± 0.100"
    diff = np.array([-0.1, 0.0, -0.2])
    half = 4.302652729911275 * diff.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert rows["clcr_tav − clcr_t"] == ["-0.100", f"[{-0.1 - half:+.3f}, {-0.1 + half:+.3f}]", "3"]
    assert "seed: MAE over folds" not in table  # one seed: its mean is the pooled one
    assert "clcr_tav − late_fusion" not in rows  # a pair is listed only where both models ran


def test_cv_table_pairs_each_fusion_model_with_the_late_fusion():
    per_run = [
        {"model": m, "fold": f, "seed": 1, "mae": mae, "corr": 0.5, "acc2_has0": 0.7, "acc7": 0.3}
        for m, maes in (("late_fusion", (1.0, 1.2)), ("ssu_tav", (1.1, 1.4)), ("ssu_t", (1.0, 1.0)))
        for f, mae in enumerate(maes)
    ]
    rows = table_rows(bench.cv_table(per_run, ["late_fusion", "ssu_t", "ssu_tav"]))
    assert rows["ssu_tav − late_fusion"][0] == "+0.150" and rows["ssu_tav − late_fusion"][2] == "2"
    assert rows["ssu_tav − ssu_t"][0] == "+0.250"


def test_cv_table_shows_each_seeds_mean_over_folds():
    per_run = [
        {"model": m, "fold": f, "seed": seed, "mae": base + shift + 0.1 * f, "corr": 0.5, "acc2_has0": 0.7, "acc7": 0.3}
        for m, base in (("text", 1.0), ("ssu_t", 1.2))
        for seed, shift in ((7, 0.0), (3, 0.3))
        for f in range(2)
        if not (m == "ssu_t" and seed == 3)
    ]
    rows = table_rows(bench.cv_table(per_run, ["text", "ssu_t"]))
    assert rows["seed: MAE over folds"] == ["text", "ssu_t"]
    assert rows["7"] == ["1.050", "1.250"]
    assert rows["3"] == ["1.350", "n/a"]  # in the order the seeds were given; a seed without runs says so


def tiny_mosi(tmp_path):
    """A tiny BERT encoder folder and a MISA-format pickle of 6 videos x 3 segments; returns both paths."""
    from transformers import BertModel

    from hf_mmfusion.data.synthetic import build_synthetic_tokenizer
    from hf_mmfusion.workflows.training.builders import tiny_text_config

    encoder = tmp_path / "tiny-bert"
    tokenizer = build_synthetic_tokenizer()
    BertModel(tiny_text_config(len(tokenizer), hidden_size=32, num_layers=1)).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    rng = np.random.default_rng(1)
    vocabulary = list(tokenizer.get_vocab())[:40]
    samples = []
    for video in range(6):
        for k in range(3):
            length = int(rng.integers(2, 6))
            words = [str(w) for w in rng.choice(vocabulary, size=length)]
            features = (np.zeros(length, dtype=np.int64), rng.normal(size=(length, 5)).astype(np.float32),
                        rng.normal(size=(length, 6)).astype(np.float32), words)
            samples.append((features, np.array([[rng.uniform(-3, 3)]], dtype=np.float32), f"vid{video}[{k}]"))
    data = tmp_path / "misa.pkl"
    data.write_bytes(pickle.dumps(samples))
    return encoder, data


def test_mosi_cv_tiny_end_to_end(tmp_path):
    encoder, data = tiny_mosi(tmp_path)
    out = tmp_path / "cv"
    argv = ["mosi-cv", "--data", str(data), "--folds", "2", "--cv-seed", "3", "--seeds", "1", "--output-dir", str(out),
            "--models", "text", "late_fusion", "clcr_t", "clcr_tav", "--text_model", str(encoder),
            "--num_train_epochs", "1", "--no-progress"]
    assert bench.main(argv) == 0
    with (out / "per_run.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["model", "fold", "seed", "mae", "corr", "acc2_has0", "acc7"]
        runs = list(reader)
    assert sorted((r["model"], r["fold"]) for r in runs) == sorted(
        (m, str(f)) for m in ("text", "late_fusion", "clcr_t", "clcr_tav") for f in (0, 1)
    )
    for fold in (0, 1):
        extended = json.loads((out / f"fold-{fold}" / "clcr_tav" / "seed-1" / "result.json").read_text())
        assert extended["recipe"]["model"]["primary_model"].endswith(f"fold-{fold}/clcr_tav-primary/seed-1")
        assert (out / f"fold-{fold}" / "clcr_tav-primary" / "seed-1" / "result.json").is_file()
    rows = table_rows((out / "results.md").read_text())
    assert {"text", "late_fusion", "clcr_t", "clcr_tav", "clcr_tav − clcr_t", "late_fusion − text"} <= set(rows)
    folds = json.loads((out / "folds.json").read_text())["assignment"]
    for video in range(6):
        assert len({folds[f"vid{video}_{k + 1}"] for k in range(3)}) == 1


def test_mosi_cv_ssu_tav_extends_the_ssu_t_recipe_of_the_same_seed(tmp_path):
    encoder, data = tiny_mosi(tmp_path)
    out = tmp_path / "cv"
    argv = ["mosi-cv", "--data", str(data), "--folds", "2", "--cv-seed", "3", "--seeds", "1", "--output-dir", str(out),
            "--models", "ssu_tav", "ssu_t", "--text_model", str(encoder), "--num_train_epochs", "1", "--no-progress"]
    assert bench.main(argv) == 0
    for fold in (0, 1):
        first = json.loads((out / f"fold-{fold}" / "ssu_tav-primary" / "seed-1" / "result.json").read_text())
        alone = json.loads((out / f"fold-{fold}" / "ssu_t" / "seed-1" / "result.json").read_text())
        # The first stage is the ssu_t recipe itself: the same training, step for step.
        assert first["recipe"] == alone["recipe"] and first["global_steps"] == alone["global_steps"]
        extended = json.loads((out / f"fold-{fold}" / "ssu_tav" / "seed-1" / "result.json").read_text())
        assert extended["recipe"]["model"]["primary_model"].endswith(f"fold-{fold}/ssu_tav-primary/seed-1")
        assert not list((out / f"fold-{fold}").glob("*/seed-1/*.safetensors"))
    rows = table_rows((out / "results.md").read_text())
    assert {"ssu_t", "ssu_tav", "ssu_tav − ssu_t"} <= set(rows)
    # A rerun into the same folder finds every run finished and trains nothing.
    finished = {path: path.stat().st_mtime_ns for path in out.glob("fold-*/*/seed-1/result.json")}
    assert len(finished) == 6 and bench.main(argv) == 0
    assert {path: path.stat().st_mtime_ns for path in finished} == finished


def test_cross_video_signal_tells_speaker_identity_from_signal():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 20)
    # Features that only identify the video, labels that only depend on the video: nothing crosses videos.
    identity = rng.normal(size=(10, 6))[groups] + 0.05 * rng.normal(size=(200, 6))
    video_mood = rng.normal(size=10)[groups] + 0.3 * rng.normal(size=200)
    confounded = bench.cross_video_signal(identity, video_mood, groups, folds=5, cv_seed=0)
    assert confounded["grouped"] <= confounded["mean"] * 1.05
    assert confounded["ungrouped"] > confounded["mean"]
    # A feature whose relation to the label holds in every video is found by the grouped choice too.
    features = rng.normal(size=(200, 6))
    labels = features[:, 0] + 0.3 * rng.normal(size=200)
    real = bench.cross_video_signal(features, labels, groups, folds=5, cv_seed=0)
    assert real["grouped"] < 0.5 * real["mean"]
    assert real["grouped_log10_penalty"] < confounded["grouped_log10_penalty"]


def test_mosi_signal_prints_the_table_and_writes_nothing(tmp_path, capsys, monkeypatch):
    rows = []
    rng = np.random.default_rng(1)
    for video in range(6):
        for k in range(5):
            rows.append(((None, rng.normal(size=(4, 3)), rng.normal(size=(4, 5)), ["word"] * 4),
                         np.array([[rng.uniform(-3, 3)]]), f"vid{video}[{k}]"))
    data = tmp_path / "misa.pkl"
    data.write_bytes(pickle.dumps(rows))
    monkeypatch.chdir(tmp_path)
    assert bench.main(["mosi-signal", "--data", str(data), "--folds", "3"]) == 0
    table = capsys.readouterr().out
    assert "| audio mean + std |" in table and "| visual mean + std |" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["misa.pkl"]
    assert bench.main(["mosi-signal", "--data", str(data), "--folds", "7"]) == 2
    assert "--folds must be between 2 and the number of videos (6)" in capsys.readouterr().err
