"""What a GPU run relies on, checked on CPU: bf16 autocast, torch.compile, CLCR's fused attention, benchmarks/gpu.py."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import test_clcr  # noqa: E402
import test_ssu  # noqa: E402
import torch  # noqa: E402

from hf_mmfusion import CLCRForSequenceClassification, SSUForSequenceClassification  # noqa: E402
from hf_mmfusion.models.modeling_clcr import (  # noqa: E402
    CLCRCrossModalExchange,
    _eager_exchange_attention,
    _sdpa_exchange_attention,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# bf16 keeps 8 significant bits (relative rounding 2^-8 ~ 0.4%), and the rounding of some ten layers (text
# encoder, TCN, IntraCED, InterCAD, or SSU's graphs) adds up. Over five seeds of these tiny models the largest
# prediction difference to fp32 was 0.007 for CLCR and 0.034 for SSU (predictions spread over 0.13-1.6); SSU
# moves more, probably because a rounded score can fall on the other side of its graph threshold and drop or add an edge.
# 0.05 (plus 5% of the value) covers that, and stays below the spread of the predictions.
BF16_ATOL, BF16_RTOL = 0.05, 0.05


def _models():
    clcr = test_clcr.build(test_clcr.tiny_config())
    torch.manual_seed(0)
    ssu = SSUForSequenceClassification(test_ssu.tiny_config()).eval()
    return {"clcr": (clcr, test_clcr.make_batch()), "ssu": (ssu, test_ssu.make_batch())}


@pytest.mark.parametrize("name", ["clcr", "ssu"])
def test_bf16_autocast_predicts_as_float32(name):
    model, batch = _models()[name]
    assert isinstance(model, (CLCRForSequenceClassification, SSUForSequenceClassification))
    with torch.no_grad():
        reference = model(**batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch)
    assert reference.logits.dtype == torch.float32
    assert torch.isfinite(low.logits).all() and torch.isfinite(low.loss)
    torch.testing.assert_close(low.logits.float(), reference.logits, atol=BF16_ATOL, rtol=BF16_RTOL)
    torch.testing.assert_close(low.loss.float(), reference.loss, atol=BF16_ATOL, rtol=BF16_RTOL)


@pytest.mark.parametrize("name", ["clcr", "ssu"])
def test_bf16_autocast_trains(name):
    model, batch = _models()[name]
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clcr", "ssu"])
def test_torch_compile_matches_eager(name):
    # backend="eager" runs dynamo's capture (graph breaks and all) without inductor's code generation, which
    # takes minutes on CPU; the captured graphs are what inductor would compile on a GPU.
    model, batch = _models()[name]
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend="eager")
        with torch.no_grad():
            reference = model(**batch)
            out = compiled(**batch)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(out.logits, reference.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.loss, reference.loss, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- CLCR's exchange attention


def _exchange_inputs(seed=0, batch=3, tq=4, tk=7, heads=2, dim=8):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, t, dim, generator=g) for t in (tq, tk, tk))
    keep = torch.rand(batch, 1, 1, tk, generator=g) > 0.4
    keep[..., 0] = True
    return q, k, v, keep.expand(batch, 1, tq, tk)


class _Module(torch.nn.Module):
    pass


def test_sdpa_exchange_equals_the_written_out_attention_for_boolean_and_additive_masks():
    q, k, v, keep = _exchange_inputs()
    module = _Module().eval()
    scale = q.shape[-1] ** -0.5
    expected, probs = _eager_exchange_attention(module, q, k, v, keep, scaling=scale)
    assert torch.all(probs.masked_select(~keep) == 0)
    additive = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    for attention in (_eager_exchange_attention, _sdpa_exchange_attention):
        for mask in (keep, additive):
            out, _ = attention(module, q, k, v, mask, scaling=scale)
            torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    # Hand-written reference, independent of both.
    scores = (q @ k.transpose(-1, -2)) * scale
    manual = torch.softmax(scores.masked_fill(~keep, float("-inf")), -1) @ v
    torch.testing.assert_close(expected, manual.transpose(1, 2), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_exchange_dropout_only_in_training(implementation):
    config = test_clcr.tiny_config(attention_dropout=0.5)
    config._attn_implementation = implementation
    torch.manual_seed(0)
    exchange = CLCRCrossModalExchange(config)
    g = torch.Generator().manual_seed(1)
    query, source = torch.randn(2, 3, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    exchange.eval()
    first, second = exchange(query, source, mask), exchange(query, source, mask)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    exchange.train()
    torch.manual_seed(2)
    dropped = exchange(query, source, mask)
    assert not torch.allclose(dropped, first)


def test_exchange_ignores_masked_sources_and_zeroes_rows_without_source():
    config = test_clcr.tiny_config()
    torch.manual_seed(0)
    exchange = CLCRCrossModalExchange(config).eval()
    g = torch.Generator().manual_seed(1)
    query, source = torch.randn(3, 3, 16, generator=g), torch.randn(3, 5, 16, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])
    out = exchange(query, source, mask)
    changed = source.clone()
    changed[1, 2:] = 100.0
    torch.testing.assert_close(exchange(query, changed, mask), out)
    assert torch.all(out[2] == 0)


def test_sdpa_and_eager_clcr_agree_in_training_mode_without_dropout():
    batch = test_clcr.make_batch()
    losses = {}
    for implementation in ("sdpa", "eager"):
        config = test_clcr.tiny_config(attention_dropout=0.0)
        config._attn_implementation = implementation
        model = test_clcr.build(config).train()
        losses[implementation] = model(**batch).loss
    torch.testing.assert_close(losses["sdpa"], losses["eager"], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- benchmarks/gpu.py


def _gpu_benchmark(*args):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu.py"), *args],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""},
    )


def test_gpu_benchmark_without_cuda_says_so_in_one_line():
    result = _gpu_benchmark()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "CUDA" in lines[0], result.stderr


@pytest.mark.slow
def test_gpu_benchmark_cpu_smoke_prints_every_row():
    result = _gpu_benchmark("--device", "cpu", "--tiny", "--modes", "bf16", "--steps", "1", "--warmup", "0", "--batch_sizes", "2")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("clcr", "ssu", "baseline"))]
    for model in ("clcr", "ssu", "baseline"):
        assert any(row.startswith(model) for row in rows), result.stdout
    assert "samples/s" in result.stdout and "MFU" in result.stdout and "x baseline" in result.stdout
