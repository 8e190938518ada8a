"""Shared model blocks (capped-simplex projection, whitened correlation, masking, TCN, positions, text taps) and
the conventions both models follow."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from transformers import AutoConfig, BertConfig
from transformers.utils import ModelOutput

import hf_mmfusion.models
from hf_mmfusion import (
    CLCRConfig,
    CLCRForSequenceClassification,
    CLCRModel,
    SSUConfig,
    SSUForSequenceClassification,
    SSUModel,
)
from hf_mmfusion.models.clcr_positional import ScaledSinusoidalEncoding
from hf_mmfusion.models.clcr_simplex import _project_general, _project_unit_box_inputs, project_capped_simplex
from hf_mmfusion.models.clcr_tcn import ThreeStageTCN
from hf_mmfusion.models.clcr_whitening import whitened_xcorr_sq, whitened_xcorr_sq_pairs
from hf_mmfusion.models.masking import masked_mean, masked_softmax, segment_pool
from hf_mmfusion.models.text_backbone import TextLevelEncoder, default_level_layers

# ---------------------------------------------------------------- capped simplex projection


def _qp_reference(a: np.ndarray, k: float) -> np.ndarray:
    """Euclidean projection onto {0 <= w <= 1, sum w <= k} by a generic constrained solver."""
    result = minimize(
        lambda w: 0.5 * np.sum((w - a) ** 2),
        x0=np.clip(a, 0, 1) * 0.5,
        jac=lambda w: w - a,
        bounds=[(0.0, 1.0)] * len(a),
        constraints=[{"type": "ineq", "fun": lambda w: k - w.sum(), "jac": lambda w: -np.ones_like(w)}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert result.success, result.message
    return result.x


@pytest.mark.parametrize("general", [False, True])
def test_projection_matches_brute_force_qp(general):
    rng = np.random.default_rng(0)
    for trial in range(12):
        n = int(rng.integers(2, 9))
        # [0, 1] inputs (the sigmoid case) or arbitrary reals (general algorithm).
        a = rng.normal(0.5, 1.0, size=n) if general else rng.uniform(0, 1, size=n)
        k = float(rng.uniform(0.3, n))
        mask = torch.ones(1, n, dtype=torch.bool)
        w = project_capped_simplex(torch.tensor(a)[None], mask, torch.tensor([k]))[0].numpy()
        np.testing.assert_allclose(w, _qp_reference(a, k), atol=1e-6, err_msg=f"trial {trial}")


def test_projection_constraints_and_padding():
    torch.manual_seed(0)
    a = torch.rand(5, 9, dtype=torch.float64)
    mask = torch.arange(9)[None] < torch.tensor([9, 6, 3, 1, 0])[:, None]
    k = torch.tensor([2.0, 1.5, 4.0, 1.0, 1.0], dtype=torch.float64)
    w = project_capped_simplex(a, mask, k)
    assert (w >= 0).all() and (w <= 1).all()
    assert (w.sum(1) <= k + 1e-12).all()
    assert (w[~mask] == 0).all()
    # Binding rows sum exactly to k; rows within budget come back unchanged.
    binding = (a * mask).sum(1) > k
    torch.testing.assert_close(w.sum(1)[binding], k[binding])
    torch.testing.assert_close(w[~binding & mask.any(1)], (a * mask)[~binding & mask.any(1)])
    assert torch.isfinite(w).all()


def test_projection_padding_gets_zero_gradient():
    a = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    w = project_capped_simplex(a, mask, torch.tensor([1.0, 2.0], dtype=torch.float64))
    (w * torch.randn_like(w)).sum().backward()
    assert (a.grad[~mask] == 0).all()


def test_projection_gradcheck():
    torch.manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    a = (torch.rand(2, 6, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    k = torch.tensor([1.3, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k: project_capped_simplex(a, mask, k), (a, k))
    b = (torch.randn(2, 6, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda b, k: _project_general(b, mask, k), (b, k))


def test_projection_algorithms_agree_on_unit_box():
    torch.manual_seed(2)
    a = torch.rand(8, 11, dtype=torch.float64)
    mask = torch.rand(8, 11) > 0.3
    k = torch.rand(8, dtype=torch.float64) * 4 + 0.5
    torch.testing.assert_close(_project_unit_box_inputs(a, mask, k), _project_general(a, mask, k), atol=1e-12, rtol=0)


# ---------------------------------------------------------------- whitened cross-correlation


def _eigh_form(x: torch.Tensor, y: torch.Tensor, eps_rel: float) -> torch.Tensor:
    def inv_sqrt(c):
        c = c + (eps_rel * torch.diagonal(c).mean() + 1e-6) * torch.eye(c.shape[0], dtype=c.dtype)
        vals, vecs = torch.linalg.eigh(c)
        return vecs @ torch.diag(vals.rsqrt()) @ vecs.T

    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
    return (inv_sqrt(sxx) @ sxy @ inv_sqrt(syy)).square().sum()


def test_whitened_matches_eigh_form_float64():
    torch.manual_seed(0)
    x = torch.randn(200, 5, dtype=torch.float64)
    y = x[:, :3] @ torch.randn(3, 4, dtype=torch.float64) + torch.randn(200, 4, dtype=torch.float64)
    value = whitened_xcorr_sq(x, y, eps_rel=0.1, normalize=False)
    torch.testing.assert_close(value, _eigh_form(x, y, 0.1), atol=1e-10, rtol=1e-10)
    normalized = whitened_xcorr_sq(x, y, eps_rel=0.1)
    assert 0 <= normalized <= 1 and normalized > 0.2


@pytest.mark.parametrize(
    "case",
    ["two_rows", "duplicate_columns", "zero_block", "same", "constant_rows"],
)
def test_whitened_gradients_finite_in_degenerate_cases(case):
    torch.manual_seed(0)
    x = torch.randn(2 if case == "two_rows" else 12, 4, dtype=torch.float64)
    if case == "duplicate_columns":       # repeated eigenvalues
        x = torch.cat([x[:, :2], x[:, :2]], 1)
    if case == "zero_block":
        x = torch.zeros_like(x)
    if case == "constant_rows":
        x = torch.ones_like(x)
    y = x.clone() if case == "same" else torch.randn(x.shape[0], 3, dtype=torch.float64)
    x.requires_grad_()
    y.requires_grad_()
    value = whitened_xcorr_sq(x, y)
    value.backward()
    assert torch.isfinite(value) and 0 <= value <= 1 + 1e-9
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_whitened_pairs_equal_pairwise_values_and_gradients():
    torch.manual_seed(3)
    blocks = [torch.randn(40, p, dtype=torch.float64, requires_grad=True) for p in (4, 3, 5)]
    pairs = [(0, 1), (1, 2), (2, 0), (1, 1)]
    batched = whitened_xcorr_sq_pairs(blocks, pairs)
    reference = torch.stack([whitened_xcorr_sq(blocks[i], blocks[j]) for i, j in pairs])
    torch.testing.assert_close(batched, reference, atol=1e-12, rtol=1e-10)
    g1 = torch.autograd.grad(batched.sum(), blocks)
    g2 = torch.autograd.grad(reference.sum(), blocks)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match="same rows"):
        whitened_xcorr_sq_pairs([blocks[0], blocks[1][:5]], [(0, 1)])


def test_whitened_separates_dependence_with_enough_rows():
    torch.manual_seed(0)
    x = torch.randn(2048, 8)
    independent = whitened_xcorr_sq(x, torch.randn(2048, 8))
    dependent = whitened_xcorr_sq(x, x @ torch.randn(8, 8) + 0.3 * torch.randn(2048, 8))
    assert independent < 0.05 < 0.5 < dependent


# ---------------------------------------------------------------- masking, TCN, positions, text taps


def test_masked_helpers_handle_empty_rows():
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(masked_mean(x, mask)[0], x[0, :2].mean(0))
    assert (masked_mean(x, mask)[1] == 0).all()
    probs = masked_softmax(torch.randn(2, 4), mask)
    torch.testing.assert_close(probs.sum(1), torch.tensor([1.0, 0.0]))
    assert (probs[~mask] == 0).all()


def test_segment_pool_pairs_relative_time():
    x = torch.arange(8, dtype=torch.float32).view(1, 8, 1).repeat(2, 1, 1)
    mask = torch.tensor([[1] * 8, [1] * 4 + [0] * 4], dtype=torch.bool)
    pooled, seg_mask = segment_pool(x, mask, 4)
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]))
    torch.testing.assert_close(pooled[1, :, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert seg_mask.all()
    _, seg_mask = segment_pool(x[:1, :2], mask[:1, :2], 4)
    assert seg_mask.sum() == 2


def test_tcn_ignores_padding_and_returns_stages():
    torch.manual_seed(0)
    tcn = ThreeStageTCN(5, 8, kernel_size=3, dilations=(1, 2, 4, 8, 16, 32), num_stages=3, dropout=0.0).eval()
    x = torch.randn(2, 10, 5)
    mask = torch.arange(10)[None] < torch.tensor([10, 6])[:, None]
    y = x.clone()
    y[1, 6:] = 100.0
    out_x, out_y = tcn(x, mask), tcn(y, mask)
    assert len(out_x) == 3 and out_x[0].shape == (2, 10, 8)
    for a, b in zip(out_x, out_y):
        torch.testing.assert_close(a, b)
        assert (a[1, 6:] == 0).all()
    with pytest.raises(ValueError, match="odd"):
        ThreeStageTCN(5, 8, kernel_size=2)
    with pytest.raises(ValueError, match="split evenly"):
        ThreeStageTCN(5, 8, dilations=(1, 2, 4, 8))


def test_scaled_positions_are_length_agnostic():
    enc = ScaledSinusoidalEncoding(6)
    x = torch.zeros(1, 5, 6)
    torch.testing.assert_close(enc(x)[0, :3], enc(torch.zeros(1, 3, 6))[0])
    torch.testing.assert_close(enc(x)[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))


def test_text_level_taps():
    assert default_level_layers(12) == [4, 8, 12]
    assert default_level_layers(2) == [1, 1, 2]
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    # The config checks the taps against the encoder it is given (0 is the embeddings, 2 the last layer).
    assert CLCRConfig(text_config=config.to_dict(), text_level_layers=[0, 1, 2]).text_level_layers == [0, 1, 2]
    with pytest.raises(ValueError, match=r"text_level_layers \[0, 1, 3\] must lie in \[0, 2\]"):
        CLCRConfig(text_config=config.to_dict(), text_level_layers=[0, 1, 3])
    encoder = TextLevelEncoder(config).eval()
    ids = torch.randint(1, 99, (2, 5))
    mask, out = encoder(ids, torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    assert mask.dtype == torch.bool and mask.sum().item() == 8
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.hidden_states[2], out.last_hidden_state)
    # Without a mask every token is real; embeddings in place of ids give the same states.
    mask, from_ids = encoder(ids)
    assert bool(mask.all())
    _, from_embeds = encoder(inputs_embeds=encoder.get_input_embeddings()(ids))
    torch.testing.assert_close(from_embeds.last_hidden_state, from_ids.last_hidden_state)


# ---------------------------------------------------------------- regression output offset


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_regression_head_starts_at_label_offset(model_type):
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_model

    args = ModelArguments(model_type=model_type, hidden_size=16)
    torch.manual_seed(0)
    model = build_model(args, ["audio", "visual"], 6, 5, num_labels=1, label_offset=3.4).eval()
    assert model.config.label_offset == pytest.approx(3.4)
    batch = {"audio_features": torch.zeros(8, 4, 6), "visual_features": torch.zeros(8, 3, 5)}
    torch.manual_seed(1)
    with torch.no_grad():
        shifted = model(**{k: torch.randn_like(v) for k, v in batch.items()}).logits
    # A 1-5 rating head starts near the labels' mean, not near 0.
    assert abs(float(shifted.mean()) - 3.4) < 1.5
    classifier = build_model(args, ["audio", "visual"], 6, 5, num_labels=3, label_offset=3.4)
    output_layer = [m for m in classifier.modules() if type(m).__name__ == "OutputLinear"]
    assert len(output_layer) == 1 and torch.all(output_layer[0].bias == 0)


def test_training_sets_label_offset_to_training_label_mean(tmp_path):
    import json

    from workflow_helpers import tiny_dataset, tiny_train_argv

    from hf_mmfusion.commands.train import main

    argv = tiny_train_argv("clcr", tmp_path / "run", "--num_train_epochs", "1", modalities=("audio", "visual"))
    assert main(argv) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    expected = float(np.mean(tiny_dataset(modalities=("audio", "visual"))["train"]["label"]))
    assert saved["label_offset"] == pytest.approx(expected, abs=1e-6)
    assert saved["label_offset"] != 0.0


# ---------------------------------------------------------------- conventions both models follow

MODELS_DIR = Path(hf_mmfusion.models.__file__).parent
REPO_ROOT = Path(__file__).resolve().parents[2]


def _tiny_model(model_type: str):
    text = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20)
    common = dict(text_config=text.to_dict(), audio_input_dim=5, visual_input_dim=7, hidden_size=16, num_labels=1)
    if model_type == "clcr":
        config = CLCRConfig(**common, shared_dim=8, exchange_heads=2, tcn_dilations=[1, 2, 4])
        return CLCRForSequenceClassification(config)
    config = SSUConfig(**common, graph_proj_dim=8, gat_heads=2, cross_attn_heads=2, text_graph="chain")
    return SSUForSequenceClassification(config)


def test_model_files_pass_transformers_model_linter():
    mlinter = pytest.importorskip("mlinter", reason="transformers-mlinter comes with the dev extra")
    files = list(mlinter.iter_modeling_files(search_paths=[MODELS_DIR]))
    assert {"modeling_clcr.py", "modeling_ssu.py", "configuration_common.py"} <= {path.name for path in files}
    violations = [f"{v.file_path.name}:{v.line_number}: {v.message}" for path in files
                  for v in mlinter.analyze_file(path, path.read_text())]
    assert violations == []


def test_every_model_file_starts_with_the_same_licence_header():
    headers = {path.name: path.read_text().splitlines()[:13] for path in MODELS_DIR.glob("*.py")}
    first = headers["modeling_clcr.py"]
    assert first[0] == "# Copyright 2026 The hf_mmfusion Authors. All rights reserved."
    assert first[2] == '# Licensed under the Apache License, Version 2.0 (the "License");'
    assert first[-1] == "# limitations under the License."
    assert {name for name, header in headers.items() if header != first} == set()


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_no_split_modules_name_blocks_the_model_holds(model_type):
    model = _tiny_model(model_type)
    held = {type(module).__name__ for module in model.modules()}
    assert model._no_split_modules and set(model._no_split_modules) <= held


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_saved_auto_map_names_the_code_files_the_checkpoint_carries(model_type, tmp_path):
    """A config that arrived with another checkpoint's auto_map (e.g. loaded with remote code) is saved
    with references to the files this checkpoint holds."""
    model = _tiny_model(model_type)
    model.config.auto_map = {"AutoModel": "someone/else--modeling_old.OldModel"}
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    name = type(model.config).__name__.removesuffix("Config")
    assert auto_map == {
        "AutoConfig": f"configuration_{model_type}.{name}Config",
        "AutoModel": f"modeling_{model_type}.{name}Model",
        "AutoModelForSequenceClassification": f"modeling_{model_type}.{name}ForSequenceClassification",
    }
    assert all((tmp_path / f"{ref.split('.')[0]}.py").is_file() for ref in auto_map.values())


def test_generated_docs_document_every_argument():
    # auto_docstring prints a line for every argument it finds undocumented, at import time.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    code = "import hf_mmfusion.models.modeling_clcr, hf_mmfusion.models.modeling_ssu"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    for config_class, own_field in ((CLCRConfig, "shared_dim"), (SSUConfig, "gat_heads")):
        assert "modalities (" in config_class.__doc__ and f"{own_field} (" in config_class.__doc__
        assert "None" not in config_class.__doc__.split("Args:")[0]
    outputs = {CLCRModel: "CLCRModelOutput", CLCRForSequenceClassification: "CLCRSequenceClassifierOutput",
               SSUModel: "SSUModelOutput", SSUForSequenceClassification: "SSUSequenceClassifierOutput"}
    for model_class, output_class in outputs.items():
        doc = model_class.forward.__doc__
        names = [name for name in inspect.signature(model_class.forward).parameters if name != "self"]
        assert [name for name in names if f"{name} (" not in doc] == []
        assert "Returns:\n" in doc and f"[`{output_class}`]" in doc


@pytest.mark.parametrize("model_type", ["clcr", "ssu"])
def test_configs_keep_fields_they_do_not_know(model_type, tmp_path):
    """A config.json written by a newer version (an extra key) still loads, and keeps the key."""
    config = _tiny_model(model_type).config
    config.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "future_switch": 7}))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config) and loaded.future_switch == 7
    assert type(config)(**config.to_dict(), future_switch=7).future_switch == 7


def test_clcr_inter_cad_returns_a_typed_output_the_model_reports():
    torch.manual_seed(0)
    model = _tiny_model("clcr").clcr.eval()
    seen = []
    model.inter_cad.register_forward_hook(lambda module, args, output: seen.append(output))
    out = model(input_ids=torch.randint(1, 50, (2, 6)), audio_features=torch.randn(2, 4, 5),
                visual_features=torch.randn(2, 3, 7))
    (fused,) = seen
    assert isinstance(fused, ModelOutput) and fused.anchors.shape == (2, 3, 16)
    torch.testing.assert_close(fused.level_weights, out.level_weights)
    torch.testing.assert_close(torch.cat([fused.shared_summary, fused.private_summary], -1), out.pooler_output)
    torch.testing.assert_close(fused.modality_weights, out.modality_weights)
