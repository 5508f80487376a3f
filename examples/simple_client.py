"""The seed's simple_client.py: a shared variable that outlives its clients.

    $ python examples/simple_client.py http://127.0.0.1:2222 init
    1.0
    $ python examples/simple_client.py http://127.0.0.1:2222
    2.0
"""

import sys

import queueserver as qs

with qs.connect(sys.argv[1]) as sess:
    x = sess.variable("x", 0.0)
    if sys.argv[2:] == ["init"]:
        x.initializer()
    x.assign_add(1.0)
    print(x.eval())
