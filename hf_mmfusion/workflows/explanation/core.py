"""The papers' analyses for any trained model and any input (``hf-mmfusion explain``, ``hf_mmfusion.explain``).

CLCR reports its level weights ``alpha``, modality selection ``beta``, private gates, the participation of
every modality and level and the per-token budget weights, plus a 2-D map (PCA, or t-SNE on request) of the
level-mixed shared and private summaries of each modality. SSU reports its anchor weights per node, the
density of every graph, the learned thresholds ``lambda`` and the strongest cross-modal links of its fusion
graph. For both, each modality is dropped in turn, exactly as the robustness protocol drops it
(``evaluation.perturb_batch``), and the change of the prediction is that modality's occlusion contribution.

Every number comes from the model's own outputs (``extractors.py`` reads them, one extractor per model type).
Everything the figures show is in ``explain.json``; ``index.html`` shows the figures and the per-sample
numbers on one page that needs no network.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...inference.checkpoints import is_regression
from ...utils.json_values import finite_or_none
from ...utils.outputs import (
    STAGING_PATTERN,
    ScratchDirectory,
    creation_mode,
    is_scratch,
    record_written,
    remove_abandoned_scratch,
    written_entries,
)
from ..evaluation import perturb_batch, score
from .extractors import EXTRACTORS, Extractor, extractor_for
from .figures import occlusion_figure, pyplot
from .report import render_html

MODEL_INPUT_KEYS = ("input_ids", "inputs_embeds", "audio_features", "visual_features")

# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    batch: dict
    labels: np.ndarray | None
    ids: list[str]
    texts: list[str | None]


def _label_column(model, split) -> str | None:
    preferred = "label" if is_regression(model) else "label_class"
    return preferred if preferred in split.column_names else None


def _dataset_chunks(model, processor, split, batch_size: int, max_length: int):
    from ...data.datasets import check_dataset_modalities, dataset_modalities, encode_dataset, make_collator

    modalities = list(model.config.modalities)
    check_dataset_modalities(modalities, dataset_modalities(split), "the explained split")
    ids = [str(i) for i in split["id"]] if "id" in split.column_names else [str(i) for i in range(len(split))]
    texts = list(split["text"]) if "text" in split.column_names and "text" in modalities else [None] * len(split)
    encoded = encode_dataset(split, processor, modalities, _label_column(model, split), max_length)
    collator = make_collator(processor)
    for start in range(0, len(encoded), batch_size):
        stop = min(start + batch_size, len(encoded))
        batch = collator([encoded[i] for i in range(start, stop)])
        labels = batch.pop("labels").numpy() if "labels" in batch else None
        yield _Chunk(batch, labels, ids[start:stop], texts[start:stop])


def _record_labels(model, records: Sequence[dict]) -> list:
    """Each record's label as the model's task reads it (``None`` where absent); a ``ValueError`` naming the
    record otherwise. A classifier's label is a class id or one of its ``label2id`` names."""
    regression = is_regression(model)
    num_labels = int(model.config.num_labels)
    names = {str(k).lower(): int(v) for k, v in (getattr(model.config, "label2id", None) or {}).items()}
    labels = []
    for i, record in enumerate(records):
        value = record.get("label")
        if value is None or value == "":
            labels.append(None)
            continue
        where = f"record {i} (id {str(record.get('id', i))!r})"
        if not regression and isinstance(value, str) and value.strip().lower() in names:
            labels.append(names[value.strip().lower()])
            continue
        expected = "a finite number" if regression else f"a class id in 0..{num_labels - 1} or one of {sorted(names)}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: `label` must be {expected}, got {value!r}") from None
        # Labels are scored as float32: a float64 beyond its range would become inf there.
        with np.errstate(over="ignore"):
            finite = bool(np.isfinite(np.float32(number)))
        if not finite or (not regression and (number != int(number) or not 0 <= number < num_labels)):
            raise ValueError(f"{where}: `label` must be {expected}, got {value!r}")
        labels.append(number if regression else int(number))
    return labels


