"""The papers' analyses for any trained model and any input (``hf-mmfusion explain``, ``hf_mmfusion.explain``).

CLCR reports its level weights ``alpha``, modality selection ``beta``, private gates, the participation of
every modality and level and the per-token budget weights, plus a 2-D map (PCA, or t-SNE on request) of the
level-mixed shared and private summaries of each modality. SSU reports its anchor weights per node, the
density of every graph, the learned thresholds ``lambda`` and the strongest cross-modal links of its fusion
graph. For both, each modality is dropped in turn, exactly as the robustness protocol drops it
(``evaluation.perturb_batch``), and the change of the prediction is that modality's occlusion contribution.

Everything the figures show is in ``explain.json``; ``index.html`` shows the figures and the per-sample
numbers on one page that needs no network.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .inference.checkpoints import is_regression, load_pretrained
from .models.configuration_common import MODALITIES as MODALITY_COLUMNS
from .utils.cpu_memory import retain_freed_memory
from .utils.cpu_threads import THREADS_HELP, model_threads
from .utils.outputs import (
    STAGING_PATTERN,
    ScratchDirectory,
    creation_mode,
    is_scratch,
    record_written,
    remove_abandoned_scratch,
    written_entries,
)
from .workflows.evaluation import perturb_batch, score

FIGURE_DPI = 110
FRAME_MODALITIES = ("audio", "visual")
MODEL_INPUT_KEYS = ("input_ids", "inputs_embeds", "audio_features", "visual_features")
MODALITY_COLOURS = {"text": "#1f77b4", "audio": "#d62728", "visual": "#2ca02c"}
LEVEL_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


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
    from .data.datasets import check_dataset_modalities, dataset_modalities, encode_dataset, make_collator

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
    from .inference.records import check_record, encode_records, given_inputs

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


def select_ids(split, ids: Sequence[str]):
    """The rows of ``split`` whose ``id`` is in ``ids``, in the order asked for."""
    if "id" not in split.column_names:
        raise ValueError("--ids: the split has no `id` column; select samples with --max_samples instead")
    position = {str(v): i for i, v in enumerate(split["id"])}
    missing = [i for i in ids if str(i) not in position]
    if missing:
        raise ValueError(f"--ids: {missing[:10]} are not ids of the split (its first ids: {list(position)[:5]})")
    return split.select([position[str(i)] for i in ids])


# ---------------------------------------------------------------------------------------------------
# Model outputs -> per-sample analysis
# ---------------------------------------------------------------------------------------------------


def _node_mask(batch: dict, modality: str, length: int, batch_size: int) -> torch.Tensor:
    """bool ``[B, length]``: the real positions of a modality as the model's outputs index them."""
    if modality == "text":
        key = "input_ids" if "input_ids" in batch else "inputs_embeds"
        if key not in batch:
            return torch.zeros(batch_size, length, dtype=torch.bool)
        mask = batch.get("attention_mask")
        return torch.ones(batch_size, length, dtype=torch.bool) if mask is None else mask.bool().cpu()
    features = batch.get(f"{modality}_features")
    if features is None:
        return torch.zeros(batch_size, length, dtype=torch.bool)
    mask = batch.get(f"{modality}_attention_mask")
    mask = torch.ones(features.shape[:2], dtype=torch.bool) if mask is None else mask.bool().cpu()
    if mask.shape[1] != length:
        # SSU pools long sequences into `graph_max_nodes` relative-time segments before building graphs.
        from .models.masking import segment_pool

        return segment_pool(mask[..., None].float(), mask, length)[1]
    return mask


def _tokens(processor, input_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    tokenizer = getattr(processor, "tokenizer", None)
    ids = input_ids[mask].tolist()
    return tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]


def _forward(model, batch: dict):
    """Head output with the analysis outputs requested, and the base model's output (a forward hook)."""
    captured = {}

    def keep(module, args, output):
        captured["base"] = output

    handle = model.base_model.register_forward_hook(keep)
    flags = {"output_token_weights": True} if model.config.model_type == "clcr" else {"output_graphs": True}
    try:
        with torch.inference_mode():
            out = model(**batch, **flags)
    finally:
        handle.remove()
    return out, captured.get("base")


def _scores(model, logits: torch.Tensor, classes: np.ndarray | None = None) -> np.ndarray:
    """The score occlusion compares: the regression output, or the probability of the clean predicted class."""
    logits = logits.float().cpu()
    if is_regression(model):
        return logits.reshape(-1).numpy()
    probs = logits.softmax(-1).numpy()
    classes = probs.argmax(-1) if classes is None else classes
    return probs[np.arange(len(probs)), classes]


