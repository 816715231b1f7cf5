"""Prompt engineering: weights frozen, the prompt changes."""
