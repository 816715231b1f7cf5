"""Tasks: the user's examples normalised once into `Example(input, target, meta)` with seeded splits."""

from tunewise.data.task import Example, Task
from tunewise.data.loading import load_task

__all__ = ["Example", "Task", "load_task"]
