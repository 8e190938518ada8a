"""The hf-mmfusion command line: one module per command, each parsing its flags and calling a workflow."""
