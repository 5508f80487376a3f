"""The array backend: device names, GPU absence, soft placement, and the transfer dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from compute import backend as be
from compute.backend import (
    DevicePlacementError, bfloat16_bits_to_float32, decode_transfer, encode_transfer,
    float32_to_bfloat16_bits, get_backend, parse_device,
)

needs_no_gpu = pytest.mark.skipif(be.cupy_available(), reason="a usable GPU is present: the no-GPU paths cannot run")
needs_gpu = pytest.mark.skipif(not be.cupy_available(), reason="needs CuPy and a CUDA device (pip install 'queueserver[gpu]')")


@pytest.mark.parametrize("name, expected", [
    ("cpu", ("cpu", 0)), ("gpu", ("gpu", 0)), ("gpu:1", ("gpu", 1)), ("/gpu:0", ("gpu", 0)),
    ("/device:GPU:2", ("gpu", 2)), ("CPU:0", ("cpu", 0)),
])
def test_parse_device(name, expected):
    assert parse_device(name) == expected


@pytest.mark.parametrize("name", ["tpu:0", "gpu:x", "", "gpu:0:1"])
def test_parse_device_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="unknown device"):
        parse_device(name)


def test_cpu_backend_round_trip_without_copy():
    b = get_backend("cpu")
    assert b.xp is np and not b.is_gpu and b.name == "cpu"
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    dev = b.to_device(host)
    assert dev is host or np.shares_memory(dev, host)  # the CPU path never copies
    np.testing.assert_array_equal(b.to_host(dev), host)
    assert b.to_device(host, np.float64).dtype == np.float64


@needs_no_gpu
def test_gpu_without_one_fails_clearly():
    with pytest.raises(DevicePlacementError, match=r"gpu:0 was requested.*--soft-placement"):
        get_backend("gpu:0")


@needs_no_gpu
def test_soft_placement_falls_back_to_cpu_with_a_warning():
    with pytest.warns(RuntimeWarning, match="soft placement: running on the CPU"):
        b = get_backend("gpu:0", soft_placement=True)
    assert b.kind == "cpu" and b.xp is np


def test_cuda_visible_devices_hides_gpus(monkeypatch):
    # With every device hidden, even a machine with GPUs has none to give.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    problem = be._gpu_problem(0)
    if be._import_cupy() is None:
        assert "CuPy is not installed" in problem
    else:  # pragma: no cover - needs CuPy (CUDA reads the variable at initialisation)
        assert problem is None or "CUDA_VISIBLE_DEVICES" in problem


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_memory_fraction_is_validated(fraction):
    with pytest.raises(ValueError, match="gpu-memory-fraction"):
        get_backend("cpu", gpu_memory_fraction=fraction)


@needs_gpu
def test_gpu_backend_pinned_round_trip_and_memory_cap():  # pragma: no cover - GPU only
    b = get_backend("gpu:0", gpu_memory_fraction=0.4)
    host = np.random.default_rng(0).standard_normal((64, 33)).astype(np.float32)
    dev = b.to_device(host)
    assert type(dev).__module__.startswith("cupy")
    np.testing.assert_array_equal(b.to_host(dev * 1), host)
    assert b.xp.get_default_memory_pool().get_limit() > 0


# ---------------------------------------------------------------- bfloat16 and float16
def _bits(u32: int) -> np.ndarray:
    return np.array([u32], np.uint32).view(np.float32)


@pytest.mark.parametrize("f32_bits, bf16_bits", [
    (0x3F800000, 0x3F80),  # 1.0, exact
    (0x3F808000, 0x3F80),  # halfway, kept bit even: rounds down
    (0x3F818000, 0x3F82),  # halfway, kept bit odd: rounds up to even
    (0x3F808001, 0x3F81),  # just above halfway: up
    (0x3F807FFF, 0x3F80),  # just below halfway: down
    (0x7F7FFFFF, 0x7F80),  # the largest float32 rounds to infinity
    (0xFF800000, 0xFF80),  # -inf stays -inf
    (0x80000000, 0x8000),  # -0 keeps its sign
])
def test_bfloat16_round_to_nearest_even(f32_bits, bf16_bits):
    assert int(float32_to_bfloat16_bits(_bits(f32_bits))[0]) == bf16_bits


def test_bfloat16_keeps_nans_as_nans():
    # 0x7FFFFFFF would carry into the sign bit without the NaN rule.
    x = np.concatenate([_bits(0x7FFFFFFF), _bits(0xFFC00001), np.float32([np.nan])])
    out = bfloat16_bits_to_float32(float32_to_bfloat16_bits(x))
    assert np.isnan(out).all()
    assert np.signbit(out).tolist() == [False, True, False]


def test_one_bfloat16_implementation_for_clients_and_server():
    from queueserver.core import wire_dtypes

    # The trainer's encoding and the server's widening must agree bit for bit: they are the same code.
    assert be.float32_to_bfloat16_bits is wire_dtypes.float32_to_bfloat16_bits
    assert be.bfloat16_bits_to_float32 is wire_dtypes.bfloat16_bits_to_float32
    assert [be.transfer_marker(d) for d in be.TRANSFER_DTYPES] == [None, "bfloat16", None]


def test_bfloat16_round_trip_error_and_bytes():
    x = np.random.default_rng(1).standard_normal(10_000).astype(np.float32) * 100
    wire = encode_transfer(x, "bfloat16")
    assert wire.dtype == np.uint16 and wire.nbytes == x.nbytes // 2
    back = decode_transfer(wire, "bfloat16")
    assert back.dtype == np.float32
    rel = np.abs(back - x) / np.abs(x)
    assert rel.max() <= 2.0 ** -8  # 8 significant bits, rounded to nearest: half an ulp
    # Exactly representable values come back unchanged.
    exact = np.float32([0.5, -2.0, 3.140625, 0.0])
    np.testing.assert_array_equal(decode_transfer(encode_transfer(exact, "bfloat16"), "bfloat16"), exact)


def test_float16_and_float32_transfer():
    x = np.float32([1.0, 0.1, -3.5])
    assert encode_transfer(x, "float32") is x or np.shares_memory(encode_transfer(x, "float32"), x)
    h = encode_transfer(x, "float16")
    assert h.dtype == np.float16 and h.nbytes == x.nbytes // 2
    np.testing.assert_allclose(decode_transfer(h, "float16"), x, rtol=1e-3)
    with pytest.raises(ValueError, match="transfer dtype"):
        encode_transfer(x, "int8")


@needs_gpu
def test_gpu_model_step_matches_numpy():  # pragma: no cover - GPU only
    from compute.models import parse_model

    b = get_backend("gpu:0")
    model = parse_model("mlp:20,32,32,4")
    params = model.init_params(seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 20)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    loss, grads = model.loss_and_grads(params, x, y)
    dev_params = {k: b.to_device(v) for k, v in params.items()}
    dev_loss, dev_grads = model.loss_and_grads(dev_params, b.to_device(x), b.to_device(y))
    assert all(type(g).__module__.startswith("cupy") for g in dev_grads.values())
    assert dev_loss == pytest.approx(loss, rel=1e-5)
    for k in grads:
        np.testing.assert_allclose(b.to_host(dev_grads[k]), grads[k], rtol=1e-4, atol=1e-5, err_msg=k)


@needs_gpu
def test_gpu_copies_from_several_threads_do_not_share_the_staging_buffer():  # pragma: no cover - GPU only
    from concurrent.futures import ThreadPoolExecutor

    b = get_backend("gpu:0")
    arrays = [np.full((256, 1024), i, np.float32) for i in range(32)]
    with ThreadPoolExecutor(4) as pool:
        copies = list(pool.map(b.to_device, arrays))
    for i, dev in enumerate(copies):
        assert float(b.xp.min(dev)) == float(b.xp.max(dev)) == i


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_encode_transfer_leaves_an_encoded_array_alone(dtype):
    x = np.float32([1.0, 3.14159, -2.5e-3])
    wire = encode_transfer(x, dtype)
    again = encode_transfer(wire, dtype)
    assert again is wire  # not read as numbers and encoded twice
    np.testing.assert_array_equal(decode_transfer(again, dtype), decode_transfer(wire, dtype))


@needs_gpu
def test_gpu_arrays_are_encoded_on_the_gpu_bit_for_bit():  # pragma: no cover - GPU only
    b = get_backend("gpu:0")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(100_000).astype(np.float32)
    x[:4] = [np.nan, -np.nan, np.inf, -np.inf]
    x[4:8] = np.uint32([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x00008000]).view(np.float32)  # ties, overflow
    dev = encode_transfer(b.to_device(x), "bfloat16")  # our rounding: the same bits, NaNs included
    assert type(dev).__module__.startswith("cupy")
    np.testing.assert_array_equal(b.to_host(dev), encode_transfer(x, "bfloat16"))
    with np.errstate(over="ignore"):  # float16: the hardware's cast (NaN payloads may differ, NaNs stay NaN)
        np.testing.assert_array_equal(b.to_host(encode_transfer(b.to_device(x), "float16")), x.astype(np.float16))
