"""The package's layers (README, "Package layout"): no module imports one from a layer above it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_mmfusion"

# Bottom to top. A module may import its own layer's modules and those of the layers below.
LAYERS = (
    ("utils",),
    ("models", "processing", "metrics", "registration"),
    ("data",),
    ("inference", "hub"),
    ("workflows",),
    ("commands",),
)


def layer_of(module: str) -> int | None:
    """The layer of ``hf_mmfusion.<part>...``; ``None`` for the package's own ``__init__`` (its public face)."""
    parts = module.split(".")
    if parts[0] != "hf_mmfusion":
        raise ValueError(module)
    if len(parts) == 1:
        return None
    for number, names in enumerate(LAYERS):
        if parts[1] in names:
            return number
    raise AssertionError(f"{module} belongs to no layer: add it to the README's layout and to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str | None = None) -> set[str]:
    """Every ``hf_mmfusion`` module ``path`` (module ``module``) imports, at the top or inside a function."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "hf_mmfusion"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == "hf_mmfusion":
                found.add(target)
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


def upward_imports(path: Path, module: str | None = None) -> list[str]:
    own = layer_of(module or module_name(path))
    return sorted(
        target for target in imported_modules(path, module) if layer_of(target) is None or layer_of(target) > own
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_it(path):
    upward = upward_imports(path)
    assert not upward, f"{module_name(path)} imports {upward} from above its layer"


def test_models_stay_flat():
    # save_pretrained copies a model's single-dot imports next to its code for trust_remote_code: a
    # sub-package of models/ would not travel with a checkpoint.
    assert not [p for p in (PACKAGE / "models").iterdir() if p.is_dir() and p.name != "__pycache__"]


def test_the_layer_rule_catches_upward_and_package_imports(tmp_path):
    fake = tmp_path / "modeling_fake.py"
    fake.write_text(
        "from ..workflows.training import run\n"
        "def f():\n    import hf_mmfusion\n    from .configuration_clcr import CLCRConfig\n"
    )
    assert upward_imports(fake, "hf_mmfusion.models.modeling_fake") == ["hf_mmfusion", "hf_mmfusion.workflows.training"]


# Every command module has its own `main` and, where it builds one, its `build_parser`: one per command.
COMMAND_CONVENTION = {"main", "build_parser"}


def test_no_two_modules_define_the_same_name():
    homes: dict[str, list[str]] = {}
    for path in SOURCES + [PACKAGE / "__init__.py"]:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                homes.setdefault(node.name, []).append(module_name(path))
    twice = {
        name: modules for name, modules in homes.items()
        if len(modules) > 1 and not (name in COMMAND_CONVENTION and all(".commands" in m for m in modules))
    }
    assert not twice, f"defined in more than one module: {twice}"
