"""The stages an inference request passes, in order (see run.py)."""