def _record_chunks(model, processor, records: Sequence[dict], batch_size: int, max_length: int, base_dir=None):
    from ...inference.records import check_record, encode_records, given_inputs

    modalities = list(model.config.modalities)
    for i, record in enumerate(records):
        check_record(record, modalities, f"record {i} (id {str(record.get('id', i))!r})", base_dir)
    labels = _record_labels(model, records)
    # As predict does, records are encoded together only when they give the same inputs; a configured
    # modality a record lacks is then absent from its batch, which the model masks out. Runs of such
    # records keep the report in the records' order.
    start = 0
    while start < len(records):
        stop = start + 1
        while stop < min(start + batch_size, len(records)) and given_inputs(records[stop]) == given_inputs(records[start]):
            stop += 1
        chunk = records[start:stop]
        batch = dict(encode_records(processor, chunk, modalities, max_length, base_dir))
        known = labels[start:stop]
        ids = [str(r.get("id", start + i)) for i, r in enumerate(chunk)]
        texts = [r.get("text") if isinstance(r.get("text"), str) else None for r in chunk]
        yield _Chunk(batch, None if None in known else np.asarray(known, dtype=np.float32), ids, texts)
        start = stop


def _batch_chunk(batch: Mapping) -> _Chunk:
    batch = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
    labels = batch.pop("labels", None)
    sizes = {v.shape[0] for v in batch.values() if torch.is_tensor(v) and v.ndim > 0}
    if len(sizes) != 1:
        raise ValueError(f"the batch's tensors must share their first (batch) dimension, got sizes {sorted(sizes)}")
    n = sizes.pop()
    return _Chunk(batch, None if labels is None else labels.numpy(), [str(i) for i in range(n)], [None] * n)


def _chunks(model, processor, data, batch_size: int, max_length: int, base_dir=None):
    import datasets

    if isinstance(data, datasets.Dataset):
        if len(data) == 0:
            raise ValueError("the dataset to explain has no rows")
        return list(_dataset_chunks(model, processor, data, batch_size, max_length))
    if isinstance(data, Mapping):
        return [_batch_chunk(data)]
    if isinstance(data, Sequence) and not isinstance(data, str) and data and all(isinstance(r, Mapping) for r in data):
        return list(_record_chunks(model, processor, list(data), batch_size, max_length, base_dir))
    raise ValueError(
        "batch_or_records must be a model-input batch (dict of tensors), a non-empty list of records "
        "({'text': ..., 'audio': ..., 'visual': ...}) or a datasets.Dataset split"
    )


def _tokens(processor, input_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    tokenizer = getattr(processor, "tokenizer", None)
    ids = input_ids[mask].tolist()
    return tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]


def _forward(model, batch: dict, extractor: Extractor):
    """The head's output with the analysis outputs the extractor asks for, floats as float32, on the CPU."""
    with torch.inference_mode():
        out = model(**batch, **extractor.flags)
    return type(out)(**{k: _cpu(v) for k, v in out.items()})


def _scores(model, logits: torch.Tensor, classes: np.ndarray | None = None) -> np.ndarray:
    """The score occlusion compares: the regression output, or the probability of the clean predicted class."""
    logits = logits.float().cpu()
    if is_regression(model):
        return logits.reshape(-1).numpy()
    probs = logits.softmax(-1).numpy()
    classes = probs.argmax(-1) if classes is None else classes
    return probs[np.arange(len(probs)), classes]


