"""Prediction on new inputs with a saved or Hub model and its processor (``hf-mmfusion predict``).

An input record has any of ``text`` (a string), ``audio`` and ``visual``: a ``.npy`` file of
``[frames, features]`` frame features, a ``.wav`` recording (audio only; the processor's acoustic feature
extractor turns it into frames), a video file (decoded by the feature extractor: frames, or the audio
track), or an array; and ``video``, a video file that supplies every stream the record does not give
(audio track, frames, and the transcript when the processor has an ``asr_model``). The processor's frame
widths are checked against the model's ``audio_input_dim`` / ``visual_input_dim`` first. Records come from flags (``--text``, ``--audio``,
``--visual``, aligned by position; named after their file when they have one) or from a JSONL / CSV file
with those columns. Recordings and videos are refused, before anything is computed, for a model trained
on precomputed frames (its extractor's ``feature_source``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..inference.checkpoints import check_text_length, load_pretrained, model_modalities
from ..inference.records import (
    check_raw_media,
    check_record,
    encode_records,
    given_inputs,
    postprocess,
    read_records,
    record_id,
    records_from_flags,
)
from ..utils.cpu_threads import model_threads
from ..utils.outputs import STAGING_PATTERN, ScratchDirectory, remove_abandoned_scratch

OUTPUT_SUFFIXES = (".jsonl", ".csv")


def check_output_path(output: str | Path | None) -> None:
    if output is not None and Path(output).suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output must end in .jsonl or .csv, got {Path(output).name!r}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


# The exact columns write_predictions writes (regression; classification), so an earlier output of predict is
# told apart from a user's table that merely has an id and a score or label column (a manifest, records).
PREDICTION_COLUMNS = (("id", "score", "polarity"), ("id", "label", "score", "probabilities"))


def _holds_predictions(path: Path) -> bool:
    """Whether an existing ``path`` is empty or is what :func:`write_predictions` writes, column for column."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            head = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    if not head.strip():
        return path.stat().st_size == 0
    if path.suffix == ".csv":
        fields = tuple(next(csv.reader([head]), []))
        return fields == ("id",) or any(fields == tuple(c for c in cols if c != "probabilities") for cols in PREDICTION_COLUMNS)
    try:
        row = json.loads(head)
    except ValueError:
        return False
    return isinstance(row, dict) and any(set(row) == set(cols) for cols in PREDICTION_COLUMNS)


def check_output_target(output: str | Path | None, inputs=(), model: str | Path | None = None) -> None:
    """A ``ValueError`` unless predictions may be written to ``output``: a .jsonl or .csv file that is not one
    of ``inputs`` and is either new or an earlier predictions file (never another file, of the local
    ``model`` folder or elsewhere)."""
    check_output_path(output)
    if output is None:
        return
    output = Path(output)
    for item in inputs:
        if item and _same_file(output, Path(item)):
            raise ValueError(f"--output {output} is the input file {item}; write the predictions to another file")
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; give a .jsonl or .csv file name")
    if output.exists() and not _holds_predictions(output):
        if model is not None and Path(model).is_dir() and Path(model).resolve() in output.resolve().parents:
            raise ValueError(f"--output {output} is a file of the model {model}; write the predictions elsewhere")
        raise ValueError(
            f"--output {output} exists and is not a predictions file written by hf-mmfusion predict; "
            "remove it yourself or choose another file name"
        )


def iter_predictions(
    model,
    processor,
    records: Sequence[dict],
    batch_size: int = 16,
    max_length: int = 128,
    progress: bool = True,
    base_dir=None,
):
    """Predictions for records, ``batch_size`` at a time (one list per batch, in record order).

    Records may give different modalities: each batch is encoded in groups of records that give the same
    ones, and a modality a record lacks is masked, exactly as for a record predicted alone.
    """
    modalities = list(model_modalities(model.config))
    for i, record in enumerate(records):
        where = f"record {i} (id {record_id(record, i)!r})"
        check_record(record, modalities, where, base_dir)
        check_raw_media(processor, record, modalities, where)
    if hasattr(processor, "check_model_widths"):
        processor.check_model_widths(model.config)
    return _predict_batches(model, processor, records, modalities, batch_size, max_length, progress, base_dir)


def _predict_batches(model, processor, records, modalities, batch_size, max_length, progress, base_dir):
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    for start in tqdm(range(0, len(records), batch_size), desc="predicting", disable=not progress):
        chunk = records[start : start + batch_size]
        groups: dict[tuple[str, ...], list[int]] = {}
        for offset, record in enumerate(chunk):
            groups.setdefault(given_inputs(record), []).append(offset)
        preds: list[dict | None] = [None] * len(chunk)
        for offsets in groups.values():
            inputs = encode_records(processor, [chunk[o] for o in offsets], modalities, max_length, base_dir)
            with torch.inference_mode():
                logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
            finite = torch.isfinite(logits.reshape(len(offsets), -1)).all(-1).tolist()
            if not all(finite):
                bad = [f"{start + o} (id {record_id(chunk[o], start + o)!r})" for o, ok in zip(offsets, finite) if not ok]
                raise ValueError(
                    f"the model's output is not finite (NaN or infinite) for record(s) {', '.join(bad[:10])}"
                    f"{' and more' if len(bad) > 10 else ''}; its weights or these inputs hold non-finite values"
                )
            for offset, pred in zip(offsets, postprocess(model, logits)):
                preds[offset] = pred
        yield [{"id": record_id(chunk[o], start + o), **preds[o]} for o in range(len(chunk))]


