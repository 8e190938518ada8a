"""Real features from raw media: openSMILE, pretrained audio / vision encoders, face crops, ASR, convert
videos, predict and the pipeline from a video file alone, width checks."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from media_models import save_tiny_vit, save_tiny_wav2vec2, save_tiny_whisper
from workflow_helpers import TINY_OVERRIDES, one_torch_thread  # noqa: F401

import hf_mmfusion  # noqa: F401
from hf_mmfusion import AcousticFeatureExtractor, MMFusionProcessor, VisualFeatureExtractor

WAV = "03bSnISJMiM_1.wav"
MP4 = "Oz06ZWiO20M_6.mp4"


@pytest.fixture
def raw(shared_data):
    path = shared_data / "cmu_mosi" / "raw"
    if not (path / WAV).is_file() or not (path / MP4).is_file():
        pytest.skip(f"raw MOSI media not found in {path}")
    return path


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return {
        "wav2vec2": str(save_tiny_wav2vec2(root / "wav2vec2")),
        "vit": str(save_tiny_vit(root / "vit")),
        "whisper": str(save_tiny_whisper(root / "whisper")),
    }


def _opensmile_direct(path, feature_set):
    import opensmile
    from scipy.io import wavfile

    rate, wav = wavfile.read(path)
    mono = (wav.astype(np.float64) / 32768.0).mean(axis=1)
    smile = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    return smile.process_signal(mono.astype(np.float32)[None, :], rate)


# ------------------------------------------------------------------------------------------ audio
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_egemaps_equals_a_direct_opensmile_call_at_100_frames_a_second(raw):
    opensmile = pytest.importorskip("opensmile", reason="openSMILE descriptors (the audio extra)")
    from scipy.io import wavfile

    rate, wav = wavfile.read(raw / WAV)
    duration = len(wav) / rate
    extractor = AcousticFeatureExtractor(raw_features="egemaps")
    assert extractor.feature_size == 25 and extractor.frames_per_second == 100.0
    out = extractor(str(raw / WAV), return_tensors="np")
    frames = out["audio_features"][0]
    direct = _opensmile_direct(raw / WAV, opensmile.FeatureSet.eGeMAPSv02)
    np.testing.assert_allclose(frames, direct.to_numpy(dtype=np.float32), rtol=1e-6, atol=1e-6)
    starts = direct.index.get_level_values("start").total_seconds().to_numpy()
    np.testing.assert_allclose(np.diff(starts), 0.01, atol=1e-9)                   # a frame every 10 ms
    assert abs(frames.shape[0] / 100.0 - duration) < 0.05
    compare = AcousticFeatureExtractor(raw_features="compare")(str(raw / WAV), return_tensors="np")["audio_features"]
    assert compare.shape[-1] == 65 and abs(compare.shape[1] - frames.shape[0]) <= 1
    with pytest.raises(ValueError, match="gives 25 descriptors a frame, but feature_size=30"):
        AcousticFeatureExtractor(raw_features="egemaps", feature_size=30)


def test_audio_track_of_the_mp4_decodes_to_the_clip_duration(raw):
    av = pytest.importorskip("av", reason="PyAV decodes video (the video extra)")
    from hf_mmfusion.processing.media import read_audio

    wav, rate = read_audio(raw / MP4)
    with av.open(str(raw / MP4)) as container:
        stream = container.streams.audio[0]
        track = float(stream.duration * stream.time_base)
        clip = container.duration / 1e6
    assert rate == 44100 and wav.ndim == 2 and wav.shape[1] == 2
    assert abs(wav.shape[0] / rate - track) < 0.01
    assert abs(wav.shape[0] / rate - clip) < 0.1
    # The same track is an audio input of the extractor: log-mel frames over the clip at 100 a second.
    frames = AcousticFeatureExtractor(feature_size=40)(str(raw / MP4), return_tensors="np")["audio_features"][0]
    assert abs(frames.shape[0] / 100.0 - track) < 0.02


def test_a_video_without_audio_track_is_a_clear_error(tmp_path):
    av = pytest.importorskip("av", reason="PyAV decodes video (the video extra)")
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ValueError, match="has no audio track"):
        AcousticFeatureExtractor(feature_size=40)(str(path))


def test_pretrained_audio_encoder_frames_layers_and_batching(raw, encoders):
    from transformers import AutoFeatureExtractor, AutoModel

    extractor = AcousticFeatureExtractor(raw_features="pretrained", pretrained_model_name_or_path=encoders["wav2vec2"])
    assert extractor.feature_size == 16
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    short = wave[:8000]
    batch = extractor([wave, short], sampling_rate=16000, return_tensors="np")
    assert batch["audio_features"].shape == (2, 49, 16)                              # 50 frames a second
    assert batch["audio_attention_mask"].sum(1).tolist() == [49, 24]
    # Equal to calling the library directly, one waveform at a time (padding is cut off).
    fe = AutoFeatureExtractor.from_pretrained(encoders["wav2vec2"])
    model = AutoModel.from_pretrained(encoders["wav2vec2"]).eval()
    with torch.inference_mode():
        for i, w in enumerate([wave, short]):
            direct = model(**fe(w, sampling_rate=16000, return_tensors="pt")).last_hidden_state[0].numpy()
            np.testing.assert_allclose(batch["audio_features"][i, : len(direct)], direct, atol=1e-4)
    first = AcousticFeatureExtractor(
        raw_features="pretrained", pretrained_model_name_or_path=encoders["wav2vec2"], pretrained_layer=1
    )(wave, sampling_rate=16000, return_tensors="np")["audio_features"]
    assert not np.allclose(first, batch["audio_features"][:1])
    # A stereo file at another rate goes through the same path, resampled to the encoder's rate.
    clip = extractor(str(raw / MP4), return_tensors="np")["audio_features"]
    assert clip.shape[-1] == 16 and abs(clip.shape[1] / 50.0 - 7.44) < 0.05
    with pytest.raises(ValueError, match="pretrained_layer=9 is out of range"):
        AcousticFeatureExtractor(
            raw_features="pretrained", pretrained_model_name_or_path=encoders["wav2vec2"], pretrained_layer=9
        )(wave, sampling_rate=16000)


def test_whisper_encoder_frames_are_trimmed_to_the_audio(encoders):
    extractor = AcousticFeatureExtractor(raw_features="pretrained", pretrained_model_name_or_path=encoders["whisper"])
    assert extractor.feature_size == 16
    wave = np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 0.1
    frames = extractor(wave, sampling_rate=16000, return_tensors="np")["audio_features"]
    assert frames.shape == (1, 100, 16)                                              # 2 s at 50 frames a second


# ------------------------------------------------------------------------------------------ visual
def test_pretrained_vision_encoder_embeds_each_sampled_frame(encoders):
    from transformers import AutoImageProcessor, AutoModel

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 40, 48, 3), dtype=np.uint8)
    extractor = VisualFeatureExtractor(
        raw_features="pretrained", pretrained_model_name_or_path=encoders["vit"], sampling_rate=2, pretrained_batch_size=4
    )
    assert extractor.feature_size == 16
    out = extractor(pixels, video_fps=6, return_tensors="np")                        # 2 s at 2 frames a second
    assert out["visual_features"].shape == (1, 4, 16)
    processor = AutoImageProcessor.from_pretrained(encoders["vit"])
    model = AutoModel.from_pretrained(encoders["vit"]).eval()
    with torch.inference_mode():
        direct = model(**processor(images=list(pixels[[0, 3, 6, 9]]), return_tensors="pt")).last_hidden_state[:, 0]
    np.testing.assert_allclose(out["visual_features"][0], direct.numpy(), atol=1e-5)
    mean = VisualFeatureExtractor(
        raw_features="pretrained", pretrained_model_name_or_path=encoders["vit"], sampling_rate=2, pretrained_pooling="mean"
    )(pixels, video_fps=6, return_tensors="np")["visual_features"]
    assert not np.allclose(mean, out["visual_features"])
    saved = VisualFeatureExtractor(**{k: v for k, v in extractor.to_dict().items() if k != "feature_extractor_type"})
    np.testing.assert_array_equal(saved(pixels, video_fps=6, return_tensors="np")["visual_features"], out["visual_features"])


def test_face_crop_masks_frames_without_a_face(raw, encoders):
    pytest.importorskip("cv2", reason="OpenCV face detection (the face extra)")
    extractor = VisualFeatureExtractor(
        raw_features="pretrained", pretrained_model_name_or_path=encoders["vit"], sampling_rate=4, face_crop=True
    )
    frames = extractor.video_to_frames(raw / MP4)
    assert frames.shape == (30, 16)                                                  # 7.5 s at 4 a second
    found = ~np.isnan(frames).all(axis=1)
    assert found.sum() >= 20                                                         # a talking face, mostly frontal
    # Blank frames between real ones have no face: masked as missing, never zeros with mask 1.
    pixels = np.zeros((4, 64, 64, 3), np.uint8)
    blank = extractor.video_to_frames(pixels, video_fps=4)
    assert np.isnan(blank).all()
    mixed = np.concatenate([frames[:3], blank[:2], frames[3:5]])
    out = extractor([mixed], return_tensors="np")
    expected_mask = np.concatenate([found[:3], [False, False], found[3:5]]).astype(np.int64)
    assert out["visual_attention_mask"][0].tolist() == expected_mask.tolist()
    assert (out["visual_features"][0][expected_mask == 0] == 0).all()
    # Rows kept ragged (Dataset.map) and padded later keep the missing frames masked.
    ragged = extractor([mixed, frames[:2]], padding=False)
    padded = extractor.pad(dict(ragged), return_tensors="np")
    assert padded["visual_attention_mask"][0].tolist() == expected_mask.tolist()
    assert padded["visual_attention_mask"][1].tolist() == [int(found[0]), int(found[1]), 0, 0, 0, 0, 0]


def test_grid_default_from_video_files_is_unchanged(raw):
    frames = VisualFeatureExtractor(feature_size=48, sampling_rate=10).video_to_frames(raw / MP4)
    assert frames.shape == (75, 48) and np.isfinite(frames).all() and (0 <= frames).all() and (frames <= 1).all()


# ------------------------------------------------------------------------------------------ ASR + processor
def test_asr_transcribes_with_word_timestamps_and_fills_the_text(raw, encoders, tmp_path):
    from transformers import AutoProcessor, BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "h", "##h"]))
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    processor = MMFusionProcessor(
        tokenizer=tokenizer,
        audio_feature_extractor=AcousticFeatureExtractor(raw_features="pretrained", pretrained_model_name_or_path=encoders["wav2vec2"]),
        asr_model=encoders["whisper"],
    )
    result = processor.transcribe(str(raw / MP4))[0]
    assert result["text"].startswith("h") and result["chunks"]
    assert all(len(c["timestamp"]) == 2 and c["timestamp"][0] <= c["timestamp"][1] for c in result["chunks"])
    out = processor(video=str(raw / MP4), return_tensors="pt")
    assert {"input_ids", "attention_mask", "audio_features", "audio_attention_mask"} <= set(out)
    assert out["input_ids"][0].tolist() == tokenizer(result["text"]).input_ids
    processor.save_pretrained(tmp_path / "proc")
    config = json.loads((tmp_path / "proc" / "processor_config.json").read_text())
    assert config["asr_model"] == encoders["whisper"] and config["asr_timestamps"] == "word"
    assert config["audio_feature_extractor"]["raw_features"] == "pretrained"
    assert config["audio_feature_extractor"]["pretrained_model_name_or_path"] == encoders["wav2vec2"]
    assert config["audio_feature_extractor"]["pretrained_layer"] == -1
    assert config["audio_feature_extractor"]["feature_size"] == 16
    again = AutoProcessor.from_pretrained(tmp_path / "proc")
    reloaded = again(video=[str(raw / MP4)], return_tensors="pt")
    for key in out:
        assert torch.equal(out[key], reloaded[key])


# ------------------------------------------------------------------------------------------ convert, train, predict
def _av_model(audio_dim, visual_dim):
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_model

    torch.manual_seed(0)
    args = ModelArguments(model_type="clcr", hidden_size=16, config_overrides=TINY_OVERRIDES["clcr"])
    return build_model(args, ("audio", "visual"), audio_dim, visual_dim, 1)


@pytest.fixture
def clips(raw, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(raw / MP4, folder / "a.mp4")
    shutil.copy(raw / MP4, folder / "b.mp4")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(256))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label,split\na,1.5,train\nb,-0.5,validation\nbroken,0.0,train\n")
    return folder, labels


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_convert_videos_reports_the_corrupt_clip_and_caches(clips, encoders, tmp_path, capsys):
    pytest.importorskip("opensmile", reason="openSMILE descriptors (the audio extra)")
    from hf_mmfusion.commands import main
    from hf_mmfusion.data.schema import load_converted

    folder, labels = clips
    argv = ["convert", "videos", str(folder), "--labels", str(labels), "--audio-features", "egemaps",
            "--visual-features", encoders["vit"], "--video-fps", "2", "--cache-dir", str(tmp_path / "cache"),
            "--no-progress", "-o", str(tmp_path / "out")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "1 clip(s) failed" in err and "broken" in err
    data = load_converted(tmp_path / "out")
    assert sorted(data) == ["train", "validation"] and data["train"]["id"] == ["a"] and data["validation"]["id"] == ["b"]
    train = data["train"].with_format("numpy")[0]
    assert train["audio"].shape[1] == 25 and train["visual"].shape == (15, 16)
    report = json.loads(next((tmp_path / "cache").glob("*/report.json")).read_text())
    assert report["converted"] == 2 and [f["id"] for f in report["failed"]] == ["broken"]
    # A re-run reads the finished clips from the cache: the encoder is never called.
    import hf_mmfusion.processing.feature_extraction_visual as fem

    def refuse(*args, **kwargs):
        raise AssertionError("cached clips were extracted again")

    original = fem.encode_images
    fem.encode_images = refuse
    try:
        assert main(argv[:-1] + [str(tmp_path / "out2")]) == 0
    finally:
        fem.encode_images = original
    again = load_converted(tmp_path / "out2")
    np.testing.assert_array_equal(again["train"].with_format("numpy")[0]["visual"], train["visual"])
    # The dataset records its extractors, and training builds its processor from them, so a model trained on
    # it computes the same features from a raw video.
    from hf_mmfusion.data.schema import read_feature_extractors
    from hf_mmfusion.workflows.training.arguments import ModelArguments
    from hf_mmfusion.workflows.training.builders import build_processor

    recorded = read_feature_extractors(tmp_path / "out")
    assert recorded["audio"]["raw_features"] == "egemaps" and recorded["visual"]["raw_features"] == "pretrained"
    processor = build_processor(ModelArguments(model_type="clcr"), ("audio", "visual"), 25, 16, 64, recorded)
    assert processor.audio_feature_extractor.raw_features == "egemaps"
    assert processor.visual_feature_extractor.pretrained_model_name_or_path == encoders["vit"]
    grid = VisualFeatureExtractor(feature_size=12, video_grid_size=2).to_dict()               # 12 per frame
    with pytest.raises(ValueError, match="16 wide"):
        build_processor(ModelArguments(model_type="clcr"), ("visual",), 25, 16, 64, {"visual": grid})


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_predict_and_pipeline_from_the_video_alone(raw, encoders, tmp_path, capsys):
    pytest.importorskip("opensmile", reason="openSMILE descriptors (the audio extra)")
    from transformers import pipeline

    from hf_mmfusion.commands.predict import main as predict_main

    processor = MMFusionProcessor(
        audio_feature_extractor=AcousticFeatureExtractor(raw_features="egemaps"),
        visual_feature_extractor=VisualFeatureExtractor(
            raw_features="pretrained", pretrained_model_name_or_path=encoders["vit"], sampling_rate=2
        ),
    )
    inputs = processor(video=[str(raw / MP4)], return_tensors="pt")
    processor.audio_feature_extractor.fit_normalization([inputs["audio_features"][0].numpy()])
    inputs = processor(video=[str(raw / MP4)], return_tensors="pt")
    model = _av_model(25, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(**inputs, labels=torch.tensor([1.0])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    with torch.inference_mode():
        expected = float(model(**inputs).logits.reshape(-1)[0])
    assert predict_main([str(tmp_path / "model"), "--video", str(raw / MP4), "--no_progress"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["score"] == pytest.approx(expected, abs=1e-4)
    assert line["id"] == "Oz06ZWiO20M_6"                                             # the clip's name
    assert json.loads((tmp_path / "model" / "processor_config.json").read_text())["audio_feature_extractor"][
        "feature_source"] == "raw"
    pipe = pipeline("multimodal-sentiment", model=str(tmp_path / "model"))
    assert pipe({"video": str(raw / MP4)})["score"] == pytest.approx(expected, abs=1e-4)


def test_a_checkpoint_never_gets_features_of_another_width(tmp_path, encoders):
    from hf_mmfusion.workflows.prediction import predict_records

    model = _av_model(25, 16)
    processor = MMFusionProcessor(
        audio_feature_extractor=AcousticFeatureExtractor(raw_features="pretrained", pretrained_model_name_or_path=encoders["wav2vec2"]),
        visual_feature_extractor=VisualFeatureExtractor(feature_size=16),
    )
    with pytest.raises(ValueError, match=r"gives 16-wide frames \(pretrained frames of .*wav2vec2.*audio_input_dim=25"):
        predict_records(model, processor, [{"audio": np.zeros((4, 16), np.float32)}], progress=False)
    processor.check_model_widths(_av_model(16, 16).config)                           # matching widths pass
