"""``hf-mmfusion``: the command list, one error line per user error, quick usage, the memory setting, and one
thread rule for every command."""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from workflow_helpers import EVALUATE_FLAGS, one_torch_thread, tiny_checkpoint, tiny_dataset  # noqa: E402, F401

from hf_mmfusion.commands import main  # noqa: E402


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


def test_user_errors_are_one_line_and_split_aliases_resolve(saved, data_dir, tmp_path, capsys, monkeypatch):
    import shutil

    from datasets import load_from_disk

    path, _, _ = saved
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
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "commands:" in result.stdout


def test_one_thread_rule_for_every_command(checkpoint, tmp_path, monkeypatch):
    import hf_mmfusion.commands.explain as explain_command
    import hf_mmfusion.workflows.evaluation as evaluation
    import hf_mmfusion.workflows.prediction as predict_module

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

    from hf_mmfusion.utils.cpu_threads import SMALL_MODEL_PARAMETERS, choose_threads
    from hf_mmfusion.utils.cpu_threads import choose_threads as training_rule

    assert training_rule is choose_threads  # train follows the same rule
    small, large = torch.nn.Linear(4, 4), torch.nn.Linear(SMALL_MODEL_PARAMETERS, 1, bias=False)
    assert choose_threads(small) == 1 and choose_threads(small, 3) == 3 and choose_threads(large) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(small) == 3 and choose_threads(small, 2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's per-level list: the first level counts
    assert choose_threads(small) == 4



@pytest.mark.parametrize("flag", [["--fsdp", "true"], ["--fsdp=yes"], ["--fsdp", "full_shard"]])
def test_fsdp_in_one_process_is_refused_before_any_work(tmp_path, capsys, flag):
    from workflow_helpers import one_error_line

    out = tmp_path / "run"
    assert main(["train", "--model_type", "clcr", "--output_dir", str(out), "--max_steps", "1", *flag]) == 2
    one_error_line(capsys, "--fsdp", "torchrun")
    assert not out.exists()


def test_fsdp_on_cpu_processes_is_refused_instead_of_running_ddp():
    from types import SimpleNamespace

    from hf_mmfusion.commands.train import _boolean_fsdp
    from hf_mmfusion.workflows.training.arguments import check_sharding

    assert _boolean_fsdp(["--fsdp", "True"]) == ["--fsdp", "full_shard"]
    assert _boolean_fsdp(["--fsdp=false"]) == ["--fsdp="]
    assert _boolean_fsdp(["--fsdp", "full_shard auto_wrap"]) == ["--fsdp", "full_shard auto_wrap"]
    cpu_pair = SimpleNamespace(fsdp=True, world_size=2, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="only on GPU-type devices"):
        check_sharding(cpu_pair)
    check_sharding(SimpleNamespace(fsdp="", world_size=2, device=torch.device("cpu")))   # DDP on CPU is fine
    check_sharding(SimpleNamespace(fsdp=True, world_size=2, device=torch.device("meta")))  # stands in for a GPU
