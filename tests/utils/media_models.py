"""Tiny random transformers encoders and a speech recogniser, built and saved for the raw-media tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
           "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def save_tiny_wav2vec2(path: Path) -> Path:
    """2 layers, width 16, 320x downsampling (50 frames a second, as wav2vec2-base)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8, 8, 8), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4),
        num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
    )
    Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=True, do_normalize=True).save_pretrained(path)
    return path


def save_tiny_vit(path: Path) -> Path:
    """32 x 32 images, 8 x 8 patches, 2 layers of width 16."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32)
    ViTModel(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def save_tiny_whisper(path: Path, word: str = "hi") -> Path:
    """A 1-layer random Whisper over a byte-level vocabulary whose decoder always emits the first byte of
    ``word`` (its final norm is a constant pointing at that token), so transcripts are never empty."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for token in SPECIAL + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = WhisperTokenizerFast(
        tokenizer_object=backend, unk_token=SPECIAL[0], bos_token=SPECIAL[0], eos_token=SPECIAL[0], pad_token=SPECIAL[0]
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL[1:]})
    ids = {t: vocab[t] for t in SPECIAL}
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=32, pad_token_id=ids[SPECIAL[0]], bos_token_id=ids[SPECIAL[0]], eos_token_id=ids[SPECIAL[0]],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = WhisperForConditionalGeneration(config)
    target = tokenizer(word, add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        embeddings = model.model.decoder.embed_tokens.weight
        embeddings[target] *= 5
        model.model.decoder.layer_norm.weight.zero_()
        model.model.decoder.layer_norm.bias.copy_(embeddings[target])
    generation = model.generation_config
    generation.decoder_start_token_id = ids["<|startoftranscript|>"]
    generation.no_timestamps_token_id = ids["<|notimestamps|>"]
    generation.is_multilingual = False
    generation.alignment_heads = [[0, 0]]
    generation.max_length = 8
    generation.forced_decoder_ids = None
    generation.begin_suppress_tokens = None
    generation.suppress_tokens = []
    generation._from_model_config = False
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    (path / "tiny.json").write_text(json.dumps({"word": word}))
    return path
