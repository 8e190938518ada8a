"""Convert the formats multimodal sentiment data ships in into canonical ``datasets`` DatasetDicts.

Sources:

- ``mmsa``: an MMSA pickle (CMU-MOSI / CMU-MOSEI / CH-SIMS, aligned or unaligned), all splits at once;
- ``misa``: MISA-format split pickles, given as ``[split=]path`` (split guessed from the file name);
- ``sdk``: a CMU-MultimodalSDK label sequence (``.csd``) + the standard folds file, optionally with
  audio / visual / word sequences;
- ``manifest``: a CSV / TSV / JSON / JSON-Lines manifest of your own data (ids, text, labels, optional
  splits and ``.npy`` / ``.wav`` paths);
- ``npz``: features per segment and split (``{split}_{id,label,audio,vision}``): one vector per segment
  (``[N, D]``) or fixed-length sequences (``[N, T, D]``, all-zero steps at either end dropped as padding);
- ``videos``: a folder of video clips and a labels file: acoustic frames from each clip's audio track
  (log-mel, openSMILE eGeMAPS / ComParE or any transformers audio encoder), visual frames from its picture
  (grid colours or any transformers vision encoder, optionally on face crops) and optionally transcripts
  from a speech recogniser; cached per clip, failed clips reported.

Output: Arrow (``save_to_disk``) or Parquet, written atomically (a failed conversion leaves nothing), and
optionally pushed to the Hub. Rows stream into Arrow in batches; the ``mmsa`` and ``sdk`` sources read each
segment's frames from their files when its row is written, so their memory does not grow with the input
(an MMSA pickle's frame arrays are never loaded whole). Run as ``hf-mmfusion convert ...``, ``python -m hf_mmfusion.commands.convert
...`` or a script in ``dataset_scripts/``.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..utils.ownership import ScratchDirectory, remove_abandoned_scratch
from .schema import (
    SPLITS,
    LazyRows,
    build_dataset_dict,
    canonical_features,
    check_replaceable_output,
    check_row,
    normalize_split,
    write_dataset_dict,
)

SOURCES = ("mmsa", "misa", "sdk", "manifest", "npz", "videos")
EXTRA_LABELS = ("label_text", "label_audio", "label_visual")
# The Arrow files a conversion streams its rows through, in the system's temporary folder.
WORK_PREFIX = "hf-mmfusion-convert-"
WORK_PATTERN = re.escape(WORK_PREFIX) + r".+"


def recorded_extractors(args: argparse.Namespace) -> dict[str, dict]:
    """The configs of the extractors that computed the output's frames from raw media (modality -> config).

    A manifest's modality counts only when every row gives it as a recording or a video: frames read from
    ``.npy`` files came from elsewhere, and a model trained on them must not take raw media.
    """
    if args.source == "manifest":
        from .manifest import frame_columns, manifest_columns, raw_media_modalities

        columns = frame_columns(manifest_columns(args.inputs[0]), args.audio_column, args.visual_column)
        raw = raw_media_modalities(args.inputs[0], *columns)
        extractors = manifest_extractors(args, *columns)
    elif args.source == "videos":
        raw, extractors = {"audio", "visual"}, video_extractors(args)
    else:
        return {}
    return {m: e.to_dict() for m, e in zip(("audio", "visual"), extractors) if e is not None and m in raw}


def manifest_extractors(args: argparse.Namespace, audio_column: str | None, visual_column: str | None):
    """The acoustic and visual extractors ``convert manifest`` frames recordings and videos with (``None`` for a
    modality the manifest does not give)."""
    from ..processing import AcousticFeatureExtractor, VisualFeatureExtractor

    audio = visual = None
    if audio_column:
        audio = AcousticFeatureExtractor(feature_size=args.audio_feature_size, raw_features=args.raw_audio_features)
    if visual_column:
        visual = VisualFeatureExtractor(
            feature_size=3 * args.video_grid_size**2, sampling_rate=args.video_fps, video_grid_size=args.video_grid_size
        )
    return audio, visual


def video_extractors(args: argparse.Namespace):
    """The acoustic and visual extractors ``convert videos`` computes features with (``None`` for none)."""
    from ..processing import AcousticFeatureExtractor, VisualFeatureExtractor
    from ..processing.feature_extraction_acoustic import RAW_AUDIO_FEATURES

    audio = None
    if args.audio_features != "none":
        if args.audio_features in RAW_AUDIO_FEATURES and args.audio_features != "pretrained":
            size = args.audio_feature_size if args.audio_features in ("log_mel", "mfcc") else None
            audio = AcousticFeatureExtractor(feature_size=size, raw_features=args.audio_features)
        else:
            audio = AcousticFeatureExtractor(
                raw_features="pretrained", pretrained_model_name_or_path=args.audio_features, pretrained_layer=args.audio_layer
            )
    visual = None
    if args.visual_features != "none":
        common = {"sampling_rate": args.video_fps, "face_crop": args.face_crop}
        if args.visual_features == "grid":
            visual = VisualFeatureExtractor(
                feature_size=3 * args.video_grid_size**2, video_grid_size=args.video_grid_size, **common
            )
        else:
            visual = VisualFeatureExtractor(
                raw_features="pretrained", pretrained_model_name_or_path=args.visual_features,
                pretrained_layer=args.visual_layer, **common,
            )
    return audio, visual


def _split_paths(inputs: list[str]) -> dict[str, str]:
    out = {}
    for item in inputs:
        if "=" in item:
            split, path = item.split("=", 1)
        else:
            path = item
            match = re.search(r"(train|valid|validation|dev|test)", Path(item).stem, flags=re.IGNORECASE)
            if match is None:
                raise ValueError(f"cannot tell the split of {item}; write it as split=path (e.g. train={item})")
            split = match.group(1)
        split = normalize_split(split)
        if split in out:
            raise ValueError(f"two inputs for split {split!r}: {out[split]} and {path}")
        out[split] = path
    return out


def read_source(args: argparse.Namespace) -> dict:
    """Rows per split for the ``args.source`` format (nothing is written): a list of row dicts, or
    :class:`~hf_mmfusion.data.schema.LazyRows` for the sources that build each row as it is read (``mmsa``,
    ``sdk``)."""
    if args.source == "mmsa":
        from .mmsa import read_mmsa_pickle

        _single_input(args)
        return read_mmsa_pickle(args.inputs[0])
    if args.source == "misa":
        from .mmsa import read_misa_pickle

        return {split: read_misa_pickle(path) for split, path in _split_paths(args.inputs).items()}
    if args.source == "sdk":
        from .sdk import read_sdk_dataset, read_standard_folds

        _single_input(args)
        if not args.folds:
            raise ValueError("the sdk source needs --folds (the SDK's standard folds file)")
        return read_sdk_dataset(args.inputs[0], read_standard_folds(args.folds), args.audio_csd, args.visual_csd, args.words_csd)
    if args.source == "manifest":
        from .manifest import frame_columns, manifest_columns, read_manifest

        _single_input(args)
        audio_column, visual_column = frame_columns(manifest_columns(args.inputs[0]), args.audio_column, args.visual_column)
        extractor, visual_extractor = manifest_extractors(args, audio_column, visual_column)
        return read_manifest(
            args.inputs[0],
            id_column=args.id_column,
            text_columns=args.text_column,
            label_column=args.label_column,
            split_column=args.split_column or None,
            default_split=args.default_split,
            label_class_column=args.label_class_column,
            audio_column=audio_column or "",
            visual_column=visual_column or "",
            audio_extractor=extractor,
            visual_extractor=visual_extractor,
        )
    if args.source == "videos":
        from .videos import read_video_folder

        _single_input(args)
        if not args.labels:
            raise ValueError("the videos source needs --labels (a CSV / JSON file with id and label columns)")
        audio, visual = video_extractors(args)
        rows, _ = read_video_folder(
            args.inputs[0],
            args.labels,
            audio_extractor=audio,
            visual_extractor=visual,
            asr_model=args.asr_model,
            id_column=args.id_column,
            label_column=args.label_column,
            split_column=args.split_column,
            text_column=args.text_column[0] if args.text_column else "text",
            default_split=args.default_split,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        return rows
    if args.source == "npz":
        from .manifest import read_utterance_npz

        _single_input(args)
        return read_utterance_npz(args.inputs[0])
    raise ValueError(f"unknown source {args.source!r}; expected one of {SOURCES}")


def _single_input(args) -> None:
    if len(args.inputs) != 1:
        raise ValueError(f"the {args.source} source takes one input file, got {len(args.inputs)}")


def _row_ids(split_rows) -> list[str]:
    return split_rows.ids if isinstance(split_rows, LazyRows) else [row["id"] for row in split_rows]


def _join_text(rows: dict, args) -> None:
    from .manifest import text_lookup

    lookup = text_lookup(args.text_from, args.text_from_id_column, args.text_from_columns)
    missing = [row_id for split_rows in rows.values() for row_id in _row_ids(split_rows) if row_id not in lookup]
    if missing:
        raise ValueError(f"{len(missing)} ids have no transcript in {args.text_from} (first: {missing[:3]})")
    for split, split_rows in rows.items():
        if isinstance(split_rows, LazyRows):
            rows[split] = split_rows.map(lambda row: {**row, "text": lookup[row["id"]]})
            continue
        for row in split_rows:
            row["text"] = lookup[row["id"]]


def _schema(rows: dict):
    # Rows a reader builds on demand share one layout: their first row stands for them (reading all of
    # them would read the whole source once more), and the row generator checks each row's columns.
    every = [row for split_rows in rows.values() for row in (split_rows[:1] if isinstance(split_rows, LazyRows) else split_rows)]
    if not every:
        raise ValueError("the source has no rows")
    keys = {key for row in every for key in row}
    for key in keys:
        lacking = sum(key not in row for row in every)
        if lacking:
            raise ValueError(f"{lacking} of {len(every)} rows lack `{key}`; a column must be present in every row")
    dims = {}
    for modality in ("audio", "visual"):
        if modality in keys:
            first = np.asarray(every[0][modality])
            if first.ndim != 2:
                raise ValueError(f"row {every[0]['id']!r}: `{modality}` must be [frames, dim], got {list(first.shape)}")
            dims[modality] = first.shape[1]
    return canonical_features(
        text="text" in keys,
        audio_dim=dims.get("audio"),
        visual_dim=dims.get("visual"),
        label_class="label_class" in keys,
        extra_labels=tuple(name for name in EXTRA_LABELS if name in keys),
    )


def _row_generator(split_rows: list[dict], features, split: str, non_finite: str):
    def generate():
        for row in split_rows:
            row = dict(row)
            lacking = [name for name in features if name not in row]
            if lacking:
                raise ValueError(f"{split} row {row.get('id')!r} lacks {lacking}; a column must be present in every row")
            for modality in ("audio", "visual"):
                if modality in row:
                    frames = np.asarray(row[modality], dtype=np.float32)
                    if non_finite == "zero" and not np.isfinite(frames).all():
                        frames = np.where(np.isfinite(frames), frames, np.float32(0.0))
                    row[modality] = frames
            check_row(row, features, f"{split} row {row['id']!r}")
            yield {name: row[name] for name in features}

    return generate


def dataset_dict_from_rows(rows: dict[str, list[dict]], non_finite: str = "keep"):
    """An in-memory canonical ``DatasetDict`` from rows per split (as the readers return them), with the
    same schema and row checks as the converter's output."""
    from datasets import Dataset, DatasetDict

    if non_finite not in ("keep", "zero"):
        raise ValueError(f"non_finite must be 'keep' or 'zero', got {non_finite!r}")
    features = _schema(rows)
    order = [s for s in SPLITS if s in rows] + [s for s in rows if s not in SPLITS]
    return DatasetDict(
        {
            split: Dataset.from_list(list(_row_generator(rows[split], features, split, non_finite)()), features=features)
            for split in order
        }
    )


