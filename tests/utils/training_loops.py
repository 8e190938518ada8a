"""A plain optimisation loop for the model tests that train a tiny model on tensors."""


def train_epoch(model, optimizer, data, order, batch_size=32):
    """One pass of optimiser steps over ``data`` (tensors with a common first dimension) in ``order``."""
    model.train()
    for idx in order.split(batch_size):
        loss = model(**{k: v[idx] for k, v in data.items()}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
