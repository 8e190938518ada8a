"""``benchmarks/mosi_text.py`` on a tiny CSV with a tiny random BERT: layout, validation table, test predictions."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from workflow_helpers import one_torch_thread  # noqa: F401  (autouse fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mosi_text  # noqa: E402

from hf_mmfusion.processing import installed_spacy_pipeline  # noqa: E402

COLUMNS = ["id", "vid", "seg", "start", "end", "label", "split", "text_upper", "text_lower"]
SENTENCES = [
    ("good film and great acting", 2.0), ("awful boring story", -2.4), ("i liked the lovely ending", 1.6),
    ("terrible and sad", -1.8), ("a wonderful time", 2.6), ("dreadful plot", -2.0),
]


def write_csv(path: Path, rows, columns=COLUMNS):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: r[k] for k in columns} for r in rows)


def mosi_rows(n_train=12, n_valid=6):
    rows = []
    for i in range(n_train + n_valid):
        text, label = SENTENCES[i % len(SENTENCES)]
        rows.append({
            "id": f"v{i}_1", "vid": f"v{i}", "seg": 1, "start": 0.0, "end": 1.0, "label": label,
            "split": "train" if i < n_train else "valid", "text_upper": text.upper(),
            # The real file has a few rows whose lower-case transcript is empty.
            "text_lower": "" if i == 1 else text,
        })
    return rows


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertModel

    from hf_mmfusion.data.synthetic import build_synthetic_tokenizer
    from hf_mmfusion.workflows.training.builders import tiny_text_config

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = build_synthetic_tokenizer()
    BertModel(tiny_text_config(len(tokenizer), hidden_size=32, num_layers=3)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_read_rows_uses_text_upper_where_text_lower_is_empty(tmp_path):
    path = tmp_path / "mosi.csv"
    write_csv(path, mosi_rows())
    rows = mosi_text.read_rows(str(path), need_label=True)
    assert rows[1]["text"] == "AWFUL BORING STORY" and rows[0]["text"] == "good film and great acting"
    write_csv(path, mosi_rows(), columns=["id", "split", "text_lower"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label', 'text_upper'\]"):
        mosi_text.read_rows(str(path), need_label=True)


def test_benchmark_writes_validation_table_and_test_predictions(tmp_path, tiny_bert, capsys):
    data, test_csv, out = tmp_path / "mosi.csv", tmp_path / "hidden.csv", tmp_path / "out"
    write_csv(data, mosi_rows())
    hidden = [{**r, "id": f"t{i}"} for i, r in enumerate(mosi_rows(4, 0))]
    write_csv(test_csv, hidden, columns=["id", "split", "text_upper", "text_lower"])  # no label column
    argv = ["--data", str(data), "--test-csv", str(test_csv), "--seeds", "1", "2", "--output-dir", str(out),
            "--text_model", str(tiny_bert), "--num_train_epochs", "2", "--no-progress"]
    assert mosi_text.main(argv) == 0
    printed = capsys.readouterr().out
    pipeline = installed_spacy_pipeline()
    assert (f"dependency parses from spaCy pipeline {pipeline!r}" if pipeline else "token chain") in printed
    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("| model | split | seeds | mae | corr |")
    assert [line.split(" | ")[:3] for line in table[2:5]] == [
        ["| baseline", "validation", "2"], ["| clcr", "validation", "2"], ["| ssu", "validation", "2"],
    ]
    assert table[2] in printed and "test" not in (line.split(" | ")[1] for line in table[2:5])
    summary = json.loads((out / "results.json").read_text())["summary"]
    for model in ("baseline", "clcr", "ssu"):
        assert "test" not in summary[model]  # the hidden file gives predictions, never metrics
        for seed in (1, 2):
            result = json.loads((out / model / f"seed-{seed}" / "result.json").read_text())
            assert result["selection_metric"] == "mae" and result["test"] == {}
            assert result["recipe"]["training"]["num_train_epochs"] == 2
            with (out / model / f"seed-{seed}" / "test_predictions.csv").open() as handle:
                rows = list(csv.reader(handle))
            assert rows[0] == ["id", "prediction"] and [r[0] for r in rows[1:]] == [h["id"] for h in hidden]
            assert all(float(r[1]) == float(r[1]) for r in rows[1:])
    ssu_recipe = json.loads((out / "ssu" / "seed-1" / "result.json").read_text())["recipe"]["model"]
    assert ssu_recipe["spacy_model"] == pipeline and ssu_recipe["text_model"] == str(tiny_bert)
    assert json.loads((out / "ssu" / "seed-1" / "config.json").read_text())["text_graph"] == (
        "dependency" if pipeline else "chain"
    )
    # A second invocation finds every seed finished and trains nothing.
    before = (out / "clcr" / "seed-1" / "result.json").stat().st_mtime_ns
    assert mosi_text.main(argv) == 0
    assert (out / "clcr" / "seed-1" / "result.json").stat().st_mtime_ns == before


def test_plain_recipe_trains_every_model_like_the_baseline(tmp_path):
    """The drop-in check: one learning rate for every parameter (no separate text rate), the baseline's
    epochs and batch, each fusion model at its config's default width."""
    from hf_mmfusion import CLCRConfig, SSUConfig

    specs = {s.name: s for s in mosi_text.make_specs(mosi_text.MODELS, "enc", tmp_path, None, None, mosi_text.PLAIN_RECIPES)}
    base = specs["baseline"].training_args
    for name, config in (("clcr", CLCRConfig), ("ssu", SSUConfig)):
        spec = specs[name]
        assert spec.model_args.text_learning_rate is None and spec.model_args.hidden_size == config().hidden_size
        for field in ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "weight_decay",
                      "lr_scheduler_type", "warmup_steps"):
            assert getattr(spec.training_args, field) == getattr(base, field), (name, field)
    own = {s.name: s for s in mosi_text.make_specs(mosi_text.MODELS, "enc", tmp_path, None, None)}
    assert own["clcr"].model_args.text_learning_rate == 5e-5 and own["clcr"].training_args.learning_rate == 1e-3
