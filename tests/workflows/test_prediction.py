"""Prediction: records from flags and files, masking, checks before any work, and output files written whole."""

import csv
import json
import os

import numpy as np
import pytest
import torch
from workflow_helpers import (  # noqa: F401
    killed_and_live_runs,
    must_not_run,
    one_error_line,
    one_torch_thread,
    tiny_checkpoint,
    tiny_dataset,
)

from hf_mmfusion.commands import main


def test_predict_command_with_text_npy_wav_and_record_files(saved, tmp_path, capsys):
    import shutil

    import scipy.io.wavfile

    path, model, processor = saved
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


def test_predict_masks_a_modality_some_records_lack(saved, tmp_path, capsys):
    path, model, processor = saved
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


def test_predict_checks_every_record_first_and_keeps_what_it_computed(saved, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.workflows.prediction as predict_module

    path, _, _ = saved
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


def test_predict_checks_raw_media_folders_and_invisible_text_before_decoding(saved, tmp_path, capsys):
    path, _, _ = saved
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



def test_predict_never_writes_over_its_input_the_model_or_a_user_file(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.workflows.prediction as predict_module

    loads = []
    real_load = predict_module.load_pretrained
    monkeypatch.setattr(predict_module, "load_pretrained", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    records = tmp_path / "in.jsonl"
    content = json.dumps({"id": "a", "text": "a good film"}) + "\n" + json.dumps({"id": "b", "text": "bad"}) + "\n"
    records.write_text(content)
    table = tmp_path / "in.csv"
    table.write_text("id,text\na,a good film\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(records)
    cases = [
        (records, records, "is the input file"),
        (records, tmp_path / "sub" / ".." / "in.jsonl", "is the input file"),  # another spelling of the same path
        (records, tmp_path / "link.jsonl", "is the input file"),  # a link to it
        (table, table, "is the input file"),
    ]
    for inputs, output in [(i, o) for i, o, _ in cases]:
        assert main(["predict", str(checkpoint), "--inputs", str(inputs), "--output", str(output), "--no_progress"]) == 2
        one_error_line(capsys, "is the input file", "--output")
    assert records.read_text() == content and table.read_text() == "id,text\na,a good film\n"
    assert (tmp_path / "link.jsonl").is_symlink()

    notes = checkpoint / "notes.csv"
    notes.write_text("my,own\n1,2\n")
    mine = tmp_path / "results.jsonl"
    mine.write_text('{"experiment": 3, "note": "keep me"}\n')
    try:
        assert main(["predict", str(checkpoint), "--text", "x", "--output", str(notes), "--no_progress"]) == 2
        one_error_line(capsys, "is a file of the model")
        assert notes.read_text() == "my,own\n1,2\n"
    finally:
        notes.unlink()
    assert main(["predict", str(checkpoint), "--text", "x", "--output", str(mine), "--no_progress"]) == 2
    one_error_line(capsys, "is not a predictions file written by hf-mmfusion predict")
    assert mine.read_text() == '{"experiment": 3, "note": "keep me"}\n'
    assert loads == []  # every refusal came before the model was loaded

    # Its own earlier output may be replaced.
    out = tmp_path / "scores.jsonl"
    for _ in range(2):
        assert main(["predict", str(checkpoint), "--inputs", str(records), "--output", str(out), "--no_progress"]) == 0
        assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    assert records.read_text() == content


def test_a_failed_predict_leaves_an_earlier_output_as_it_was(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.workflows.prediction as predict_module

    records = tmp_path / "in.jsonl"
    records.write_text("\n".join(json.dumps({"id": str(i), "text": f"film {i}"}) for i in range(6)))
    out = tmp_path / "scores.csv"
    assert main(["predict", str(checkpoint), "--inputs", str(records), "--output", str(out), "--no_progress"]) == 0
    before = out.read_text()
    assert before.startswith("id,score,polarity")
    os.chmod(out, 0o640)
    real_post = predict_module.postprocess
    calls = []

    def failing(model, logits):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real_post(model, logits)

    monkeypatch.setattr(predict_module, "postprocess", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        main(["predict", str(checkpoint), "--inputs", str(records), "--output", str(out), "--batch_size", "3",
              "--no_progress"])
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "scores.csv"]
    monkeypatch.setattr(predict_module, "postprocess", real_post)
    assert main(["predict", str(checkpoint), "--inputs", str(records), "--output", str(out), "--no_progress"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o666 & ~umask  # a finished output is not left private to its owner


def test_non_finite_predictions_are_an_error_naming_the_records(tmp_path, capsys):
    from hf_mmfusion.workflows.prediction import write_predictions

    model, _ = tiny_checkpoint(tmp_path / "nan", "clcr")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan")
    out = tmp_path / "scores.jsonl"
    argv = ["predict", str(tmp_path / "nan"), "--text", "good", "--text", "bad", "--no_progress"]
    assert main(argv) == 2
    err = one_error_line(capsys, "not finite", "record(s) 0 (id '0'), 1 (id '1')")
    assert "NaN" not in capsys.readouterr().out, err
    assert main([*argv, "--output", str(out)]) == 2
    one_error_line(capsys, "not finite")
    assert not out.exists()
    # Whatever produces them, written predictions are strict JSON.
    with pytest.raises(ValueError):
        write_predictions([{"id": "x", "score": float("nan")}], tmp_path / "direct.jsonl")
    with pytest.raises(ValueError):
        write_predictions([{"id": "x", "score": float("inf")}], None)
    assert not (tmp_path / "direct.jsonl").exists()


def _open_output_and_hang(output, paths):
    import time

    from hf_mmfusion.workflows.prediction import open_staged_output

    # What predict opens before its model loads; the run is killed while it computes.
    temporary, _ = open_staged_output(output)
    paths.put(str(temporary.parent))
    time.sleep(600)


def test_a_killed_predict_leaves_nothing_after_the_next_run(checkpoint, tmp_path):
    out = tmp_path / "scores.jsonl"
    with killed_and_live_runs(_open_output_and_hang, out) as (dead_scratch, live_scratch):
        assert dead_scratch.parent == tmp_path and dead_scratch.name.startswith(".scores.jsonl.partial-")
        assert dead_scratch.is_dir()
        lookalike = tmp_path / ".scores.jsonl.partial-mine"  # no lock file: not provably ours
        lookalike.mkdir()
        (lookalike / "keep.txt").write_text("not ours")
        assert main(["predict", str(checkpoint), "--text", "good", "--audio", str(_frames(tmp_path, "a", 6)),
                     "--visual", str(_frames(tmp_path, "v", 5)), "--output", str(out), "--no_progress"]) == 0
        assert len(out.read_text().splitlines()) == 1
        assert not dead_scratch.exists() and live_scratch.is_dir()
        assert (lookalike / "keep.txt").read_text() == "not ours"


def _frames(folder, name, width):
    import numpy as np

    path = folder / f"{name}.npy"
    np.save(path, np.ones((4, width), np.float32))
    return path


def test_predict_never_takes_a_users_table_with_id_and_label_for_its_own_output(checkpoint, tmp_path, capsys):
    """A manifest or a records file has ``id`` and ``label`` (or ``score``) columns too: only predict's exact
    columns mark a file as an earlier output of predict."""
    manifest = tmp_path / "my_data.csv"
    manifest.write_text("id,text,label,split,audio,visual\nu1,great film,2.0,train,a0.npy,v0.npy\n")
    records = tmp_path / "other_records.jsonl"
    records.write_text(json.dumps({"id": "r1", "text": "fine", "label": 1.5, "score": 2}) + "\n")
    for path in (manifest, records):
        before = path.read_text()
        assert main(["predict", str(checkpoint), "--text", "x", "--output", str(path), "--no_progress"]) == 2
        one_error_line(capsys, "is not a predictions file written by hf-mmfusion predict")
        assert path.read_text() == before
    # Its own CSV output may be replaced, as its JSONL output may.
    out = tmp_path / "scores.csv"
    for _ in range(2):
        assert main(["predict", str(checkpoint), "--text", "x", "--output", str(out), "--no_progress"]) == 0
        assert out.read_text().splitlines()[0] == "id,score,polarity"

