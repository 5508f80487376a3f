"""Every non-INFO_ONLY case of golden.json group "dataset" (and the Dataset cases of the file
groups), run through pipeline.data and compared with TensorFlow 2.21's recorded output.

Each case's ``code`` is TensorFlow code; it is evaluated against a small ``tf`` stand-in that maps
the handful of TensorFlow ops the cases use onto numpy.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from pipeline.data import CsvDataset, Dataset, FixedLengthRecordDataset, RaggedTensor, TFRecordDataset, TextLineDataset
from queueserver import errors
from support import golden_file


GOLDEN = golden_file()
DATASET_CASES = [c for c in GOLDEN["cases"] if c["group"] == "dataset" and "INFO_ONLY" not in c["name"]]


def _to_number(s, out_type=np.float32):
    text = s.decode() if isinstance(s, bytes) else s
    return out_type(int(text)) if np.issubdtype(out_type, np.integer) else out_type(float(text))


def _decode_csv(records, record_defaults, **kw):
    from pipeline.csv import decode_csv

    scalar = isinstance(records, bytes)
    cols = decode_csv(np.array([records], dtype=object) if scalar else records, record_defaults, **kw)
    return tuple(np.asarray(c)[0] if scalar else c for c in cols)


tf = types.SimpleNamespace(
    int32=np.int32,
    int64=np.int64,
    float32=np.float32,
    uint8=np.uint8,
    range=lambda x: np.arange(x),
    fill=lambda dims, value: np.full([int(d) for d in dims], value),
    constant=lambda v, dtype=None: np.asarray(v, dtype=dtype)[()],
    cast=lambda v, dtype: np.asarray(v).astype(dtype)[()],
    reshape=lambda v, shape: np.reshape(v, shape),
    ragged=types.SimpleNamespace(constant=lambda rows: RaggedTensor.from_rows(rows)),
    strings=types.SimpleNamespace(to_number=_to_number),
    io=types.SimpleNamespace(
        decode_csv=_decode_csv,
        decode_raw=lambda r, dtype: np.frombuffer(r, dtype=dtype),
    ),
    data=types.SimpleNamespace(
        Dataset=Dataset,
        TextLineDataset=TextLineDataset,
        TFRecordDataset=TFRecordDataset,
        FixedLengthRecordDataset=FixedLengthRecordDataset,
        experimental=types.SimpleNamespace(CsvDataset=CsvDataset),
    ),
)


def error_class(name: str) -> type:
    """The class a golden error names: a builtin or one of queueserver.errors."""
    return {"TypeError": TypeError, "ValueError": ValueError}.get(name) or getattr(errors, name)


def check_element(expected: dict, actual, where: str) -> None:
    """Compares one element with golden.json's description of it (dtype, shape, value)."""
    if "tuple" in expected:
        assert type(actual) is tuple and len(actual) == len(expected["tuple"]), where
        for i, (e, a) in enumerate(zip(expected["tuple"], actual)):
            check_element(e, a, f"{where}[{i}]")
        return
    if "dict" in expected:
        assert isinstance(actual, dict) and set(actual) == set(expected["dict"]), where
        for k, e in expected["dict"].items():
            check_element(e, actual[k], f"{where}[{k!r}]")
        return
    if "ragged" in expected:
        assert isinstance(actual, RaggedTensor), where
        check_element(expected["ragged"], actual.to_tensor(), where + ".to_tensor()")
        check_element(expected["row_lengths"], actual.row_lengths, where + ".row_lengths")
        return
    shape = expected["shape"]
    if not shape:  # scalars are numpy scalars or bytes, never 0-d arrays
        assert not isinstance(actual, np.ndarray), f"{where}: 0-d array instead of a scalar"
    if expected["dtype"] == "string":
        if not shape:
            assert isinstance(actual, bytes), f"{where}: {actual!r} is not bytes"
            assert actual.decode() == expected["value"], where
        else:
            assert isinstance(actual, np.ndarray) and actual.dtype == object, where
            assert list(actual.shape) == shape, where
            assert [v.decode() for v in actual.reshape(-1).tolist()] == list(np.ravel(expected["value"])), where
        return
    arr = np.asarray(actual)
    assert arr.dtype.name == expected["dtype"], f"{where}: dtype {arr.dtype} != {expected['dtype']}"
    assert list(arr.shape) == shape, f"{where}: shape {arr.shape} != {shape}"
    assert arr.tolist() == expected["value"], f"{where}: {arr.tolist()} != {expected['value']}"


def run_case(case: dict, namespace: dict) -> None:
    """Builds the case's dataset, iterates it and checks elements, spec and errors."""
    result = case["result"]
    err = result.get("error")
    ns = {"Dataset": Dataset, "np": np, "tf": tf, **namespace}
    if err is not None and "elements" not in result:  # raised at construction
        with pytest.raises(error_class(err["class"])) as info:
            eval(case["code"], ns)
        assert err["core"] in str(info.value)
        return
    ds = eval(case["code"], ns)
    if "element_spec" in case:
        assert repr(ds.element_spec) == case["element_spec"]
    expected = result["elements"]
    it = ds.iterator()
    for i, e in enumerate(expected):
        check_element(e, next(it), f"{case['name']} element {i}")
    if err is not None:
        with pytest.raises(error_class(err["class"])) as info:
            next(it)
        assert err["core"] in str(info.value)
    else:
        with pytest.raises(StopIteration):
            next(it)
    # Iterating again starts over and gives the same elements.
    if err is None:
        again = list(ds)
        assert len(again) == len(expected)


@pytest.mark.parametrize("case", DATASET_CASES, ids=[c["name"] for c in DATASET_CASES])
def test_golden_dataset_case(case: dict) -> None:
    run_case(case, {})


def test_every_dataset_case_is_checked() -> None:
    names = [c["name"] for c in GOLDEN["cases"] if c["group"] == "dataset"]
    assert len(names) == 48
    assert len(DATASET_CASES) == 46  # all but the two INFO_ONLY shuffle cases


def test_info_only_shuffle_properties() -> None:
    # The INFO_ONLY cases are TensorFlow's Philox order; check the properties their notes state.
    out = [int(x) for x in Dataset.range(10).shuffle(4, seed=0)]
    assert sorted(out) == list(range(10))
    assert all(out.index(i) >= i - 3 for i in range(10))
    two = [int(x) for x in Dataset.range(5).shuffle(5, seed=1).repeat(2)]
    assert sorted(two[:5]) == sorted(two[5:]) == list(range(5))
    assert two[:5] != two[5:]
