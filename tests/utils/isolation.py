"""A preamble for fresh interpreters that must not see ``hf_mmfusion``, however it was installed.

Filtering ``sys.path`` is not enough: an editable install resolves the package through a
meta-path finder of its own. The preamble puts a finder in front of every other that refuses
the package, so a ``trust_remote_code`` checkpoint whose code still imported ``hf_mmfusion``
would fail to load.
"""

WITHOUT_PACKAGE = '''
import sys as _sys


class _RefuseHfMmfusion:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "hf_mmfusion":
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None


_sys.meta_path.insert(0, _RefuseHfMmfusion())
_sys.path = [p for p in _sys.path if p not in ("", ".")]
'''

# Appended after the script: nothing from the package may have been imported along the way.
PACKAGE_NEVER_IMPORTED = '''
assert not [m for m in _sys.modules if m.partition(".")[0] == "hf_mmfusion"], "hf_mmfusion was imported"
'''


def without_package(script: str) -> str:
    """``script`` wrapped so that it runs, and is checked to run, without ``hf_mmfusion``."""
    return WITHOUT_PACKAGE + script + PACKAGE_NEVER_IMPORTED
