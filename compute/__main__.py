"""``python -m compute train ...``: the trainer client CLI (see :mod:`compute.cli`)."""

from compute.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
