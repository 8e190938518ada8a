"""``hf-mmfusion``: evaluate (robustness table and plot), predict, push, train flags, and a reduced demo."""

import csv
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from workflow_helpers import one_torch_thread, tiny_checkpoint, tiny_dataset  # noqa: E402, F401

from hf_mmfusion.commands import main  # noqa: E402
from hf_mmfusion.data.datasets import encode_dataset, make_collator  # noqa: E402
from hf_mmfusion.workflows.evaluation import perturb_batch, predict_dataset, robustness_rows, score  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("clcr")
    model, processor = tiny_checkpoint(path, "clcr")
    return path, model, processor


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny"
    tiny_dataset().save_to_disk(str(path))
    return path


def test_usage_and_unknown_command(capsys):
    assert main([]) == 2 and "commands:" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["frobnicate"]) == 2 and "unknown command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    # Model/data options next to every TrainingArguments flag.
    for flag in ("--model_type", "--lora", "--dataset", "--gradient_accumulation_steps", "--ddp_backend"):
        assert flag in help_text


def test_perturb_batch_noise_is_relative_masked_and_seeded(checkpoint):
    _, model, processor = checkpoint
    rows = tiny_dataset()["test"].with_format("numpy")[:4]
    batch = dict(processor(text=list(rows["text"]), audio=list(rows["audio"]), visual=list(rows["visual"]),
                           return_tensors="pt"))
    noisy = perturb_batch(batch, model, noise=0.5, generator=torch.Generator().manual_seed(1))
    again = perturb_batch(batch, model, noise=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy["audio_features"], again["audio_features"])
    mask = batch["audio_attention_mask"].bool()
    delta = noisy["audio_features"] - batch["audio_features"]
    assert torch.equal(delta[~mask], torch.zeros_like(delta[~mask]))  # padding untouched
    rms = batch["audio_features"][mask].pow(2).mean().sqrt()
    assert float(delta[mask].std() / rms) == pytest.approx(0.5, rel=0.25)
    # Text noise goes onto the word embeddings.
    assert "input_ids" not in noisy and noisy["inputs_embeds"].shape[:2] == batch["input_ids"].shape
    dropped = perturb_batch(batch, model, drop=("text", "visual"))
    assert set(dropped) == {"audio_features", "audio_attention_mask"}
    with pytest.raises(ValueError, match="unknown modality"):
        perturb_batch(batch, model, drop=("smell",))


