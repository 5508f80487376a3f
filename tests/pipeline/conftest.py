"""Fixtures shared by the reader tests: TensorFlow's golden cases and a value comparer."""

from __future__ import annotations

import numpy as np
import pytest

from support import TF_WRITTEN, golden_file  # noqa: F401 - TF_WRITTEN is imported from here by the tests


@pytest.fixture(scope="session")
def golden_meta() -> dict:
    """The golden file's meta block (data checksums)."""
    return golden_file()["meta"]


def golden_names(group: str) -> list[str]:
    """Names of the cases of one group (for parametrize)."""
    names = [c["name"] for c in golden_file()["cases"] if c.get("group") == group]
    assert names, f"no golden case of group {group!r}"
    return names


def check(actual, expected) -> None:
    """Assert that ``actual`` equals a golden element/value (dtype, shape and values)."""
    if "tuple" in expected:
        assert len(actual) == len(expected["tuple"])
        for a, e in zip(actual, expected["tuple"]):
            check(a, e)
        return
    if "dict" in expected:
        assert sorted(actual) == sorted(expected["dict"])
        for k, e in expected["dict"].items():
            check(actual[k], e)
        return
    if "sparse" in expected:
        sp = expected["sparse"]
        check(actual.indices, sp["indices"])
        check(actual.values, sp["values"])
        check(actual.dense_shape, sp["dense_shape"])
        return
    if expected["dtype"] == "string":
        arr = np.asarray(actual, dtype=object)
        assert list(arr.shape) == expected["shape"]
        enc = np.vectorize(lambda s: s.encode(), otypes=[object])(np.array(expected["value"], dtype=object))
        assert arr.tolist() == np.asarray(enc, dtype=object).tolist()
        return
    arr = np.asarray(actual)
    assert arr.dtype == np.dtype(expected["dtype"]), (arr.dtype, expected["dtype"])
    assert list(arr.shape) == expected["shape"]
    np.testing.assert_array_equal(arr, np.array(expected["value"], dtype=arr.dtype))


@pytest.fixture(scope="module")
def server():
    """An embedded server shared by one test module."""
    import queueserver as qs

    s = qs.Server.create_local_server()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    """A synchronous client; the default container is reset after each test."""
    import queueserver as qs

    with qs.connect(server.target, operation_timeout=10) as c:
        yield c
        c.reset([""])
