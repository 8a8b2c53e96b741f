"""Readers for upstream checkpoints and layer descriptions (torch-conv-kan, ...)."""
