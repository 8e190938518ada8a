"""Synthetic multimodal sentiment data with a known cross-modal signal, and an offline tokenizer.

The label's sign is the *product* of two signs carried by two different modalities, so no single
modality predicts it better than chance; a third modality (when active) carries the intensity.

- text: a sentence with one polarity word (sign ``s_text``) among neutral filler words;
- audio: noisy frames where a window carries ``s_audio * pattern`` (sign ``s_audio``);
- visual: noisy frames where a window carries ``r * pattern`` (intensity ``r`` in [0, 1]).

``label = s_1 * s_2 * (1 + 2 r)`` in [-3, 3] with the signal modalities taken in the order text, audio,
visual among the active ones. With two active modalities ``r`` is fixed at 0.5 (label +-2); with one
modality the label is ``2 * s_1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POSITIVE_WORDS = ("good", "great", "wonderful", "excellent", "lovely", "happy", "brilliant", "enjoyable")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "horrible", "boring", "sad", "dreadful", "annoying")
FILLER_WORDS = (
    "the", "a", "movie", "film", "was", "is", "really", "quite", "and", "it", "story", "actor", "plot",
    "i", "think", "this", "that", "very", "scene", "music", "ending", "overall", "honestly", "just",
    "watching", "unbelievably", "characters", "direction", "somewhat", "of", "to", ",", ".",
)
# Word pieces so that a few words split into several sub-tokens (exercises word-piece alignment).
_WORD_PIECES = ("un", "##bel", "##iev", "##ably", "watch", "##ing", "character", "##s", "direct", "##ion")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class SyntheticDefaults:
    """The one set of defaults of the built-in synthetic data: ``train``, ``evaluate``, ``explain`` and the
    functions below all take theirs from ``SYNTHETIC_DEFAULTS``, so a model trained with the defaults is
    evaluated on data of the same shape."""

    sizes: tuple[int, int, int] = (256, 128, 128)
    audio_dim: int = 16
    visual_dim: int = 12
    seed: int = 0
    text_words: tuple[int, int] = (5, 14)
    audio_frames: tuple[int, int] = (6, 16)
    visual_frames: tuple[int, int] = (5, 12)


SYNTHETIC_DEFAULTS = SyntheticDefaults()


def synthetic_vocabulary() -> list[str]:
    """Vocabulary of ``build_synthetic_tokenizer`` (specials first, ``[PAD]`` = 0)."""
    words = [w for w in FILLER_WORDS if w not in ("unbelievably", "watching", "characters", "direction")]
    return list(SPECIAL_TOKENS) + words + list(POSITIVE_WORDS) + list(NEGATIVE_WORDS) + list(_WORD_PIECES)


def build_synthetic_tokenizer(model_max_length: int = 128):
    """A fast BERT-style WordPiece tokenizer over the synthetic vocabulary, built offline.

    It has offsets, special tokens ``[CLS] ... [SEP]`` and lower-casing, like ``bert-base-uncased``.
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(synthetic_vocabulary())}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _signal_frames(rng: np.random.Generator, length: int, dim: int, pattern: np.ndarray, amplitude: float) -> np.ndarray:
    x = rng.normal(0.0, 0.5, size=(length, dim)).astype(np.float32)
    window = max(2, int(length * rng.uniform(0.4, 0.8)))
    start = int(rng.integers(0, length - window + 1))
    x[start : start + window] += (amplitude * pattern).astype(np.float32)
    return x


