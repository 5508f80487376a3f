"""Resource containers and variables on the pure core."""

from __future__ import annotations

import numpy as np
import pytest

from queueserver.core import ResourceManager
from queueserver.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError


def test_same_name_same_spec_is_the_same_queue_and_other_spec_fails(golden):
    tf_error = golden["fifo_shared_name_two_sessions_same_server"]["result"]["steps"][2]["error"]
    rm = ResourceManager()
    q = rm.queue("fifo", "shared_q", capacity=10, dtypes=[np.float32], shapes=[[]])
    assert rm.queue("fifo", "shared_q", capacity=10, dtypes=[np.float32], shapes=[[]]) is q
    with pytest.raises(InvalidArgumentError) as info:
        rm.queue("fifo", "shared_q", capacity=99, dtypes=[np.float32], shapes=[[]])
    assert str(info.value) == tf_error["core"]
    with pytest.raises(InvalidArgumentError, match="component types"):
        rm.queue("fifo", "shared_q", capacity=10, dtypes=[np.int32], shapes=[[]])
    with pytest.raises(InvalidArgumentError, match="is a FIFOQueue, not a RandomShuffleQueue"):
        rm.queue("random_shuffle", "shared_q", capacity=10, dtypes=[np.float32], shapes=[[]])
    with pytest.raises(InvalidArgumentError, match="not a Variable"):
        rm.variable("shared_q", 0.0)


def test_containers_separate_names_and_reset_frees_one_container():
    rm = ResourceManager()
    a = rm.variable("x", np.float32(0), container="")
    b = rm.variable("x", np.float32(0), container="my_problem_1")
    assert a is not b
    assert rm.reset(["my_problem_1"]) == 1
    with pytest.raises(NotFoundError, match="my_problem_1"):
        rm.get("my_problem_1", "x")
    assert rm.get("", "x") is a
    with pytest.raises(NotFoundError):
        b.read()


def test_variable_lifecycle_and_atomic_updates():
    rm = ResourceManager()
    x = rm.variable("x", np.zeros(3, np.float32))
    with pytest.raises(FailedPreconditionError, match="uninitialized"):
        x.read()
    with pytest.raises(FailedPreconditionError):
        x.assign_add(np.ones(3, np.float32))
    x.initialize()
    assert x.assign_add(np.ones(3, np.float32)).tolist() == [1, 1, 1]
    assert x.assign_sub(np.full(3, 0.5, np.float32)).tolist() == [0.5, 0.5, 0.5]
    assert x.assign(np.arange(3, dtype=np.float32)).tolist() == [0, 1, 2]
    snapshot = x.read()
    x.assign_add(np.ones(3, np.float32))
    assert snapshot.tolist() == [0, 1, 2]  # reads are snapshots
    with pytest.raises(InvalidArgumentError, match="expected shape"):
        x.assign(np.zeros(4, np.float32))
    with pytest.raises(InvalidArgumentError, match="expected float32, got complex128"):
        x.assign(np.zeros(3, np.complex128))
    with pytest.raises(InvalidArgumentError, match="is float32\\[3\\] but int64\\[\\] was requested"):
        rm.variable("x", np.int64(1))


def test_variable_updates_accept_marked_bfloat16_and_refuse_it_where_it_cannot_go():
    from queueserver.core.wire_dtypes import float32_to_bfloat16_bits

    rm = ResourceManager()
    x = rm.variable("x", np.zeros(3, np.float32))
    x.initialize()
    delta = float32_to_bfloat16_bits(np.float32([1.5, -0.25, 3.140625]))
    assert x.assign_add(delta, wire_dtype="bfloat16").tolist() == [1.5, -0.25, 3.140625]
    assert x.assign_sub(delta, wire_dtype="bfloat16").tolist() == [0, 0, 0]
    assert x.assign(delta, wire_dtype="bfloat16").dtype == np.float32
    with pytest.raises(InvalidArgumentError, match="Variable 'x' assign_add: a bfloat16 value travels as uint16"):
        x.assign_add(np.ones(3, np.float32), wire_dtype="bfloat16")
    counter = rm.variable("n", np.zeros(3, np.int64))
    counter.initialize()
    with pytest.raises(InvalidArgumentError, match="Variable 'n' assign_add: expected int64, got bfloat16"):
        counter.assign_add(delta, wire_dtype="bfloat16")
    bits = rm.variable("w/bfloat16", np.zeros(3, np.uint16))  # an encoded copy: unmarked uint16 is itself
    assert bits.assign(delta).tolist() == delta.tolist()


