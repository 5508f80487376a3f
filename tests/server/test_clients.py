"""Both clients against a real ``queueserver serve`` process on loopback: the seed's queue examples."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import time

import numpy as np
import pytest

import queueserver as qs
from queueserver.deliveries import Deliveries
from support import REPO, ServerProcess


@pytest.fixture
def client(server_process, request):
    with qs.connect(server_process.target, operation_timeout=5.0) as c:
        yield c
        c.reset([""])


def test_fifo_of_pairs_enqueue_and_dequeue_many_blocks(client):
    q = client.fifo_queue("q", capacity=10, dtypes=[np.float32], shapes=[[2]])
    q.enqueue([1., 2.])
    q.enqueue([3., 4.])
    q.enqueue_many([[5., 6.]])
    assert q.dequeue_many(2).tolist() == [[1., 2.], [3., 4.]]
    assert q.dequeue_many(1).tolist() == [[5., 6.]]
    with pytest.raises(qs.DeadlineExceededError):
        q.dequeue_many(2, timeout=0.1)  # "blocked waiting for another instance"


def test_queue_of_tuples(client):
    q = client.fifo_queue("pairs", capacity=10, dtypes=[np.int32, np.float32], shapes=[[], [3, 2]])
    q.enqueue((10, [[1., 2.], [3., 4.], [5., 6.]]))
    q.enqueue((11, [[2., 4.], [6., 8.], [0., 2.]]))
    q.enqueue((12, [[3., 6.], [9., 2.], [5., 8.]]))
    a, b = q.dequeue()
    assert a == 10 and b.tolist() == [[1., 2.], [3., 4.], [5., 6.]]
    a, b = q.dequeue_many(2)
    assert a.tolist() == [11, 12] and b.shape == (2, 3, 2) and b.dtype == np.float32


def test_close_semantics_and_error_classes(client):
    q = client.fifo_queue("c", capacity=10, dtypes=[np.float32], shapes=[[]])
    q.enqueue_many([1., 2., 3.])
    q.close()
    assert q.is_closed()
    with pytest.raises(qs.CancelledError, match="is closed"):
        q.enqueue(4.)
    assert q.dequeue_many(2).tolist() == [1., 2.]
    with pytest.raises(qs.OutOfRangeError, match="requested 2, current size 1"):
        q.dequeue_many(2)
    assert q.dequeue_up_to(2).tolist() == [3.]
    with pytest.raises(qs.OutOfRangeError):
        q.dequeue_up_to(2)


def test_random_shuffle_and_padding_fifo(client):
    rq = client.random_shuffle_queue("rq", capacity=50, min_after_dequeue=10, dtypes=[np.float32], shapes=[()])
    rq.enqueue_many(np.arange(22, dtype=np.float32))
    first = rq.dequeue_many(5)
    second = rq.dequeue_many(5)
    with pytest.raises(qs.DeadlineExceededError):
        rq.dequeue_many(5, timeout=0.1)  # 12 - 5 < 10
    assert rq.size() == 12
    rq.close()
    rest = rq.dequeue_up_to(50)
    assert sorted(np.concatenate([first, second, rest]).tolist()) == list(range(22))

    pq = client.padding_fifo_queue("pq", capacity=50, dtypes=[np.float32], shapes=[(None, None)])
    pq.enqueue([[1., 2.], [3., 4.], [5., 6.]])
    pq.enqueue([[1.]])
    pq.enqueue([[7., 8., 9., 5.], [6., 7., 8., 9.]])
    out = pq.dequeue_many(3)
    assert out.shape == (3, 3, 4) and out[1].tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_priority_named_and_string_components(client):
    p = client.priority_queue("prio", capacity=5, dtypes=[np.float32], shapes=[[]])
    p.enqueue_many(([3, 1, 2], [30., 10., 20.]))
    prio, values = p.dequeue_many(3)
    assert prio.tolist() == [1, 2, 3] and values.tolist() == [10., 20., 30.]

    named = client.fifo_queue("named", capacity=10, dtypes=[np.int32, "string"], shapes=[[], []],
                              names=["label", "key"])
    named.enqueue_many({"label": [1, 2], "key": ["a", "b"]})
    out = named.dequeue_many(2)
    assert out["label"].tolist() == [1, 2] and out["key"].tolist() == [b"a", b"b"]


def test_bad_values_fail_with_invalid_argument_and_change_nothing(client):
    q = client.fifo_queue("typed", capacity=10, dtypes=[np.int32], shapes=[[]])
    with pytest.raises(qs.InvalidArgumentError, match="Expected int32, got float64"):
        q.enqueue(1.5)
    with pytest.raises(qs.InvalidArgumentError, match=r"Expected \[\], got \[2\]"):
        q.enqueue([1, 2])
    with pytest.raises(qs.InvalidArgumentError, match="expected 1 component"):
        q.enqueue((1, 2))
    assert q.size() == 0
    with pytest.raises(qs.InvalidArgumentError, match="capacity 10 but requested capacity was 99"):
        client.fifo_queue("typed", capacity=99, dtypes=[np.int32], shapes=[[]])


def test_timeout_setting_book_cell(server_process):
    with qs.connect(server_process.target, operation_timeout_in_ms=1000) as sess:
        q = sess.fifo_queue("timeout_q", capacity=10, dtypes=[np.float32], shapes=[()])
        for v in (1.0, 2.0, 3.0):
            q.enqueue(v)
        assert [q.dequeue() + 1 for _ in range(3)] == [2.0, 3.0, 4.0]
        with pytest.raises(qs.DeadlineExceededError):
            q.dequeue()
        sess.reset([""])


def test_timed_out_enqueue_many_reports_how_many_it_placed(client):
    q = client.fifo_queue("small", capacity=3, dtypes=[np.int32], shapes=[[]])
    with pytest.raises(qs.DeadlineExceededError, match="placed 3 of 5") as info:
        q.enqueue_many([1, 2, 3, 4, 5], timeout=0.1)
    assert info.value.details["placed"] == 3
    assert q.size() == 3


def test_variables_and_reset(client):
    x = client.variable("x", 0.0, container="my_problem_1")
    with pytest.raises(qs.FailedPreconditionError):
        x.read()
    x.initialize()
    assert x.assign_add(1.0) == 1.0 and x.read().dtype == np.float32
    q = client.fifo_queue("q", capacity=1, dtypes=[np.float32], shapes=[[]], container="my_problem_1")
    assert client.reset(["my_problem_1"]) == 2
    with pytest.raises(qs.NotFoundError):
        x.read()
    with pytest.raises(qs.NotFoundError):
        q.size()


def test_queue_created_again_after_reset_is_the_new_one(client):
    # The server remembers the last queue a connection used; a reset must not leave calls on the
    # freed one (same name, same connection, a different spec and contents).
    old = client.fifo_queue("again", capacity=5, dtypes=[np.float32], shapes=[[]], container="c1")
    old.enqueue(1.0)
    client.reset(["c1"])
    with pytest.raises(qs.NotFoundError):
        old.enqueue(2.0)
    new = client.fifo_queue("again", capacity=5, dtypes=[np.int64], shapes=[[2]], container="c1")
    new.enqueue([7, 8])
    assert new.size() == 1 and new.dequeue().tolist() == [7, 8]
    client.reset(["c1"])


def test_sync_dequeue_interrupted_after_its_reply_loses_nothing(client, monkeypatch):
    # Ctrl-C can land after a dequeue's batch reached the client but before the caller got it:
    # that batch must go back to the queue, not be acknowledged by the next call.
    q = client.fifo_queue("interrupted", capacity=10, dtypes=[np.int64], shapes=[[]])
    q.enqueue_many(np.arange(3))
    real_received = Deliveries.received

    def interrupted(self, *args):
        real_received(self, *args)  # the batch is this client's...
        raise KeyboardInterrupt     # ...and the caller is interrupted before it sees it

    monkeypatch.setattr(Deliveries, "received", interrupted)
    with pytest.raises(KeyboardInterrupt):
        q.dequeue()
    monkeypatch.undo()
    assert [int(q.dequeue(timeout=2)) for _ in range(3)] == [0, 1, 2]
    for dequeue in (lambda: q.dequeue_many(2), lambda: q.dequeue_up_to(2)):
        q.enqueue_many(np.arange(10, 12))
        monkeypatch.setattr(Deliveries, "received", interrupted)
        with pytest.raises(KeyboardInterrupt):
            dequeue()
        monkeypatch.undo()
        assert q.dequeue_many(2, timeout=2).tolist() == [10, 11]
    q.enqueue_many(np.arange(20, 22))
    monkeypatch.setattr(Deliveries, "taken", lambda self, *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        q.take(2)
    monkeypatch.undo()
    assert q.dequeue_many(2, timeout=2).tolist() == [20, 21]


def test_simple_client_twice_prints_1_then_2(server_process):
    script = REPO / "examples" / "simple_client.py"
    run = lambda *a: subprocess.run([sys.executable, str(script), server_process.target, *a],  # noqa: E731
                                    capture_output=True, text=True, check=True).stdout.strip()
    assert run("init") == "1.0"
    assert run() == "2.0"


def test_reset_fails_pending_calls_with_cancelled(server_process):
    async def main():
        async with qs.connect_async(server_process.target) as a, qs.connect_async(server_process.target) as b:
            q = await a.fifo_queue("r", capacity=1, dtypes=[np.float32], shapes=[[]], container="tmp")
            waiting = asyncio.ensure_future(q.dequeue())
            await (await b.fifo_queue("r", capacity=1, dtypes=[np.float32], shapes=[[]], container="tmp")).size()
            await b.reset(["tmp"])
            with pytest.raises(qs.CancelledError, match="reset"):
                await waiting
    asyncio.run(main())


async def test_async_client_pipelines_many_calls_in_order(server_process):
    async with qs.connect_async(server_process.target) as c:
        q = await c.fifo_queue("pipelined", capacity=2000, dtypes=[np.int64], shapes=[[]])
        await asyncio.gather(*(q.enqueue(i) for i in range(1000)))
        out = await asyncio.gather(*(q.dequeue() for _ in range(1000)))
        assert [int(v) for v in out] == list(range(1000))
        await c.reset([""])


async def test_cancelled_async_dequeue_takes_nothing(server_process):
    async with qs.connect_async(server_process.target) as c:
        q = await c.fifo_queue("cancel", capacity=10, dtypes=[np.float32], shapes=[[]])
        await q.enqueue_many([1., 2.])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.dequeue_many(3), 0.2)
        assert (await q.dequeue_many(2)).tolist() == [1., 2.]
        await c.reset([""])


def test_token_is_required_when_configured():
    server = ServerProcess("--token", "s3cret")
    try:
        with pytest.raises(qs.UnauthenticatedError):
            qs.connect(server.target, token="wrong")
        with pytest.raises(qs.UnauthenticatedError):
            qs.connect(server.target, token="")
        with qs.connect(server.target, token="s3cret") as c:
            assert c.fifo_queue("q", capacity=1, dtypes=[np.float32]).size() == 0
        status = subprocess.run([sys.executable, "-m", "queueserver", "status", server.target],
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert status.returncode == 1 and "Unauthenticated" in status.stderr and "queues" not in status.stdout
    finally:
        server.stop()


def test_message_size_limit_is_enforced_and_the_server_keeps_serving():
    server = ServerProcess("--max-message-bytes", "100000")
    try:
        with qs.connect(server.target) as big, qs.connect(server.target) as other:
            q = big.fifo_queue("q", capacity=10, dtypes=[np.float32], shapes=[[50000]])
            with pytest.raises(qs.ResourceExhaustedError, match="over the limit of 100000"):
                q.enqueue(np.zeros(50000, np.float32))
            assert other.fifo_queue("q", capacity=10, dtypes=[np.float32], shapes=[[50000]]).size() == 0
    finally:
        server.stop()


def test_unreachable_target_is_unavailable():
    with pytest.raises(qs.UnavailableError, match="cannot connect"):
        qs.connect("127.0.0.1:1")


def test_local_server_embedded(local_server):
    with qs.connect(local_server.target) as c:
        q = c.fifo_queue("q", capacity=2, dtypes=["string"], shapes=[[]])
        q.enqueue(b"Hello distributed queues!")
        assert q.dequeue() == b"Hello distributed queues!"


def test_conditional_accumulator_over_the_wire(client):
    acc = client.conditional_accumulator("grad/w", shape=[2])
    assert acc.apply_grad([1., 1.], local_step=0)
    assert acc.apply_grad([3., 5.], local_step=0)
    assert acc.num_accumulated() == 2
    assert acc.take_grad(2).tolist() == [2., 3.]
    assert not acc.apply_grad([1., 1.], local_step=0)  # stale now: the global step is 1
    with pytest.raises(qs.DeadlineExceededError):
        acc.take_grad(1, timeout=0.1)


def test_accumulator_takes_half_precision_gradients_and_widens_them(client):
    acc = client.conditional_accumulator("grad/half", shape=[3], dtype=np.float32)
    acc.apply_grad(np.array([1.5, 2.5, -1.0], np.float16), local_step=0)
    out = acc.take_grad(1)
    assert out.dtype == np.float32 and out.tolist() == [1.5, 2.5, -1.0]


def test_a_bfloat16_push_carries_half_the_bytes_and_is_averaged_in_float32(client):
    from queueserver.core.wire_dtypes import bfloat16_bits_to_float32, float32_to_bfloat16_bits

    n = 100_000
    acc = client.conditional_accumulator("grad/bf16", shape=[n], dtype=np.float32)
    var = client.variable("w/bf16", np.zeros(n, np.float32))
    var.initialize()
    rng = np.random.default_rng(0)
    g1, g2 = (rng.standard_normal(n).astype(np.float32) for _ in range(2))

    def bytes_in(call) -> int:
        before = client.status()["bytes_in"]
        call()
        return client.status()["bytes_in"] - before

    full = bytes_in(lambda: acc.apply_grad(g1, local_step=0))
    half = bytes_in(lambda: acc.apply_grad(g2, local_step=0, wire_dtype="bfloat16"))  # the client rounds
    assert 0.45 * full < half < 0.55 * full
    expected = (g1 + bfloat16_bits_to_float32(float32_to_bfloat16_bits(g2))) / np.float32(2)
    out = acc.take_grad(2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    # Bits encoded by the caller go as they are; updates to variables take the same marker.
    bits = float32_to_bfloat16_bits(g1)
    assert 0.45 * full < bytes_in(lambda: var.assign_add(bits, wire_dtype="bfloat16")) < 0.55 * full
    np.testing.assert_array_equal(var.read(), bfloat16_bits_to_float32(bits))


def test_a_wrong_wire_dtype_fails_with_invalid_argument_naming_the_accumulator(client):
    acc = client.conditional_accumulator("grad/wrong", shape=[3], dtype=np.float32)
    with pytest.raises(qs.InvalidArgumentError, match="ConditionalAccumulator 'grad/wrong': unknown wire dtype 'int4'"):
        acc.apply_grad(np.zeros(3, np.float32), local_step=0, wire_dtype="int4")
    with pytest.raises(qs.InvalidArgumentError, match="ConditionalAccumulator 'grad/wrong': gradient shape"):
        acc.apply_grad(np.zeros(4, np.float32), local_step=0, wire_dtype="bfloat16")
    assert acc.num_accumulated() == 0


def test_clients_do_not_import_the_http_stack(server_process):
    # Loader and trainer processes import queueserver for its client; aiohttp (a quarter of a
    # second to import) is only needed where a server runs.
    code = ("import sys, queueserver as qs, numpy as np\n"
            f"with qs.connect({server_process.target!r}) as c:\n"
            "    c.fifo_queue('light', capacity=1, dtypes=[np.float32], shapes=[[]]).size()\n"
            "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_stopped_server_says_so_and_cannot_be_started_again():
    server = qs.Server.create_local_server()
    assert server.target.startswith("http://127.0.0.1:")
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(qs.UnavailableError, match="was stopped"):
        _ = server.target
    with pytest.raises(qs.FailedPreconditionError, match="create a new Server"):
        server.start()
    server.join()  # returns at once: it is stopped


def test_a_closed_client_says_so(local_server):
    c = qs.connect(local_server.target)
    c.close()
    c.close()  # twice is fine
    with pytest.raises(qs.FailedPreconditionError, match="is closed: connect again"):
        c.fifo_queue("after_close", capacity=1, dtypes=[np.int64])


@pytest.mark.parametrize("fields, message", [
    ({"port": 70000}, "port must be an integer in 0..65535"),
    ({"max_message_bytes": 0}, "max_message_bytes must be a positive integer"),
    ({"grace_s": float("nan")}, "grace_s must be a positive number"),
])
def test_bad_server_options_fail_when_the_server_is_built(fields, message):
    with pytest.raises(qs.InvalidArgumentError, match=message):
        qs.Server.create_local_server(**fields)


def test_bad_client_options_fail_at_connect_naming_the_option(local_server):
    with pytest.raises(qs.InvalidArgumentError, match="operation_timeout: timeout must be a finite"):
        qs.connect(local_server.target, operation_timeout=float("nan"))
    with pytest.raises(qs.InvalidArgumentError, match="no task 5 in job 'ps'"):
        qs.Server({"ps": ["127.0.0.1:1"]}, job_name="ps", task_index=5)


def test_server_job_and_task_follow_tensorflows_rules():
    from support import free_ports

    a, b, c = (f"127.0.0.1:{p}" for p in free_ports(3))
    one = qs.Server({"local": [a]})  # one job, one task: both may be left out
    try:
        with qs.connect(one.target) as client:
            assert client.task == "/job:local/task:0"
    finally:
        one.stop()
    multi = {"ps": [a], "worker": [b, c]}
    assert qs.Server(multi, job_name="ps", start=False).options.index == 0
    with pytest.raises(ValueError, match="Must specify an explicit `job_name`"):
        qs.Server(multi, start=False)
    with pytest.raises(ValueError, match="Must specify an explicit `task_index`"):
        qs.Server(multi, job_name="worker", start=False)  # before: task 0, silently
    with pytest.raises(ValueError, match="no job 'nope'"):
        qs.Server(multi, job_name="nope", task_index=0, start=False)
    with pytest.raises(TypeError):
        qs.Server(["a:1"], job_name="worker", task_index=0, start=False)


def test_reset_without_containers_resets_the_default_one(local_server):
    # TensorFlow's Session.reset(target) and reset(target, []) reset the default container "".
    with qs.connect(local_server.target, operation_timeout=5) as c:
        for containers in ([], None, ()):
            y = c.variable("reset_default", 1.0)
            kept = c.variable("reset_kept", 1.0, container="other")
            y.initialize()
            kept.initialize()
            assert (c.reset(containers) if containers is not None else c.reset()) == 1
            with pytest.raises(qs.NotFoundError):
                y.read()
            assert kept.read() == 1.0
        assert c.reset(None) == 0


def test_connecting_to_something_that_is_not_a_queue_server_fails_clearly():
    import socket
    import threading as _threading

    silent = socket.create_server(("127.0.0.1", 0))
    banner = socket.create_server(("127.0.0.1", 0))
    stop = _threading.Event()

    def greet() -> None:  # an SSH-like service: a banner, then nothing
        while not stop.is_set():
            try:
                conn, _ = banner.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" + b"x" * 64)

    _threading.Thread(target=greet, daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(qs.DeadlineExceededError, match="did not answer the hello within 1 s: not a queue server"):
            qs.connect(f"127.0.0.1:{silent.getsockname()[1]}", operation_timeout=1)
        assert time.monotonic() - t0 < 5
        with pytest.raises(qs.UnavailableError, match="is not a queue server"):
            qs.connect(f"127.0.0.1:{banner.getsockname()[1]}", operation_timeout=5)
    finally:
        stop.set()
        silent.close()
        banner.close()


# ---------------------------------------------------------------- TensorFlow 2.21 audit
def test_a_string_queue_refuses_numbers_and_adds_nothing(client):
    # TensorFlow: TypeError "Expected string, but got 5 of type 'int'"; before, 5 became five zero bytes.
    q = client.fifo_queue("text", capacity=10, dtypes=["string"], shapes=[[]])
    with pytest.raises(qs.InvalidArgumentError, match="Expected string, but got 5 of type 'int'"):
        q.enqueue(5)
    pairs = client.fifo_queue("text2", capacity=10, dtypes=["string"], shapes=[[2]])
    with pytest.raises(qs.InvalidArgumentError, match="Expected string, but got 3 of type 'int'"):
        pairs.enqueue([3, 1])
    assert q.size() == 0 and pairs.size() == 0
    q.enqueue(b"\xff")
    q.enqueue("\u00e9")
    q.enqueue_many(np.array([b"a", "b"], dtype=object))
    assert q.dequeue_many(4).tolist() == [b"\xff", "\u00e9".encode(), b"a", b"b"]


def test_enqueue_many_of_nothing_into_a_closed_queue_succeeds(client):
    q = client.fifo_queue("closed_empty", capacity=10, dtypes=[np.float32], shapes=[[]])
    q.close()
    q.enqueue_many(np.zeros(0, np.float32))  # TensorFlow returns early for zero elements
    with pytest.raises(qs.CancelledError, match="is closed"):
        q.enqueue_many(np.zeros(1, np.float32))
    assert q.size() == 0


def test_an_unbounded_capacity_is_refused_clearly(client):
    with pytest.raises(qs.InvalidArgumentError, match=r"capacity must be a positive integer, got -1 \(unbounded"):
        client.fifo_queue("unbounded", -1, [np.float32], [[]])
    with pytest.raises(qs.InvalidArgumentError, match="capacity must be an integer, got None"):
        client.fifo_queue("unbounded", None, [np.float32], [[]])


def test_accumulators_are_float16_32_or_64_and_set_global_step_goes_backwards(client):
    with pytest.raises(qs.InvalidArgumentError, match="ConditionalAccumulator 'z': dtype must be floating.*got complex64"):
        client.conditional_accumulator("z", shape=[1], dtype=np.complex64)
    with pytest.raises(qs.InvalidArgumentError, match="SparseConditionalAccumulator 'zs': dtype must be floating.*got int32"):
        client.sparse_conditional_accumulator("zs", shape=[1], dtype=np.int32)
    acc = client.conditional_accumulator("f", shape=[1])
    with pytest.raises(qs.InvalidArgumentError, match="gradient must be numeric .*got complex64"):
        acc.apply_grad(np.array([1 + 2j], np.complex64), 0)  # before: cast to its real part and summed
    assert acc.num_accumulated() == 0
    acc.set_global_step(5)
    acc.set_global_step(1)  # TensorFlow logs a warning and sets it
    assert acc.apply_grad(np.ones(1, np.float32), 3) and acc.num_accumulated() == 1


def test_an_accumulator_of_unknown_shape_is_refused_clearly(client):
    for make, shape, shown in ((client.conditional_accumulator, None, "None"),
                               (client.sparse_conditional_accumulator, None, "None"),
                               (client.sparse_conditional_accumulator, [None, 2], r"\[\?,2\]")):
        with pytest.raises(qs.InvalidArgumentError, match=f"needs a fully defined shape, got {shown}"):
            make("unknown", shape=shape)
    assert client.conditional_accumulator("known", shape=3).shape == (3,)


def test_variables_take_tensorflows_default_dtypes_and_never_truncate_an_initial_value(client):
    assert client.variable("i", 5).dtype == np.int32
    assert client.variable("l", [1, 2]).dtype == np.int32
    assert client.variable("big", 2 ** 40).dtype == np.int64  # as TensorFlow: it does not fit int32
    assert client.variable("f", 1.5).dtype == np.float32
    assert client.variable("f64", np.float64(1.5)).dtype == np.float64  # a NumPy scalar keeps its dtype
    assert client.variable("e", []).dtype == np.float32
    for name, value, dtype, message in (("a", 1.5, np.int32, r"Expected int32, got float64 \(1.5\)"),
                                        ("b", [0.7, -1.9], np.int32, "Expected int32, got float64"),
                                        ("c", 1 + 2j, np.float32, "Expected float32, got complex128")):
        with pytest.raises(qs.InvalidArgumentError, match=f"Variable '{name}' initial value. {message}"):
            client.variable(name, value, dtype=dtype)
    ok = client.variable("ok", 3, dtype=np.float32)
    ok.initialize()
    assert ok.read().dtype == np.float32 and ok.read() == 3.0
    assert client.variable("empty", [], dtype=np.int32).shape == (0,)


def test_arithmetic_on_a_bool_variable_is_refused_and_changes_nothing(client):
    b = client.variable("flags", np.array([True, False]))
    b.initialize()
    for op in ("assign_add", "assign_sub"):  # before: a logical or, and an InternalError
        with pytest.raises(qs.InvalidArgumentError, match=f"Variable 'flags' {op}: not defined for a bool variable"):
            getattr(b, op)(np.array([True, True]))
    assert b.read().tolist() == [True, False]
    assert b.assign(np.array([False, True])).tolist() == [False, True]
    b.scatter_update([0], np.array([True]))
    assert b.read().tolist() == [True, True]