def test_evaluate_command_writes_table_csv_json_and_plot(checkpoint, data_dir, tmp_path, capsys):
    path, model, processor = checkpoint
    out = tmp_path / "eval"
    assert main(["evaluate", str(path), "--dataset", str(data_dir), "--split", "test", "--noise", "0", "0.5", "3",
                 "--output_dir", str(out), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "| condition | mae |" in printed
    rows = json.loads((out / "robustness.json").read_text())
    assert [r["condition"] for r in rows] == ["clean", "noise 0.5", "noise 3", "drop text", "drop audio", "drop visual"]
    with (out / "robustness.csv").open() as f:
        assert [r["condition"] for r in csv.DictReader(f)] == [r["condition"] for r in rows]
    assert (out / "robustness.png").read_bytes()[:8] == PNG_MAGIC
    assert "| noise 3 |" in (out / "robustness.md").read_text()
    # The clean row is the plain metric of the model's predictions; noise and drops change them.
    encoded = encode_dataset(tiny_dataset()["test"], processor, model.config.modalities, "label", 64)
    preds, labels = predict_dataset(model, encoded, make_collator(processor), progress=False)
    assert rows[0]["mae"] == pytest.approx(score(model, preds, labels)["mae"], rel=1e-6)
    noisy, _ = predict_dataset(model, encoded, make_collator(processor), noise=3.0, progress=False)
    assert not np.allclose(noisy, preds)
    again = robustness_rows(model, encoded, make_collator(processor), noise_levels=(0, 0.5, 3), seed=0, progress=False)
    assert [r["mae"] for r in again] == pytest.approx([r["mae"] for r in rows])


def test_predict_command_with_text_npy_wav_and_record_files(checkpoint, tmp_path, capsys):
    import shutil

    import scipy.io.wavfile

    path, model, processor = checkpoint
    rows = tiny_dataset()["test"].with_format("numpy")[:2]
    for i in range(2):
        np.save(tmp_path / f"a{i}.npy", rows["audio"][i])
        np.save(tmp_path / f"v{i}.npy", rows["visual"][i])
    wav = (np.sin(np.linspace(0, 400, 8000)) * 0.3).astype(np.float32)
    scipy.io.wavfile.write(tmp_path / "clip.wav", 16000, wav)

    assert main(["predict", str(path), "--text", str(rows["text"][0]), "--audio", str(tmp_path / "a0.npy"),
                 "--visual", str(tmp_path / "v0.npy"), "--text", str(rows["text"][1]), "--audio",
                 str(tmp_path / "a1.npy"), "--visual", str(tmp_path / "v1.npy"), "--no_progress"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    with torch.no_grad():
        expected = model(**processor(text=list(rows["text"]), audio=list(rows["audio"]), visual=list(rows["visual"]),
                                     return_tensors="pt")).logits.view(-1)
    assert [p["score"] for p in printed] == pytest.approx(expected.tolist(), abs=1e-5)

    records = tmp_path / "inputs.jsonl"
    records.write_text(
        json.dumps({"id": "wav", "text": "a great film", "audio": "clip.wav", "visual": "v0.npy"}) + "\n"
        + json.dumps({"id": "npy", "text": str(rows["text"][1]), "audio": "a1.npy", "visual": "v1.npy"}) + "\n"
    )
    # The checkpoint was trained on precomputed frames: a recording is refused before anything is computed.
    capsys.readouterr()
    assert main(["predict", str(path), "--inputs", str(records), "--output", str(tmp_path / "scores.csv"),
                 "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "error: record 0 (id 'wav'): `audio` is a recording" in err and "precomputed audio frames" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "scores.csv").exists()
    # The same weights with a processor whose frames come from its own extraction read the recording.
    raw_audio = tmp_path / "raw-audio"
    shutil.copytree(path, raw_audio)
    config = json.loads((raw_audio / "processor_config.json").read_text())
    assert config["audio_feature_extractor"]["feature_source"] == "precomputed"
    config["audio_feature_extractor"]["feature_source"] = "raw"
    (raw_audio / "processor_config.json").write_text(json.dumps(config))
    for suffix in ("csv", "jsonl"):
        target = tmp_path / f"scores.{suffix}"
        assert main(["predict", str(raw_audio), "--inputs", str(records), "--output", str(target), "--batch_size", "1",
                     "--no_progress"]) == 0
    with (tmp_path / "scores.csv").open() as f:
        table = list(csv.DictReader(f))
    lines = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in table] == ["wav", "npy"] == [r["id"] for r in lines]
    assert float(table[1]["score"]) == pytest.approx(expected[1].item(), abs=1e-5)
    from transformers import AutoProcessor

    wav_frames = AutoProcessor.from_pretrained(raw_audio).audio_feature_extractor(str(tmp_path / "clip.wav"))["audio_features"]
    assert wav_frames.shape[-1] == processor.audio_feature_extractor.feature_size  # the WAV became frames
    assert np.isfinite(lines[0]["score"])

    capsys.readouterr()
    assert main(["predict", str(path), "--text", "one", "--text", "two", "--audio", str(tmp_path / "a0.npy")]) == 2
    assert "error: --text/--audio/--visual/--video must be given the same number of times" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["predict", str(path), "--text", "x", "--visual", str(tmp_path / "notes.txt")]) == 2
    assert "`visual` must be a .npy frame file or a video file, got 'notes.txt'" in capsys.readouterr().err


def test_predict_masks_a_modality_some_records_lack(checkpoint, tmp_path, capsys):
    path, model, processor = checkpoint
    rows = tiny_dataset()["test"].with_format("numpy")[:2]
    np.save(tmp_path / "a0.npy", rows["audio"][0])
    records = tmp_path / "inputs.jsonl"
    records.write_text(json.dumps({"id": "both", "text": str(rows["text"][0]), "audio": "a0.npy"}) + "\n"
                       + json.dumps({"id": "text", "text": str(rows["text"][1])}) + "\n")
    assert main(["predict", str(path), "--inputs", str(records), "--no_progress"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    with torch.no_grad():
        both = model(**processor(text=[str(rows["text"][0])], audio=[rows["audio"][0]], return_tensors="pt")).logits
        text = model(**processor(text=[str(rows["text"][1])], return_tensors="pt")).logits
    assert [p["id"] for p in printed] == ["both", "text"]
    assert [p["score"] for p in printed] == pytest.approx([float(both), float(text)], abs=1e-5)


def test_predict_checks_every_record_first_and_keeps_what_it_computed(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.workflows.prediction as predict_module

    path, _, _ = checkpoint
    records = tmp_path / "inputs.jsonl"
    lines = [json.dumps({"id": str(i), "text": f"good film {i}"}) for i in range(30)]
    records.write_text("\n".join([*lines[:25], json.dumps({"id": "bad", "text": "x", "audio": "gone.npy"}), *lines[25:]]))
    out = tmp_path / "scores.jsonl"
    calls = []
    real_encode = predict_module.encode_records
    monkeypatch.setattr(predict_module, "encode_records", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    assert main(["predict", str(path), "--inputs", str(records), "--output", str(out), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "record 25 (id 'bad'): `audio` file" in err and calls == [] and not out.exists()
    assert "Loading weights" not in err  # --no_progress hides the weight-loading bar too
    assert main(["predict", str(path), "--text", "x", "--output", str(tmp_path / "scores.parquet")]) == 2
    assert "--output must end in .jsonl or .csv" in capsys.readouterr().err
    records.write_text("\n".join(lines[:20] + [json.dumps({"id": "odd", "text": "x", "smell": 1})]))
    assert main(["predict", str(path), "--inputs", str(records), "--no_progress"]) == 2
    assert "unknown keys ['smell']" in capsys.readouterr().err
    # A failure in a late batch leaves no half-written output (the write is atomic).
    records.write_text("\n".join(lines))
    real_post = predict_module.postprocess
    seen = []

    def failing(model, logits):
        seen.append(len(logits))
        if len(seen) == 3:
            raise RuntimeError("device lost")
        return real_post(model, logits)

    monkeypatch.setattr(predict_module, "postprocess", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        main(["predict", str(path), "--inputs", str(records), "--output", str(out), "--batch_size", "10", "--no_progress"])
    assert not out.exists() and not list(tmp_path.glob(".scores.jsonl.partial-*"))
    assert "the 20 predictions made before the failure are not written" in capsys.readouterr().err


def test_user_errors_are_one_line_and_split_aliases_resolve(checkpoint, data_dir, tmp_path, capsys, monkeypatch):
    import shutil

    from datasets import load_from_disk

    path, _, _ = checkpoint
    capsys.readouterr()
    # A converter output names the split `validation`; `valid`, `val` and `dev` all find it.
    for alias in ("valid", "dev"):
        assert main(["evaluate", str(path), "--dataset", str(data_dir), "--split", alias, "--noise", "0", "--no_drop",
                     "--output_dir", str(tmp_path / alias), "--no_progress"]) == 0
    renamed = tmp_path / "renamed"
    data = load_from_disk(str(data_dir))
    type(data)({"train": data["train"], "dev": data["validation"], "test": data["test"]}).save_to_disk(str(renamed))
    assert main(["evaluate", str(path), "--dataset", str(renamed), "--split", "validation", "--noise", "0", "--no_drop",
                 "--output_dir", str(tmp_path / "v"), "--no_progress"]) == 0
    cases = [
        (["evaluate", str(path), "--dataset", str(data_dir), "--split", "holdout"], "has no split 'holdout'"),
        (["evaluate", str(path), "--dataset", str(data_dir), "--noise", "nan"], "must be finite and non-negative"),
        (["evaluate", str(path), "--dataset", str(data_dir), "--max_text_length", "100000"], "exceeds the text encoder"),
        (["evaluate", str(tmp_path / "nowhere"), "--dataset", str(data_dir)], "nowhere"),
        (["predict", str(path), "--text", "x", "--max_text_length", "100000"], "exceeds the text encoder"),
        (["train", "--model_type", "clcr", "--output_dir", str(tmp_path / "t"), "--train_split", "nope"], "no split 'nope'"),
        (["push", str(path), "org/x"], "offline mode"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, (argv, err)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert main(["push", str(path), "org/x"]) == 2
    assert "no Hugging Face token: run `hf auth login`" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "hf_home", ignore_errors=True)


def test_push_command_renders_the_card_from_a_metrics_file(checkpoint, tmp_path, monkeypatch):
    path, _, _ = checkpoint
    uploaded = {}

    def create_commit(api, repo_id, operations, **kwargs):
        uploaded.update({op.path_in_repo: open(op.path_or_fileobj, "rb").read() for op in operations})
        uploaded["__repo__"] = repo_id

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(HfApi, "create_repo", lambda api, *a, **k: None)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    metrics = tmp_path / "all_results.json"
    metrics.write_text(json.dumps({"test_mae": 0.6543, "test_acc2_has0": 0.8, "test_runtime": 3.0, "eval_mae": 0.5}))
    assert main(["push", str(path), "org/clcr-tiny", "--metrics_file", str(metrics), "--dataset_id", "org/data"]) == 0
    card = uploaded["README.md"].decode()
    assert uploaded["__repo__"] == "org/clcr-tiny" and "modeling_clcr.py" in uploaded
    assert "value: 0.6543" in card and "runtime" not in card and "org/data" in card


def test_reduced_demo_runs_end_to_end(tmp_path, capsys):
    # The trimodal variant: exercises the text encoder and SSU's chain text graph (the full demo is bimodal).
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    assert main(["demo", "--output_dir", str(out), "--modalities", "text", "audio", "visual",
                 "--sizes", "16", "8", "8", "--epochs", "1", "--hidden_size", "16",
                 "--batch_size", "8", "--noise", "0", "1", "--audio_frames", "4", "8", "--visual_frames", "3", "6",
                 "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "| CLCR |" in printed and "| SSU |" in printed and "total time" in printed
    assert "mae_drop_<m>: MAE with" in printed and "lower is better" in printed  # the table's legend
    assert torch.get_num_threads() == threads  # the demo restores the caller's thread count
    results = json.loads((out / "demo_results.json").read_text())
    assert results["clcr"]["head_model"] == "CLCRForSequenceClassification"
    assert results["ssu"]["base_model"] == "SSUModel" and results["ssu"]["processor"] == "MMFusionProcessor"
    for model_type in ("clcr", "ssu"):
        assert (out / model_type / "eval" / "robustness.png").read_bytes()[:8] == PNG_MAGIC
        card = (out / model_type / "README.md").read_text()
        assert "model-index" in card and "| noise 1 |" in card
        assert {"mae_drop_text", "mae_noise1", "acc2_has0"} <= set(results[model_type])
    # A second demo into the same folder replaces the first (the training runs there are its own).
    assert main(["demo", "--output_dir", str(out), "--models", "clcr", "--modalities", "audio", "visual",
                 "--sizes", "8", "4", "4", "--epochs", "1", "--hidden_size", "16", "--batch_size", "4",
                 "--noise", "0", "--audio_frames", "4", "6", "--visual_frames", "3", "5", "--no_progress"]) == 0


def test_retain_freed_memory_is_switched_by_the_environment(monkeypatch):
    import platform

    from workflow_helpers import run_python

    from hf_mmfusion import retain_freed_memory

    monkeypatch.setenv("HF_MMFUSION_RETAIN_FREED_MEMORY", "0")
    assert retain_freed_memory() is False
    monkeypatch.delenv("HF_MMFUSION_RETAIN_FREED_MEMORY")
    if not (os.uname().sysname == "Linux" and platform.libc_ver()[0] == "glibc"):
        pytest.skip("mallopt thresholds are a glibc feature")
    assert retain_freed_memory() is True
    # glibc's own accounting (mallinfo2), in fresh processes since the thresholds are process-wide and cannot
    # be undone: by default a 64 MiB block is mmapped and unmapped on free; retained, it comes from the heap
    # and stays there, free, after `free`.
    script = (
        "import ctypes, json\n"
        "from hf_mmfusion import retain_freed_memory\n"
        "names = ('arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost').split()\n"
        "Info = type('Info', (ctypes.Structure,), {'_fields_': [(n, ctypes.c_size_t) for n in names]})\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.mallinfo2.restype = Info\n"
        "libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "took = retain_freed_memory()\n"
        "block = libc.malloc(64 << 20)\n"
        "ctypes.memset(block, 1, 64 << 20)\n"
        "mapped = libc.mallinfo2().hblkhd\n"
        "libc.free(block)\n"
        "print(json.dumps({'took': took, 'mapped': mapped, 'kept': libc.mallinfo2().fordblks}))\n"
    )
    measured = {}
    for switch in ("0", "1"):
        result = run_python(["-c", script], env_extra={"HF_MMFUSION_RETAIN_FREED_MEMORY": switch}, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        measured[switch] = json.loads(result.stdout.strip().splitlines()[-1])
    default, retained = measured["0"], measured["1"]
    assert default["took"] is False and retained["took"] is True
    assert default["mapped"] >= 64 << 20 and default["kept"] < 64 << 20
    assert retained["mapped"] < 64 << 20 and retained["kept"] >= 64 << 20


def test_predict_inputs_route_video_files_to_the_extractors(tmp_path):
    from hf_mmfusion.inference.records import load_frames

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"placeholder: only the routing is checked here")
    assert load_frames(str(clip), "visual") == str(clip)
    # A video's audio track is an audio input, decoded by the acoustic extractor.
    assert load_frames(str(clip), "audio") == str(clip)
    recording = tmp_path / "clip.wav"
    recording.write_bytes(b"placeholder")
    with pytest.raises(ValueError, match="a .wav recording can only be the audio input"):
        load_frames(str(recording), "visual")
    with pytest.raises(ValueError, match="does not exist"):
        load_frames(str(tmp_path / "missing.mp4"), "visual")


def test_predict_checks_raw_media_folders_and_invisible_text_before_decoding(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    clip = tmp_path / "interview_07.mp4"
    clip.write_bytes(b"placeholder: refused before anything is decoded")
    capsys.readouterr()
    assert main(["predict", str(path), "--video", str(clip), "--text", "a fine film", "--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: record 0 (id 'interview_07'): `video` is a video, but this audio feature extractor")
    assert "precomputed audio frames" in err and len(err.splitlines()) == 1
    (tmp_path / "clips").mkdir()
    (tmp_path / "folder.mp4").mkdir()
    for folder in ("clips", "folder.mp4"):
        assert main(["predict", str(path), "--video", str(tmp_path / folder), "--no_progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"'{tmp_path / folder}' is a folder, not a video file" in err and len(err.splitlines()) == 1
    for invisible in ("\u200b\u200b", " \u2060 "):
        assert main(["predict", str(path), "--text", "a fine film", "--text", invisible, "--no_progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "error: record 1 (id '1'): `text` is empty (no visible character); give at least one word or leave it out"
    assert main(["predict", str(path), "--visual", str(tmp_path / "folder.mp4"), "--no_progress"]) == 2
    assert f"record 0 (id 'folder'): `visual` '{tmp_path / 'folder.mp4'}' is a folder, not a file" in capsys.readouterr().err


def test_records_from_flags_are_named_after_their_files():
    from hf_mmfusion.inference.records import records_from_flags

    assert [r["id"] for r in records_from_flags(None, None, None, ["clips/a.mp4", "b.MP4"])] == ["a", "b"]
    assert [r["id"] for r in records_from_flags(["x", "y"], ["u1.wav", "u2.npy"], None)] == ["u1", "u2"]
    # Repeated names (or records without a file) keep their positions.
    assert [r["id"] for r in records_from_flags(None, None, None, ["a/c.mp4", "b/c.mp4"])] == ["0", "1"]
    assert [r["id"] for r in records_from_flags(["x"], None, None)] == ["0"]


def test_usage_does_not_load_torch_but_the_package_still_works():
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['/usr/bin/hf-mmfusion', '--help']\n"
        "from hf_mmfusion.commands import main\n"
        "assert main(sys.argv[1:]) == 0\n"
        "assert 'torch' not in sys.modules, 'usage loaded torch'\n"
        "import hf_mmfusion, transformers\n"
        "assert hf_mmfusion.CLCRConfig.model_type == 'clcr'\n"  # first use registers the package
        "assert type(transformers.AutoConfig.for_model('ssu')).__name__ == 'SSUConfig'\n"
        "heavy = [m for m in ('torch_geometric', 'spacy', 'datasets', 'evaluate', 'matplotlib', 'av')"
        " if m in sys.modules]\n"
        "assert not heavy, f'import hf_mmfusion loaded {heavy}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "commands:" in result.stdout


def test_demo_never_replaces_a_model_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "work"
    mine = out / "clcr"
    mine.mkdir(parents=True)
    tiny_checkpoint(mine, "clcr")
    # As `hf-mmfusion train` leaves it, plus the user's notes.
    (mine / "trainer_state.json").write_text("{}")
    (mine / ".hf_mmfusion_run").write_text('{"written": ["config.json", "model.safetensors", "trainer_state.json"]}')
    (mine / "NOTES.txt").write_text("trained on the March data")
    weights = (mine / "model.safetensors").read_bytes()
    flags = ["--models", "clcr", "--modalities", "audio", "visual", "--sizes", "8", "4", "4", "--epochs", "1",
             "--hidden_size", "16", "--batch_size", "4", "--noise", "0", "--audio_frames", "4", "6",
             "--visual_frames", "3", "5", "--no_progress"]
    capsys.readouterr()
    assert main(["demo", "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "clcr" in err and "did not write" in err
    assert (mine / "NOTES.txt").read_text() == "trained on the March data"
    assert (mine / "model.safetensors").read_bytes() == weights
    assert not (out / "demo_results.json").exists()
