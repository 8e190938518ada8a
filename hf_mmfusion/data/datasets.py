"""Datasets for the workflows: where they come from, which modalities they carry, how they are cut and encoded,
and the ``DataArguments`` every command that reads a dataset shares."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..models.configuration_common import MODALITIES
from ..utils.sources import check_local_folder, is_hub_id
from .synthetic import SYNTHETIC_DEFAULTS

logger = logging.getLogger(__name__)

DEFAULT_EVAL_SPLIT = "validation"


@dataclass
class DataArguments:
    """Where the data comes from and how it is cut."""

    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic' (built-in data with a known cross-modal signal), a directory written by "
            "DatasetDict.save_to_disk, or a Hub dataset id (e.g. org/cmu-mosei)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train")
    eval_split: str = field(
        default=DEFAULT_EVAL_SPLIT,
        metadata={
            "help": "Split that selects the checkpoint. When the dataset has no 'validation' split, one is held out "
            "of the train split (see --validation_split_percentage)."
        },
    )
    validation_split_percentage: int = field(
        default=10,
        metadata={
            "help": "Share (%%) of the train rows held out, shuffled with --seed, as the validation split of a "
            "dataset that has none; 0 makes a missing validation split an error."
        },
    )
    test_split: str | None = field(default="test", metadata={"help": "Evaluated after training; '' to skip."})
    label_column: str = field(
        default="label", metadata={"help": "Float scores train a regressor, integer classes a classifier."}
    )
    polarity_boundary: float = field(
        default=0.0,
        metadata={
            "help": "Regression: labels >= this value count as positive in Acc-2 / F1 (e.g. 3.5 for 1-5 ratings). "
            "Acc-5 / Acc-7 are the grades of the [-3, 3] scale and are reported only at 0."
        },
    )
    max_text_length: int = field(default=64, metadata={"help": "Token truncation length."})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    synthetic_sizes: list[int] = field(
        default_factory=lambda: list(SYNTHETIC_DEFAULTS.sizes), metadata={"help": "Synthetic train/validation/test sizes."}
    )
    synthetic_audio_dim: int = field(default=SYNTHETIC_DEFAULTS.audio_dim)
    synthetic_visual_dim: int = field(default=SYNTHETIC_DEFAULTS.visual_dim)
    synthetic_seed: int = field(default=SYNTHETIC_DEFAULTS.seed)
    synthetic_modalities: list[str] = field(
        default_factory=lambda: ["audio", "visual"],
        metadata={
            "help": "Modality columns of the synthetic data. The default acoustic-visual variant (label = audio "
            "sign x visual sign) trains in about a minute; 'text audio visual' is the trimodal variant of the "
            "demo, whose three-way interaction needs about four times the steps (--synthetic_sizes 1024 256 256)."
        },
    )
    synthetic_text_words: list[int] = field(default_factory=lambda: list(SYNTHETIC_DEFAULTS.text_words), metadata={"help": "Words per sentence (min max)."})
    synthetic_audio_frames: list[int] = field(default_factory=lambda: list(SYNTHETIC_DEFAULTS.audio_frames), metadata={"help": "Audio frames (min max)."})
    synthetic_visual_frames: list[int] = field(default_factory=lambda: list(SYNTHETIC_DEFAULTS.visual_frames), metadata={"help": "Visual frames (min max)."})
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={
            "help": "Processes that preprocess the dataset (Dataset.map num_proc). The result of a dataset read "
            "from disk is cached: a second run with the same data and processor reuses it."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the dataset as a stream (load_dataset(..., streaming=True)): rows are read and "
            "preprocessed as training consumes them, nothing is written, so a dataset larger than the disk "
            "trains. Needs --max_steps; see --normalization_samples and --shuffle_buffer_size."
        },
    )
    normalization_samples: int = field(
        default=10000,
        metadata={
            "help": "With --streaming: the first this many train rows give the audio / visual normalisation "
            "statistics and the regression label mean."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000,
        metadata={"help": "With --streaming: rows in the buffer the train stream is shuffled in (IterableDataset.shuffle)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a previous run in --output_dir (its checkpoints and saved model are removed first). "
            "Without it a non-empty --output_dir is refused unless --resume_from_checkpoint continues it."
        },
    )

    def __post_init__(self):
        if not math.isfinite(self.polarity_boundary):
            raise ValueError(f"--polarity_boundary must be a finite number, got {self.polarity_boundary}")
        if self.preprocessing_num_workers is not None and self.preprocessing_num_workers < 1:
            raise ValueError(f"--preprocessing_num_workers must be at least 1, got {self.preprocessing_num_workers}")
        if self.normalization_samples < 1:
            raise ValueError(f"--normalization_samples must be at least 1, got {self.normalization_samples}")
        if self.shuffle_buffer_size < 1:
            raise ValueError(f"--shuffle_buffer_size must be at least 1, got {self.shuffle_buffer_size}")

    def synthetic_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``load_any_dataset`` for the synthetic data."""
        return {
            "synthetic_sizes": self.synthetic_sizes,
            "audio_dim": self.synthetic_audio_dim,
            "visual_dim": self.synthetic_visual_dim,
            "seed": self.synthetic_seed,
            "modalities": self.synthetic_modalities,
            "text_words": self.synthetic_text_words,
            "audio_frames": self.synthetic_audio_frames,
            "visual_frames": self.synthetic_visual_frames,
        }