@dataclass
class Explanation:
    """What ``explain`` found: one JSON-ready record per sample and the aggregates over all of them.

    ``arrays`` holds the level-mixed shared / private summaries ``[N, M, d]`` and modality presence
    ``[N, M]`` of CLCR (for the 2-D map); ``examples`` the indices of the samples drawn one by one.
    """

    model_type: str
    modalities: list[str]
    regression: bool
    level_names: list[str]
    samples: list[dict]
    summary: dict
    examples: list[int]
    arrays: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return finite_or_none(
            {
                "model_type": self.model_type,
                "modalities": self.modalities,
                "task": "regression" if self.regression else "classification",
                "levels": self.level_names,
                "examples": [self.samples[i]["id"] for i in self.examples],
                "summary": self.summary,
                "samples": self.samples,
            }
        )

    def save(self, output_dir: str | Path, svg: bool = True) -> dict[str, Path]:
        """``explain.json``, the figures and ``index.html`` in ``output_dir``, written all at once.

        ``output_dir`` is a new or empty folder, or an earlier report (see :func:`check_report_dir`); in an
        earlier report only the files that report wrote are replaced, the user's own files stay.
        """
        folder = check_report_dir(output_dir)
        existed = folder.exists()
        if not existed:
            folder.parent.mkdir(parents=True, exist_ok=True)
        # Staged beside the report's files (same file system), so moving them into place is a rename; a
        # staging folder a killed run left there is removed now.
        parent = folder if existed else folder.parent
        remove_abandoned_scratch(parent, STAGING_PATTERN)
        with ScratchDirectory(parent, f".{folder.name}.partial-", mode=creation_mode(directory=True)) as scratch:
            staging = scratch.path
            figures = draw_figures(self, staging, svg=svg)
            (staging / "explain.json").write_text(json.dumps(self.to_json(), indent=1, allow_nan=False))
            (staging / "index.html").write_text(render_html(self, figures))
            names = scratch.entries()
            if existed:
                _replace_report_files(folder, staging, names)
            else:
                record_written(staging, REPORT_MARKER, names, reset=True)
                scratch.seal()
                staging.rename(folder)
        paths = {"json": folder / "explain.json", "html": folder / "index.html"}
        paths.update({name: folder / rel for name, rel in figures.items()})
        return paths


# Names the files of a report; explain replaces files in an existing folder only when this marker lists them.
REPORT_MARKER = ".hf_mmfusion_explain"


def check_report_dir(output_dir: str | Path) -> Path:
    """The absolute report folder once ``explain`` may write there; a ``ValueError`` naming it otherwise.

    A report goes into a folder explain creates, an empty folder, or a folder holding an earlier report
    (it carries the ``.hf_mmfusion_explain`` marker listing that report's files). A symbolic link is refused
    rather than followed. Nothing is written here, so callers check before any long computation.
    """
    folder = Path(os.path.abspath(output_dir))
    shown = repr(str(output_dir))
    if folder.is_symlink():
        raise ValueError(
            f"output directory {shown} is a symbolic link (to {os.readlink(folder)!r}); pass the folder it points to"
        )
    if not folder.exists():
        ancestor = folder.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ValueError(f"output directory {shown}: {ancestor} is a file, not a folder")
        return folder
    if not folder.is_dir():
        raise ValueError(f"output directory {shown} is a file; choose a new or empty directory")
    # Staging folders of explain runs (a live one's, or one a killed run left) are not the user's files.
    if any(not is_scratch(p) for p in folder.iterdir()) and written_entries(folder, REPORT_MARKER) is None:
        raise ValueError(
            f"output directory {shown} exists and is not an earlier explain report (no {REPORT_MARKER} marker); "
            "choose a new or empty directory"
        )
    return folder


def _is_file_entry(path: Path) -> bool:
    return path.is_symlink() or path.is_file()


def _replace_report_files(folder: Path, staging: Path, names: list[str]) -> None:
    """Move the staged report ``names`` into the earlier report ``folder``, retiring that report's files.

    Only files the folder's marker lists are replaced or removed; a failure puts the earlier report back.
    """
    old = sorted(n for n in written_entries(folder, REPORT_MARKER) or () if _is_file_entry(folder / n))
    foreign = [n for n in names if n not in old and ((folder / n).exists() or (folder / n).is_symlink())]
    if foreign:
        raise ValueError(
            f"output directory {str(folder)!r} holds {foreign[:5]}, which the earlier report did not write; "
            "move them away or choose another directory"
        )
    marker = folder / REPORT_MARKER
    previous = marker.read_text() if marker.is_file() else None
    # Until the swap is done the marker lists both reports, so an interrupted run is cleaned up by the next.
    record_written(folder, REPORT_MARKER, sorted(set(old) | set(names)), reset=True)
    retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=staging))
    moved_out, moved_in = [], []
    try:
        for name in old:
            os.replace(folder / name, retired / name)
            moved_out.append(name)
        for name in names:
            os.replace(staging / name, folder / name)
            moved_in.append(name)
        record_written(folder, REPORT_MARKER, names, reset=True)
    except BaseException:
        for name in moved_in:
            os.replace(folder / name, staging / name)
        for name in moved_out:
            os.replace(retired / name, folder / name)
        if previous is None:
            marker.unlink(missing_ok=True)
        else:
            (staging / REPORT_MARKER).write_text(previous)
            os.replace(staging / REPORT_MARKER, marker)
        raise


