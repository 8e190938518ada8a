"""Tiny checkpoints, datasets and flags shared by the workflow tests (training, Hub, CLI, pipeline)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from isolation import without_package

REPO_ROOT = Path(__file__).resolve().parents[2]

# Small widths, few heads, no dropout: fast and deterministic.
TINY_OVERRIDES = {
    "clcr": "exchange_heads=2,tcn_dilations=[1,2,4],intra_pair_segments=4,tcn_dropout=0,attention_dropout=0,classifier_dropout=0",
    "ssu": "graph_proj_dim=16,gat_heads=2,cross_attn_heads=2,fusion_topk=3,pos_bias_max_distance=6,"
    "gat_dropout=0,classifier_dropout=0,feature_dropout=0",
}
AUDIO_DIM, VISUAL_DIM = 6, 5


def tiny_synthetic_flags(sizes=(16, 8, 8), modalities=("text", "audio", "visual")) -> list[str]:
    return [
        "--dataset", "synthetic",
        "--synthetic_sizes", *map(str, sizes),
        "--synthetic_modalities", *modalities,
        "--synthetic_audio_dim", str(AUDIO_DIM),
        "--synthetic_visual_dim", str(VISUAL_DIM),
        "--synthetic_text_words", "3", "6",
        "--synthetic_audio_frames", "4", "8",
        "--synthetic_visual_frames", "3", "7",
    ]


def tiny_train_argv(model_type: str, output_dir, *extra: str, sizes=(16, 8, 8), modalities=("text", "audio", "visual")):
    """Flags of a tiny ``hf-mmfusion train`` run (regression, hidden 16, text width 32)."""
    return [
        "--model_type", model_type,
        "--output_dir", str(output_dir),
        "--hidden_size", "16",
        "--tiny_text_hidden_size", "32",
        "--config_overrides", TINY_OVERRIDES[model_type],
        *tiny_synthetic_flags(sizes, modalities),
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--learning_rate", "1e-3",
        "--logging_steps", "1",
        "--disable_tqdm", "true",
        "--dataloader_num_workers", "0",
        "--use_cpu", "true",
        *extra,
    ]


def tiny_dataset(sizes=(16, 8, 8), modalities=("text", "audio", "visual"), seed=0):
    from hf_mmfusion.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(
        sizes, modalities=modalities, audio_dim=AUDIO_DIM, visual_dim=VISUAL_DIM, seed=seed,
        text_words=(3, 6), audio_frames=(4, 8), visual_frames=(3, 7),
    )


def tiny_checkpoint(path, model_type: str, modalities=("text", "audio", "visual"), seed: int = 0, num_labels: int = 1):
    """An untrained tiny model + fitted processor saved to ``path``; returns (model, processor)."""
    import torch

    from hf_mmfusion.data.datasets import fit_feature_normalization
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_model, build_processor

    torch.manual_seed(seed)
    args = ModelArguments(model_type=model_type, hidden_size=16, config_overrides=TINY_OVERRIDES[model_type])
    processor = build_processor(args, modalities, AUDIO_DIM, VISUAL_DIM, 32)
    fit_feature_normalization(processor, tiny_dataset(modalities=modalities)["train"])
    model = build_model(args, modalities, AUDIO_DIM, VISUAL_DIM, num_labels, tokenizer=getattr(processor, "tokenizer", None))
    model.eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return model, processor


def run_python(code_or_args: list[str], env_extra: dict | None = None, with_package: bool = True, cwd=None, timeout=600):
    """Run ``python <args>`` in a fresh interpreter; the package is importable only if ``with_package``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    if with_package:
        env["PYTHONPATH"] = str(REPO_ROOT)
    else:
        flag, script, *rest = code_or_args
        assert flag == "-c", "only inline scripts can be run without the package"
        code_or_args = [flag, without_package(script), *rest]
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, *code_or_args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second intra-op thread and lose a lot on a shared machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@contextlib.contextmanager
def killed_and_live_runs(target, *args):
    """Two forked runs of ``target(*args, paths)``, which puts the scratch folder it writes in on the queue
    ``paths`` and hangs there; the first run is then killed with SIGKILL, as an out-of-memory kill or a lost
    machine would end it. Yields (the killed run's folder, the live run's folder); the live run ends after."""
    import multiprocessing
    import signal

    context = multiprocessing.get_context("fork")
    paths = context.Queue()
    runs = []
    try:
        for _ in range(2):
            process = context.Process(target=target, args=(*args, paths), daemon=True)
            process.start()
            runs.append((process, Path(paths.get(timeout=120))))
        os.kill(runs[0][0].pid, signal.SIGKILL)
        runs[0][0].join(timeout=60)
        yield runs[0][1], runs[1][1]
    finally:
        for process, _ in runs:
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
                process.join(timeout=60)


def must_not_run(*args, **kwargs):
    """A stand-in for the long work of a command: the test fails if the command reaches it."""
    raise AssertionError("the work started before the arguments were checked")


def one_error_line(capsys, *fragments: str) -> str:
    """The single ``error:`` line a command printed (no traceback); it must contain every fragment."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# `hf-mmfusion evaluate` of a tiny checkpoint on tiny synthetic data, clean condition only.
EVALUATE_FLAGS = ["--synthetic_sizes", "16", "8", "8", "--synthetic_audio_dim", "6", "--synthetic_visual_dim", "5",
                  "--noise", "0", "--no_drop", "--no_progress"]