def load_any_dataset(
    name: str,
    config_name: str | None = None,
    synthetic_sizes: Sequence[int] = SYNTHETIC_DEFAULTS.sizes,
    audio_dim: int = SYNTHETIC_DEFAULTS.audio_dim,
    visual_dim: int = SYNTHETIC_DEFAULTS.visual_dim,
    seed: int = SYNTHETIC_DEFAULTS.seed,
    modalities: Sequence[str] = MODALITIES,
    streaming: bool = False,
    **synthetic_kwargs,
):
    """A ``DatasetDict`` from ``"synthetic"``, a local directory (``save_to_disk`` or a converter's Parquet
    output), or a Hub dataset id. ``synthetic_kwargs`` (``text_words``, ``audio_frames``, ``visual_frames``
    ranges) shape the synthetic data. ``streaming`` gives an ``IterableDatasetDict`` whose rows are read
    as they are iterated (``load_dataset(..., streaming=True)``)."""
    import datasets

    if streaming:
        return _load_streaming(name, config_name, synthetic_sizes, audio_dim, visual_dim, seed, modalities, synthetic_kwargs)
    if name == "synthetic":
        from .synthetic import make_synthetic_dataset

        return make_synthetic_dataset(
            tuple(synthetic_sizes),
            modalities=modalities,
            audio_dim=audio_dim,
            visual_dim=visual_dim,
            seed=seed,
            **{k: tuple(v) for k, v in synthetic_kwargs.items() if v is not None},
        )
    path = Path(name)
    if path.is_dir():
        from .schema import load_converted

        loaded = load_converted(path)
        if isinstance(loaded, datasets.Dataset):
            raise ValueError(
                f"{name} holds a single Dataset; save a DatasetDict with train/validation/test splits instead"
            )
        return loaded
    if path.exists():
        raise ValueError(f"dataset {name!r} is a file; pass a DatasetDict directory (save_to_disk) or a Hub id")
    check_local_folder(name, "dataset", kind="dataset")
    return datasets.load_dataset(name, config_name)


def _load_streaming(name, config_name, sizes, audio_dim, visual_dim, seed, modalities, synthetic_kwargs):
    import datasets

    if name == "synthetic":
        built = load_any_dataset(name, None, sizes, audio_dim, visual_dim, seed, modalities, **synthetic_kwargs)
        return datasets.IterableDatasetDict({split: ds.to_iterable_dataset() for split, ds in built.items()})
    path = Path(name)
    if path.is_dir() and (path / "dataset_dict.json").exists():
        # A save_to_disk folder streamed from its Arrow files: read with plain file reads, not memory-mapped.
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        files = {split: sorted(str(f) for f in (path / split).glob("*.arrow")) for split in splits}
        return datasets.load_dataset("arrow", data_files={k: v for k, v in files.items() if v}, streaming=True)
    if path.exists() and not path.is_dir():
        raise ValueError(f"dataset {name!r} is a file; pass a DatasetDict directory (save_to_disk) or a Hub id")
    if not path.exists():
        check_local_folder(name, "dataset", kind="dataset")
    return datasets.load_dataset(name, config_name, streaming=True)


def is_streamed(dataset) -> bool:
    from datasets import IterableDataset, IterableDatasetDict

    return isinstance(dataset, (IterableDataset, IterableDatasetDict))


def hub_dataset_id(name: str) -> str | None:
    """``name`` when it names a Hub dataset (for card metadata), ``None`` for a local folder or the synthetic data."""
    return name if name != "synthetic" and is_hub_id(name) else None


