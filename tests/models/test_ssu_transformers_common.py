"""transformers' own common model and config tests (``ModelTesterMixin``, ``ConfigTester``) on SSU.

Every applicable test of the mixin runs on both `SSUModel` and `SSUForSequenceClassification`. The mixin
itself skips, with these reasons:

- hardware not present here: accelerator / multi-accelerator tests (device maps, CPU and disk offload,
  model parallelism, fp16 / bf16 dispatch on an accelerator, compiled SDPA), Flash Attention 2 / 3 / 4,
  MPS, the `kernels` library, DeepSpeed embedding resizing;
- architecture features SSU does not have: RoPE (scaling, partial rotation, axial), mixture-of-experts
  router logits, sliding-window masks, grouped_mm experts, tensor-parallel plans, decoder-only and
  sequence-to-sequence language-model heads (loss shift), resizing position embeddings;
- `test_sdpa_can_dispatch_non_composite_models`: SSU is composite (text sub-config); the composite variant
  looks for a vision / audio *tower* next to a language sub-model by name, which SSU's frame encoders are not,
  so `test_text_encoder_follows_attn_implementation` below checks the dispatch instead;
- `test_torch_compile_for_training`: marked slow by transformers.
"""

from __future__ import annotations

import unittest

import torch
from transformers import BertConfig
from transformers_common import load_transformers_common_tests, register_model_names

from hf_mmfusion import SSUConfig, SSUForSequenceClassification, SSUModel

common = load_transformers_common_tests()
register_model_names("ssu", base="SSUModel", sequence_classification="SSUForSequenceClassification")


class SSUModelTester:
    def __init__(self, parent, batch_size=3, seq_length=7, audio_length=6, visual_length=5):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.audio_length = audio_length
        self.visual_length = visual_length
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 32            # text encoder width: what `hidden_states` carry
        self.num_hidden_layers = 2
        self.num_attention_heads = 2
        self.num_labels = 3
        self.audio_dim, self.visual_dim = 5, 4

    def get_config(self) -> SSUConfig:
        text = BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=37, max_position_embeddings=64,
        )
        return SSUConfig(
            text_config=text.to_dict(), hidden_size=16, graph_proj_dim=16, gat_heads=2, cross_attn_heads=2,
            audio_input_dim=self.audio_dim, visual_input_dim=self.visual_dim, num_labels=self.num_labels,
            text_graph="chain", fusion_topk=2, pos_bias_max_distance=4,
        )

    def prepare_config_and_inputs_for_common(self):
        B = self.batch_size
        input_ids = common.ids_tensor([B, self.seq_length], self.vocab_size)
        attention_mask = common.random_attention_mask([B, self.seq_length])
        audio_mask = torch.ones(B, self.audio_length, dtype=torch.long)
        audio_mask[0, -2:] = 0
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "audio_features": common.floats_tensor([B, self.audio_length, self.audio_dim]),
            "audio_attention_mask": audio_mask,
            "visual_features": common.floats_tensor([B, self.visual_length, self.visual_dim]),
            "visual_attention_mask": torch.ones(B, self.visual_length, dtype=torch.long),
        }
        return self.get_config(), inputs


class SSUModelTest(common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (SSUModel, SSUForSequenceClassification)
    test_resize_embeddings = True
    test_torch_exportable = False
    # The config has a sub-config (the text encoder's): transformers treats such models as composite.
    _is_composite = True
    # `_init_weights` covers every parameter, so the check applies whatever the file's copyright year.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = SSUModelTester(self)
        self.config_tester = common.ConfigTester(
            self, config_class=SSUConfig, has_text_modality=False, common_properties=["hidden_size"],
            hidden_size=16, gat_heads=2, cross_attn_heads=2,
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_text_encoder_follows_attn_implementation(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            for implementation in ("eager", "sdpa"):
                model = model_class._from_config(config, attn_implementation=implementation).eval()
                text = model.base_model.text_encoder.model
                self.assertEqual(text.config._attn_implementation, implementation)
                with torch.no_grad():
                    out = model(**inputs, output_attentions=implementation == "eager")
                self.assertTrue(torch.isfinite(out[0]).all())

