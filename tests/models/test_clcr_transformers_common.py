"""transformers' own common model and config tests (``ModelTesterMixin``, ``ConfigTester``) on CLCR."""

from __future__ import annotations

import unittest

import torch
from transformers import BertConfig
from transformers_common import load_transformers_common_tests, register_model_names

from hf_mmfusion import CLCRConfig, CLCRForSequenceClassification, CLCRModel

common = load_transformers_common_tests()
register_model_names("clcr", base="CLCRModel", sequence_classification="CLCRForSequenceClassification")

# Tests this file skips itself, each with the reason: none; every applicable common test runs.
NOT_APPLICABLE = {}

# Tests the mixin skips on its own (its conditions, read from the model and the machine), and why they do
# not apply here. tests/utils/skip_reports.py fails a mixin skip missing here and a listed test that runs.
SKIPPED_BY_THE_MIXIN = {
    # Need hardware or libraries this CPU test run does not have.
    "test_can_load_with_device_context_manager": "needs an accelerator",
    "test_can_load_with_global_device_set": "needs an accelerator",
    "test_cpu_offload": "needs an accelerator",
    "test_disk_offload_bin": "needs an accelerator",
    "test_disk_offload_safetensors": "needs an accelerator",
    "test_flex_attention_with_grads": "needs an accelerator",
    "test_sdpa_can_compile_dynamic": "needs an accelerator",
    "test_sdpa_can_dispatch_on_flash": "needs an accelerator",
    "test_model_parallelism": "needs several accelerators",
    "test_flash_attn_*": "needs flash-attention 2/3/4, the kernels library or MPS; CLCR declares sdpa and eager only",
    "test_kernels_can_load_without_crashing": "needs the kernels library",
    "test_kernels_can_run_without_crashing_*": "needs an accelerator (transformers 5.25+)",
    "test_resize_*_with_deepspeed*": "needs deepspeed",
    "test_torch_compile_for_training": "marked slow by transformers (RUN_SLOW)",
    # Features CLCR does not have.
    "test_can_load_from_already_mapped_keys": "no checkpoint-key conversion mapping (no legacy checkpoints)",
    "test_reverse_loading_mapping": "no checkpoint-key conversion mapping (no legacy checkpoints)",
    "test_causal_lm_loss_honors_shift_labels": "no causal language-modelling head",
    "test_bc_cache_name_forward": "no key/value cache: the models do not generate",
    "test_encoder_decoder_loss_no_double_shift": "not an encoder-decoder",
    "test_eager_matches_batched_and_grouped_inference_*": "no mixture-of-experts grouped matmul",
    "test_keep_in_fp32_modules": "no _keep_in_fp32_modules: half-precision banks are mapped in float32 inside",
    "test_keep_in_fp32_modules_exist": "no _keep_in_fp32_modules (see above)",
    "test_keep_in_fp32_modules_strict_also_hardcode_fp32": "no _keep_in_fp32_modules_strict (see above)",
    "test_model_rope_*": "no rotary position embeddings (text uses BERT's absolute positions)",
    "test_vision_axial_rope": "no rotary position embeddings",
    "test_moe_models_record_router_logits": "no sparse experts",
    "test_output_router_logits_from_config": "no sparse experts",
    "test_resize_position_vector_embeddings": "the fusion positions are sinusoidal and length-free",
    "test_sliding_window_mask": "no sliding-window attention",
    "test_tied_head_has_a_tp_plan_entry": "no tensor-parallel plan",
    "test_tp_plan_matches_params": "no tensor-parallel plan",
    # The model is composite (a text sub-model), so the non-composite variant is skipped and the composite
    # attention tests run instead; the composite dispatch test looks for a vision/audio tower sub-model.
    "test_sdpa_can_dispatch_non_composite_models": "CLCR is composite; the composite variants run",
    "test_sdpa_can_dispatch_composite_models": "the audio/visual encoders are TCNs, not attention towers",
}


class CLCRModelTester:
    def __init__(self, parent, batch_size=3, seq_length=7, audio_length=6, visual_length=5):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.audio_length = audio_length
        self.visual_length = visual_length
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 32            # text encoder width: what `hidden_states` and `attentions` carry
        self.num_hidden_layers = 2
        self.num_attention_heads = 2
        self.num_labels = 3
        self.audio_dim, self.visual_dim = 5, 4
        # `output_hidden_states` adds two fields: the text encoder's `hidden_states` and `level_hidden_states`.
        self.num_hidden_states_types = 2

    def get_config(self) -> CLCRConfig:
        text = BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads, intermediate_size=37, max_position_embeddings=64,
        )
        return CLCRConfig(
            text_config=text.to_dict(), hidden_size=16, shared_dim=8, exchange_heads=2,
            tcn_dilations=[1, 2, 4], intra_pair_segments=4, audio_input_dim=self.audio_dim,
            visual_input_dim=self.visual_dim, num_labels=self.num_labels,
        )

    def prepare_config_and_inputs_for_common(self):
        B = self.batch_size
        audio_mask = torch.ones(B, self.audio_length, dtype=torch.long)
        audio_mask[0, -2:] = 0
        inputs = {
            "input_ids": common.ids_tensor([B, self.seq_length], self.vocab_size),
            "attention_mask": common.random_attention_mask([B, self.seq_length]),
            "audio_features": common.floats_tensor([B, self.audio_length, self.audio_dim]),
            "audio_attention_mask": audio_mask,
            "visual_features": common.floats_tensor([B, self.visual_length, self.visual_dim]),
            "visual_attention_mask": torch.ones(B, self.visual_length, dtype=torch.long),
        }
        return self.get_config(), inputs


class CLCRModelTest(common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CLCRModel, CLCRForSequenceClassification)
    # The text-only common tests (eager vs sdpa, ...) must see the audio and visual streams too.
    additional_model_inputs = ["audio_features", "audio_attention_mask", "visual_features", "visual_attention_mask"]
    test_resize_embeddings = True
    test_torch_exportable = False
    # Our files carry no copyright year; run the `_init_weights` completeness check anyway.
    test_can_init_all_missing_weights_before_2023 = True
    _is_composite = True

    def setUp(self):
        self.model_tester = CLCRModelTester(self)
        self.config_tester = common.ConfigTester(
            self, config_class=CLCRConfig, has_text_modality=False, common_properties=["hidden_size"],
            hidden_size=16, shared_dim=8, exchange_heads=2,
        )

    def test_config(self):
        self.config_tester.run_common_tests()


for _name, _reason in NOT_APPLICABLE.items():
    setattr(CLCRModelTest, _name, unittest.skip(_reason)(lambda self: None))
