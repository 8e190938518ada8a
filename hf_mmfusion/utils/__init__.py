"""Standard-library-level helpers every layer may use: file ownership and output folders, Hub-or-local sources,
CPU threads and memory, quieter library output. Nothing here imports the rest of the package."""