def check_explainable(model) -> None:
    """A ``ValueError`` unless ``model`` is a CLCR or SSU model: the analyses are theirs."""
    extractor_for(model)


def explain(
    model,
    processor,
    batch_or_records,
    output_dir: str | Path | None = None,
    *,
    tsne: bool = False,
    examples: int | Sequence[int] = 3,
    batch_size: int = 32,
    max_length: int = 128,
    seed: int = 0,
    base_dir: str | Path | None = None,
    svg: bool = True,
) -> Explanation:
    """Run the model's analyses and the occlusion test over ``batch_or_records``.

    ``batch_or_records``: a model-input batch (a processor or collator output; ``labels`` optional), a list
    of records (``text`` / ``audio`` / ``visual`` as for ``predict``, optional ``id`` and ``label``) or a
    ``datasets.Dataset`` split with the canonical columns. ``examples`` is how many samples (or which sample
    indices) get the per-utterance figures. With ``output_dir`` the report is written there
    (``Explanation.save``). ``tsne=True`` maps the CLCR summaries with t-SNE instead of PCA.
    """
    extractor = extractor_for(model)
    model_type = extractor.model_type
    if not hasattr(model, "classifier"):
        raise ValueError(
            f"model: explain needs the prediction head ({model_type.upper()}ForSequenceClassification), "
            f"got {type(model).__name__}"
        )
    extractor.check_options(tsne)
    if output_dir is not None:
        check_report_dir(output_dir)
    model.eval()
    device = next(model.parameters()).device
    modalities = list(model.config.modalities)
    regression = is_regression(model)
    chunks = _chunks(model, processor, batch_or_records, batch_size, max_length, base_dir)
    total = sum(len(c.ids) for c in chunks)
    if isinstance(examples, int):
        if examples < 0:
            raise ValueError(f"examples must be >= 0, got {examples}")
        example_set = list(range(min(examples, total)))
    else:
        example_set = [int(i) for i in examples]
        bad = [i for i in example_set if not 0 <= i < total]
        if bad:
            raise ValueError(f"examples: sample indices {bad} are outside 0..{total - 1}")
    wanted = set(example_set)
    occlude = modalities if len(modalities) > 1 else []

    samples, arrays = [], {}
    all_labels, clean_scores, drop_scores, drop_logits = [], [], {m: [] for m in occlude}, {m: [] for m in occlude}
    clean_logits = []
    for chunk in chunks:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in chunk.batch.items()}
        out = _forward(model, batch, extractor)
        n = out.logits.shape[0]
        masks = extractor.node_masks(model, out, chunk.batch)
        rows = extractor.samples(model, out, masks, wanted, len(samples))
        predictions = _postprocess(model, out.logits)
        classes = None if regression else out.logits.argmax(-1).numpy()
        clean = _scores(model, out.logits)
        clean_scores.append(clean)
        clean_logits.append(out.logits.numpy())
        per_drop = {}
        for m in occlude:
            dropped = perturb_batch(batch, model, drop=(m,))
            if any(key in dropped for key in MODEL_INPUT_KEYS):
                with torch.inference_mode():
                    logits = model(**dropped).logits
                per_drop[m] = _scores(model, logits, classes)
                logits = logits.float().cpu().numpy()
            else:
                # Records that give no other modality have no prediction without this one: undefined (NaN).
                per_drop[m] = np.full(n, np.nan, dtype=np.float32)
                logits = np.full(tuple(out.logits.shape), np.nan, dtype=np.float32)
            drop_scores[m].append(per_drop[m])
            drop_logits[m].append(logits)
        if chunk.labels is not None:
            all_labels.append(chunk.labels)
        for key, value in extractor.arrays(out, masks, modalities).items():
            arrays.setdefault(key, []).append(value)
        for b in range(n):
            record = {"id": chunk.ids[b], "prediction": predictions[b]}
            if chunk.labels is not None:
                label = chunk.labels[b]
                record["label"] = float(label) if regression else int(label)
            if chunk.texts[b] is not None:
                record["text"] = chunk.texts[b]
            if "text" in modalities and masks["text"][b].any() and "input_ids" in chunk.batch:
                record["tokens"] = _tokens(processor, chunk.batch["input_ids"][b].cpu(), masks["text"][b])
            record["lengths"] = {m: int(masks[m][b].sum()) for m in modalities}
            record.update(rows[b])
            if occlude:
                record["occlusion"] = {
                    m: {"score": float(per_drop[m][b]), "change": float(clean[b] - per_drop[m][b])} for m in occlude
                }
            samples.append(record)

    arrays = {k: np.concatenate(v) for k, v in arrays.items()}
    labels = np.concatenate(all_labels) if len(all_labels) == len(chunks) else None
    summary = _summarise(model, extractor, samples, modalities, occlude, labels, clean_logits, drop_logits)
    summary["occlusion_scores"] = {
        "clean": np.concatenate(clean_scores).tolist(), **{m: np.concatenate(v).tolist() for m, v in drop_scores.items()}
    }
    extractor.finish(samples, summary, arrays, modalities, tsne, seed)
    explanation = Explanation(
        model_type=model_type, modalities=modalities, regression=regression,
        level_names=extractor.level_names(samples),
        samples=samples, summary=summary, examples=example_set, arrays=arrays,
    )
    if output_dir is not None:
        explanation.save(output_dir, svg=svg)
    return explanation


