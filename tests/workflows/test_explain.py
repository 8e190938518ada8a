"""``hf_mmfusion.explain`` / ``hf-mmfusion explain``: the report's numbers are the models' outputs."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from workflow_helpers import (
    killed_and_live_runs,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    tiny_checkpoint,
    tiny_dataset,
    tiny_synthetic_flags,
)

import hf_mmfusion
from hf_mmfusion.data.datasets import encode_dataset, make_collator
from hf_mmfusion.models.graphs_ssu import cross_modal_links
from hf_mmfusion.workflows.evaluation import predict_dataset, robustness_rows
from hf_mmfusion.workflows.explanation.extractors import fusion_links

MODALITIES = ("text", "audio", "visual")


def _trained(path, model_type: str, steps: int = 6):
    """A tiny checkpoint trained a few steps on the synthetic train split, saved to ``path``."""
    model, processor = tiny_checkpoint(path, model_type)
    train = encode_dataset(tiny_dataset()["train"], processor, MODALITIES, "label", 32)
    collator = make_collator(processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for step in range(steps):
        rows = [train[(4 * step + i) % len(train)] for i in range(4)]
        loss = model(**collator(rows)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(path)
    return model, processor


@pytest.fixture(scope="module")
def clcr(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("clcr")
    return (*_trained(path, "clcr"), path)


@pytest.fixture(scope="module")
def ssu(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ssu")
    return (*_trained(path, "ssu"), path)


def _test_batch(model, processor):
    split = tiny_dataset()["test"]
    encoded = encode_dataset(split, processor, MODALITIES, "label", 128)
    batch = make_collator(processor)([encoded[i] for i in range(len(encoded))])
    return split, encoded, batch


def test_clcr_report_equals_model_outputs(clcr):
    model, processor, _ = clcr
    split, _, batch = _test_batch(model, processor)
    labels = batch.pop("labels")
    exp = hf_mmfusion.explain(model, processor, split)
    with torch.inference_mode():
        out = model(**batch, output_token_weights=True)
    assert [s["id"] for s in exp.samples] == list(split["id"])
    for b, sample in enumerate(exp.samples):
        assert sample["prediction"] == pytest.approx(float(out.logits[b, 0]), abs=1e-5)
        assert sample["label"] == pytest.approx(float(labels[b]))
        np.testing.assert_allclose(sample["level_weights"], out.level_weights[b].numpy(), atol=1e-6)
        assert sum(sample["level_weights"]) == pytest.approx(1.0, abs=1e-5)
        assert sum(sample["modality_weights"].values()) == pytest.approx(1.0, abs=1e-5)
        for j, m in enumerate(MODALITIES):
            assert sample["modality_weights"][m] == pytest.approx(float(out.modality_weights[b, j]), abs=1e-6)
            assert sample["private_gates"][m] == pytest.approx(float(out.private_gates[b, j]), abs=1e-6)
            np.testing.assert_allclose(sample["participation"][m], out.participation_ratios[b, j].numpy(), atol=1e-6)
            mask = batch["attention_mask" if m == "text" else f"{m}_attention_mask"][b].bool()
            expected = out.token_weights[j][b][:, mask].numpy()
            np.testing.assert_allclose(np.array(sample["token_weights"][m]), expected, atol=1e-6)
            assert sample["lengths"][m] == int(mask.sum())
        ids = batch["input_ids"][b][batch["attention_mask"][b].bool()].tolist()
        assert sample["tokens"] == processor.tokenizer.convert_ids_to_tokens(ids)
        assert sample["tokens"][0] == "[CLS]" and sample["text"] == split[b]["text"]
    summary = exp.summary
    np.testing.assert_allclose(summary["level_weights"], out.level_weights.mean(0).numpy(), atol=1e-6)
    # Every present modality has a shared and a private point on the 2-D map.
    assert all(set(s["summary_map"]) == set(MODALITIES) for s in exp.samples)
    assert all(len(s["summary_map"]["audio"]["private"]) == 2 for s in exp.samples)


@pytest.mark.parametrize("which", ["clcr", "ssu"])
def test_occlusion_equals_prediction_with_the_modality_dropped(which, request):
    model, processor, _ = request.getfixturevalue(which)
    split, encoded, _ = _test_batch(model, processor)
    collator = make_collator(processor)
    # Several batches, padded as the robustness evaluation pads them (SSU's graphs see the padded length).
    exp = hf_mmfusion.explain(model, processor, split, batch_size=3)
    clean, _ = predict_dataset(model, encoded, collator, batch_size=3, progress=False)
    assert [s["prediction"] for s in exp.samples] == pytest.approx(clean.tolist(), abs=1e-5)
    rows = {r["condition"]: r for r in robustness_rows(model, encoded, collator, noise_levels=[0.0], batch_size=3, progress=False)}
    for m in MODALITIES:
        dropped, _ = predict_dataset(model, encoded, collator, batch_size=3, drop=(m,), progress=False)
        assert [s["occlusion"][m]["score"] for s in exp.samples] == pytest.approx(dropped.tolist(), abs=1e-5)
        changes = [s["occlusion"][m]["change"] for s in exp.samples]
        assert changes == pytest.approx((clean - dropped).tolist(), abs=1e-5)
        assert exp.summary["occlusion"][m]["mean_abs_change"] == pytest.approx(np.abs(clean - dropped).mean(), abs=1e-5)
        # The averaged score is the robustness protocol's row for the same dropped modality.
        assert exp.summary["metrics"][f"drop {m}"]["mae"] == pytest.approx(rows[f"drop {m}"]["mae"], abs=1e-5)
    assert exp.summary["metrics"]["clean"]["mae"] == pytest.approx(rows["clean"]["mae"], abs=1e-5)
    # A drop that changes nothing would make the test vacuous: at least one modality moves the scores.
    assert max(exp.summary["occlusion"][m]["mean_abs_change"] for m in MODALITIES) > 1e-4


def test_ssu_report_equals_model_outputs(ssu):
    model, processor, _ = ssu
    split, _, batch = _test_batch(model, processor)
    batch.pop("labels")
    exp = hf_mmfusion.explain(model, processor, split, examples=2)
    with torch.inference_mode():
        out = model(**batch, output_graphs=True)
    lam = out.threshold_lambda.tolist()
    topk = model.config.fusion_topk
    for b, sample in enumerate(exp.samples):
        assert sample["threshold_lambda"] == pytest.approx({"audio": lam[0], "visual": lam[1]}, abs=1e-6)
        for m in MODALITIES:
            mask = batch["attention_mask" if m == "text" else f"{m}_attention_mask"][b].bool()
            beta = out[f"anchor_weights_{m}"][b][mask].numpy()
            np.testing.assert_allclose(sample["anchor_weights"][m], beta, atol=1e-6)
            assert sum(sample["anchor_weights"][m]) == pytest.approx(1.0, abs=1e-5)
            adjacency = (out.text_adjacency if m == "text" else out[f"adjacency_{m}"])[b][mask][:, mask].numpy()
            n = int(mask.sum())
            off = adjacency * (1 - np.eye(n))
            assert sample["graph_density"][m] == pytest.approx((off != 0).sum() / (n * (n - 1)), abs=1e-9)
            if b < 2:
                if m == "text":
                    arcs = {tuple(a) for a in sample["graphs"]["text"]["arcs"]}
                    assert arcs == {(int(j), int(i)) for i, j in zip(*np.nonzero(adjacency))}
                else:
                    np.testing.assert_allclose(sample["graphs"][m]["adjacency"], adjacency, atol=1e-6)
            else:
                assert "graphs" not in sample
        # The strongest fusion link joins the most anchor-affine node of each modality, at weight 1.
        for pair, links in sample["fusion_links"].items():
            a, c = pair.split("-")
            assert links[0][a] == int(np.argmax(sample["anchor_weights"][a]))
            assert links[0][c] == int(np.argmax(sample["anchor_weights"][c]))
            assert links[0]["weight"] == pytest.approx(1.0)
            assert len(links) == min(5, min(topk, sample["lengths"][a]) * min(topk, sample["lengths"][c]))
            assert [link["weight"] for link in links] == sorted((link["weight"] for link in links), reverse=True)


def test_fusion_links_follow_the_top_k_rule():
    masks = {"text": torch.ones(1, 3, dtype=torch.bool), "audio": torch.ones(1, 3, dtype=torch.bool)}
    beta = {"text": torch.tensor([[0.1, 0.6, 0.3]]), "audio": torch.tensor([[0.5, 0.25, 0.25]])}
    found = cross_modal_links(beta, masks, 2)
    edges = torch.stack([found.sample, found.modality_a, found.node_a, found.modality_b, found.node_b], 1)
    links = fusion_links(edges, found.weight, ["text", "audio"], 1, limit=10)[0]["text-audio"]
    # Top-2 text nodes {1, 2}, top-2 audio nodes: 0 and whichever of the tied 1, 2 the model's top-k took.
    tied = {link["audio"] for link in links} - {0}
    assert len(tied) == 1 and tied <= {1, 2}
    assert {(link["text"], link["audio"]) for link in links} == {(1, 0), (2, 0), (1, *tied), (2, *tied)}
    assert links[0] == {"text": 1, "audio": 0, "weight": 1.0}
    assert links[-1]["weight"] == pytest.approx(0.5 * (0.3 / 0.6 + 0.25 / 0.5))
    assert cross_modal_links(beta, masks, 0).sample.numel() == 0


def _fusion_graph_links(model, call):
    """The cross-modal edges the fusion GAT received in the first forward pass of ``call()``:
    {(sample, modality a, node, modality b, node): weight}, a before b in config order."""
    received = []
    handle = model.ssu.fusion_gat.register_forward_pre_hook(lambda module, args: received.append(args))
    try:
        result = call()
    finally:
        handle.remove()
    return received[0], result


def test_fusion_links_are_the_edges_the_model_built_ties_included(ssu, tmp_path):
    from hf_mmfusion.inference.records import encode_records

    model, processor, _ = ssu
    rng = np.random.default_rng(0)
    # Identical frames are identical nodes, so their anchor weights tie; the model's top-k then chooses
    # among them, and the report must list the links it chose.
    records = [{"id": f"s{i}", "text": text, "audio": np.tile(rng.normal(size=(1, 6)), (8, 1)).astype(np.float32),
                "visual": np.tile(rng.normal(size=(1, 5)), (7, 1)).astype(np.float32)}
               for i, text in enumerate(["a truly great film", "dull and far too long"])]
    (x, edge_index, edge_attr), exp = _fusion_graph_links(
        model, lambda: hf_mmfusion.explain(model, processor, records, tmp_path / "report", examples=0))
    report = json.loads((tmp_path / "report" / "explain.json").read_text())
    modalities = list(model.config.modalities)
    batch = encode_records(processor, records, modalities, 128)
    with torch.inference_mode():
        out = model(**batch, output_graphs=True)
    lengths = [out[f"anchor_weights_{m}"].shape[1] for m in modalities]               # node slots, padding included
    per_sample = x.shape[0] // len(records)
    starts = np.cumsum([0] + lengths)
    built = {}
    for (source, target), weight in zip(edge_index.T.tolist(), edge_attr[:, 0].tolist()):
        ends = []
        for node in (source, target):
            slot = node % per_sample
            m = int(np.searchsorted(starts, slot, side="right")) - 1
            ends.append((m, slot - int(starts[m])) if m < len(modalities) else None)
        if None not in ends and ends[0][0] < ends[1][0]:
            built[(source // per_sample, *ends[0], *ends[1])] = weight
    topk = model.config.fusion_topk
    for b, sample in enumerate(report["samples"]):
        beta = np.array(sample["anchor_weights"]["audio"])
        assert (beta == beta.max()).sum() > topk                               # the tie this test is about
        for pair, links in sample["fusion_links"].items():
            first, second = pair.split("-")
            a, c = modalities.index(first), modalities.index(second)
            ours = {key: w for key, w in built.items() if key[0] == b and key[1] == a and key[3] == c}
            assert len(ours) == min(topk, sample["lengths"][first]) * min(topk, sample["lengths"][second])
            for link in links:
                key = (b, a, link[modalities[a]], c, link[modalities[c]])
                assert key in ours, f"sample {b} lists {pair} link {link}, which the model did not build"
                assert link["weight"] == pytest.approx(ours[key], abs=1e-6)
            strongest = sorted(ours.values(), reverse=True)[: len(links)]
            assert [link["weight"] for link in links] == pytest.approx(strongest, abs=1e-6)
            assert len(links) == min(5, len(ours))
        assert set(sample["fusion_links"]) == {"text-audio", "text-visual", "audio-visual"}


def test_records_and_batches_give_the_same_report(clcr):
    from hf_mmfusion.workflows.prediction import predict_records

    model, processor, _ = clcr
    split = tiny_dataset()["test"].select(range(3))
    records = [{"id": r["id"], "text": r["text"], "audio": np.array(r["audio"]), "visual": np.array(r["visual"]),
                "label": r["label"]} for r in split]
    from_records = hf_mmfusion.explain(model, processor, records)
    expected = predict_records(model, processor, records, progress=False)
    assert [s["prediction"] for s in from_records.samples] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert [s["id"] for s in from_records.samples] == list(split["id"])
    batch = dict(processor(text=split["text"], audio=[np.array(a) for a in split["audio"]],
                           visual=[np.array(v) for v in split["visual"]], padding=True, return_tensors="pt"))
    from_batch = hf_mmfusion.explain(model, processor, batch)
    for a, b in zip(from_records.samples, from_batch.samples):
        np.testing.assert_allclose(a["token_weights"]["text"], b["token_weights"]["text"], atol=1e-6)
        assert a["occlusion"]["audio"]["score"] == pytest.approx(b["occlusion"]["audio"]["score"], abs=1e-6)


def _png_size(path):
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return image.shape[1], image.shape[0]


def _render_in_chromium(page):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium on this machine (Debian: apt-get install chromium)")
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


@pytest.mark.parametrize("which", ["clcr", "ssu"])
def test_report_files_and_page_in_a_headless_browser(which, request, tmp_path):
    model, processor, _ = request.getfixturevalue(which)
    out = tmp_path / "report"
    exp = hf_mmfusion.explain(model, processor, tiny_dataset()["test"], out, examples=1)
    written = json.loads((out / "explain.json").read_text())
    assert written["samples"] == json.loads(json.dumps(exp.to_json()["samples"]))
    assert written["examples"] == [exp.samples[0]["id"]]
    expected = {"occlusion.png"} | (
        {"weights.png", "participation.png", "summary_map.png", "tokens_0.png", "tokens_0.svg"}
        if which == "clcr"
        else {"text_graph_0.png", "text_graph_0.svg", "modality_graphs_0.png"}
    )
    assert expected <= {p.name for p in out.iterdir()}
    for name in expected:
        if name.endswith(".png"):
            width, height = _png_size(out / name)
            assert width >= 400 and height >= 150, name
    html = (out / "index.html").read_text()
    assert all(f'src="{name}"' in html for name in expected if name.endswith(".png"))
    assert "http://" not in html and "https://" not in html
    dom, console = _render_in_chromium(out / "index.html")
    assert 'data-figures-missing="0"' in dom
    assert not console, console
    assert dom.count("<tr>") >= len(exp.samples) + 1


def test_page_names_a_missing_figure(clcr, tmp_path):
    model, processor, _ = clcr
    out = tmp_path / "report"
    hf_mmfusion.explain(model, processor, tiny_dataset()["test"].select(range(4)), out, examples=1)
    (out / "occlusion.png").unlink()
    dom, console = _render_in_chromium(out / "index.html")
    assert 'data-figures-missing="1"' in dom and "figure not found: occlusion.png" in dom
    assert not console, console


def test_cli_explains_chosen_ids_and_maps_with_tsne(clcr, tmp_path):
    from hf_mmfusion.commands import main

    _, _, path = clcr
    ids = list(tiny_dataset()["test"]["id"])
    chosen = [ids[5], ids[2], ids[7], ids[0]]
    out = tmp_path / "explain"
    assert main(["explain", str(path), *tiny_synthetic_flags(), "--split", "test", "--ids", *chosen,
                 "-o", str(out), "--tsne", "--examples", "1", "--no_svg"]) == 0
    report = json.loads((out / "explain.json").read_text())
    assert [s["id"] for s in report["samples"]] == chosen
    assert report["summary"]["summary_map"]["method"] == "tsne"
    assert not list(out.glob("*.svg")) and (out / "tokens_0.png").is_file()
    # Rerunning into the same report directory replaces it.
    assert main(["explain", str(path), *tiny_synthetic_flags(), "--ids", ids[1], "-o", str(out), "--examples", "0"]) == 0
    report = json.loads((out / "explain.json").read_text())
    assert [s["id"] for s in report["samples"]] == [ids[1]] and not (out / "tokens_0.png").exists()


def test_bad_input_is_refused_and_nothing_is_written(clcr, ssu, tmp_path, capsys):
    from hf_mmfusion.commands import main

    model, processor, path = clcr
    split = tiny_dataset()["test"]
    with pytest.raises(ValueError, match="tsne"):
        hf_mmfusion.explain(ssu[0], ssu[1], split, tsne=True)
    capsys.readouterr()
    # The command reports a user error in one line and exits 2.
    assert main(["explain", str(path), *tiny_synthetic_flags(), "--ids", "no-such-id", "-o", str(tmp_path / "a")]) == 2
    assert "error: --ids" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="prediction head"):
        hf_mmfusion.explain(model.base_model, processor, split)
    with pytest.raises(ValueError, match="examples"):
        hf_mmfusion.explain(model, processor, split, examples=[0, 99])
    with pytest.raises(ValueError, match="batch_or_records"):
        hf_mmfusion.explain(model, processor, "a plain string")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier explain report"):
        hf_mmfusion.explain(model, processor, split, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]        # no staging left behind


def _refuse_model_loading(monkeypatch):
    """Output checks come before the model loads: loading it fails the test."""
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the output directory was checked")

    monkeypatch.setattr("hf_mmfusion.commands.explain.load_pretrained", fail)


def _explain_argv(path, out, *extra):
    ids = list(tiny_dataset()["test"]["id"])
    return ["explain", str(path), *tiny_synthetic_flags(), "--ids", ids[1], ids[3], "-o", str(out), "--no_svg", *extra]


def test_rerun_into_the_current_report_folder_keeps_the_users_files(clcr, tmp_path, monkeypatch):
    from hf_mmfusion.commands import main

    _, _, path = clcr
    report = tmp_path / "report"
    assert main(_explain_argv(path, report, "--examples", "1")) == 0
    assert (report / "tokens_0.png").is_file()
    (report / "my_notes.txt").write_text("keep me")
    (report / "mymodel").mkdir()
    (report / "mymodel" / "config.json").write_text("{}")
    monkeypatch.chdir(report)
    assert main(_explain_argv(path, ".", "--examples", "0", "--max_samples", "1")) == 0
    assert (report / "my_notes.txt").read_text() == "keep me"
    assert (report / "mymodel" / "config.json").read_text() == "{}"
    assert len(json.loads((report / "explain.json").read_text())["samples"]) == 1
    # The earlier report's own files that this run did not write are gone; nothing staged is left.
    assert not (report / "tokens_0.png").exists()
    assert {p.name for p in report.iterdir() if p.name.startswith(".")} == {".hf_mmfusion_explain"}
    # Again by name, from elsewhere.
    monkeypatch.chdir(tmp_path)
    assert main(_explain_argv(path, report, "--examples", "1")) == 0
    assert (report / "my_notes.txt").read_text() == "keep me" and (report / "mymodel" / "config.json").is_file()
    assert (report / "tokens_0.png").is_file()


def test_output_folder_is_checked_before_the_model_loads(clcr, tmp_path, monkeypatch, capsys):
    from hf_mmfusion.commands import main

    _, _, path = clcr
    report = tmp_path / "report"
    assert main(_explain_argv(path, report, "--examples", "0")) == 0
    before = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}
    _refuse_model_loading(monkeypatch)
    capsys.readouterr()
    link = tmp_path / "link"
    link.symlink_to(report, target_is_directory=True)
    assert main(_explain_argv(path, link)) == 2
    assert "symbolic link" in capsys.readouterr().err
    # A folder with an explain.json but no marker was not written by explain: refused, nothing deleted.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "explain.json").write_text("{}")
    (legacy / "my_notes.txt").write_text("keep me")
    monkeypatch.chdir(legacy)
    assert main(_explain_argv(path, ".")) == 2
    assert "not an earlier explain report" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in legacy.iterdir()} == {"explain.json": "{}", "my_notes.txt": "keep me"}
    (tmp_path / "a-file").write_text("keep me")
    assert main(_explain_argv(path, tmp_path / "a-file" / "report")) == 2
    assert "is a file" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("value", ["-5", "0"])
def test_max_samples_must_be_positive(clcr, tmp_path, monkeypatch, capsys, value):
    from hf_mmfusion.commands import main

    _refuse_model_loading(monkeypatch)
    assert main(_explain_argv(clcr[2], tmp_path / "report", "--max_samples", value)) == 2
    assert f"error: --max_samples must be at least 1, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_report_folder_follows_the_umask_and_a_failed_write_changes_nothing(clcr, tmp_path, monkeypatch):
    import os
    import stat

    model, processor, _ = clcr
    split = tiny_dataset()["test"].select(range(3))
    umask = os.umask(0o022)
    try:
        report = tmp_path / "report"
        hf_mmfusion.explain(model, processor, split, report, examples=1)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(report.stat().st_mode) == 0o755
    # An empty folder the user made is taken as it is.
    empty = tmp_path / "empty"
    empty.mkdir()
    hf_mmfusion.explain(model, processor, split, empty, examples=0)
    assert (empty / "explain.json").is_file() and (empty / ".hf_mmfusion_explain").is_file()
    shutil.rmtree(empty)
    (report / "my_notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in report.iterdir()}

    def broken(exp, directory, svg=True):
        (directory / "weights.png").write_bytes(b"half a figure")
        raise OSError("No space left on device")

    monkeypatch.setattr("hf_mmfusion.workflows.explanation.core.draw_figures", broken)
    with pytest.raises(OSError, match="No space"):
        hf_mmfusion.explain(model, processor, split, report, examples=0)
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before
    with pytest.raises(OSError, match="No space"):
        hf_mmfusion.explain(model, processor, split, tmp_path / "new", examples=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def _records(n=3):
    split = tiny_dataset()["test"].select(range(n))
    return [{"id": r["id"], "text": r["text"], "audio": np.array(r["audio"]), "visual": np.array(r["visual"]),
             "label": r["label"]} for r in split]


@pytest.mark.parametrize("which", ["clcr", "ssu"])
def test_records_with_different_modalities_are_explained_as_predict_scores_them(which, request, tmp_path):
    from hf_mmfusion.commands import main
    from hf_mmfusion.workflows.prediction import predict_records

    model, processor, path = request.getfixturevalue(which)
    records = _records(4)
    del records[1]["visual"]
    records[2]["visual"] = ""
    del records[3]["audio"]
    exp = hf_mmfusion.explain(model, processor, records)
    expected = predict_records(model, processor, records, progress=False)
    assert [s["id"] for s in exp.samples] == [r["id"] for r in records]
    assert [s["prediction"] for s in exp.samples] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    assert [s["lengths"]["visual"] for s in exp.samples][1:3] == [0, 0]
    assert exp.samples[3]["lengths"]["audio"] == 0 and exp.samples[0]["lengths"]["visual"] > 0
    # Dropping a modality the record lacks changes nothing.
    assert exp.samples[1]["occlusion"]["visual"]["change"] == pytest.approx(0.0, abs=1e-6)
    # The same from the command line, with the frames in .npy files beside the records file.
    lines = []
    for r in records:
        row = {"id": r["id"], "text": r["text"], "label": r["label"]}
        for m in ("audio", "visual"):
            if isinstance(r.get(m), np.ndarray):
                np.save(tmp_path / f"{r['id']}-{m}.npy", r[m])
                row[m] = f"{r['id']}-{m}.npy"
        lines.append(json.dumps(row))
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    assert main(["explain", str(path), "--inputs", str(tmp_path / "records.jsonl"), "-o", str(out), "--examples", "0",
                 "--no_svg"]) == 0
    report = json.loads((out / "explain.json").read_text())
    assert [s["prediction"] for s in report["samples"]] == pytest.approx([r["score"] for r in expected], abs=1e-5)


def test_record_labels_are_checked_and_named(clcr, tmp_path, capsys):
    from hf_mmfusion.commands import main

    model, processor, path = clcr
    for label, message in ((float("nan"), "must be a finite number, got nan"),
                           ("positive", "must be a finite number, got 'positive'"), (1e300, "must be a finite number")):
        records = _records(3)
        records[1]["label"] = label
        with pytest.raises(ValueError, match=rf"record 1 \(id '{records[1]['id']}'\): `label` {message}"):
            hf_mmfusion.explain(model, processor, records, tmp_path / "report")
    assert not (tmp_path / "report").exists()
    rows = [{"id": "a", "text": "good film", "label": 1.5}, {"id": "b", "text": "bad film", "label": "positive"}]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["explain", str(path), "--inputs", str(tmp_path / "records.jsonl"), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: record 1 (id 'b'): `label` must be a finite number, got 'positive'"
    assert "Traceback" not in err
    (tmp_path / "records.jsonl").write_text('{"id": "a", "text": "good film", "label": NaN}\n')
    assert main(["explain", str(path), "--inputs", str(tmp_path / "records.jsonl"), "-o", str(tmp_path / "r")]) == 2
    assert "error: record 0 (id 'a'): `label` must be a finite number, got nan" in capsys.readouterr().err


def test_classifier_record_labels_are_class_ids_or_names(tmp_path):
    model, processor = tiny_checkpoint(tmp_path / "classifier", "clcr", num_labels=3)
    records = [{**r, "label": label} for r, label in zip(_records(2), ("LABEL_2", 1))]
    records[1]["id"] = "b"
    exp = hf_mmfusion.explain(model, processor, records)
    assert [s["label"] for s in exp.samples] == [2, 1]
    for bad in (3, 1.5, "great"):
        with pytest.raises(ValueError, match=r"record 1 \(id 'b'\): `label` must be a class id in 0..2"):
            hf_mmfusion.explain(model, processor, [records[0], {**records[1], "label": bad}])


def _kept_figures(monkeypatch):
    """Figures the drawing code closes are kept open here, so that the test can lay them out and measure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    return kept