def predict_records(
    model,
    processor,
    records: Sequence[dict],
    batch_size: int = 16,
    max_length: int = 128,
    progress: bool = True,
    base_dir=None,
) -> list[dict]:
    """Predictions for records, ``batch_size`` at a time, with a progress bar (see :func:`iter_predictions`)."""
    return [row for batch in iter_predictions(model, processor, records, batch_size, max_length, progress, base_dir)
            for row in batch]


def _strict_json(row: dict) -> str:
    # Python's default writes NaN / Infinity, which no JSON parser reads.
    return json.dumps(row, allow_nan=False)


def open_staged_output(output: str | Path) -> tuple[Path, object]:
    """(temporary path, open text file) beside ``output``: predictions are written there and renamed onto
    ``output`` only when complete, so ``output`` never holds a partial file.

    The temporary file lies in a locked scratch folder (``.<name>.partial-*``) that the file object keeps:
    one a killed run left beside ``output`` is removed here, by the next run."""
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_scratch(output.parent, STAGING_PATTERN)
        scratch = ScratchDirectory(output.parent, f".{output.name}.partial-")
    except OSError as err:
        raise OSError(err.errno, f"cannot write {output}: {err.strerror}") from err
    temporary = scratch.path / output.name
    try:
        handle = _ScratchFile(temporary.open("w", newline="", encoding="utf-8"), scratch)
    except BaseException:
        scratch.close()
        raise
    return temporary, handle


class _ScratchFile:
    """A text file in a scratch folder; closing it removes the folder with whatever is still in it."""

    def __init__(self, handle, scratch: ScratchDirectory):
        self._handle, self._scratch = handle, scratch

    def write(self, text: str) -> int:
        return self._handle.write(text)

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()
        self._scratch.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def write_predictions(results, output: str | Path | None) -> int:
    """JSONL or CSV by the file suffix; without a file, one JSON line per record on stdout.

    ``results`` is a list of rows or an iterable of row batches (as :func:`iter_predictions` yields). A file
    is written atomically: into a temporary file beside it, renamed onto ``output`` when every row is
    written, so a failure leaves ``output`` as it was. JSON is strict (a non-finite number is an error).
    Returns the number of rows written.
    """
    check_output_path(output)
    batches = [results] if isinstance(results, list) and (not results or isinstance(results[0], dict)) else results
    written = 0
    if output is None:
        for batch in batches:
            for row in batch:
                print(_strict_json(row), flush=True)
            written += len(batch)
        return written
    return _write_staged(batches, output, open_staged_output(output))


def _write_staged(batches, output: str | Path, staged) -> int:
    temporary, f = staged
    try:
        with f:
            written = _write_rows(batches, f, Path(output).suffix)
        os.replace(temporary, output)
    finally:
        f.close()
        temporary.unlink(missing_ok=True)
    return written


def _write_rows(batches, f, suffix: str) -> int:
    written = 0
    writer = None
    if suffix == ".jsonl":
        for batch in batches:
            f.write("".join(_strict_json(r) + "\n" for r in batch))
            written += len(batch)
        return written
    for batch in batches:
        if writer is None and batch:
            fields = [k for k in batch[0] if k != "probabilities"]
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
        if batch:
            writer.writerows(batch)
        written += len(batch)
    if writer is None:
        f.write("id\r\n")
    return written


def run_predict(args: argparse.Namespace) -> list[dict]:
    flag_files = [*(args.audio or []), *(args.visual or []), *(getattr(args, "video", None) or [])]
    check_output_target(args.output, [args.inputs, *flag_files], args.model)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    records = records_from_flags(args.text, args.audio, args.visual, getattr(args, "video", None))
    base_dir = None
    if args.inputs:
        records += read_records(args.inputs)
        base_dir = Path(args.inputs).resolve().parent
    if not records:
        raise ValueError("nothing to predict: pass --text/--audio/--visual/--video or --inputs")
    # Opened before the model loads: an output folder that cannot be written fails now, not after the work.
    staged = open_staged_output(args.output) if args.output else None
    results: list[dict] = []

    def collected(batches):
        for batch in batches:
            results.extend(batch)
            yield batch

    try:
        model, processor = load_pretrained(
            args.model, trust_remote_code=args.trust_remote_code, progress=not args.no_progress
        )
        check_text_length(model, args.max_text_length)
        with model_threads(model, threads):
            batches = collected(iter_predictions(
                model, processor, records, args.batch_size, args.max_text_length, progress=not args.no_progress,
                base_dir=base_dir,
            ))
            if staged is None:
                write_predictions(batches, None)
            else:
                _write_staged(batches, args.output, staged)
    except BaseException:  # an interrupt too: no temporary file is left behind
        if staged is not None:
            staged[1].close()
            staged[0].unlink(missing_ok=True)
            if results:
                print(f"{args.output} was left as it was: the {len(results)} predictions made before the failure "
                      "are not written", file=sys.stderr)
        raise
    if args.output:
        print(f"wrote {len(results)} predictions to {args.output}", file=sys.stderr)
    return results


