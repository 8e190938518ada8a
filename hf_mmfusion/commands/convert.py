"""``hf-mmfusion convert``: MMSA / MISA pickles, CMU-MultimodalSDK files, manifests, ``.npz`` arrays and clip
folders into a canonical ``DatasetDict``."""

from __future__ import annotations

import argparse
import sys

from ..data import convert
from ..data.convert import SOURCES, run_convert
from ..data.schema import FILE_FORMATS


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _positive_int(value: str) -> int:
    # Checked while parsing, so a zero or negative size never reaches a long extraction.
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the converter's arguments to ``parser`` (used by ``hf-mmfusion convert`` and the scripts)."""
    parser.add_argument("source", choices=SOURCES, help="input format")
    parser.add_argument("inputs", nargs="+", help="input file(s); for misa `[split=]path` per split")
    parser.add_argument("-o", "--output", required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--file-format", choices=FILE_FORMATS, default="arrow",
                        help="arrow: save_to_disk (load_from_disk); parquet: data/<split>-*.parquet (load_dataset)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also push the DatasetDict to this Hub dataset repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--non-finite", choices=("keep", "zero"), default="keep",
                        help="keep NaN/inf frame values (the feature extractors clean them) or write 0 instead")
    parser.add_argument("--text-from", metavar="MANIFEST", help="add transcripts joined by id from this CSV/JSON")
    parser.add_argument("--text-from-id-column", default="id")
    parser.add_argument("--text-from-columns", type=_comma_list, default=["text"],
                        help="comma-separated transcript columns of --text-from, first non-empty wins")
    sdk = parser.add_argument_group("sdk")
    sdk.add_argument("--folds", help="the SDK standard folds file (parsed, not executed)")
    sdk.add_argument("--audio-csd", help="acoustic feature sequence")
    sdk.add_argument("--visual-csd", help="visual feature sequence")
    sdk.add_argument("--words-csd", help="word sequence (transcripts)")
    manifest = parser.add_argument_group("manifest")
    manifest.add_argument("--id-column", default="id")
    manifest.add_argument("--text-column", type=_comma_list, default=["text"],
                          help="comma-separated transcript columns, first non-empty wins; '' for no text")
    manifest.add_argument("--label-column", default="label")
    manifest.add_argument("--split-column", default="split")
    manifest.add_argument("--default-split", default="train", help="split of rows when the manifest has no split column")
    manifest.add_argument("--label-class-column", help="integer class column, stored as label_class")
    manifest.add_argument("--audio-column", help="column of .npy / .wav paths (default: `audio` when the manifest has it; '' for none)")
    manifest.add_argument("--visual-column",
                          help="column of .npy / video file paths (default: `visual` when the manifest has it; '' for none)")
    manifest.add_argument("--audio-feature-size", type=_positive_int, default=80, help="mel bins / MFCCs for .wav audio")
    manifest.add_argument("--raw-audio-features", choices=("log_mel", "mfcc"), default="log_mel")
    manifest.add_argument("--video-grid-size", type=_positive_int, default=4,
                          help="video files: mean colours of a G x G grid per frame (3 * G^2 features)")
    manifest.add_argument("--video-fps", type=_positive_int, default=10, help="video files: frames sampled per second")
    videos = parser.add_argument_group("videos (CLIPS_DIR as the input)")
    videos.add_argument("--labels", help="CSV / JSON labels file: id (clip file name), label[, split, text]")
    videos.add_argument("--audio-features", default="log_mel",
                        help="log_mel, mfcc, egemaps, compare (openSMILE), none, or an audio encoder's Hub id / directory")
    videos.add_argument("--audio-layer", type=int, default=-1, help="hidden state of the audio encoder")
    videos.add_argument("--visual-features", default="grid",
                        help="grid (mean colours), none, or a vision encoder's Hub id / directory")
    videos.add_argument("--visual-layer", type=int, default=-1, help="hidden state of the vision encoder")
    videos.add_argument("--face-crop", action="store_true", help="describe the largest face of each frame (OpenCV)")
    videos.add_argument("--asr-model", help="speech recogniser for clips without a transcript (Hub id / directory)")
    videos.add_argument("--cache-dir", help="per-clip feature cache (default: CLIPS_DIR/.hf-mmfusion-cache)")
    videos.add_argument("--batch-size", type=_positive_int, default=8, help="clips per extraction batch")
    videos.add_argument("--no-progress", action="store_true")
    return parser


class _ArgumentParser(argparse.ArgumentParser):
    """Argument errors end as one ``error:`` line, like every other user error of the command."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=prog, description=convert.__doc__.split("\n\n")[0])
    return add_convert_arguments(parser)


def main(argv: list[str] | None = None, prog: str = "python -m hf_mmfusion.commands.convert") -> int:
    """Command-line entry point; returns the exit status (2 for bad input, with the reason on stderr)."""
    args = build_parser(prog).parse_args(argv)
    try:
        run_convert(args)
    except (ValueError, ImportError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0



if __name__ == "__main__":
    sys.exit(main())