def load_npz_dataset(path: str | os.PathLike, non_finite: str = "keep"):
    """``convert npz`` without writing anything: the archive at ``path`` as a canonical ``DatasetDict``.

    Splits are named as the converter names them (``valid`` becomes ``validation``). ``[N, T, D]`` arrays
    keep only each segment's real steps (all-zero steps at either end are padding; see
    :func:`~hf_mmfusion.data.manifest.read_utterance_npz`), so a row's ``audio`` is ``[frames, D]`` and its
    length is ``len(row["audio"])``; the processor and the collator turn the rows into padded frames with
    attention masks. A segment whose steps are all zero has ``[0, D]`` frames (the modality is missing).
    """
    from .manifest import read_utterance_npz

    return dataset_dict_from_rows(read_utterance_npz(path), non_finite)


def input_folders(args: argparse.Namespace) -> list[Path]:
    """The folders every input file of ``args`` lives in (an output may never replace one of them)."""
    paths = [item.split("=", 1)[1] if args.source == "misa" and "=" in item else item for item in args.inputs]
    paths += [getattr(args, name, None) for name in ("text_from", "folds", "audio_csd", "visual_csd", "words_csd")]
    return [Path(path).resolve().parent for path in paths if path]


def run_convert(args: argparse.Namespace) -> Path:
    """Convert per ``args`` (see :func:`add_convert_arguments`); returns the output directory.

    Everything is read and checked before the output appears; a corrupt or truncated input raises a
    ``ValueError`` and leaves no output directory. ``--overwrite`` replaces only a previous output of the
    converters, and never the folder of an input or one above it.
    """
    folders = input_folders(args)
    check_replaceable_output(args.output, folders, args.overwrite)
    rows = read_source(args)
    if args.text_from:
        _join_text(rows, args)
    features = _schema(rows)
    order = [s for s in SPLITS if s in rows] + [s for s in rows if s not in SPLITS]
    from datasets.exceptions import DatasetGenerationError

    scratch_root = tempfile.gettempdir()
    remove_abandoned_scratch(scratch_root, WORK_PATTERN)
    with ScratchDirectory(scratch_root, WORK_PREFIX) as scratch:
        work = scratch.path
        try:
            dataset = build_dataset_dict(
                {split: _row_generator(rows[split], features, split, args.non_finite) for split in order}, features, work
            )
        except DatasetGenerationError as err:
            # datasets wraps what the row checks raise; the user needs the row check's own message.
            cause = err.__cause__
            if isinstance(cause, ValueError):
                raise cause from None
            raise
        output = write_dataset_dict(
            dataset, args.output, file_format=args.file_format, overwrite=args.overwrite, inputs=folders,
            feature_extractors=recorded_extractors(args),
        )
        if args.push_to_hub:
            dataset.push_to_hub(args.push_to_hub, private=args.private)
    sizes = ", ".join(f"{split} {len(rows[split])}" for split in order)
    print(f"wrote {output} ({args.file_format}; {sizes}; columns {list(features)})")
    return output

