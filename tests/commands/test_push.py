"""``hf-mmfusion push``: the card from a metrics file, an unreachable Hub in one line, and bad metrics files named."""

import json
import socket

import pytest
from huggingface_hub import HfApi
from workflow_helpers import must_not_run, one_error_line, one_torch_thread  # noqa: F401

from hf_mmfusion.commands import main


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
    import hf_mmfusion.commands.push as push_command

    monkeypatch.setattr(push_command, "load_pretrained", must_not_run)
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



def test_push_command_renders_the_card_from_a_metrics_file(saved, tmp_path, monkeypatch):
    path, _, _ = saved
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

