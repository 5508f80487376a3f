"""Conditional accumulators on the pure core."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from queueserver.core import ConditionalAccumulator, ResourceManager
from queueserver.errors import CancelledError, DeadlineExceededError, InvalidArgumentError


async def test_take_waits_for_enough_fresh_gradients_and_averages():
    acc = ConditionalAccumulator("w", [2])
    take = acc.take_grad(2)
    assert acc.apply_grad(np.array([1., 2.]), local_step=0)
    assert not take.done()
    assert acc.apply_grad(np.array([3., 4.]), local_step=0)
    assert (await take).tolist() == [2., 3.]
    assert acc.global_step == 1 and acc.num_accumulated() == 0


async def test_stale_gradients_are_dropped():
    acc = ConditionalAccumulator("w", [])
    acc.set_global_step(5)
    assert not acc.apply_grad(np.array(1.0), local_step=4)
    assert acc.apply_grad(np.array(3.0), local_step=5)
    assert (await acc.take_grad(1)) == 3.0
    assert not acc.apply_grad(np.array(1.0), local_step=5)  # the step advanced to 6
    assert acc.stats["dropped_stale"] == 2


async def test_take_timeout_and_reset_cancel():
    acc = ConditionalAccumulator("w", [1])
    with pytest.raises(DeadlineExceededError, match="have 0"):
        await acc.take_grad(1, timeout=0.01)
    rm = ResourceManager()
    acc = rm.accumulator("g", [3], container="c")
    waiting = acc.take_grad(1)
    rm.reset(["c"])
    with pytest.raises(CancelledError):
        await waiting


def test_shape_and_spec_checks():
    rm = ResourceManager()
    acc = rm.accumulator("g", [3])
    with pytest.raises(InvalidArgumentError, match=r"gradient shape \[2\], expected \[3\]"):
        acc.apply_grad(np.zeros(2), 0)
    with pytest.raises(InvalidArgumentError, match="float32\\[3\\] but float32\\[4\\]"):
        rm.accumulator("g", [4])
    with pytest.raises(InvalidArgumentError, match="must be floating"):
        ConditionalAccumulator("i", [1], np.int32)


async def test_a_timed_out_taker_lets_the_next_one_be_served():
    acc = ConditionalAccumulator("a", [1])
    greedy = acc.take_grad(5, timeout=0.05)
    modest = acc.take_grad(1)
    acc.apply_grad(np.ones(1), 0)
    with pytest.raises(DeadlineExceededError):
        await greedy
    assert (await asyncio.wait_for(modest, 1.0)).tolist() == [1.0]


# ---------------------------------------------------------------- narrow wire dtypes
def _bf16(values) -> np.ndarray:
    from queueserver.core.wire_dtypes import float32_to_bfloat16_bits

    return float32_to_bfloat16_bits(np.asarray(values, np.float32))


async def test_bfloat16_gradients_are_widened_exactly_and_averaged_in_float32():
    from queueserver.core.wire_dtypes import bfloat16_bits_to_float32

    rng = np.random.default_rng(0)
    grads = [_bf16(rng.standard_normal(1000) * 1e-3) for _ in range(3)]
    acc = ConditionalAccumulator("w", [1000], np.float32)
    take = acc.take_grad(3)
    for g in grads:
        assert g.dtype == np.uint16  # half the bytes of the float32 gradient
        assert acc.apply_grad(g, local_step=0, wire_dtype="bfloat16")
    average = await take
    wide = [bfloat16_bits_to_float32(g) for g in grads]
    expected = ((wide[0] + wide[1]) + wide[2]) / np.float32(3)  # float32 all the way, in arrival order
    assert average.dtype == np.float32
    np.testing.assert_array_equal(average, expected)
    assert acc.describe()["dtype"] == "float32"


async def test_a_float16_accumulator_sums_in_float32_and_answers_in_float16():
    acc = ConditionalAccumulator("h", [1], np.float16)
    assert acc.sum_dtype == np.float32
    # In float16, 1 + 2**-11 is a tie that rounds back to 1: a float16 sum would lose both small terms.
    for g in (1.0, 2.0 ** -11, 2.0 ** -11):
        acc.apply_grad(np.float16([g]), local_step=0)
    average = await acc.take_grad(3)
    assert average.dtype == np.float16 and acc.describe()["dtype"] == "float16"
    assert average[0] == np.float16((1 + 2.0 ** -10) / 3) != np.float16(1 / 3)


async def test_a_stale_bfloat16_gradient_is_dropped_but_a_malformed_one_is_refused():
    acc = ConditionalAccumulator("w", [2])
    acc.set_global_step(3)
    assert not acc.apply_grad(_bf16([1, 2]), local_step=2, wire_dtype="bfloat16")
    assert acc.stats["dropped_stale"] == 1 and acc.num_accumulated() == 0
    # The dtype is checked before the staleness: a wrong one fails even for an old step.
    with pytest.raises(InvalidArgumentError, match="ConditionalAccumulator 'w': a bfloat16 value travels as uint16"):
        acc.apply_grad(np.float32([1, 2]), local_step=2, wire_dtype="bfloat16")
    with pytest.raises(InvalidArgumentError, match="ConditionalAccumulator 'w': unknown wire dtype 'bf16'"):
        acc.apply_grad(_bf16([1, 2]), local_step=3, wire_dtype="bf16")
    with pytest.raises(InvalidArgumentError, match="ConditionalAccumulator 'w': gradient must be numeric"):
        acc.apply_grad(np.array([True, False]), local_step=3)
    assert acc.num_accumulated() == 0 and acc.stats["applied"] == 0


# ---------------------------------------------------------------- TensorFlow 2.21 audit
async def test_set_global_step_moves_the_step_backwards_too():
    # TensorFlow logs a warning and sets it: a gradient of step 3 is fresh again after 5, then 1.
    acc = ConditionalAccumulator("w", [1])
    acc.set_global_step(5)
    acc.set_global_step(1)
    assert acc.global_step == 1
    assert acc.apply_grad(np.ones(1), local_step=3)
    assert acc.num_accumulated() == 1


def test_only_half_float_and_double_accumulators_exist_and_complex_gradients_are_refused():
    for dtype in (np.float16, np.float32, np.float64):
        assert ConditionalAccumulator("f", [1], dtype).dtype == dtype
    for dtype, name in ((np.complex64, "complex64"), (np.complex128, "complex128"), (np.int32, "int32"),
                        (np.bool_, "bool"), (np.longdouble, np.dtype(np.longdouble).name)):
        with pytest.raises(InvalidArgumentError, match=f"ConditionalAccumulator 'z': dtype must be floating.*got {name}"):
            ConditionalAccumulator("z", [1], dtype)
    with pytest.raises(InvalidArgumentError, match="dtype must be floating"):
        ResourceManager().accumulator("z", [1], dtype="complex64")
    acc = ConditionalAccumulator("f", [1])
    with pytest.raises(InvalidArgumentError, match="gradient must be numeric .*got complex64"):
        acc.apply_grad(np.array([1 + 2j], np.complex64), 0)  # never its real part
    assert acc.num_accumulated() == 0


def test_an_accumulator_needs_a_fully_defined_shape_and_says_so():
    for shape, shown in ((None, "None"), ([None, 2], r"\[\?,2\]"), ([-1], r"\[\?\]")):
        with pytest.raises(InvalidArgumentError, match=f"ConditionalAccumulator 'n': needs a fully defined shape, got {shown}"):
            ConditionalAccumulator("n", shape)
    with pytest.raises(InvalidArgumentError, match="bad dimension"):
        ConditionalAccumulator("n", ["x"])
    assert ConditionalAccumulator("n", 3).shape == (3,)
