"""Workflows: training, evaluation, prediction, explanation, reproduction and the demo, as library functions."""
