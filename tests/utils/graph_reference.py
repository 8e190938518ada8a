"""Reference constructions the graph tests compare the models' batched graphs with."""

from __future__ import annotations

import torch


def undirected_head_graph(heads: torch.Tensor, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[T, T]`` adjacency of one sample's head indices ``heads[T]`` (token i linked with its head both ways
    when both are real), built one arc at a time; ``like`` gives dtype and device."""
    expected = torch.zeros_like(like)
    for i, h in enumerate(heads.tolist()):
        if h >= 0 and mask[i] and mask[h]:
            expected[i, h] = expected[h, i] = 1
    return expected
