"""tunewise: prompt engineering or fine-tuning? Measure both on your task and get a recommendation."""

__version__ = "0.1.0"
