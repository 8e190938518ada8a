"""Plain optimisation loops for the model tests that train a tiny model on tensors."""

import torch


def train_epoch(model, optimizer, data, order, batch_size=32):
    """One pass of optimiser steps over ``data`` (tensors with a common first dimension) in ``order``."""
    model.train()
    for idx in order.split(batch_size):
        loss = model(**{k: v[idx] for k, v in data.items()}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def trained_on(model, batch, steps=3, lr=1e-2):
    """``model`` after ``steps`` AdamW steps on one ``batch`` (so no weight is still at its initial value), in
    eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval()