def fusion_links(beta: dict[str, np.ndarray], topk: int, limit: int = 5) -> dict[str, list[dict]]:
    """The fusion graph's cross-modal edges of one sample, strongest first, ``limit`` per modality pair.

    SSU links the ``topk`` most anchor-affine nodes of every two modalities both ways, an edge weighing
    the mean of its ends' ``beta / max beta`` (``beta[m]``: anchor weights over the real nodes of m).
    """
    names = [m for m in beta if len(beta[m])]
    links = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if topk <= 0:
                continue
            ta = np.argsort(-beta[a], kind="stable")[: min(topk, len(beta[a]))]
            tb = np.argsort(-beta[b], kind="stable")[: min(topk, len(beta[b]))]
            wa = beta[a][ta] / max(beta[a].max(), 1e-12)
            wb = beta[b][tb] / max(beta[b].max(), 1e-12)
            weight = 0.5 * (wa[:, None] + wb[None, :])
            order = np.argsort(-weight, axis=None, kind="stable")[:limit]
            rows, cols = np.unravel_index(order, weight.shape)
            links[f"{a}-{b}"] = [
                {a: int(ta[r]), b: int(tb[c]), "weight": float(weight[r, c])} for r, c in zip(rows, cols)
            ]
    return links


def _density(adjacency: np.ndarray) -> float:
    n = adjacency.shape[0]
    if n < 2:
        return 0.0
    off = adjacency.copy()
    np.fill_diagonal(off, 0)
    return float((off != 0).sum() / (n * (n - 1)))


def _clcr_samples(model, out, masks, examples: set[int], offset: int) -> list[dict]:
    modalities = list(model.config.modalities)
    rows = []
    for b in range(out.logits.shape[0]):
        row = {
            "level_weights": out.level_weights[b].tolist(),
            "modality_weights": {m: float(out.modality_weights[b, j]) for j, m in enumerate(modalities)},
            "private_gates": {m: float(out.private_gates[b, j]) for j, m in enumerate(modalities)},
            "participation": {m: out.participation_ratios[b, j].tolist() for j, m in enumerate(modalities)},
            "token_weights": {
                m: out.token_weights[j][b][:, masks[m][b]].tolist() for j, m in enumerate(modalities) if masks[m][b].any()
            },
        }
        rows.append(row)
    return rows


def _ssu_samples(model, out, masks, examples: set[int], offset: int) -> list[dict]:
    config = model.config
    modalities = list(config.modalities)
    graph_modalities = [m for m in modalities if m != "text"]
    lambdas = {}
    if out.threshold_lambda is not None:
        lambdas = {m: float(v) for m, v in zip(graph_modalities, out.threshold_lambda.tolist())}
    rows = []
    for b in range(out.logits.shape[0]):
        beta = {m: out[f"anchor_weights_{m}"][b][masks[m][b]].float().numpy() for m in modalities}
        graphs, densities = {}, {}
        for m in modalities:
            if not masks[m][b].any():
                continue
            valid = masks[m][b]
            full = out.text_adjacency if m == "text" else out[f"adjacency_{m}"]
            adjacency = full[b][valid][:, valid].float().numpy()
            densities[m] = _density(adjacency)
            if offset + b in examples:
                if m == "text":
                    targets, sources = np.nonzero(adjacency)
                    graphs[m] = {"arcs": [[int(s), int(t)] for t, s in zip(targets, sources)]}
                else:
                    graphs[m] = {"adjacency": adjacency.tolist()}
        row = {
            "anchor_weights": {m: v.tolist() for m, v in beta.items() if len(v)},
            "graph_density": densities,
            "threshold_lambda": lambdas,
            "fusion_links": fusion_links(beta, int(config.fusion_topk)),
        }
        if graphs:
            row["graphs"] = graphs
        rows.append(row)
    return rows


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
        return _finite(
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


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _summary_map(arrays: dict, tsne: bool, seed: int) -> tuple[np.ndarray, list[tuple[int, int, str]]] | None:
    """2-D coordinates of every present modality's shared and private summary: (coords, [(sample, m, kind)])."""
    shared, private, present = arrays["shared"], arrays["private"], arrays["present"]
    points, keys = [], []
    for n, j in zip(*np.nonzero(present)):
        points += [shared[n, j], private[n, j]]
        keys += [(int(n), int(j), "shared"), (int(n), int(j), "private")]
    if len(points) < 3:
        return None
    x = np.stack(points)
    if tsne:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(x) - 1) / 3))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=seed).fit_transform(x)
    return coords, keys