def _text_boxes(fig, keep):
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text() and keep(t.get_text())]


def test_robustness_figure_labels_do_not_overlap(tmp_path, monkeypatch):
    from hf_mmfusion.workflows.evaluation import plot_robustness

    kept = _kept_figures(monkeypatch)
    rows = [{"condition": f"noise {s}", "noise": s, "dropped": "", "mae": 0.8 + 0.2 * s, "acc2_has0": 0.7 - 0.1 * s}
            for s in (0.0, 0.5, 1.0)]
    # Two dropped conditions that score alike: their labels used to be drawn on top of each other.
    rows += [{"condition": f"drop {m}", "noise": 0.0, "dropped": m, "mae": mae, "acc2_has0": acc}
             for m, mae, acc in (("text", 1.3, 0.52), ("audio", 0.81, 0.695), ("visual", 0.812, 0.7))]
    plot_robustness(rows, tmp_path / "robustness.png", title="CLCR")
    boxes = _text_boxes(kept[-1], lambda text: text.startswith("drop") or text == "Gaussian noise")
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert not box_a.overlaps(box_b), (a, b)
    assert sorted(text for text, _ in boxes) == ["Gaussian noise", "drop audio", "drop text", "drop visual"]


def test_participation_values_stand_clear_of_error_bars_and_legend(tmp_path, monkeypatch):
    import re

    from matplotlib.container import ErrorbarContainer

    from hf_mmfusion.workflows.explanation import Explanation
    from hf_mmfusion.workflows.explanation.figures import participation_figure, pyplot

    rng = np.random.default_rng(0)
    samples = [{"id": str(i), "lengths": {m: 5 for m in MODALITIES},
                "participation": {m: np.clip(rng.normal([0.5, 0.9, 0.3], 0.2), 0, 1).tolist() for m in MODALITIES}}
               for i in range(30)]
    exp = Explanation("clcr", list(MODALITIES), True, ["level 1", "level 2", "level 3"], samples, {}, [])
    kept = _kept_figures(monkeypatch)
    participation_figure(pyplot(), exp, tmp_path, False, {})
    fig = kept[-1]
    ax = fig.axes[0]
    values = _text_boxes(fig, lambda text: re.fullmatch(r"\d\.\d\d", text) is not None)
    assert len(values) == 9
    scale = fig.dpi / 72
    segments = []
    for container in ax.containers:
        if not isinstance(container, ErrorbarContainer):
            continue
        _, caps, bars = container.lines
        for (x0, y0), (x1, y1) in (ax.transData.transform(seg) for seg in bars[0].get_segments()):
            segments.append((x0 - 1, x1 + 1, min(y0, y1), max(y0, y1)))
        for cap in caps:
            for x, y in ax.transData.transform(cap.get_xydata()):
                half = cap.get_markersize() / 2 * scale
                segments.append((x - half, x + half, y - scale, y + scale))
    assert len(segments) == 9 * 3
    for text, box in values:
        for x0, x1, y0, y1 in segments:
            assert not (x0 <= box.x1 and box.x0 <= x1 and y0 <= box.y1 and box.y0 <= y1), text
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert not any(legend.overlaps(box) for _, box in values)