def dataset_modalities(dataset) -> list[str]:
    """The modality columns a split carries, in canonical order."""
    return [m for m in MODALITIES if m in dataset.column_names]


def check_dataset_modalities(model_modalities: Sequence[str], available: Sequence[str], dataset_name: str = "") -> None:
    """A model may use a subset of the data's modalities, never one the data lacks."""
    missing = [m for m in model_modalities if m not in available]
    if not model_modalities:
        raise ValueError("modalities must name at least one of 'text', 'audio', 'visual'")
    if missing:
        raise ValueError(
            f"the model is configured with modalities {list(model_modalities)}, but dataset "
            f"{dataset_name!r} has no column for {missing} (its modality columns: {list(available)}). "
            f"Train with --modalities {' '.join(m for m in model_modalities if m in available) or '<one of the columns>'}."
        )


def dataset_frame_dims(dataset) -> tuple[int | None, int | None]:
    """Frame widths of the ``audio`` / ``visual`` columns (from the ``Array2D`` feature or the first row)."""
    dims = []
    for modality in ("audio", "visual"):
        if modality not in dataset.column_names:
            dims.append(None)
            continue
        feature = dataset.features[modality]
        shape = getattr(feature, "shape", None)
        if shape is not None and shape[-1] is not None:
            dims.append(int(shape[-1]))
            continue

        row = next(iter(dataset)) if is_streamed(dataset) else dataset[0]
        first = np.asarray(row[modality], dtype="float32")
        if first.ndim != 2:
            raise ValueError(f"column {modality!r} must hold [frames, features] arrays, got shape {list(first.shape)}")
        dims.append(int(first.shape[1]))
    return dims[0], dims[1]


def is_regression_label(dataset, label_column: str) -> bool:
    """Float labels mean regression; integer or ``ClassLabel`` labels mean classification."""
    from datasets import ClassLabel, Value

    if label_column not in dataset.column_names:
        raise ValueError(f"label_column {label_column!r} is not a column of the dataset ({dataset.column_names})")
    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        return False
    if isinstance(feature, Value):
        return feature.dtype.startswith("float")
    raise ValueError(f"label_column {label_column!r} must hold one number per row, got feature {feature}")


def num_classes(dataset, label_column: str) -> int:
    from datasets import ClassLabel

    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        return feature.num_classes
    if is_streamed(dataset):
        return int(max(row[label_column] for row in dataset)) + 1
    return int(max(dataset[label_column])) + 1


def fit_feature_normalization(processor, train_split) -> None:
    """Standardise acoustic/visual frames with statistics of the training split (stored in the processor)."""
    for modality in ("audio", "visual"):
        extractor = getattr(processor, f"{modality}_feature_extractor", None)
        if extractor is not None and modality in train_split.column_names:
            extractor.fit_normalization(_iter_frames(train_split, modality))


def _iter_frames(split, column: str, batch_size: int = 256):
    # Streams the frames batch by batch: a MOSEI-sized split does not fit in memory at once.
    for batch in split.select_columns([column]).with_format("numpy").iter(batch_size=batch_size):
        yield from batch[column]


def encode_dataset(
    split, processor, modalities: Sequence[str], label_column: str | None, max_length: int | None,
    num_proc: int | None = None,
):
    """Processor outputs for each row (unpadded), restricted to ``modalities``; ``labels`` from ``label_column``
    (``num_proc`` processes; a streamed split is encoded lazily)."""
    from .preprocess import preprocess_dataset

    dropped = [m for m in MODALITIES if m in split.column_names and m not in modalities]
    if dropped:
        split = split.remove_columns(dropped)
    return preprocess_dataset(split, processor, label_column=label_column, max_length=max_length, num_proc=num_proc)


class BatchPagesReleased:
    """An encoded split for random-access training whose memory-mapped pages leave memory after every batch.

    Reading a row through a memory map leaves its pages, and whole page-cache folios around them (about 2-4 MB
    per row of MOSEI-shaped frames, ten times the row), in the process's resident memory until the dataset is
    dropped: over an epoch the training process would grow by the size of the split. After each batch
    (``__getitems__``, what the ``DataLoader`` calls) the Arrow files are mapped afresh, about 3 ms, and the
    old mapping is released. Rows, order and features are the dataset's own.
    """

    def __init__(self, dataset):
        self.files = [entry["filename"] for entry in dataset.cache_files]
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        rows = self.dataset.__getitems__(indices)
        self.dataset = _map_afresh(self.files, self.dataset)
        return rows


