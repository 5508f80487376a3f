"""The examples in pipeline.data's docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "base", "structure", "sources", "transforms", "batching", "shuffle", "parallel", "files"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module("pipeline.data" if name == "__init__" else f"pipeline.data.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
