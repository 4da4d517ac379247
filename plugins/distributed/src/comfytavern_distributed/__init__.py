"""Distributed execution for ComfyTavern: runs on a Redis Stream, workers, cross-instance events."""
