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
"""Array conversions shared by the processing modules, without importing torch."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_tensor_like(x: Any) -> bool:
    """An array of any framework (numpy, torch ...), recognised by its ``shape`` and ``dtype``."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as a numpy array; tensors are detached and moved to the CPU first."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
