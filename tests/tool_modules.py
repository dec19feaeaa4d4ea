"""Importing a script of tools/ (not a package) as a module for its tests."""

import contextlib
import importlib.util
import os
import sys

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")


@contextlib.contextmanager
def tool_module(name: str):
  """tools/<name>.py as the module `name`, registered in sys.modules while in use (its
  dataclasses look their module up by name)."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
    yield module
  finally:
    sys.modules.pop(name, None)
