"""Model code. Files here import siblings with single-dot imports so checkpoints can carry them."""
