"""Large datasets: preprocessing in several processes, cached across runs, and training from a stream."""

import json
import os

import numpy as np
import pytest
from workflow_helpers import (
    AUDIO_DIM,
    VISUAL_DIM,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    run_python,
    tiny_checkpoint,
    tiny_dataset,
    tiny_train_argv,
)

MODALITIES = ("text", "audio", "visual")


def _cli(argv, capsys):
    from hf_mmfusion.commands import main

    capsys.readouterr()
    status = main(argv)
    return status, capsys.readouterr().err


@pytest.fixture
def counted_processor_calls(tmp_path, monkeypatch):
    """A file that gets one line per ``MMFusionProcessor.__call__``, in this process or a forked worker."""
    from hf_mmfusion.processing import MMFusionProcessor

    calls = tmp_path / "processor-calls.txt"
    original = MMFusionProcessor.__call__

    def counted(self, *args, **kwargs):
        with open(calls, "a") as f:
            f.write("call\n")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MMFusionProcessor, "__call__", counted)
    return lambda: len(calls.read_text().splitlines()) if calls.exists() else 0


def _columns(dataset):
    return {name: dataset[name] for name in dataset.column_names}


def test_another_process_reuses_the_preprocessing_cache_without_calling_the_processor(
    tmp_path, monkeypatch, counted_processor_calls
):
    import datasets
    from datasets import load_from_disk
    from transformers import AutoProcessor

    from hf_mmfusion.data.datasets import encode_dataset

    data, model, cache = tmp_path / "data", tmp_path / "model", tmp_path / "cache"
    tiny_dataset(sizes=(12, 4, 4)).save_to_disk(data)
    tiny_checkpoint(model, "clcr")
    script = (
        "import sys, hf_mmfusion; from datasets import load_from_disk; from transformers import AutoProcessor\n"
        "from hf_mmfusion.data.datasets import encode_dataset\n"
        "p = AutoProcessor.from_pretrained(sys.argv[2])\n"
        "out = encode_dataset(load_from_disk(sys.argv[1])['train'], p, ('text', 'audio', 'visual'), 'label', 32)\n"
        "print(out.cache_files[0]['filename'])\n"
    )
    child = run_python(["-c", script, str(data), str(model)], env_extra={"HF_DATASETS_CACHE": str(cache)})
    assert child.returncode == 0, child.stderr
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    processor = AutoProcessor.from_pretrained(model)
    split = load_from_disk(str(data))["train"]
    encoded = encode_dataset(split, processor, MODALITIES, "label", 32)
    assert counted_processor_calls() == 0
    assert encoded.cache_files[0]["filename"] == child.stdout.strip().splitlines()[-1]
    # The processor having run (its tokenizer now remembers a truncation) changes nothing in the fingerprint.
    processor(text=["a good movie"], truncation=True, max_length=5)
    calls = counted_processor_calls()
    assert encode_dataset(split, processor, MODALITIES, "label", 32).cache_files == encoded.cache_files
    assert counted_processor_calls() == calls
    # Other settings are other work.
    encode_dataset(split, processor, MODALITIES, "label", 16)
    assert counted_processor_calls() > calls


def test_several_preprocessing_processes_give_the_rows_of_one(tmp_path, monkeypatch, counted_processor_calls):
    import datasets
    from datasets import load_from_disk

    from hf_mmfusion.data.datasets import encode_dataset

    data = tmp_path / "data"
    tiny_dataset(sizes=(12, 4, 4)).save_to_disk(data)
    _, processor = tiny_checkpoint(tmp_path / "model", "clcr")
    split = load_from_disk(str(data))["train"]
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache-one"))
    one = encode_dataset(split, processor, MODALITIES, "label", 32)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache-two"))
    two = encode_dataset(split, processor, MODALITIES, "label", 32, num_proc=2)
    assert len(two.cache_files) == 2  # one file per process
    assert _columns(two) == _columns(one)
    # The rows do not depend on the number of processes: a run with another number reads the same cache.
    calls = counted_processor_calls()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache-one"))
    assert encode_dataset(split, processor, MODALITIES, "label", 32, num_proc=2).cache_files == one.cache_files
    assert counted_processor_calls() == calls
    # An in-memory dataset (the synthetic data) is processed in several processes too.
    memory = tiny_dataset(sizes=(12, 4, 4))["train"]
    assert _columns(encode_dataset(memory, processor, MODALITIES, "label", 32, num_proc=2)) == _columns(one)


