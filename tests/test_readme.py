"""Every Python snippet of the README runs as pasted (in a fresh interpreter, in an empty directory).

Before: the Data API snippet used ``np`` and a ``queue`` it never made and read a file it never
wrote; the cluster snippet connected to tasks nobody had started; ``CsvFormat`` did not import
from ``pipeline``. The only change made here: the cluster snippet's fixed ports become free ones,
so that the test cannot collide with anything else on the machine.

The snippets run are those of the sections named in ``SECTIONS`` (the quick tour: the API, the
cluster, reading data); a section added later with a snippet meant to run as pasted joins the list.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from support import REPO, free_ports

SECTIONS = ("## Using it", "### Clusters", "### Reading data")


def _snippets() -> list[tuple[str, str]]:
    """(the heading above it, the code) of each Python snippet of the README."""
    out, heading = [], ""
    for block in re.split(r"(```python\n.*?```)", (REPO / "README.md").read_text(), flags=re.S):
        if block.startswith("```python"):
            out.append((heading, block[len("```python\n"):-3]))
        else:
            headings = re.findall(r"^#+ .*$", block, re.M)
            heading = headings[-1] if headings else heading
    return out


SNIPPETS = [code for heading, code in _snippets() if heading.startswith(SECTIONS)]


def test_the_readme_has_its_snippets():
    assert len(SNIPPETS) == len(SECTIONS)  # one in each section


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_a_readme_snippet_runs_as_pasted(index, tmp_path):
    code = SNIPPETS[index]
    fixed = sorted(set(re.findall(r"127\.0\.0\.1:(22\d\d)\b", code)))
    for port, free in zip(fixed, free_ports(len(fixed))):
        code = code.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, f"README snippet {index} failed:\n{code}\n{out.stderr}"