def _map_afresh(files, like):
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(name) for name in files]
    fresh = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    spec = like.format
    if spec["type"] is None and spec["columns"] is None:
        return fresh
    return fresh.with_format(spec["type"], spec["columns"], spec["output_all_columns"], **spec["format_kwargs"])


def release_pages_per_batch(dataset):
    """``dataset`` as a :class:`BatchPagesReleased` where it is every row of its Arrow files, in order; any
    other dataset (in memory, streamed, a ``select`` of a file) as it is."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset) or not dataset.cache_files or dataset._indices is not None:
        return dataset
    # A contiguous `select` is a slice of the files' table without an index mapping: mapped afresh it would
    # be the whole files, so only a dataset with every row of its files is wrapped.
    if len(_map_afresh([entry["filename"] for entry in dataset.cache_files], dataset)) != len(dataset):
        return dataset
    return BatchPagesReleased(dataset)


def read_in_order(dataset):
    """An encoded split as a stream of its Arrow cache files, for one pass in order (an evaluation).

    A ``Dataset`` memory-maps its files, and every page a pass reads stays in the process's resident memory
    until the dataset is dropped: an evaluation would grow with the split. The stream reads the same rows
    with plain file reads (``load_dataset("arrow", ..., streaming=True)``). A split in memory, or one seen
    through an index mapping, is returned as it is."""
    from datasets import Dataset, load_dataset

    if not isinstance(dataset, Dataset) or not dataset.cache_files or dataset._indices is not None:
        return dataset
    files = [entry["filename"] for entry in dataset.cache_files]
    return load_dataset("arrow", data_files=files, split="train", streaming=True, features=dataset.features)


def make_collator(processor):
    from .collator import MMFusionDataCollator

    return MMFusionDataCollator(processor)


def resolve_split(dataset_dict, name: str, dataset_name: str = "") -> str:
    """The split of ``dataset_dict`` that ``name`` means: itself, or the split its common alias names
    (``valid`` / ``val`` / ``dev`` <-> ``validation``, ``training`` -> ``train``, ``testing`` -> ``test``)."""
    from .schema import SPLIT_ALIASES

    if name in dataset_dict:
        return name
    canonical = SPLIT_ALIASES.get(str(name).strip().lower())
    if canonical is not None:
        matches = [split for split in dataset_dict if SPLIT_ALIASES.get(str(split).lower()) == canonical]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(
        f"dataset {dataset_name!r} has no split {name!r}; it has {list(dataset_dict)} "
        "(valid / val / dev are read as validation)"
    )



def hold_out_validation(raw, data_args: DataArguments, seed: int):
    """``raw`` with a ``validation`` split drawn from its train split (``validation_split_percentage`` of the
    rows, shuffled with ``seed``), for datasets that come without one; says so in the log."""
    from datasets import DatasetDict

    train = raw[data_args.train_split]
    held = max(1, round(len(train) * data_args.validation_split_percentage / 100))
    if not 0 < data_args.validation_split_percentage < 100 or len(train) - held < 1:
        raise ValueError(
            f"dataset {data_args.dataset!r} has no validation split, and {data_args.validation_split_percentage}% of "
            f"its {len(train)} train rows cannot be held out for one; give the rows a `split` column "
            "(train / validation / test) or set --validation_split_percentage between 1 and 99"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    # Index mappings kept in memory: nothing is written into the dataset's own folder.
    parts = {name: train.select(np.sort(rows), keep_in_memory=True) for name, rows in (("train", order[held:]), ("test", order[:held]))}
    logger.warning(
        "dataset %r has no validation split: holding out %d of its %d train rows (%d%%, seed %d) for validation; "
        "--validation_split_percentage sets the share, --eval_split '' trains without one",
        data_args.dataset, held, len(train), data_args.validation_split_percentage, seed,
    )
    data_args.eval_split = DEFAULT_EVAL_SPLIT
    return DatasetDict({**raw, data_args.train_split: parts["train"], DEFAULT_EVAL_SPLIT: parts["test"]})


def data_modalities(data_args: DataArguments) -> list[str]:
    """The modality columns of the train split the run will read (the synthetic data's without building it)."""

    if data_args.dataset == "synthetic":
        return [m for m in MODALITIES if m in data_args.synthetic_modalities]
    raw = load_any_dataset(data_args.dataset, config_name=data_args.dataset_config)
    return dataset_modalities(raw[resolve_split(raw, data_args.train_split, data_args.dataset)])