def test_train_with_preprocessing_workers_and_a_second_run_from_the_cache(tmp_path, capsys, counted_processor_calls):
    data = tmp_path / "data"
    tiny_dataset(sizes=(16, 8, 8)).save_to_disk(data)
    out = tmp_path / "run"
    argv = tiny_train_argv("clcr", out, "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
                           "--load_best_model_at_end", "false", "--preprocessing_num_workers", "2")
    argv[argv.index("--dataset") + 1] = str(data)
    status, err = _cli(["train", *argv], capsys)
    assert status == 0, err
    first = counted_processor_calls()
    assert first >= 3  # train, validation and test rows
    status, err = _cli(["train", *argv, "--overwrite_output_dir"], capsys)
    assert status == 0, err
    assert counted_processor_calls() == first
    assert "test_mae" in json.loads((out / "all_results.json").read_text())

    status, err = _cli(["train", *argv[:-1], "0"], capsys)
    assert status == 2 and err.strip().splitlines()[-1] == "error: --preprocessing_num_workers must be at least 1, got 0"


def _parquet_dataset(tmp_path, sizes=(24, 8, 8)):
    from hf_mmfusion.data.schema import write_dataset_dict

    return write_dataset_dict(tiny_dataset(sizes=sizes), tmp_path / "parquet", file_format="parquet")


def test_streaming_trains_evaluates_and_fits_normalisation_on_a_bounded_sample(tmp_path, capsys):
    from transformers import AutoProcessor

    data = _parquet_dataset(tmp_path)
    out = tmp_path / "run"
    argv = tiny_train_argv("clcr", out, "--streaming", "--max_steps", "4", "--eval_strategy", "steps",
                           "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
                           "--normalization_samples", "5", "--shuffle_buffer_size", "8")
    argv[argv.index("--dataset") + 1] = str(data)
    status, err = _cli(["train", *argv], capsys)
    assert status == 0, err
    results = json.loads((out / "all_results.json").read_text())
    assert np.isfinite(results["eval_mae"]) and np.isfinite(results["test_mae"])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_mae" in h][:2] == [2, 4]
    # Normalisation statistics of exactly the first 5 train rows.
    first = tiny_dataset(sizes=(24, 8, 8))["train"].select(range(5))
    frames = np.concatenate([np.asarray(a, dtype=np.float64) for a in first["audio"]])
    processor = AutoProcessor.from_pretrained(out)
    np.testing.assert_allclose(processor.audio_feature_extractor.feature_mean, frames.mean(0), rtol=1e-5, atol=1e-6)
    assert processor.audio_feature_extractor.feature_size == AUDIO_DIM
    assert processor.visual_feature_extractor.feature_size == VISUAL_DIM

    # The streamed model evaluates on the same data read the ordinary way.
    status, err = _cli(["evaluate", str(out), "--dataset", str(data), "--noise", "0", "--no_drop",
                        "--output_dir", str(tmp_path / "eval"), "--no_progress"], capsys)
    assert status == 0, err
    assert (tmp_path / "eval" / "robustness.csv").exists()


