"""The examples in the compute modules' docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest


@pytest.mark.parametrize("module", ["compute.backend", "compute.models", "compute.optim", "compute.checkpoint",
                                    "compute.search", "compute.telemetry", "compute.trainer",
                                    "compute.pipeline_parallel"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
