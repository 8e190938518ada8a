"""What ``import hf_mmfusion`` registers with transformers, and what the import costs.

The scripts run in fresh interpreters, each importing in a different order: a registry that transformers
loads after the package is filled by a hook, one it loaded before is filled at once.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import collections  # noqa: E402
import collections.abc  # noqa: E402

import pytest  # noqa: E402
from workflow_helpers import run_python, tiny_checkpoint  # noqa: E402

from hf_mmfusion.registration import LazyClass  # noqa: E402

# Every registry, used the way a user does. `PATH` is a saved tiny CLCR checkpoint with its processor.
USE_EVERY_REGISTRY = """
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoProcessor, pipeline
assert type(AutoConfig.for_model("ssu")).__name__ == "SSUConfig"
model = AutoModelForSequenceClassification.from_pretrained(PATH)
assert type(model).__name__ == "CLCRForSequenceClassification", type(model)
# After its first use the entry is the class itself.
assert AutoModelForSequenceClassification._model_mapping[type(model.config)] is type(model)
assert type(AutoModel.from_config(model.config)).__name__ == "CLCRModel"
processor = AutoProcessor.from_pretrained(PATH)
assert type(processor).__name__ == "MMFusionProcessor", type(processor)
# The package's own classes, not copies of the code saved beside the weights.
assert type(model).__module__.startswith("hf_mmfusion.") and type(processor).__module__.startswith("hf_mmfusion.")
assert type(processor.audio_feature_extractor).__name__ == "AcousticFeatureExtractor"
pipe = pipeline("multimodal-sentiment", model=PATH)
assert type(pipe).__name__ == "MultimodalSentimentPipeline"
assert set(pipe({"text": "a fine film"})) >= {"score", "polarity"}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("clcr")
    tiny_checkpoint(path, "clcr")
    return path


def run(script: str, checkpoint) -> None:
    result = run_python(["-c", f"PATH = {str(checkpoint)!r}\n" + script])
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "first",
    [
        "import hf_mmfusion",
        # transformers' registries are loaded before the package: its hooks run at once.
        "from transformers import AutoModel, AutoProcessor, pipeline\nimport hf_mmfusion",
        # A submodule first: the package registers before the submodule runs.
        "from hf_mmfusion.models.modeling_ssu import SSUModel",
        "from hf_mmfusion.inference.pipeline import MultimodalSentimentPipeline",
    ],
    ids=["package-first", "transformers-first", "modeling-module-first", "pipeline-module-first"],
)
def test_every_registry_resolves_whatever_is_imported_first(first, checkpoint):
    run(first + "\n" + USE_EVERY_REGISTRY, checkpoint)


def test_every_public_name_has_a_module():
    import hf_mmfusion

    assert sorted(hf_mmfusion.__all__) == sorted(hf_mmfusion._PUBLIC)


def test_the_import_loads_no_modeling_code(checkpoint):
    run(
        """
import sys
import hf_mmfusion
from transformers import AutoModel
from hf_mmfusion.registration import LazyClass
heavy = [m for m in ("transformers.modeling_utils", "transformers.processing_utils", "transformers.pipelines",
                     "torch_geometric", "spacy", "datasets", "evaluate", "matplotlib")
         if m in sys.modules]
assert not heavy, f"import hf_mmfusion loaded {heavy}"
entry = AutoModel._model_mapping[hf_mmfusion.CLCRConfig]
assert isinstance(entry, LazyClass) and entry.config_class is hf_mmfusion.CLCRConfig
assert "transformers.modeling_utils" not in sys.modules, "reading an entry's known attributes imported it"
""",
        checkpoint,
    )


def test_a_failed_first_import_registers_on_the_next(checkpoint):
    # Ctrl-C or a broken dependency during the first import must not leave the registries empty for good.
    run(
        """
import sys
sys.modules["transformers"] = None
first_failed = False
try:
    import hf_mmfusion
except ImportError:
    first_failed = True
assert first_failed, "the first import should have failed"
del sys.modules["transformers"]
import hf_mmfusion
from transformers import AutoConfig
assert type(AutoConfig.for_model("clcr")).__name__ == "CLCRConfig"
""",
        checkpoint,
    )


def test_submodules_are_attributes_of_the_package(checkpoint):
    run(
        """
import hf_mmfusion
assert hf_mmfusion.processing.DependencyParser.__name__ == "DependencyParser"
assert hf_mmfusion.metrics.load_metric is hf_mmfusion.load_metric
assert not hasattr(hf_mmfusion, "no_such_module")
""",
        checkpoint,
    )


def test_lazy_entry_imports_on_first_use_and_registers_the_class():
    registered = []
    entry = LazyClass("collections", "OrderedDict", registered.append, config_class=dict)
    assert entry.__name__ == "OrderedDict" and entry.__module__ == "collections" and entry.config_class is dict
    assert "OrderedDict" in repr(entry) and registered == []
    # copy, pickle and introspection look up dunders: they must not import anything.
    assert not hasattr(entry, "__wrapped__") and registered == []
    assert entry(a=1) == collections.OrderedDict(a=1)
    assert registered == [collections.OrderedDict]
    assert entry.fromkeys("ab") == collections.OrderedDict.fromkeys("ab")
    # Registered once: a stale reference must not overwrite a later registration of the user's.
    assert registered == [collections.OrderedDict]


def test_lazy_entry_behaves_as_its_class_in_class_statements_and_type_checks():
    # transformers' own code subclasses registry values (`class CopyClass(MODEL_MAPPING[config_class])`).
    entry = LazyClass("collections", "OrderedDict", lambda cls: None)

    class Sub(entry, collections.abc.Sized):
        """An OrderedDict that is also registered as Sized."""

    assert Sub.__mro__[1] is collections.OrderedDict
    assert isinstance(Sub(), entry) and issubclass(Sub, entry)
    assert not isinstance({}, entry) and not issubclass(dict, entry)


def test_lazy_entry_for_a_missing_module_fails_when_used_not_when_registered():
    entry = LazyClass("hf_mmfusion.no_such_module", "Model", lambda cls: None)
    assert entry.__name__ == "Model"
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        entry.from_pretrained("anything")
