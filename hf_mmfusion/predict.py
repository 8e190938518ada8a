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

import numpy as np
import torch

from .cpu_memory import retain_freed_memory
from .cpu_threads import THREADS_HELP, model_threads
from .data.manifest import read_npy_frames
from .evaluation import is_regression, load_pretrained
from .loading import MODALITY_COLUMNS, check_text_length, model_modalities
from .outputs import STAGING_PATTERN, ScratchDirectory, remove_abandoned_scratch
from .processing.feature_extraction_mmfusion import VIDEO_SUFFIXES
from .processing.media import WAV_SUFFIXES, check_media_file
from .processing.processing_mmfusion import has_visible_text

FRAME_MODALITIES = ("audio", "visual")


def load_frames(value, modality: str, base_dir: Path | None = None):
    """An ``audio``/``visual`` value -> array (``.npy``), a ``.wav`` path (audio) or the array itself."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        check_media_file(path, modality)
        if path.suffix.lower() == ".npy":
            try:
                frames = read_npy_frames(path)
            except ValueError as err:
                raise ValueError(f"`{modality}`: {err}") from None
            if frames.ndim != 2:
                raise ValueError(f"`{modality}`: {path.name} must hold [frames, features], got shape {list(frames.shape)}")
            return frames
        if path.suffix.lower() == ".wav":
            if modality != "audio":
                raise ValueError(f"`{modality}`: a .wav recording can only be the audio input")
            return str(path)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return str(path)                                     # the extractor decodes its frames / audio track
        raise ValueError(
            f"`{modality}`: expected a .npy frame file, a .wav recording (audio) or a video file (visual), got {path.name!r}"
        )
    frames = np.asarray(value, dtype=np.float32)
    if frames.ndim != 2:
        raise ValueError(f"`{modality}` must be [frames, features], got shape {list(frames.shape)}")
    return frames


def _present(value) -> bool:
    return value is not None and not (isinstance(value, str) and value == "")


def given_inputs(record: dict) -> tuple[str, ...]:
    """The inputs a record gives: records are encoded together only when they give the same ones."""
    return tuple(m for m in (*MODALITY_COLUMNS, "video") if _present(record.get(m)))


def video_paths(records: Sequence[dict], base_dir=None) -> list[str] | None:
    """The records' ``video`` files (resolved against ``base_dir``), or ``None`` when no record has one."""
    flags = [_present(r.get("video")) for r in records]
    if not any(flags):
        return None
    if not all(flags):
        missing = [i for i, f in enumerate(flags) if not f]
        raise ValueError(f"`video` is given for some records but missing for records {missing[:10]} of the batch")
    paths = []
    for record in records:
        path = Path(record["video"])
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        check_media_file(path, "video", "video file")
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"`video`: {path.name!r} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
        paths.append(str(path))
    return paths

# `label` is allowed (and ignored here) so that a labelled split can be predicted or explained as it is.
RECORD_KEYS = ("id", *MODALITY_COLUMNS, "video", "label")
OUTPUT_SUFFIXES = (".jsonl", ".csv")


