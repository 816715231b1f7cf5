"""Tasks: the user's examples normalised once into `Example(input, target, meta)` with seeded splits."""

from tunewise.data.loading import load_task
from tunewise.data.task import Example, Task

__all__ = ["Example", "Task", "load_task"]
