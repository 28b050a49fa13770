"""Pruning: magnitude masks and iterative magnitude pruning with rewinding (lottery tickets)."""

from .imp import global_magnitude_mask, iterative_magnitude_pruning, train

__all__ = ["global_magnitude_mask", "iterative_magnitude_pruning", "train"]
