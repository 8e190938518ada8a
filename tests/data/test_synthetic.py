import numpy as np
import pytest

from hf_mmfusion.data.synthetic import (
    POSITIVE_WORDS,
    build_synthetic_tokenizer,
    generate_synthetic_examples,
    make_synthetic_dataset,
    signal_patterns,
)


def _text_sign(texts):
    return np.array([1.0 if any(w in t.split() for w in POSITIVE_WORDS) else -1.0 for t in texts])


def test_label_is_cross_modal_interaction():
    cols = generate_synthetic_examples(3000, seed=5)
    label = np.array(cols["label"])
    text_sign = _text_sign(cols["text"])
    audio_pattern, _ = signal_patterns(16, 12)
    # The audio sign is the sign of the strongest projection of a frame onto the signal direction.
    proj = [a @ audio_pattern / len(audio_pattern) for a in cols["audio"]]
    audio_sign = np.array([np.sign(p[np.argmax(np.abs(p))]) for p in proj])
    # No single modality's sign explains the label ...
    assert abs(np.corrcoef(text_sign, label)[0, 1]) < 0.08
    # ... but the product of the text sign and the audio sign does.
    assert np.corrcoef(text_sign * audio_sign, np.sign(label))[0, 1] > 0.8
    assert label.min() >= -3 and label.max() <= 3
    assert abs(np.corrcoef(audio_sign, label)[0, 1]) < 0.08


def test_dataset_schema_and_subsets():
    ds = make_synthetic_dataset((8, 4, 4), modalities=("audio", "visual"), audio_dim=5, visual_dim=7)
    assert set(ds) == {"train", "validation", "test"}
    assert "text" not in ds["train"].column_names
    row = ds["train"][0]
    assert np.asarray(row["audio"]).shape[1] == 5 and np.asarray(row["visual"]).shape[1] == 7
    with pytest.raises(ValueError, match="num_samples"):
        make_synthetic_dataset((8, 4))


def test_tokenizer_splits_words_into_pieces_with_offsets():
    tok = build_synthetic_tokenizer()
    enc = tok("Unbelievably good", return_offsets_mapping=True)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens[1:5] == ["un", "##bel", "##iev", "##ably"]
    assert enc["offset_mapping"][5] == (13, 17)