def check_record(record, modalities: Sequence[str], where: str = "record", base_dir=None) -> None:
    """A ``ValueError`` naming ``where`` unless ``record`` can be encoded for a model with ``modalities``.

    Only cheap checks run (keys, types, that frame files exist and have a readable suffix), so a whole
    input file is checked before any prediction is computed.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record is a dict with any of {list(MODALITY_COLUMNS)}, got {type(record).__name__}")
    unknown = sorted(set(record) - set(RECORD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; a record has {list(RECORD_KEYS)}")
    given = [m for m in MODALITY_COLUMNS if _present(record.get(m))]
    if _present(record.get("video")):
        if not isinstance(record["video"], (str, Path)):
            raise ValueError(f"{where}: `video` must be a path to a video file, got {type(record['video']).__name__}")
        try:
            video_paths([record], base_dir)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        # A video supplies the frame streams the model uses (and the text, with a processor that transcribes).
        given += [m for m in ("audio", "visual") if m in modalities and m not in given]
    extra = [m for m in given if m not in modalities]
    if extra:
        raise ValueError(f"{where}: {extra} given, but the model uses only {list(modalities)}")
    if not given:
        raise ValueError(f"{where}: needs at least one of {list(modalities)}")
    if "text" in given and not isinstance(record["text"], str):
        raise ValueError(f"{where}: `text` must be a string, got {type(record['text']).__name__}")
    if "text" in given and not has_visible_text(record["text"]):
        raise ValueError(f"{where}: `text` is empty (no visible character); give at least one word or leave it out")
    for modality in FRAME_MODALITIES:
        value = record.get(modality)
        if not _present(value) or not isinstance(value, (str, Path)):
            continue
        path = Path(value)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        suffix = path.suffix.lower()
        readable = suffix == ".npy" or suffix in VIDEO_SUFFIXES or (modality == "audio" and suffix == ".wav")
        if not readable:
            kinds = "a .npy frame file, a .wav recording or a video file" if modality == "audio" else "a .npy frame file or a video file"
            raise ValueError(f"{where}: `{modality}` must be {kinds}, got {path.name!r}")
        if path.is_dir():
            raise ValueError(f"{where}: `{modality}` {str(path)!r} is a folder, not a file")
        if not path.is_file():
            raise ValueError(f"{where}: `{modality}` file {str(path)!r} does not exist")


def _is_raw_media(value) -> bool:
    return isinstance(value, (str, Path)) and Path(value).suffix.lower() in (*WAV_SUFFIXES, *VIDEO_SUFFIXES)


def check_raw_media(processor, record: dict, modalities: Sequence[str], where: str = "record") -> None:
    """A ``ValueError`` naming ``where`` when ``record`` gives a recording or a video for a stream whose
    extractor serves a model trained on precomputed frames (checked before anything is decoded)."""
    for modality in FRAME_MODALITIES:
        extractor = getattr(processor, f"{modality}_feature_extractor", None)
        if extractor is None or modality not in modalities or not hasattr(extractor, "check_raw_media"):
            continue
        value = record.get(modality)
        from_video = not _present(value) and _present(record.get("video"))
        if _is_raw_media(value) or from_video:
            try:
                if from_video:
                    extractor.check_raw_media("video", "a video" if modality == "audio" else None)
                else:
                    extractor.check_raw_media(modality)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None


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


def encode_records(processor, records: Sequence[dict], modalities: Sequence[str], max_length: int = 128, base_dir=None):
    """Model inputs (padded tensors) for a list of records; every record must give the same modalities.

    A record's ``video`` is the source of every stream it does not give otherwise (its audio track, its
    frames and, with the processor's ``asr_model``, its transcript)."""
    videos = video_paths(records, base_dir)
    if videos is not None:
        records = [dict(r) for r in records]
        for modality in ("audio", "visual"):
            if (
                modality in modalities
                and getattr(processor, f"{modality}_feature_extractor", None) is not None
                and not any(_present(r.get(modality)) for r in records)
            ):
                for record, path in zip(records, videos):
                    record[modality] = path
        if "text" in modalities and not any(_present(r.get("text")) for r in records):
            if getattr(processor, "asr_model", None) is None:
                raise ValueError(
                    "the model reads text but the records give no `text` and the processor has no asr_model to "
                    "transcribe the video; pass --text or save the processor with asr_model=..."
                )
            transcripts = processor.transcribe(videos)
            empty = [v for v, t in zip(videos, transcripts) if not t["text"]]
            if empty:
                raise ValueError(f"the speech recogniser found no words in {empty[:3]}; pass the transcript with --text")
            for record, transcript in zip(records, transcripts):
                record["text"] = transcript["text"]
    given = {m: [_present(r.get(m)) for r in records] for m in MODALITY_COLUMNS}
    kwargs = {}
    for modality in MODALITY_COLUMNS:
        flags = given[modality]
        if not any(flags):
            continue
        if not all(flags):
            missing = [i for i, f in enumerate(flags) if not f]
            raise ValueError(f"`{modality}` is given for some records but missing for records {missing[:10]} of the batch")
        if modality not in modalities:
            raise ValueError(f"`{modality}` was given but the model uses only {list(modalities)}")
        values = [r[modality] for r in records]
        kwargs[modality] = values if modality == "text" else [load_frames(v, modality, base_dir) for v in values]
    if not kwargs:
        raise ValueError(f"each record needs at least one of {list(modalities)}")
    return processor(**kwargs, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def postprocess(model, logits: torch.Tensor) -> list[dict]:
    """Scores (regression) or the top class with its probability and all probabilities (classification)."""
    if is_regression(model):
        scores = logits.reshape(-1).tolist()
        return [{"score": s, "polarity": "positive" if s > 0 else "negative" if s < 0 else "neutral"} for s in scores]
    probs = logits.softmax(-1)
    labels = model.config.id2label
    out = []
    for row in probs:
        best = int(row.argmax())
        out.append(
            {"label": labels.get(best, str(best)), "score": float(row[best]), "probabilities": [float(p) for p in row]}
        )
    return out


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
        where = f"record {i} (id {_record_id(record, i)!r})"
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
                bad = [f"{start + o} (id {_record_id(chunk[o], start + o)!r})" for o, ok in zip(offsets, finite) if not ok]
                raise ValueError(
                    f"the model's output is not finite (NaN or infinite) for record(s) {', '.join(bad[:10])}"
                    f"{' and more' if len(bad) > 10 else ''}; its weights or these inputs hold non-finite values"
                )
            for offset, pred in zip(offsets, postprocess(model, logits)):
                preds[offset] = pred
        yield [{"id": _record_id(chunk[o], start + o), **preds[o]} for o in range(len(chunk))]


def _record_id(record, index: int) -> str:
    return str(record.get("id", index)) if isinstance(record, dict) else str(index)


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


def read_records(path: str | Path) -> list[dict]:
    """Records from a ``.jsonl`` (one object per line) or ``.csv`` file with text/audio/visual columns."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".csv"):
        raise ValueError(f"--inputs must be a .jsonl or .csv file, got {path.name!r}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if path.suffix == ".csv":
                return list(csv.DictReader(f))
            records = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except (json.JSONDecodeError, RecursionError) as err:
                        raise ValueError(f"{path} line {number}: not a JSON object ({type(err).__name__})") from None
            return records
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read --inputs {path}: {err}") from err


def records_from_flags(texts, audios, visuals, videos=None) -> list[dict]:
    columns = {"text": texts or [], "audio": audios or [], "visual": visuals or [], "video": videos or []}
    lengths = {k: len(v) for k, v in columns.items() if v}
    if not lengths:
        return []
    if len(set(lengths.values())) > 1:
        raise ValueError(f"--text/--audio/--visual/--video must be given the same number of times, got {lengths}")
    n = next(iter(lengths.values()))
    records = [{k: v[i] for k, v in columns.items() if v} for i in range(n)]
    # A record given as files is named after them, as a converted clip is; by position when names repeat.
    stems = [_file_stem(r) for r in records]
    named = None not in stems and len(set(stems)) == n
    return [{"id": stems[i] if named else str(i), **record} for i, record in enumerate(records)]


def _file_stem(record: dict) -> str | None:
    """The name stem of the record's video, else of its audio or visual file, or ``None``."""
    for key in ("video", "audio", "visual"):
        if _present(record.get(key)):
            return Path(record[key]).stem
    return None


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


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help="saved model directory or Hub id (with its processor)")
    parser.add_argument("--text", action="append", help="a transcript (repeat for several records)")
    parser.add_argument("--audio", action="append", help="a .npy frame file, a .wav recording or a video (its audio track; repeatable)")
    parser.add_argument("--visual", action="append", help="a .npy frame file or a video file (repeatable)")
    parser.add_argument(
        "--video", action="append",
        help="a video file: its audio track, frames and (with the processor's asr_model) transcript (repeatable)",
    )
    parser.add_argument("--inputs", help="a .jsonl or .csv file of records (paths relative to the file)")
    parser.add_argument("--output", help="write predictions to a .csv or .jsonl file instead of stdout")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_text_length", type=int, default=128)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    parser.add_argument("--no_progress", action="store_true")
    return parser


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


def main(argv: list[str] | None = None) -> int:
    parser = add_predict_arguments(argparse.ArgumentParser(prog="hf-mmfusion predict", description=__doc__))
    args = parser.parse_args(argv)
    retain_freed_memory()
    run_predict(args)
    return 0
