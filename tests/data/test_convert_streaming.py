"""``convert`` holds one sample at a time: MMSA frames stay in the pickle and SDK frames in the HDF5 files
until their row is written."""

import pickle
import tracemalloc

import h5py
import numpy as np
import pytest

from hf_mmfusion.commands.convert import build_parser
from hf_mmfusion.data import mmsa
from hf_mmfusion.data.convert import run_convert
from hf_mmfusion.data.mmsa import PickledArray, load_pickle_lazily, read_mmsa_pickle
from hf_mmfusion.data.safe_pickle import UnsafePickleError, safe_load
from hf_mmfusion.data.schema import load_converted


def convert(*argv):
    return run_convert(build_parser().parse_args([str(a) for a in argv]))


def _unaligned_split(n, rng, frames=400):
    # 400 x 74 float32 frames: 118 KB a sample, 4.7 MB for 40 samples, well above the lazy threshold.
    return {
        "id": np.array([f"vid{i}$_${i + 1}" for i in range(n)], dtype=object),
        "raw_text": np.array([f"text {i}" for i in range(n)], dtype=object),
        "audio": rng.normal(size=(n, frames, 74)).astype(np.float32),
        "vision": rng.normal(size=(n, frames // 2, 35)),
        "audio_lengths": rng.integers(1, frames + 1, n).tolist(),
        "vision_lengths": np.full(n, frames // 2),
        "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_mmsa_rows_read_one_sample_at_a_time_and_match_the_pickle(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    data = {"train": _unaligned_split(40, rng), "test": _unaligned_split(2, rng)}
    path = tmp_path / "mmsa.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    tracemalloc.start()
    try:
        rows = read_mmsa_pickle(path)
        for row in rows["train"]:
            assert row["audio"].shape[1] == 74
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    audio = data["train"]["audio"]
    if protocol > 2:  # protocol 2 stores bytes as text that must be decoded: those pickles are read whole
        assert peak < audio.nbytes / 4, (peak, audio.nbytes)
    assert [row["id"] for row in rows["train"]][:2] == ["vid0_1", "vid1_2"]
    for i in (0, 17, 39):
        row = rows["train"][i]
        assert np.array_equal(row["audio"], audio[i, : data["train"]["audio_lengths"][i]])
        assert np.array_equal(row["visual"], data["train"]["vision"][i])
        assert row["text"] == f"text {i}" and row["label"] == pytest.approx(float(data["train"]["regression_labels"][i]))
    out = load_converted(convert("mmsa", path, "-o", tmp_path / "out")).with_format("numpy")
    assert {k: len(v) for k, v in out.items()} == {"train": 40, "test": 2}
    assert np.array_equal(out["test"][1]["audio"], data["test"]["audio"][1, : data["test"]["audio_lengths"][1]])
    assert np.allclose(out["test"][1]["visual"], data["test"]["vision"][1])


def test_lazy_loading_keeps_every_value_and_the_allow_list(tmp_path, monkeypatch):
    monkeypatch.setattr(mmsa, "LAZY_PAYLOAD_BYTES", 64)
    # Above 64 KB, so that protocols 4 and 5 write them outside their frames.
    payload = bytes(range(256)) * 300
    value = {"big": np.arange(20000.0).reshape(20, 1000), "be": np.arange(20000, dtype=">i4").reshape(20, 1000),
             "fortran": np.asfortranarray(np.arange(20000.0).reshape(20, 1000)),
             "small": np.arange(3), "raw": payload, "mutable": bytearray(payload), "nested": [(payload, 1)],
             "keys": frozenset({payload}), "objects": np.array(["a", None], dtype=object)}
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        lazy, eager = load_pickle_lazily(path), safe_load(path)
        for key in ("big", "be", "fortran"):
            assert isinstance(lazy[key], PickledArray) or protocol == 2
            assert np.array_equal(np.asarray(lazy[key]), eager[key]) and np.array_equal(lazy[key][-3], eager[key][-3])
            assert len(lazy[key]) == len(eager[key]) and lazy[key].shape == eager[key].shape
        assert lazy["raw"] == payload and type(lazy["mutable"]) is bytearray and lazy["mutable"] == payload
        assert lazy["nested"] == [(payload, 1)] and lazy["keys"] == frozenset({payload})
        assert list(lazy["objects"]) == ["a", None]
    blob = (tmp_path / "p4.pkl").read_bytes()
    for cut in (len(blob) // 2, len(blob) - 5):
        (tmp_path / "cut.pkl").write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load_pickle_lazily(tmp_path / "cut.pkl")
    (tmp_path / "bomb.pkl").write_bytes(b"\x80\x04cbuiltins\nbytearray\nJ\x00\x00\x00\x40\x85R.")
    with pytest.raises(UnsafePickleError, match="far more than the file holds"):
        load_pickle_lazily(tmp_path / "bomb.pkl")
    (tmp_path / "eval.pkl").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_pickle_lazily(tmp_path / "eval.pkl")


def test_an_array_whose_data_does_not_fit_its_shape_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(mmsa, "LAZY_PAYLOAD_BYTES", 64)
    blob = pickle.dumps({"a": np.zeros((4, 32), np.float32)}, protocol=3)
    shape = b"K\x04K \x86"  # BININT1 4, BININT1 32, TUPLE2
    assert blob.count(shape) == 1
    (tmp_path / "bad.pkl").write_bytes(blob.replace(shape, b"K\x05K \x86"))
    with pytest.raises(ValueError, match=r"shape \[5, 32\].*512 bytes"):
        load_pickle_lazily(tmp_path / "bad.pkl")


def test_mmsa_rows_take_joined_transcripts(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mmsa.pkl"
    path.write_bytes(pickle.dumps({"train": _unaligned_split(3, rng, frames=8)}, protocol=4))
    (tmp_path / "text.csv").write_text("id,text\nvid0_1,first\nvid1_2,second\nvid2_3,third\n")
    out = load_converted(convert("mmsa", path, "--text-from", tmp_path / "text.csv", "-o", tmp_path / "out"))
    assert out["train"]["text"] == ["first", "second", "third"]
    (tmp_path / "short.csv").write_text("id,text\nvid0_1,first\n")
    with pytest.raises(ValueError, match="2 ids have no transcript"):
        convert("mmsa", path, "--text-from", tmp_path / "short.csv", "-o", tmp_path / "out2")


def _csd(path, root, videos):
    with h5py.File(path, "w") as handle:
        data = handle.create_group(root).create_group("data")
        handle[root].create_group("metadata")
        for video, (features, intervals) in videos.items():
            group = data.create_group(video)
            group["features"] = features
            group["intervals"] = intervals


def test_sdk_reads_only_the_frames_it_writes(tmp_path, monkeypatch):
    frames = np.arange(4000, dtype=np.float32).reshape(2000, 2)
    steps = np.arange(2000) * 0.125
    feature_intervals = np.stack([steps, steps + 0.125], 1)
    _csd(tmp_path / "labels.csd", "Labels", {
        "v1": (np.array([[1.0], [2.0]]), np.array([[1.0, 2.0], [5.0, 6.0]])),
        "v2": (np.array([[0.5]]), np.array([[0.0, 20.0]])),
    })
    _csd(tmp_path / "audio.csd", "COVAREP", {"v1": (frames, feature_intervals), "v2": (frames, feature_intervals)})
    (tmp_path / "folds.txt").write_text("standard_train_fold = ['v1']\n")
    read_rows = []
    original = h5py.Dataset.__getitem__

    def counting(self, key):
        value = original(self, key)
        if self.name.endswith("/features") and "COVAREP" in self.name:
            read_rows.append(len(value))
        return value

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    out = load_converted(convert("sdk", tmp_path / "labels.csd", "--folds", tmp_path / "folds.txt",
                                 "--audio-csd", tmp_path / "audio.csd", "-o", tmp_path / "out"))
    train = out["train"].with_format("numpy")
    assert list(train["id"]) == ["v1_1", "v1_2"]
    assert np.array_equal(train[0]["audio"], frames[8:16]) and np.array_equal(train[1]["audio"], frames[40:48])
    # The two segments' frames (the first once more: the schema is read off it), not the 4000 of the file.
    assert read_rows == [8, 8, 8]


def test_sdk_checks_every_video_before_writing(tmp_path):
    _csd(tmp_path / "labels.csd", "Labels", {"v1": (np.array([[1.0]]), np.array([[0.0, 1.0]]))})
    _csd(tmp_path / "audio.csd", "COVAREP", {"v1": (np.zeros((3, 2)), np.zeros((2, 2)))})
    (tmp_path / "folds.txt").write_text("standard_train_fold = ['v1']\n")
    with pytest.raises(ValueError, match=r"features \[3, 2\] and intervals \[2, 2\]"):
        convert("sdk", tmp_path / "labels.csd", "--folds", tmp_path / "folds.txt", "--audio-csd", tmp_path / "audio.csd",
                "-o", tmp_path / "out")
    (tmp_path / "folds.txt").write_text("standard_train_fold = ['v1', 'v9']\n")
    with pytest.raises(ValueError, match="'v9' of split 'train' is not in the label sequence"):
        convert("sdk", tmp_path / "labels.csd", "--folds", tmp_path / "folds.txt", "-o", tmp_path / "out")
    assert not (tmp_path / "out").exists()