def test_lower_layer_exceptions_map_into_the_one_error_tree():
    from queueserver import errors

    assert isinstance(errors.from_exception(ConnectionRefusedError(111, "refused"), "connect"), errors.UnavailableError)
    assert isinstance(errors.from_exception(TimeoutError(), "connect"), errors.DeadlineExceededError)
    assert isinstance(errors.from_exception(FileNotFoundError(2, "no such file", "x.csv"), "read"), errors.NotFoundError)
    assert isinstance(errors.from_exception(KeyError("k"), "parse"), errors.InternalError)
    same = errors.NotFoundError("already ours")
    assert errors.from_exception(same, "anything") is same
    assert errors.from_exception(ConnectionRefusedError(111, "refused"), "cannot connect to h:1").message \
        == "cannot connect to h:1: [Errno 111] refused"
    assert errors.error_name(errors.OutOfRangeError.code) == "OutOfRangeError" and errors.error_name(999) == "QueueServerError"


def test_specs_read_tensorflows_spellings_of_one_component():
    # FIFOQueue(10, tf.float32, shapes=(3, 2)), shapes=() and names="f": one component's shape and name.
    from queueserver.core.specs import ComponentSpec

    assert ComponentSpec([np.float32], (3, 2)).shapes == ((3, 2),)
    assert ComponentSpec([np.float32], ()).shapes == ((),)
    assert ComponentSpec([np.float32], [None]).shapes == ((None,),)
    assert ComponentSpec([np.float32, np.int32], [(), [2]]).shapes == ((), (2,))
    assert ComponentSpec([np.float32], names="f").names == ("f",)


def test_a_shared_shuffle_queue_reopened_without_a_seed_accepts_its_seed():
    # TensorFlow's seed-0 rule (testSharedQueueSameSessionGraphSeedNone); another seed is refused.
    rm = ResourceManager()
    q = rm.queue("random_shuffle", "s", capacity=10, dtypes=[np.float32], seed=98765432)
    assert rm.queue("random_shuffle", "s", capacity=10, dtypes=[np.float32]) is q
    with pytest.raises(InvalidArgumentError, match=r"random seeds \(98765432\) but requested seeds were \(1\)"):
        rm.queue("random_shuffle", "s", capacity=10, dtypes=[np.float32], seed=1)


def test_an_initial_value_is_converted_by_the_rule_of_every_update_never_truncated():
    # TensorFlow: TypeError "Expected int32, but got 1.5 of type 'float'"; nothing is created.
    rm = ResourceManager()
    for name, value, dtype, message in (("a", 1.5, np.int32, r"Expected int32, got float64 \(1.5\)"),
                                        ("b", [0.7, -1.9], np.int32, "Expected int32, got float64"),
                                        ("c", 1 + 2j, np.float32, "Expected float32, got complex128"),
                                        ("d", np.array([1.0]), np.int64, "Expected int64, got float64")):
        with pytest.raises(InvalidArgumentError, match=f"Type mismatch in Variable '{name}' initial value. {message}"):
            rm.variable(name, value, dtype=dtype)
        assert not list(rm.items())
    with pytest.raises(InvalidArgumentError, match="Variable 'u' initial value: value 300 is out of range for uint8"):
        rm.variable("u", 300, dtype=np.uint8)
    assert rm.variable("u", 255, dtype=np.uint8).dtype == np.uint8
    # What TensorFlow converts still converts: within a kind or to a wider one.
    assert rm.variable("i", 3, dtype=np.float32).initialize().tolist() == 3.0
    assert rm.variable("j", np.int64(3), dtype=np.int32).dtype == np.int32
    assert rm.variable("k", True, dtype=np.int32).initialize().tolist() == 1
    assert rm.variable("h", 1.5, dtype=np.float16).initialize().tolist() == 1.5
    assert rm.variable("z", 1.5, dtype=np.complex64).dtype == np.complex64


def test_arithmetic_on_a_bool_variable_is_refused_and_changes_nothing():
    rm = ResourceManager()
    b = rm.variable("b", np.array([True, False]))
    b.initialize()
    for op in ("assign_add", "assign_sub"):
        with pytest.raises(InvalidArgumentError, match=f"Variable 'b' {op}: not defined for a bool variable"):
            getattr(b, op)(np.array([True, True]))
    assert b.read().tolist() == [True, False] and b.stats["updates"] == 1  # the initialize only
    assert b.assign(np.array([False, True])).tolist() == [False, True]
    b.scatter_update(np.array([0]), np.array([True]))
    assert b.read().tolist() == [True, True]