def test_a_report_that_fails_while_moving_into_place_leaves_the_earlier_one(clcr, tmp_path, monkeypatch):
    import os

    model, processor, _ = clcr
    split = tiny_dataset()["test"]
    report = tmp_path / "report"
    hf_mmfusion.explain(model, processor, split.select(range(3)), report, examples=1)
    (report / "my_notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    replace = os.replace
    moved_in = []

    def failing(src, dst):
        # The new report's files go in by name order: fail after three of them replaced the earlier ones.
        if Path(dst).parent == report and ".retired" not in str(src) and Path(dst).name != ".hf_mmfusion_explain":
            if len(moved_in) == 3:
                raise OSError("Input/output error")
            moved_in.append(Path(dst).name)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="Input/output"):
        hf_mmfusion.explain(model, processor, split.select(range(5)), report, examples=0)
    monkeypatch.setattr(os, "replace", replace)
    assert moved_in == ["explain.json", "index.html", "occlusion.png"]
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before


def test_records_with_a_single_modality_have_no_occlusion_for_it(clcr, tmp_path):
    model, processor, _ = clcr
    records = _records(4)
    records[1] = {"id": records[1]["id"], "text": records[1]["text"], "label": records[1]["label"]}
    exp = hf_mmfusion.explain(model, processor, records, tmp_path / "mixed", examples=0)
    # Without its text the record has no input left: no score, rather than an error for the whole file.
    assert np.isnan(exp.samples[1]["occlusion"]["text"]["score"])
    assert exp.samples[1]["occlusion"]["audio"]["change"] == pytest.approx(0.0, abs=1e-6)
    saved = json.loads((tmp_path / "mixed" / "explain.json").read_text())
    assert saved["samples"][1]["occlusion"]["text"] == {"score": None, "change": None}
    text = exp.summary["occlusion"]["text"]
    changes = [s["occlusion"]["text"]["change"] for i, s in enumerate(exp.samples) if i != 1]
    assert text["num_samples"] == 3 and text["mean_abs_change"] == pytest.approx(np.abs(changes).mean(), abs=1e-6)
    labels = np.array([r["label"] for i, r in enumerate(records) if i != 1])
    dropped = np.array([s["occlusion"]["text"]["score"] for i, s in enumerate(exp.samples) if i != 1])
    assert exp.summary["metrics"]["drop text"]["mae"] == pytest.approx(np.abs(dropped - labels).mean(), abs=1e-5)
    # Text alone in every record: the report is still written.
    only_text = [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in records]
    exp = hf_mmfusion.explain(model, processor, only_text, tmp_path / "text", examples=0)
    assert exp.summary["occlusion"]["text"]["num_samples"] == 0 and "drop text" not in exp.summary["metrics"]
    assert (tmp_path / "text" / "occlusion.png").is_file()


