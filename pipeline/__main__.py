"""``python -m pipeline load ...``: the loader client (see :mod:`pipeline.loader`; ``--help``)."""

from pipeline.loader import main

if __name__ == "__main__":
    raise SystemExit(main())
