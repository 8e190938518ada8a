"""Raw-media feature extraction: seconds of media processed per second, each extractor against calling the
underlying library directly on the same files in the same run.

    python benchmarks/extract.py [--audio-model ID] [--vision-model ID] [--repeats 15]

Media: the real CMU-MOSI segment in ``../shared/data/cmu_mosi/raw`` (or ``HF_MMFUSION_SHARED_DATA``).
Without model ids, small random wav2vec2 / ViT encoders are built in a temporary folder (so the figures
measure the extractor's own overhead, which matters most next to a cheap model).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from timing import paired

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio-model")
    parser.add_argument("--vision-model")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--video-fps", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    import av
    import opensmile
    from scipy.io import wavfile
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel

    from hf_mmfusion import AcousticFeatureExtractor, VisualFeatureExtractor
    from hf_mmfusion.processing.media import read_audio, resample, to_mono

    data = Path(os.environ.get("HF_MMFUSION_SHARED_DATA", ROOT.parent / "shared" / "data")) / "cmu_mosi" / "raw"
    wav_path, mp4_path = data / "03bSnISJMiM_1.wav", data / "Oz06ZWiO20M_6.mp4"
    if not wav_path.is_file():
        print(f"media not found in {data}", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="extract-bench-")
    if args.audio_model is None or args.vision_model is None:
        from media_models import save_tiny_vit, save_tiny_wav2vec2

        args.audio_model = args.audio_model or str(save_tiny_wav2vec2(Path(tmp) / "wav2vec2"))
        args.vision_model = args.vision_model or str(save_tiny_vit(Path(tmp) / "vit"))

    rate, wav = wavfile.read(wav_path)
    wav_seconds = len(wav) / rate
    with av.open(str(mp4_path)) as container:
        mp4_seconds = container.duration / 1e6
    rows = []

    # openSMILE eGeMAPS on the WAV file.
    ours = AcousticFeatureExtractor(raw_features="egemaps")
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )

    def smile_direct():
        r, x = wavfile.read(wav_path)
        return smile.process_signal((x.astype(np.float32) / 32768.0).mean(axis=1)[None], r)

    rows.append(("eGeMAPS (wav)", wav_seconds, *paired(lambda: ours(str(wav_path)), smile_direct, args.repeats)))

    # Pretrained audio encoder on the MP4's audio track.
    ours = AcousticFeatureExtractor(raw_features="pretrained", pretrained_model_name_or_path=args.audio_model)
    fe = AutoFeatureExtractor.from_pretrained(args.audio_model)
    model = AutoModel.from_pretrained(args.audio_model).eval()

    def audio_direct():
        x, r = read_audio(mp4_path)
        mono = resample(to_mono(x), r, fe.sampling_rate)
        with torch.inference_mode():
            return model(**fe(mono, sampling_rate=fe.sampling_rate, return_tensors="pt")).last_hidden_state

    rows.append(("audio encoder (mp4 track)", mp4_seconds, *paired(lambda: ours(str(mp4_path)), audio_direct, args.repeats)))

    # Pretrained vision encoder on frames of the MP4 sampled at --video-fps.
    ours = VisualFeatureExtractor(
        raw_features="pretrained", pretrained_model_name_or_path=args.vision_model, sampling_rate=args.video_fps
    )
    image_processor = AutoImageProcessor.from_pretrained(args.vision_model)
    vision = AutoModel.from_pretrained(args.vision_model).eval()
    vision = getattr(vision, "vision_model", None) or vision

    def vision_direct():
        with av.open(str(mp4_path)) as container:
            stream = container.streams.video[0]
            step = float(stream.average_rate) / args.video_fps
            frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream))
                      if i % max(1, round(step)) == 0]
        with torch.inference_mode():
            out = []
            for s in range(0, len(frames), 32):
                batch = image_processor(images=frames[s : s + 32], return_tensors="pt")
                out.append(vision(**batch).last_hidden_state[:, 0])
        return out

    rows.append(("vision encoder (mp4 frames)", mp4_seconds,
                 *paired(lambda: ours(str(mp4_path)), vision_direct, args.repeats)))

    # Overhead is the median of interleaved per-round ratios (timing.paired), steadier than best/best.
    print(f"{'extractor':30s} {'media s/s (ours)':>17s} {'media s/s (direct)':>19s} {'overhead':>9s}")
    for name, seconds, t_ours, t_direct, ratio in rows:
        print(f"{name:30s} {seconds / t_ours:17.1f} {seconds / t_direct:19.1f} {100 * (ratio - 1):8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