def _explain_and_hang(model, processor, split, report, paths):
    import time

    import hf_mmfusion.workflows.explanation.core as explanation

    def hang(exp, directory, svg=True):
        paths.put(str(directory))
        time.sleep(600)

    explanation.draw_figures = hang
    hf_mmfusion.explain(model, processor, split, report, examples=0)


def test_a_killed_explain_leaves_nothing_after_the_next_run(clcr, tmp_path):
    model, processor, _ = clcr
    split = tiny_dataset()["test"].select(range(3))
    report = tmp_path / "report"
    hf_mmfusion.explain(model, processor, split, report, examples=0)
    (report / "my_notes.txt").write_text("keep me")
    with killed_and_live_runs(_explain_and_hang, model, processor, split, report) as (dead_staging, live_staging):
        assert dead_staging.parent == report and dead_staging.name.startswith(".report.partial-")
        assert dead_staging.is_dir()
        lookalike = report / ".report.partial-mine"  # no lock file: not provably ours
        lookalike.mkdir()
        (lookalike / "keep.txt").write_text("not ours")
        hf_mmfusion.explain(model, processor, split, report, examples=0)
        assert not dead_staging.exists() and live_staging.is_dir()
        assert (lookalike / "keep.txt").read_text() == "not ours" and (report / "my_notes.txt").read_text() == "keep me"
        assert (report / "explain.json").is_file()


def test_a_report_marker_in_the_earlier_format_still_counts(clcr, tmp_path):
    model, processor, _ = clcr
    split = tiny_dataset()["test"].select(range(3))
    report = tmp_path / "report"
    report.mkdir()
    (report / "explain.json").write_text("{}")
    (report / "old.png").write_bytes(b"png")
    (report / "my_notes.txt").write_text("keep me")
    (report / ".hf_mmfusion_explain").write_text(json.dumps({"files": ["explain.json", "old.png"]}))
    hf_mmfusion.explain(model, processor, split, report, examples=0)
    assert json.loads((report / "explain.json").read_text())["samples"]
    assert not (report / "old.png").exists() and (report / "my_notes.txt").read_text() == "keep me"
    # The earlier format is rewritten in the one all commands share.
    assert "explain.json" in json.loads((report / ".hf_mmfusion_explain").read_text())["written"]
