"""``index.html``: the summary, every figure and the per-sample numbers of a report, on one page that needs no
network (the page is ``templates/index.html.j2``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from .figures import short_prediction

if TYPE_CHECKING:
    from .core import Explanation

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def format_value(value) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    return str(value)


def render_html(exp: Explanation, figures: dict[str, str]) -> str:
    """``index.html``: the summary, every figure and the per-sample numbers, with relative links only."""
    import jinja2

    summary = exp.summary
    keys = ("level_weights", "modality_weights", "private_gates", "participation", "graph_density", "threshold_lambda")
    rows = [(k, format_value(summary[k])) for k in keys if k in summary]
    if "level_weights" in summary:
        rows[0] = ("level weights α (" + ", ".join(exp.level_names) + ")", rows[0][1])
    for m, values in summary.get("occlusion", {}).items():
        rows.append((f"occlusion: mean |change| without {m}", format_value(values["mean_abs_change"])))
    for condition, values in summary.get("metrics", {}).items():
        keys = ("mae", "corr", "acc2_has0") if exp.regression else ("accuracy", "f1_macro")
        rows.append((f"metrics, {condition}", ", ".join(f"{k} {format_value(values[k])}" for k in keys if k in values)))
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
            "id": s["id"], "text": s.get("text", " ".join(s.get("tokens", []))), "prediction": short_prediction(s["prediction"]),
            "label": format_value(s["label"]) if "label" in s else "",
            "changes": [format_value(s["occlusion"][m]["change"]) for m in occluded],
        })
    examples = []
    for i in exp.examples:
        s = exp.samples[i]
        shown = ("level_weights", "modality_weights", "private_gates", "participation", "graph_density", "fusion_links")
        detail = [(k, format_value(s[k])) for k in shown if k in s]
        if "anchor_weights" in s:
            detail += [(f"anchor weights β ({m})", format_value(v)) for m, v in s["anchor_weights"].items()]
        keys = [(f"tokens_{i}", "Token budget weights per level (rows) over the tokens / frames (columns)."),
                (f"text_graph_{i}", "Text graph as arcs over the tokens; node shading is the anchor weight β."),
                (f"modality_graphs_{i}", "Audio / visual graphs as adjacency maps (β above), with their strongest "
                                          "cross-modal links.")]
        examples.append({
            "index": i, "id": s["id"], "text": s.get("text", ""), "prediction": short_prediction(s["prediction"]),
            "label": format_value(s["label"]) if "label" in s else "", "rows": detail,
            "figures": [(k, c) for k, c in keys if k in figures],
        })
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    template = environment.get_template("index.html.j2")
    return template.render(
        title=f"{exp.model_type.upper()} explanation", num_samples=len(exp.samples), modalities=exp.modalities,
        task="regression" if exp.regression else "classification", summary_rows=rows, split_figures=split_figures,
        figures=figures, occluded=occluded, sample_rows=sample_rows, examples=examples,
        has_text=any(row["text"] for row in sample_rows),
    )

