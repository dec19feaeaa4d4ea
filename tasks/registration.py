"""Adding tasks and mixtures to seqio's registries, replacing any of the same name.

Replacing (rather than seqio's error on a duplicate) makes registration repeatable: tests
may reset the registries and call a module's `register()` again, and a gin file may import
`tasks` more than once.
"""

from __future__ import annotations

from collections.abc import Sequence

import seqio


def add_task(name: str, **task_kwargs) -> seqio.Task:
  """Registers `seqio.Task(name, **task_kwargs)`, replacing a task of the same name."""
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(name, **task_kwargs)


def add_mixture(name: str, tasks: Sequence, **mixture_kwargs) -> seqio.Mixture:
  """Registers `seqio.Mixture(name, tasks, ...)`, replacing a mixture of the same name."""
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, tasks, **mixture_kwargs)