def check_explainable(model) -> None:
    """A ``ValueError`` unless ``model`` is a CLCR or SSU model: the analyses are theirs."""
    model_type = getattr(model.config, "model_type", None)
    if model_type in ("clcr", "ssu"):
        return
    if not hasattr(model.config, "modalities"):
        raise ValueError(
            f"model: explain reads the analyses of CLCR and SSU models; this is a plain {model_type!r} text model "
            "(the text-only baseline) and has none: use predict or evaluate"
        )
    raise ValueError(f"model: expected a CLCR or SSU model, got model_type {model_type!r}")


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
    model_type = getattr(model.config, "model_type", None)
    check_explainable(model)
    if not hasattr(model, "classifier"):
        raise ValueError(
            f"model: explain needs the prediction head ({model_type.upper()}ForSequenceClassification), "
            f"got {type(model).__name__}"
        )
    if tsne and model_type != "clcr":
        raise ValueError("tsne: the 2-D map is of CLCR's shared / private summaries; SSU has none")
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
    extract = _clcr_samples if model_type == "clcr" else _ssu_samples
    occlude = modalities if len(modalities) > 1 else []

    samples, arrays = [], {"shared": [], "private": [], "present": []}
    all_labels, clean_scores, drop_scores, drop_logits = [], [], {m: [] for m in occlude}, {m: [] for m in occlude}
    clean_logits = []
    for chunk in chunks:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in chunk.batch.items()}
        out, base = _forward(model, batch)
        out = type(out)(**{k: _cpu(v) for k, v in out.items()})
        n = out.logits.shape[0]
        lengths = _output_lengths(model_type, modalities, out)
        masks = {m: _node_mask(chunk.batch, m, lengths[m], n) for m in modalities}
        offset = len(samples)
        rows = extract(model, out, masks, wanted, offset)
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
        if model_type == "clcr":
            arrays["shared"].append(base.modality_shared_summaries.float().cpu().numpy())
            arrays["private"].append(base.modality_private_summaries.float().cpu().numpy())
            arrays["present"].append(np.stack([masks[m].any(1).numpy() for m in modalities], 1))
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

    arrays = {k: np.concatenate(v) for k, v in arrays.items() if v}
    level_names = [f"level {i + 1}" for i in range(len(samples[0]["level_weights"]))] if model_type == "clcr" else []
    labels = np.concatenate(all_labels) if len(all_labels) == len(chunks) else None
    summary = _summarise(model, samples, modalities, level_names, occlude, labels, clean_logits, drop_logits)
    summary["occlusion_scores"] = {
        "clean": np.concatenate(clean_scores).tolist(), **{m: np.concatenate(v).tolist() for m, v in drop_scores.items()}
    }
    if model_type == "clcr" and "shared" in arrays:
        mapped = _summary_map(arrays, tsne, seed)
        if mapped is not None:
            coords, keys = mapped
            method = "tsne" if tsne else "pca"
            summary["summary_map"] = {"method": method}
            for (n, j, kind), (x, y) in zip(keys, coords.tolist()):
                samples[n].setdefault("summary_map", {}).setdefault(modalities[j], {})[kind] = [x, y]
    explanation = Explanation(
        model_type=model_type, modalities=modalities, regression=regression, level_names=level_names,
        samples=samples, summary=summary, examples=example_set, arrays=arrays,
    )
    if output_dir is not None:
        explanation.save(output_dir, svg=svg)
    return explanation


def _cpu(value):
    if torch.is_tensor(value):
        return value.float().cpu()
    if isinstance(value, tuple):
        return tuple(_cpu(v) for v in value)
    return value


def _output_lengths(model_type: str, modalities: list[str], out) -> dict[str, int]:
    if model_type == "clcr":
        return {m: out.token_weights[j].shape[-1] for j, m in enumerate(modalities)}
    return {m: out[f"anchor_weights_{m}"].shape[1] for m in modalities}


def _postprocess(model, logits: torch.Tensor) -> list:
    from .inference.records import postprocess

    rows = postprocess(model, logits)
    return [r["score"] for r in rows] if is_regression(model) else rows


def _summarise(model, samples, modalities, level_names, occlude, labels, clean_logits, drop_logits) -> dict:
    summary: dict = {"num_samples": len(samples)}
    if model.config.model_type == "clcr":
        summary["level_weights"] = np.mean([s["level_weights"] for s in samples], axis=0).tolist()
        summary["modality_weights"] = {m: float(np.mean([s["modality_weights"][m] for s in samples])) for m in modalities}
        summary["private_gates"] = {m: float(np.mean([s["private_gates"][m] for s in samples])) for m in modalities}
        summary["participation"] = {
            m: np.mean([s["participation"][m] for s in samples if s["lengths"][m]], axis=0).tolist()
            for m in modalities
            if any(s["lengths"][m] for s in samples)
        }
    else:
        summary["graph_density"] = {
            m: float(np.mean([s["graph_density"][m] for s in samples if m in s["graph_density"]]))
            for m in modalities
            if any(m in s["graph_density"] for s in samples)
        }
        summary["threshold_lambda"] = samples[0]["threshold_lambda"]
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


# ---------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, directory: Path, stem: str, svg: bool, figures: dict, key: str) -> None:
    fig.savefig(directory / f"{stem}.png", dpi=FIGURE_DPI)
    figures[key] = f"{stem}.png"
    if svg:
        fig.savefig(directory / f"{stem}.svg")
        figures[f"{key}_svg"] = f"{stem}.svg"


def _close(plt, fig):
    plt.close(fig)