def _cpu(value):
    if torch.is_tensor(value):
        return (value.float() if value.is_floating_point() else value).cpu()
    if isinstance(value, tuple):
        return tuple(_cpu(v) for v in value)
    return value


def _postprocess(model, logits: torch.Tensor) -> list:
    from ...inference.records import postprocess

    rows = postprocess(model, logits)
    return [r["score"] for r in rows] if is_regression(model) else rows


def _summarise(model, extractor, samples, modalities, occlude, labels, clean_logits, drop_logits) -> dict:
    summary: dict = {"num_samples": len(samples), **extractor.summarise(samples, modalities)}
    if occlude:
        summary["occlusion"] = {}
        for m in occlude:
            # Over the samples that keep another modality (the change is undefined for the others).
            v = np.array([s["occlusion"][m]["change"] for s in samples])
            v = v[np.isfinite(v)]
            summary["occlusion"][m] = {
                "mean_change": float(v.mean()) if len(v) else math.nan,
                "mean_abs_change": float(np.abs(v).mean()) if len(v) else math.nan,
                "std_change": float(v.std()) if len(v) else math.nan,
                "num_samples": len(v),
            }
        if labels is not None and len(labels) >= 2:
            def metrics(logits):
                preds = np.concatenate(logits)
                kept = np.isfinite(preds.reshape(len(preds), -1)).all(1)
                if kept.sum() < 2:
                    return None
                preds = preds[kept]
                return score(model, preds.reshape(-1) if is_regression(model) else preds, labels[kept])

            conditions = {"clean": clean_logits, **{f"drop {m}": drop_logits[m] for m in occlude}}
            scored = {name: metrics(logits) for name, logits in conditions.items()}
            summary["metrics"] = {name: values for name, values in scored.items() if values is not None}
    return summary


def draw_figures(exp: Explanation, directory: str | Path, svg: bool = True) -> dict[str, str]:
    """Every figure of the report in ``directory``; returns {figure key: file name}."""
    extractor = EXTRACTORS[exp.model_type]
    plt = pyplot()
    directory = Path(directory)
    drawn: dict[str, str] = {}
    # SVG text stays text (selectable, searchable, smaller) instead of glyph outlines.
    style = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"}
    with plt.rc_context(style):
        for draw in extractor.split_figures:
            draw(plt, exp, directory, svg, drawn)
        for i in exp.examples:
            for draw in extractor.sample_figures:
                draw(plt, exp, i, directory, svg, drawn)
        occlusion_figure(plt, exp, directory, svg, drawn)
    return drawn
