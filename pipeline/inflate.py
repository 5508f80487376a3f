"""The one GZIP/ZLIB inflater every reader of this package uses (text, CSV, fixed-length, TFRecord).

python-isal's ``isal_zlib`` (Intel's ISA-L, about twice zlib's inflate speed) when it is installed,
the standard library's ``zlib`` otherwise. Both give the same bytes and the same
``decompressobj`` interface (``decompress(data, max_length)``, ``unconsumed_tail``, ``unused_data``,
``eof``); only their error classes differ, so callers catch :data:`ERRORS`.

``USE_ISAL = False`` (before a reader opens its file) switches to zlib, which the tests use to run
both branches.

Example:
    >>> import gzip
    >>> d = decompressobj(GZIP_WBITS)
    >>> d.decompress(gzip.compress(b"hello"))
    b'hello'
"""

from __future__ import annotations

import zlib
from typing import Any

__all__ = ["decompressobj", "implementation", "ERRORS", "GZIP_WBITS", "ZLIB_WBITS", "wbits_for"]

GZIP_WBITS = 31  # a GZIP header and trailer around the deflate stream
ZLIB_WBITS = 15  # a ZLIB header and trailer

_isal_zlib: Any
try:  # optional: ISA-L inflates about twice as fast as zlib
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the installation; tests switch USE_ISAL instead
    _isal_zlib = None

#: Use python-isal when it is installed (switch off to force the standard library's zlib).
USE_ISAL = True

#: What a corrupt stream raises, whichever implementation inflates it.
ERRORS: tuple[type[Exception], ...] = (zlib.error,) + ((_isal_zlib.error,) if _isal_zlib is not None else ())


def implementation() -> str:
    """``"isal"`` or ``"zlib"``: the module :func:`decompressobj` takes its inflater from now."""
    return "isal" if USE_ISAL and _isal_zlib is not None else "zlib"


def decompressobj(wbits: int) -> Any:
    """A new zlib-compatible decompressor for ``wbits`` (:data:`GZIP_WBITS` or :data:`ZLIB_WBITS`)."""
    if USE_ISAL and _isal_zlib is not None:
        return _isal_zlib.decompressobj(wbits)
    return zlib.decompressobj(wbits)


def wbits_for(compression_type: str) -> int:
    """The ``wbits`` of a TensorFlow compression type (``"GZIP"`` or ``"ZLIB"``)."""
    return GZIP_WBITS if compression_type == "GZIP" else ZLIB_WBITS