def _stacked(ax, values: np.ndarray, names: list[str], colours: list[str], title: str) -> None:
    # One filled step band per component rather than a bar per sample: hundreds of samples draw as fast as ten.
    values = values[np.argsort(-values[:, 0], kind="stable")]
    edges = np.arange(len(values) + 1) - 0.5
    bottom = np.zeros(len(values))
    for j, name in enumerate(names):
        top = bottom + values[:, j]
        ax.stairs(top, edges, baseline=bottom, fill=True, color=colours[j], label=f"{name} (mean {values[:, j].mean():.2f})")
        bottom = top
    ax.set_ylim(0, 1)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"samples ({len(values)}, sorted by the first weight)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.85)
    if len(values) > 40:
        ax.set_xticks([])


def _weights_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    levels = np.array([s["level_weights"] for s in exp.samples])
    mods = np.array([[s["modality_weights"][m] for m in exp.modalities] for s in exp.samples])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    _stacked(axes[0], levels, exp.level_names, list(LEVEL_COLOURS), "InterCAD level weights α per sample")
    _stacked(axes[1], mods, exp.modalities, [MODALITY_COLOURS[m] for m in exp.modalities],
             "modality selection weights β per sample")
    axes[0].set_ylabel("weight (sums to 1)")
    fig.tight_layout()
    _save(fig, directory, "weights", False, figures, "weights")
    _close(plt, fig)


def _participation_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    mods = [m for m in exp.modalities if any(s["lengths"][m] for s in exp.samples)]
    L = len(exp.level_names)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * L * len(mods) / 2, 3.6), layout="constrained")
    width = 0.8 / len(mods)
    highest = 1.0
    for j, m in enumerate(mods):
        values = np.array([s["participation"][m] for s in exp.samples if s["lengths"][m]])
        x = np.arange(L) + (j - (len(mods) - 1) / 2) * width
        mean, std = values.mean(0), values.std(0)
        ax.bar(x, mean, width, yerr=std, capsize=3, color=MODALITY_COLOURS[m], label=m)
        # Each value stands above the end of its error bar, which would otherwise cross it.
        for xi, v, top in zip(x, mean, mean + std):
            ax.annotate(f"{v:.2f}", (xi, top), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
        highest = max(highest, float((mean + std).max()))
    ax.set_xticks(np.arange(L), exp.level_names)
    ax.set_ylim(0, highest + 0.15)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("fraction of tokens with budget > 0")
    ax.set_title(f"token participation per level and modality (mean ± std, {len(exp.samples)} samples)", fontsize=10)
    fig.legend(fontsize=8, loc="outside lower center", ncol=len(mods), frameon=False)
    _save(fig, directory, "participation", False, figures, "participation")
    _close(plt, fig)


def _token_figure(plt, exp: Explanation, index: int, directory: Path, svg: bool, figures: dict) -> None:
    sample = exp.samples[index]
    weights = sample["token_weights"]
    mods = [m for m in exp.modalities if m in weights]
    if not mods:
        return
    longest = max(len(weights[m][0]) for m in mods)
    width = min(18.0, max(6.0, 1.6 + 0.42 * longest))
    fig, axes = plt.subplots(len(mods), 1, figsize=(width, 1.4 + 1.35 * len(mods)), squeeze=False, layout="constrained")
    image = None
    for ax, m in zip(axes[:, 0], mods):
        w = np.array(weights[m])
        image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(exp.level_names)), exp.level_names, fontsize=7)
        if m == "text" and "tokens" in sample:
            ax.xaxis.tick_top()
            ax.set_xticks(range(w.shape[1]), sample["tokens"], rotation=40, ha="left", rotation_mode="anchor", fontsize=8)
        else:
            step = max(1, w.shape[1] // 20)
            ax.set_xticks(range(0, w.shape[1], step))
            ax.tick_params(axis="x", labelsize=7)
            ax.set_xlabel(f"{m} frame", fontsize=8)
        ax.set_ylabel(m, fontsize=9, color=MODALITY_COLOURS[m])
    fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01, label="budget weight w")
    fig.suptitle(f"token budget weights, sample {sample['id']} (prediction {_short(sample['prediction'])})", fontsize=10)
    _save(fig, directory, f"tokens_{index}", svg, figures, f"tokens_{index}")
    _close(plt, fig)


def _map_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    if "summary_map" not in exp.summary:
        return
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    for m in exp.modalities:
        for kind, marker in (("shared", "o"), ("private", "^")):
            xy = np.array([s["summary_map"][m][kind] for s in exp.samples if m in s.get("summary_map", {})])
            if len(xy):
                ax.scatter(xy[:, 0], xy[:, 1], s=14, marker=marker, alpha=0.7, label=f"{m} {kind}",
                           color=MODALITY_COLOURS[m], facecolors="none" if kind == "private" else None)
    method = exp.summary["summary_map"]["method"]
    ax.set_title(f"{'t-SNE' if method == 'tsne' else 'PCA'} of shared and private summaries", fontsize=10)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize=7, ncol=2, loc="best", framealpha=0.85)
    fig.tight_layout()
    _save(fig, directory, "summary_map", False, figures, "summary_map")
    _close(plt, fig)


