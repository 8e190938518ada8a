"""predict / evaluate / push: they never write over a user's file, refuse wrong inputs before any work with
one ``error:`` line, report an unreachable Hub in one line, and run small models with one CPU thread."""

import json
import os
import socket

import pytest
import torch
from workflow_helpers import killed_and_live_runs, one_torch_thread, tiny_checkpoint  # noqa: F401

from hf_mmfusion.cli import main

EVALUATE_FLAGS = ["--synthetic_sizes", "16", "8", "8", "--synthetic_audio_dim", "6", "--synthetic_visual_dim", "5",
                  "--noise", "0", "--no_drop", "--no_progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("clcr")
    tiny_checkpoint(path, "clcr")
    return path


def must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the arguments were checked")


def one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def test_predict_never_writes_over_its_input_the_model_or_a_user_file(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.predict as predict_module

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
    import hf_mmfusion.predict as predict_module

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
    from hf_mmfusion.predict import write_predictions

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


def test_evaluate_refuses_a_label_column_of_the_other_problem_type(checkpoint, tmp_path, capsys, monkeypatch):
    from workflow_helpers import tiny_dataset

    import hf_mmfusion.evaluation as evaluation

    monkeypatch.setattr(evaluation, "encode_dataset", must_not_run)
    assert main(["evaluate", str(checkpoint), "--label_column", "label_class", "--output_dir", str(tmp_path / "ev"),
                 *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "--label_column 'label_class' holds class ids", "regressor", "['label']")

    classifier = tmp_path / "classifier"
    tiny_checkpoint(classifier, "clcr", num_labels=2)
    assert main(["evaluate", str(classifier), "--label_column", "label", "--output_dir", str(tmp_path / "ev"),
                 *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "--label_column 'label' holds float values", "classifier", "class ids 0..1")
    assert not (tmp_path / "ev").exists()

    from hf_mmfusion.evaluation import check_label_column

    split = tiny_dataset()["test"]
    model = evaluation.load_pretrained(str(classifier), progress=False)[0]
    check_label_column(model, split, "label_class")  # 0/1 ids for a two-class model
    model.config.num_labels = 1
    model.config.problem_type = "regression"
    check_label_column(model, split, "label")
    three = split.map(lambda row, i: {"label_class": i % 3}, with_indices=True)
    model, _ = evaluation.load_pretrained(str(classifier), progress=False)
    with pytest.raises(ValueError, match="outside 0..1"):
        check_label_column(model, three, "label_class")


def test_evaluate_checks_its_output_folder_before_computing(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_pretrained", must_not_run)
    blocker = tmp_path / "results.md"
    blocker.write_text("my notes")
    for target, message in ((blocker, "is a file, not a folder"), (blocker / "eval", "cannot be created")):
        assert main(["evaluate", str(checkpoint), "--output_dir", str(target), *EVALUATE_FLAGS]) == 2
        one_error_line(capsys, "--output_dir", str(target), message)
    # The default folder, <model>/eval, is checked too.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "eval").write_text("not a folder")
    assert main(["evaluate", str(model_dir), *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "the default --output_dir", "is a file")
    if os.geteuid() != 0:  # permissions do not bind root
        read_only = tmp_path / "read_only"
        read_only.mkdir()
        read_only.chmod(0o555)
        try:
            assert main(["evaluate", str(checkpoint), "--output_dir", str(read_only / "eval"), *EVALUATE_FLAGS]) == 2
            one_error_line(capsys, "cannot be written")
        finally:
            read_only.chmod(0o755)
    assert blocker.read_text() == "my notes"


@pytest.fixture
def online_push(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def test_push_reports_an_unreachable_hub_in_one_line(checkpoint, online_push, capsys, monkeypatch):
    from huggingface_hub import constants

    # A bound but not listening local port: connections are refused at once, and nothing leaves the machine.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert main(["push", str(checkpoint), "org/clcr-tiny", "--keep_card"]) == 2
    one_error_line(capsys, "pushing to org/clcr-tiny failed", "ConnectError", "check the network")


def test_push_metrics_file_errors_name_the_file(checkpoint, online_push, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_pretrained", must_not_run)
    cases = {
        "list.json": ("[0.5, 0.7]", "must hold a JSON object", "got a list"),
        "notes.txt": ("mae was good", "is not JSON", "line 1"),
        "binary.json": (b"\xff\xfe\x00", "is not JSON", ""),
    }
    for name, (content, *fragments) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert main(["push", str(checkpoint), "org/x", "--metrics_file", str(path)]) == 2
        one_error_line(capsys, f"--metrics_file {path}", *fragments)
    assert main(["push", str(checkpoint), "org/x", "--metrics_file", str(tmp_path / "absent.json")]) == 2
    one_error_line(capsys, "absent.json", "cannot read")


def test_one_thread_rule_for_every_command(checkpoint, tmp_path, monkeypatch):
    import hf_mmfusion.commands.explain as explain_command
    import hf_mmfusion.evaluation as evaluation
    import hf_mmfusion.predict as predict_module

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    seen = []

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise ValueError("recorded")

    monkeypatch.setattr(predict_module, "iter_predictions", record)
    monkeypatch.setattr(evaluation, "robustness_rows", record)
    monkeypatch.setattr(explain_command, "explain", record)
    commands = [
        ["predict", str(checkpoint), "--text", "x", "--no_progress"],
        ["evaluate", str(checkpoint), "--output_dir", str(tmp_path / "ev"), *EVALUATE_FLAGS],
        ["explain", str(checkpoint), "--dataset", "synthetic", "--synthetic_sizes", "16", "8", "8",
         "--synthetic_audio_dim", "6", "--synthetic_visual_dim", "5", "-o", str(tmp_path / "ex")],
    ]
    for argv in commands:
        assert main(argv) == 2 and torch.get_num_threads() == 2  # the caller's setting comes back
    assert seen == [1, 1, 1]  # a tiny model runs with one thread, as in train
    for argv in commands:
        assert main([*argv, "--threads", "2"]) == 2
        assert main([*argv, "--threads", "0"]) == 2
    assert seen == [1, 1, 1, 2, 2, 2]  # --threads 0 is refused before any work

    from hf_mmfusion.cpu_threads import SMALL_MODEL_PARAMETERS, choose_threads
    from hf_mmfusion.training import choose_threads as training_rule

    assert training_rule is choose_threads  # train follows the same rule
    small, large = torch.nn.Linear(4, 4), torch.nn.Linear(SMALL_MODEL_PARAMETERS, 1, bias=False)
    assert choose_threads(small) == 1 and choose_threads(small, 3) == 3 and choose_threads(large) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(small) == 3 and choose_threads(small, 2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's per-level list: the first level counts
    assert choose_threads(small) == 4


def test_evaluate_never_writes_over_result_files_it_did_not_write(checkpoint, tmp_path, capsys, monkeypatch):
    import hf_mmfusion.evaluation as evaluation

    out = tmp_path / "results"
    out.mkdir()
    (out / "robustness.csv").write_text("my own table")
    (out / "notes.txt").write_text("keep me")
    load = evaluation.load_pretrained
    monkeypatch.setattr(evaluation, "load_pretrained", must_not_run)
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "--output_dir", "robustness.csv", "did not write")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "robustness.csv"]
    assert (out / "robustness.csv").read_text() == "my own table"
    # Another folder the user keeps files in takes the results, and a later run replaces only those.
    monkeypatch.setattr(evaluation, "load_pretrained", load)
    (out / "robustness.csv").rename(tmp_path / "mine.csv")
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 0
    names = {"robustness.csv", "robustness.json", "robustness.md", "robustness.png"}
    assert {p.name for p in out.iterdir()} == names | {"notes.txt", evaluation.OUTPUT_MARKER}
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 0
    assert {p.name for p in out.iterdir()} == names | {"notes.txt", evaluation.OUTPUT_MARKER}
    assert (out / "notes.txt").read_text() == "keep me"
    # A result file the marker does not list is the user's, even beside results evaluate wrote.
    from hf_mmfusion.outputs import record_written

    (out / "robustness.md").write_text("mine now")
    record_written(out, evaluation.OUTPUT_MARKER, ["robustness.csv", "robustness.json", "robustness.png"], reset=True)
    assert main(["evaluate", str(checkpoint), "--output_dir", str(out), *EVALUATE_FLAGS]) == 2
    one_error_line(capsys, "robustness.md", "did not write")
    assert (out / "robustness.md").read_text() == "mine now"


def _open_output_and_hang(output, paths):
    import time

    from hf_mmfusion.predict import open_staged_output

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
