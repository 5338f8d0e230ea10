"""Tasks by name: ``get_task(config.task)`` gives the object that owns the loss, the
metrics, the rating that picks the best checkpoint and what the outputs mean.

Adding a task = one file with a ``Task`` subclass, registered here.
"""

from __future__ import annotations

from typing import Union

from csra_jax.tasks.base import LEGACY_RATING_KEY, Task
from csra_jax.tasks.multi_label import MultiLabel
from csra_jax.tasks.single_label import SingleLabel

TASKS: dict[str, Task] = {t.name: t for t in (MultiLabel(), SingleLabel())}


def get_task(task: Union[str, Task]) -> Task:
    """The registered task of that name (a ``Task`` passes through)."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return TASKS[task]


__all__ = ["LEGACY_RATING_KEY", "MultiLabel", "SingleLabel", "TASKS", "Task", "get_task"]