def test_streaming_a_saved_dataset_and_its_errors(tmp_path, capsys):
    from datasets import DatasetDict

    data = tmp_path / "data"
    tiny_dataset(sizes=(16, 8, 8)).save_to_disk(data)
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    out = tmp_path / "run"
    argv = tiny_train_argv("clcr", out, "--streaming", "--max_steps", "2", "--eval_strategy", "no",
                           "--save_strategy", "no", "--load_best_model_at_end", "false")
    argv[argv.index("--dataset") + 1] = str(data)
    status, err = _cli(["train", *argv], capsys)
    assert status == 0, err
    assert "test_mae" in json.loads((out / "all_results.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before
    assert not any(name.endswith(".arrow") and "cache-" in name for name in os.listdir(data / "train"))

    no_steps = [a for a in argv if a not in ("--max_steps", "2")]
    status, err = _cli(["train", *no_steps, "--overwrite_output_dir"], capsys)
    assert status == 2
    assert err.strip().splitlines()[-1] == "error: --streaming needs --max_steps: a streamed dataset has no length to count epochs by"

    train_only = tmp_path / "train_only"
    DatasetDict({"train": tiny_dataset(sizes=(16, 4, 4))["train"]}).save_to_disk(train_only)
    argv[argv.index("--dataset") + 1] = str(train_only)
    status, err = _cli(["train", *argv, "--overwrite_output_dir"], capsys)
    assert status == 2 and "a streamed one cannot be held out" in err.strip().splitlines()[-1]


def test_evaluation_gathers_only_scores_and_labels(tmp_path, capsys, monkeypatch):
    """The model outputs carry per-token analysis tensors; an evaluation keeps only what the metrics need."""
    import transformers.trainer

    gathered = []
    container = transformers.trainer.EvalLoopContainer
    original = container.add

    def spy(self, tensors):
        gathered.append(tensors)
        return original(self, tensors)

    monkeypatch.setattr(container, "add", spy)
    out = tmp_path / "run"
    argv = tiny_train_argv("clcr", out, "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
                           "--load_best_model_at_end", "false", "--per_device_eval_batch_size", "4")
    status, err = _cli(["train", *argv], capsys)
    assert status == 0, err
    assert gathered, "the test evaluation gathered nothing"
    for item in gathered:
        assert hasattr(item, "shape"), f"gathered a {type(item).__name__}, not one tensor"
        assert item.dim() <= 2 and item.shape[-1] <= 4, list(item.shape)


def test_training_rows_are_read_from_a_fresh_memory_map_after_every_batch(tmp_path):
    import gc
    import weakref

    from datasets import Dataset, concatenate_datasets
    from torch.utils.data import DataLoader

    from hf_mmfusion.data.datasets import BatchPagesReleased, release_pages_per_batch

    rows = [{"audio": np.full((3, 2), i, dtype=np.float32).tolist(), "label": float(i)} for i in range(40)]
    Dataset.from_list(rows[:25]).save_to_disk(str(tmp_path / "a"))
    Dataset.from_list(rows[25:]).save_to_disk(str(tmp_path / "b"))
    on_disk = concatenate_datasets([Dataset.load_from_disk(str(tmp_path / n)) for n in ("a", "b")])
    wrapped = release_pages_per_batch(on_disk.with_format("numpy", columns=["audio", "label"]))
    assert isinstance(wrapped, BatchPagesReleased) and len(wrapped) == 40

    first = weakref.ref(wrapped.dataset)
    batch = wrapped.__getitems__([3, 31, 0])
    assert [r["label"] for r in batch] == [3.0, 31.0, 0.0] and isinstance(batch[0]["audio"], np.ndarray)
    gc.collect()
    # The mapping the batch was read through is gone, so its pages left the process's memory with it.
    assert first() is None
    assert wrapped.dataset.format["type"] == "numpy" and len(wrapped.dataset) == 40
    seen = [float(r["label"]) for b in DataLoader(wrapped, batch_size=7, shuffle=True, collate_fn=list) for r in b]
    assert sorted(seen) == [float(i) for i in range(40)]
    # In memory, or through an index mapping (a select of a file), the dataset is used as it is.
    assert release_pages_per_batch(Dataset.from_list(rows)).__class__ is Dataset
    assert release_pages_per_batch(on_disk.select([1, 2])).__class__ is Dataset   # a slice of the files
    assert release_pages_per_batch(on_disk.select([5, 1])).__class__ is Dataset   # an index mapping