def signal_patterns(audio_dim: int, visual_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed frame directions (RMS 1) that carry the audio sign and the visual intensity.

    They come from a fixed generator so every split and seed share the same signal directions.
    """
    rng = np.random.default_rng(1234)
    audio = rng.normal(size=audio_dim)
    visual = rng.normal(size=visual_dim)
    return audio / (np.linalg.norm(audio) / np.sqrt(audio_dim)), visual / (np.linalg.norm(visual) / np.sqrt(visual_dim))


def generate_synthetic_examples(
    num_samples: int,
    modalities: Sequence[str] = ("text", "audio", "visual"),
    audio_dim: int = SYNTHETIC_DEFAULTS.audio_dim,
    visual_dim: int = SYNTHETIC_DEFAULTS.visual_dim,
    text_words: tuple[int, int] = SYNTHETIC_DEFAULTS.text_words,
    audio_frames: tuple[int, int] = SYNTHETIC_DEFAULTS.audio_frames,
    visual_frames: tuple[int, int] = SYNTHETIC_DEFAULTS.visual_frames,
    seed: int = SYNTHETIC_DEFAULTS.seed,
) -> dict[str, list]:
    """Columns (``id``, ``text``, ``audio``, ``visual``, ``label``, ``label_class``) as Python lists.

    Inactive modalities are absent columns. ``label_class`` is 1 for a positive label, else 0.
    """
    modalities = [m for m in ("text", "audio", "visual") if m in modalities]
    if not modalities:
        raise ValueError("modalities must name at least one of 'text', 'audio', 'visual'")
    rng = np.random.default_rng(seed)
    audio_pattern, visual_pattern = signal_patterns(audio_dim, visual_dim)

    columns: dict[str, list] = {"id": [], "label": [], "label_class": []}
    for m in modalities:
        columns[m] = []
    for i in range(num_samples):
        signs = {m: float(rng.choice([-1.0, 1.0])) for m in modalities}
        intensity = float(rng.uniform(0.0, 1.0))
        if len(modalities) >= 3:
            label = signs[modalities[0]] * signs[modalities[1]] * (1.0 + 2.0 * intensity)
        elif len(modalities) == 2:
            intensity = 0.5
            label = signs[modalities[0]] * signs[modalities[1]] * 2.0
        else:
            intensity = 0.5
            label = signs[modalities[0]] * 2.0
        signal_role = {m: ("sign" if j < 2 else "intensity") for j, m in enumerate(modalities)}
        if "text" in modalities:
            n = int(rng.integers(text_words[0], text_words[1] + 1))
            words = list(rng.choice(FILLER_WORDS, size=n))
            polar = POSITIVE_WORDS if signs["text"] > 0 else NEGATIVE_WORDS
            words.insert(int(rng.integers(0, n + 1)), str(rng.choice(polar)))
            columns["text"].append(" ".join(words))
        for m, dim, span, pattern in (
            ("audio", audio_dim, audio_frames, audio_pattern),
            ("visual", visual_dim, visual_frames, visual_pattern),
        ):
            if m not in modalities:
                continue
            length = int(rng.integers(span[0], span[1] + 1))
            amplitude = signs[m] * 1.5 if signal_role[m] == "sign" else 3.0 * intensity - 1.5
            columns[m].append(_signal_frames(rng, length, dim, pattern, amplitude))
        columns["id"].append(f"synthetic-{seed}-{i:06d}")
        columns["label"].append(float(label))
        columns["label_class"].append(int(label > 0))
    return columns


def make_synthetic_dataset(
    num_samples: int | Sequence[int] = SYNTHETIC_DEFAULTS.sizes,
    modalities: Sequence[str] = ("text", "audio", "visual"),
    audio_dim: int = SYNTHETIC_DEFAULTS.audio_dim,
    visual_dim: int = SYNTHETIC_DEFAULTS.visual_dim,
    seed: int = SYNTHETIC_DEFAULTS.seed,
    **kwargs,
):
    """A ``datasets.DatasetDict`` (train / validation / test) with the canonical columns.

    ``num_samples`` is one size for all three splits or a (train, validation, test) triple. Frame
    columns are ``Array2D(shape=(None, D), dtype="float32")`` so they store variable lengths compactly.
    """
    from datasets import Array2D, Dataset, DatasetDict, Features, Value

    sizes = [num_samples] * 3 if isinstance(num_samples, int) else list(num_samples)
    if len(sizes) != 3 or any(s < 1 for s in sizes):
        raise ValueError(f"num_samples must be a positive int or a (train, validation, test) triple, got {num_samples}")
    spec = {"id": Value("string"), "label": Value("float32"), "label_class": Value("int64")}
    if "text" in modalities:
        spec["text"] = Value("string")
    if "audio" in modalities:
        spec["audio"] = Array2D(shape=(None, audio_dim), dtype="float32")
    if "visual" in modalities:
        spec["visual"] = Array2D(shape=(None, visual_dim), dtype="float32")
    features = Features(spec)
    splits = {}
    for j, (name, size) in enumerate(zip(("train", "validation", "test"), sizes)):
        cols = generate_synthetic_examples(
            size, modalities, audio_dim=audio_dim, visual_dim=visual_dim, seed=seed * 1000 + j, **kwargs
        )
        splits[name] = Dataset.from_dict({k: cols[k] for k in spec}, features=features)
    return DatasetDict(splits)


def synthetic_model_batch(columns: dict[str, list], tokenizer=None, max_length: int = 64):
    """Model inputs (padded tensors) from ``generate_synthetic_examples`` columns or a dataset slice.

    Runs ``MMFusionProcessor`` and ``MMFusionDataCollator`` (the package's one padding path) with frame
    widths taken from the data. Meant for tests and quick experiments.
    """
    from ..processing import AcousticFeatureExtractor, MMFusionProcessor, VisualFeatureExtractor
    from .collator import MMFusionDataCollator

    parts = {}
    if "text" in columns:
        parts["tokenizer"] = tokenizer or build_synthetic_tokenizer()
    if "audio" in columns:
        parts["audio_feature_extractor"] = AcousticFeatureExtractor(feature_size=np.asarray(columns["audio"][0]).shape[1])
    if "visual" in columns:
        parts["visual_feature_extractor"] = VisualFeatureExtractor(feature_size=np.asarray(columns["visual"][0]).shape[1])
    processor = MMFusionProcessor(**parts)
    rows = processor(
        text=columns.get("text"), audio=columns.get("audio"), visual=columns.get("visual"),
        padding=False, truncation=True, max_length=max_length,
    )
    names = list(rows.keys())
    features = [{name: rows[name][i] for name in names} | {"labels": columns["label"][i]} for i in range(len(columns["label"]))]
    return MMFusionDataCollator(processor, label_dtype="float")(features)
