"""/metrics on a big server must not hold up the data plane (issue 15, part 4).

With 10k queues and 100k variables one scrape used to read and render everything in one turn of
the event loop (5.8 s here), and every call on the server waited that long. The scrape now reads
a slice of resources per turn and renders in a thread; these tests check the turns, not the clock.
"""

from __future__ import annotations


import numpy as np

import queueserver as qs
from support import run_counting_turns
from prometheus_client.parser import text_string_to_metric_families

from queueserver.metrics import SCRAPE_SLICE, render, scrape


def test_a_scrape_gives_the_event_loop_a_turn_every_slice_and_misses_nothing():
    n_vars, n_queues = 3 * SCRAPE_SLICE + 7, 5
    with qs.Server.create_local_server() as server, qs.connect(server.target) as c:
        for i in range(n_queues):
            c.fifo_queue(f"q{i}", capacity=4, dtypes=[np.int64], shapes=[[]]).enqueue(i)
        for i in range(n_vars):
            c.variable(f"v{i}", float(i))

        pieces, turns = run_counting_turns(server, scrape(server.service))
    body = b"".join(pieces).decode()
    assert turns >= 3  # the loop ran other work at least once per slice
    families = {f.name: f for f in text_string_to_metric_families(body)}  # the text format parses
    assert len(families["queueserver_variable_bytes"].samples) == n_vars
    sizes = {s.labels["name"]: s.value for s in families["queueserver_queue_size"].samples}
    assert sizes == {f"q{i}": 1.0 for i in range(n_queues)}
    assert {"queueserver_calls", "queueserver_info", "queueserver_queue_enqueued_elements"} <= set(families)


def test_names_are_escaped_in_the_text_format():
    odd = 'a"b\\c\nd'
    with qs.Server.create_local_server() as server, qs.connect(server.target) as c:
        c.fifo_queue(odd, capacity=4, dtypes=[np.int64], shapes=[[]], container="x\\y").enqueue(1)
        v = c.variable("w", np.zeros(3, np.float32))
        v.initialize()
        v.read()
        acc = c.conditional_accumulator("g", shape=[2], container="acc")
        acc.apply_grad(np.ones(2, np.float32), local_step=0)
        text = render(server.service).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["queueserver_queue_enqueued_elements"].samples
    assert sample.name == "queueserver_queue_enqueued_elements_total"
    assert sample.labels == {"container": "x\\y", "name": odd, "type": "FIFOQueue"} and sample.value == 1.0
    reads = {s.labels["name"]: s.value for s in families["queueserver_variable_read_bytes"].samples}
    assert reads == {"w": 12.0}
    grads = {s.labels["outcome"]: s.value for s in families["queueserver_accumulator_gradients"].samples}
    assert grads.get("applied") == 1.0
    (step,) = families["queueserver_accumulator_global_step"].samples
    assert step.labels == {"container": "acc", "name": "g"}