def _text_graph_figure(plt, exp: Explanation, index: int, directory: Path, svg: bool, figures: dict) -> None:
    from matplotlib.patches import Arc

    sample = exp.samples[index]
    graph = sample.get("graphs", {}).get("text")
    tokens = sample.get("tokens")
    if graph is None or tokens is None:
        return
    beta = np.array(sample["anchor_weights"]["text"])
    shade = beta / max(beta.max(), 1e-12)
    n = len(tokens)
    spacing = 1.0
    width = min(18.0, max(6.0, 1.2 + 0.75 * n))
    span = max([abs(s - t) for s, t in graph["arcs"]] + [1])
    fig, ax = plt.subplots(figsize=(width, 1.6 + 0.35 * min(span, 12)))
    cmap = plt.get_cmap("Oranges")
    seen = set()
    for source, target in graph["arcs"]:
        pair = (min(source, target), max(source, target))
        directed = [target, source] not in graph["arcs"]
        if pair in seen and not directed:
            continue
        seen.add(pair)
        left, right = pair
        d = (right - left) * spacing
        ax.add_patch(Arc(((left + right) * spacing / 2, 0.3), d, 0.55 * d, theta1=0, theta2=180, color="#555555", lw=1.0))
        if directed:
            ax.annotate("", xy=(target * spacing, 0.32), xytext=(target * spacing + (0.08 if source > target else -0.08), 0.42),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8})
    for i, token in enumerate(tokens):
        ax.text(i * spacing, 0.0, token, ha="center", va="center", fontsize=9, rotation=30 if len(token) > 6 else 0,
                bbox={"boxstyle": "round,pad=0.25", "facecolor": cmap(0.1 + 0.8 * shade[i]), "edgecolor": "#999999"})
    ax.set_xlim(-0.8, (n - 1) * spacing + 0.8)
    ax.set_ylim(-0.5, 0.45 + 0.3 * span)
    ax.axis("off")
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, float(beta.max())))
    fig.colorbar(mappable, ax=ax, fraction=0.02, pad=0.01, label="anchor weight β")
    fig.suptitle(f"text graph (arcs) with anchor weights, sample {sample['id']}", fontsize=10)
    _save(fig, directory, f"text_graph_{index}", svg, figures, f"text_graph_{index}")
    _close(plt, fig)


def _node_label(sample: dict, modality: str, i: int) -> str:
    if modality == "text" and "tokens" in sample:
        return sample["tokens"][i]
    return f"{modality[0]}{i}"


