"""Exercises of notebook 01 (the contrastive loss). Filled in with the notebook."""

__all__: list[str] = []
