"""A big server's status must not hold up its data plane (issue 15, part 4).

With 10k queues and 100k variables one status took 1.3 s of the event loop (plus 0.4 s of JSON),
and every call waited. A status now lists a bounded number of each kind (totals say how many there
are), reads a slice of resources per turn of the loop, and the HTTP side encodes it in a thread.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import numpy as np

import queueserver as qs
from support import run_counting_turns
from queueserver.status import SLICE, build


def _fill(c, variables: int, queues: int) -> None:
    for i in range(queues):
        c.fifo_queue(f"q{i}", capacity=4, dtypes=[np.int64], shapes=[[]])
    for i in range(variables):
        c.variable(f"v{i}", float(i), container="exp" if i % 2 else "")


def test_a_status_lists_a_bounded_number_of_each_kind_and_counts_them_all():
    with qs.Server.create_local_server() as server, qs.connect(server.target) as c:
        _fill(c, variables=7, queues=2)
        out = server._loop_thread.run(build(server.service, max_listed=3))
    assert out["totals"] == {"queues": 2, "variables": 7, "accumulators": 0}
    assert out["omitted"] == {"variables": 4}
    assert len(out["variables"]) == 3 and len(out["queues"]) == 2
    assert {"container", "name", "dtype", "shape", "initialized"} <= set(out["variables"][0])


def test_building_a_status_gives_the_event_loop_a_turn_every_slice():
    with qs.Server.create_local_server() as server, qs.connect(server.target) as c:
        _fill(c, variables=3 * SLICE + 1, queues=1)

        out, turns = run_counting_turns(server, build(server.service))
        assert turns >= 3
        assert out["totals"]["variables"] == 3 * SLICE + 1 and "omitted" not in out
        # The same status through HTTP, the client and the CLI.
        url = "http://" + server.target.split("://")[-1] + "/status"
        with urllib.request.urlopen(url) as r:
            assert r.headers["Content-Type"].startswith("application/json")
            assert json.loads(r.read())["totals"] == out["totals"]
        assert c.status()["totals"] == out["totals"]
        cli = subprocess.run([sys.executable, "-m", "queueserver", "status", server.target],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert f"variables ({3 * SLICE + 1}" in cli.stdout


def test_the_cli_says_how_many_a_big_status_left_out():
    from queueserver.cli_tools import format_status

    status = {"task": "/job:localhost/task:0", "version": "x", "uptime_s": 1, "connections": 0,
              "queues": [], "variables": [{"container": "", "name": "v0", "dtype": "float32", "shape": [],
                                           "initialized": True}],
              "accumulators": [], "clients": [], "totals": {"queues": 0, "variables": 5, "accumulators": 0},
              "omitted": {"variables": 4}}
    assert "variables (1; 4 more not listed, of 5):" in format_status(status)


def test_the_json_of_a_status_is_encoded_in_slices_and_reads_back_the_same():
    from queueserver.status import encode_json

    entry = {"container": "c\"", "name": "n\n", "shape": [2, 3], "initialized": True, "updated_at": None}
    status = {"task": "/job:ps/task:0", "queues": [], "variables": [dict(entry, i=i) for i in range(2 * SLICE + 3)],
              "cluster": [{"up": True, "variables": [entry] * (SLICE + 1)}, {"up": False, "error": "é"}],
              "calls": {"enqueue": 3}, "time": 1.5}
    assert json.loads(encode_json(status)) == status