def _modality_graphs_figure(plt, exp: Explanation, index: int, directory: Path, svg: bool, figures: dict) -> None:
    sample = exp.samples[index]
    mods = [m for m in exp.modalities if m in FRAME_MODALITIES and m in sample.get("graphs", {})]
    if not mods:
        return
    fig, axes = plt.subplots(len(mods), 2, figsize=(10, 3.9 * len(mods)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 1]})
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    for row, m in zip(axes, mods):
        adjacency = np.array(sample["graphs"][m]["adjacency"])
        beta = np.array(sample["anchor_weights"][m])
        divider = make_axes_locatable(row[0])
        strip = divider.append_axes("top", size="7%", pad=0.06)
        bar = divider.append_axes("right", size="5%", pad=0.08)
        image = row[0].imshow(adjacency, cmap="magma_r", interpolation="nearest", vmin=0, aspect="auto")
        row[0].set_xlabel("source node")
        row[0].set_ylabel("target node")
        fig.colorbar(image, cax=bar, label="edge weight")
        strip.imshow(beta[None, :], cmap="Oranges", vmin=0, aspect="auto", interpolation="nearest")
        strip.set_xticks([])
        strip.set_yticks([0], ["β"])
        strip.set_title(f"{m} graph A (density {sample['graph_density'][m]:.2f}, "
                        f"λ = {sample['threshold_lambda'].get(m, float('nan')):.2f}); β: anchor weights", fontsize=9)
        partner = next((p for p in sample["fusion_links"] if m in p.split("-") and "text" in p.split("-")), None)
        partner = partner or next((p for p in sample["fusion_links"] if m in p.split("-")), None)
        ax = row[1]
        if partner is None or not sample["fusion_links"][partner]:
            ax.axis("off")
            ax.text(0.5, 0.5, "no cross-modal links", ha="center", va="center")
            continue
        other = [p for p in partner.split("-") if p != m][0]
        links = sample["fusion_links"][partner]
        labels = [f"{_node_label(sample, other, link[other])} ↔ {m[0]}{link[m]}" for link in links]
        ax.barh(range(len(links)), [link["weight"] for link in links], color=MODALITY_COLOURS[m])
        ax.set_yticks(range(len(links)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("fusion edge weight")
        ax.set_title(f"strongest {other}-{m} links of the fusion graph", fontsize=9)
    fig.suptitle(f"SSU modality graphs, sample {sample['id']}", fontsize=10)
    fig.tight_layout()
    _save(fig, directory, f"modality_graphs_{index}", False, figures, f"modality_graphs_{index}")
    _close(plt, fig)


def _occlusion_figure(plt, exp: Explanation, directory: Path, svg: bool, figures: dict) -> None:
    occlusion = exp.summary.get("occlusion")
    if not occlusion:
        return
    mods = list(occlusion)
    changes = np.array([[s["occlusion"][m]["change"] for m in mods] for s in exp.samples])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    means = [occlusion[m]["mean_abs_change"] for m in mods]
    known = np.isfinite(changes)
    spread = [float(np.abs(changes[known[:, j], j]).std()) if known[:, j].any() else math.nan for j in range(len(mods))]
    bars = axes[0].bar(mods, means, yerr=spread, capsize=4, color=[MODALITY_COLOURS[m] for m in mods])
    metric_name = "mae" if exp.regression else "accuracy"
    metrics = exp.summary.get("metrics")
    for bar, m in zip(bars, mods):
        if not math.isfinite(bar.get_height()):
            continue
        note = f"{bar.get_height():.3f}"
        if metrics and f"drop {m}" in metrics:
            note += f"\n{metric_name} {metrics[f'drop {m}'][metric_name]:.3f}"
        axes[0].annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height() + spread[mods.index(m)]), ha="center",
                         va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
    axes[0].set_ylim(0, max([a + b for a, b in zip(means, spread) if math.isfinite(a + b)] + [1e-6]) * 1.3)
    title = "mean |score change| with the modality dropped"
    if metrics and "clean" in metrics:
        title += f"\n(clean {metric_name} {metrics['clean'][metric_name]:.3f})"
    axes[0].set_title(title, fontsize=9)
    axes[0].set_ylabel("prediction score change" if exp.regression else "probability change")
    limit = max(float(np.abs(changes[known]).max()) if known.any() else 0.0, 1e-6)
    # Grey marks a sample with nothing left once the modality is dropped (no change defined), not a zero.
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#9e9e9e")
    image = axes[1].imshow(changes.T, aspect="auto", cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    axes[1].set_yticks(range(len(mods)), mods)
    axes[1].set_xlabel(f"sample ({len(exp.samples)})")
    if len(exp.samples) <= 30:
        axes[1].set_xticks(range(len(exp.samples)), [s["id"] for s in exp.samples], rotation=60, fontsize=7)
    axes[1].set_title("per sample: clean score - score without the modality", fontsize=9)
    fig.colorbar(image, ax=axes[1], fraction=0.04, pad=0.02)
    fig.tight_layout()
    _save(fig, directory, "occlusion", False, figures, "occlusion")
    _close(plt, fig)


def draw_figures(exp: Explanation, directory: str | Path, svg: bool = True) -> dict[str, str]:
    """Every figure of the report in ``directory``; returns {figure key: file name}."""
    plt = _pyplot()
    directory = Path(directory)
    figures: dict[str, str] = {}
    # SVG text stays text (selectable, searchable, smaller) instead of glyph outlines.
    style = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"}
    with plt.rc_context(style):
        if exp.model_type == "clcr":
            _weights_figure(plt, exp, directory, svg, figures)
            _participation_figure(plt, exp, directory, svg, figures)
            _map_figure(plt, exp, directory, svg, figures)
            for i in exp.examples:
                _token_figure(plt, exp, i, directory, svg, figures)
        else:
            for i in exp.examples:
                _text_graph_figure(plt, exp, i, directory, svg, figures)
                _modality_graphs_figure(plt, exp, i, directory, svg, figures)
        _occlusion_figure(plt, exp, directory, svg, figures)
    return figures


def _short(prediction) -> str:
    if isinstance(prediction, dict):
        return f"{prediction['label']} {prediction['score']:.2f}"
    return f"{prediction:.2f}"


# ---------------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
th { background: #f5f5f5; } td.text { text-align: left; max-width: 28em; }
.missing { color: #b00; font-weight: bold; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ num_samples }} samples, modalities {{ modalities | join(", ") }}, {{ task }}.
The numbers behind every figure are in <a href="explain.json">explain.json</a>.
{% if examples %}Drawn one by one: {% for example in examples %}<a href="#sample-{{ example.index }}">{{ example.id }}</a>{% if not loop.last %}, {% endif %}{% endfor %}; then <a href="#samples-table">every sample</a>.{% endif %}</p>

<h2>Over all samples</h2>
<table id="summary">
<tr><th>quantity</th><th>value</th></tr>
{% for name, value in summary_rows %}<tr><td class="text">{{ name }}</td><td>{{ value }}</td></tr>
{% endfor %}</table>
{% for key, caption in split_figures %}
<figure><img src="{{ figures[key] }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}

{% for example in examples %}
<h2 id="sample-{{ example.index }}">Sample {{ example.id }}</h2>
<p>{% if example.text %}&ldquo;{{ example.text }}&rdquo; &mdash; {% endif %}prediction {{ example.prediction }}{% if example.label != "" %}, label {{ example.label }}{% endif %}</p>
<table>
{% for name, value in example.rows %}<tr><td class="text">{{ name }}</td><td class="text">{{ value }}</td></tr>
{% endfor %}</table>
{% for key, caption in example.figures %}
<figure><img src="{{ figures[key] }}" alt="{{ caption }}"><figcaption>{{ caption }}{% if figures.get(key + "_svg") %} (<a href="{{ figures[key + "_svg"] }}">SVG</a>){% endif %}</figcaption></figure>
{% endfor %}
{% endfor %}
<h2 id="samples-table">All samples</h2>
<table id="samples">
<tr><th>id</th>{% if has_text %}<th>text</th>{% endif %}<th>prediction</th><th>label</th>{% for m in occluded %}<th>change without {{ m }}</th>{% endfor %}</tr>
{% for row in sample_rows %}<tr><td>{{ row.id }}</td>{% if has_text %}<td class="text">{{ row.text }}</td>{% endif %}<td>{{ row.prediction }}</td>
<td>{{ row.label }}</td>{% for value in row.changes %}<td>{{ value }}</td>{% endfor %}</tr>
{% endfor %}</table>

<script>
// A figure that failed to load is named, so a page copied without its images says so.
window.addEventListener("load", function () {
  var missing = 0;
  document.querySelectorAll("img").forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) {
      missing += 1;
      var note = document.createElement("p");
      note.className = "missing";
      note.textContent = "figure not found: " + img.getAttribute("src");
      img.replaceWith(note);
    }
  });
  document.body.setAttribute("data-figures-missing", String(missing));
});
</script>
</body>
</html>
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def render_html(exp: Explanation, figures: dict[str, str]) -> str:
    """``index.html``: the summary, every figure and the per-sample numbers, with relative links only."""
    import jinja2

    summary = exp.summary
    rows = [(k, _fmt(summary[k])) for k in ("level_weights", "modality_weights", "private_gates", "participation",
                                           "graph_density", "threshold_lambda") if k in summary]
    if "level_weights" in summary:
        rows[0] = ("level weights α (" + ", ".join(exp.level_names) + ")", rows[0][1])
    for m, values in summary.get("occlusion", {}).items():
        rows.append((f"occlusion: mean |change| without {m}", _fmt(values["mean_abs_change"])))
    for condition, values in summary.get("metrics", {}).items():
        keys = ("mae", "corr", "acc2_has0") if exp.regression else ("accuracy", "f1_macro")
        rows.append((f"metrics, {condition}", ", ".join(f"{k} {_fmt(values[k])}" for k in keys if k in values)))
    split_figures = [
        (key, caption)
        for key, caption in (
            ("weights", "Level weights α and modality weights β of every sample (stacked, each bar sums to 1)."),
            ("participation", "Fraction of each modality's tokens with a non-zero budget weight, per level."),
            ("summary_map", "2-D map of the level-mixed shared (filled) and private (hollow) summaries, by modality."),
            ("occlusion", "Occlusion: the prediction with each modality dropped, as the robustness protocol drops it."),
        )
        if key in figures
    ]
    occluded = list(summary.get("occlusion", {}))
    sample_rows = []
    for s in exp.samples:
        sample_rows.append({
            "id": s["id"], "text": s.get("text", " ".join(s.get("tokens", []))), "prediction": _short(s["prediction"]),
            "label": _fmt(s["label"]) if "label" in s else "",
            "changes": [_fmt(s["occlusion"][m]["change"]) for m in occluded],
        })
    examples = []
    for i in exp.examples:
        s = exp.samples[i]
        detail = [(k, _fmt(s[k])) for k in ("level_weights", "modality_weights", "private_gates", "participation",
                                             "graph_density", "fusion_links") if k in s]
        if "anchor_weights" in s:
            detail += [(f"anchor weights β ({m})", _fmt(v)) for m, v in s["anchor_weights"].items()]
        keys = [(f"tokens_{i}", "Token budget weights per level (rows) over the tokens / frames (columns)."),
                (f"text_graph_{i}", "Text graph as arcs over the tokens; node shading is the anchor weight β."),
                (f"modality_graphs_{i}", "Audio / visual graphs as adjacency maps (β above), with their strongest "
                                          "cross-modal links.")]
        examples.append({
            "index": i, "id": s["id"], "text": s.get("text", ""), "prediction": _short(s["prediction"]),
            "label": _fmt(s["label"]) if "label" in s else "", "rows": detail,
            "figures": [(k, c) for k, c in keys if k in figures],
        })
    template = jinja2.Environment(autoescape=True).from_string(PAGE)
    return template.render(
        title=f"{exp.model_type.upper()} explanation", num_samples=len(exp.samples), modalities=exp.modalities,
        task="regression" if exp.regression else "classification", summary_rows=rows, split_figures=split_figures,
        figures=figures, occluded=occluded, sample_rows=sample_rows, examples=examples,
        has_text=any(row["text"] for row in sample_rows),
    )


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def add_explain_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .data.datasets import DataArguments

    defaults = DataArguments()
    parser.add_argument("model", help="saved model directory or Hub id (with its processor)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=None, help="'synthetic', a save_to_disk directory or a Hub dataset id")
    source.add_argument("--inputs", help="a .jsonl or .csv file of records (text / audio / visual, optional id, label)")
    parser.add_argument("--dataset_config", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--ids", nargs="+", default=None, help="explain only these sample ids (default: the split)")
    parser.add_argument("--max_samples", type=int, default=None, help="explain the first N samples of the split")
    parser.add_argument("-o", "--output_dir", default=None, help="report directory (default: <model>/explain)")
    parser.add_argument("--examples", type=int, default=3, help="samples drawn one by one (token strips, graphs)")
    parser.add_argument("--tsne", action="store_true", help="map CLCR's summaries with t-SNE instead of PCA")
    parser.add_argument("--no_svg", action="store_true", help="PNG only")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_text_length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    synthetic = parser.add_argument_group("synthetic data (with --dataset synthetic)")
    synthetic.add_argument("--synthetic_sizes", type=int, nargs=3, default=defaults.synthetic_sizes)
    synthetic.add_argument("--synthetic_modalities", nargs="+", default=None, choices=MODALITY_COLUMNS,
                           help="default: the model's modalities")
    synthetic.add_argument("--synthetic_audio_dim", type=int, default=defaults.synthetic_audio_dim)
    synthetic.add_argument("--synthetic_visual_dim", type=int, default=defaults.synthetic_visual_dim)
    synthetic.add_argument("--synthetic_seed", type=int, default=defaults.synthetic_seed)
    synthetic.add_argument("--synthetic_text_words", type=int, nargs=2, default=defaults.synthetic_text_words)
    synthetic.add_argument("--synthetic_audio_frames", type=int, nargs=2, default=defaults.synthetic_audio_frames)
    synthetic.add_argument("--synthetic_visual_frames", type=int, nargs=2, default=defaults.synthetic_visual_frames)
    return parser


def _load_split(args, model):
    from .data.datasets import DataArguments, load_any_dataset

    data_args = DataArguments(
        dataset=args.dataset, dataset_config=args.dataset_config, synthetic_sizes=args.synthetic_sizes,
        synthetic_audio_dim=args.synthetic_audio_dim, synthetic_visual_dim=args.synthetic_visual_dim,
        synthetic_seed=args.synthetic_seed, synthetic_modalities=args.synthetic_modalities or list(model.config.modalities),
        synthetic_text_words=args.synthetic_text_words, synthetic_audio_frames=args.synthetic_audio_frames,
        synthetic_visual_frames=args.synthetic_visual_frames,
    )
    raw = load_any_dataset(args.dataset, config_name=args.dataset_config, **data_args.synthetic_kwargs())
    if args.split not in raw:
        raise ValueError(f"--split: dataset {args.dataset!r} has no split {args.split!r}; it has {list(raw)}")
    split = raw[args.split]
    if args.ids:
        split = select_ids(split, args.ids)
    if args.max_samples is not None:
        split = split.select(range(min(args.max_samples, len(split))))
    return split


def run_explain(args: argparse.Namespace) -> Explanation:
    if not args.dataset and not args.inputs:
        raise ValueError("pass --dataset (with --split) or --inputs")
    if args.examples < 0 or args.batch_size < 1:
        raise ValueError("--examples must be >= 0 and --batch_size >= 1")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError(f"--max_samples must be at least 1, got {args.max_samples}")
    output_dir = Path(args.output_dir) if args.output_dir else (
        Path(args.model) / "explain" if Path(args.model).is_dir() else Path("explain")
    )
    check_report_dir(output_dir)
    model, processor = load_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    check_explainable(model)
    base_dir = None
    if args.inputs:
        from .inference.records import read_records

        data = read_records(args.inputs)
        if not data:
            raise ValueError(f"--inputs: {args.inputs} holds no records")
        if args.ids:
            wanted = {str(i) for i in args.ids}
            data = [r for r in data if str(r.get("id")) in wanted]
            if not data:
                raise ValueError(f"--ids: none of {args.ids[:10]} is the id of a record in {args.inputs}")
        if args.max_samples is not None:
            data = data[: args.max_samples]
        base_dir = Path(args.inputs).resolve().parent
    else:
        data = _load_split(args, model)
    with model_threads(model, threads):
        explanation = explain(
            model, processor, data, output_dir, tsne=args.tsne, examples=args.examples, batch_size=args.batch_size,
            max_length=args.max_text_length, seed=args.seed, base_dir=base_dir, svg=not args.no_svg,
        )
    print(f"explained {len(explanation.samples)} samples: {output_dir}/index.html, explain.json and figures",
          file=sys.stderr)
    return explanation


def main(argv: list[str] | None = None) -> int:
    parser = add_explain_arguments(argparse.ArgumentParser(prog="hf-mmfusion explain", description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    retain_freed_memory()
    run_explain(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
