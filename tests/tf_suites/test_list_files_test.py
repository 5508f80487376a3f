"""Ported from TensorFlow's ``tensorflow/python/data/kernel_tests/list_files_test.py``: the expected
values and error classes are TensorFlow's, the code is ours."""

from __future__ import annotations

import os

import pytest

from pipeline.data import Dataset
from queueserver import errors


@pytest.fixture()
def tmp_dir(tmp_path):
    return str(tmp_path)


def _touch(tmp_dir, filenames):
    for name in filenames:
        open(os.path.join(tmp_dir, name), "a").close()


def _names(tmp_dir, filenames):
    return [os.path.join(tmp_dir, f).encode() for f in filenames]


@pytest.mark.parametrize("case", ["testEmptyDirectory", "tesEmptyDirectoryInitializer"])
def test_empty_directory(tmp_dir, case):  # ListFilesTest.testEmptyDirectory / tesEmptyDirectoryInitializer
    ds = Dataset.list_files(os.path.join(tmp_dir, "*"))
    with pytest.raises(errors.InvalidArgumentError, match="No files matched pattern"):
        ds.iterator().get_next()


@pytest.mark.parametrize("case", ["testSimpleDirectory", "testSimpleDirectoryInitializer"])
def test_simple_directory(tmp_dir, case):  # ListFilesTest.testSimpleDirectory / testSimpleDirectoryInitializer
    _touch(tmp_dir, ["a", "b", "c"])
    assert sorted(Dataset.list_files(os.path.join(tmp_dir, "*"))) == _names(tmp_dir, ["a", "b", "c"])


def test_simple_directory_not_shuffled(tmp_dir):  # ListFilesTest.testSimpleDirectoryNotShuffled
    _touch(tmp_dir, ["b", "c", "a"])
    assert list(Dataset.list_files(os.path.join(tmp_dir, "*"), shuffle=False)) == _names(tmp_dir, ["a", "b", "c"])


def test_fixed_seed_results_in_repeatable_order(tmp_dir):  # ListFilesTest.testFixedSeedResultsInRepeatableOrder
    _touch(tmp_dir, ["a", "b", "c"])
    runs = [list(Dataset.list_files(os.path.join(tmp_dir, "*"), shuffle=True, seed=37)) for _ in range(3)]
    assert sorted(runs[0]) == _names(tmp_dir, ["a", "b", "c"])
    assert runs[0] == runs[1] == runs[2]


def test_file_suffixes(tmp_dir):  # ListFilesTest.testFileSuffixes
    _touch(tmp_dir, ["a.txt", "b.py", "c.py", "d.pyc"])
    assert sorted(Dataset.list_files(os.path.join(tmp_dir, "*.py"))) == _names(tmp_dir, ["b.py", "c.py"])


def test_file_middles(tmp_dir):  # ListFilesTest.testFileMiddles
    _touch(tmp_dir, ["a.txt", "b.py", "c.pyc"])
    assert sorted(Dataset.list_files(os.path.join(tmp_dir, "*.py*"))) == _names(tmp_dir, ["b.py", "c.pyc"])


def test_no_shuffle(tmp_dir):  # ListFilesTest.testNoShuffle
    _touch(tmp_dir, ["a", "b", "c"])
    it = Dataset.list_files(os.path.join(tmp_dir, "*"), shuffle=False).repeat(2).iterator()
    actual = [it.get_next() for _ in range(6)]
    with pytest.raises(errors.OutOfRangeError):
        it.get_next()
    assert sorted(actual) == sorted(_names(tmp_dir, ["a", "b", "c"]) * 2)
    assert actual[:3] == actual[3:]


@pytest.mark.parametrize("case", ["testMultiplePatternsAsList", "testMultiplePatternsAsTensor"])
def test_multiple_patterns(tmp_dir, case):  # ListFilesTest.testMultiplePatternsAsList / ...AsTensor
    _touch(tmp_dir, ["a.txt", "b.py", "c.py", "d.pyc"])
    patterns = [os.path.join(tmp_dir, p) for p in ["*.py", "*.txt"]]
    if case.endswith("Tensor"):
        import numpy as np

        patterns = np.array(patterns, dtype=object)
    assert sorted(Dataset.list_files(patterns)) == _names(tmp_dir, ["a.txt", "b.py", "c.py"])


@pytest.mark.skip(reason="global_shuffle (random access over the whole input) does not exist here")
@pytest.mark.parametrize("case", ["ListFilesGlobalShuffleTest.test", "ListFilesGlobalShuffleTest.testShuffleNotSupported",
                                  "ListFilesGlobalShuffleCheckpointTest.test"])
def test_global_shuffle(case):
    pass
