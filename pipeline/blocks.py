"""Record blocks: a batch of file records kept as the reader's contiguous bytes, for a decoder.

``FixedLengthRecordDataset(f, 3073).batch(10000).map(lambda r: decode_raw(r, tf.uint8))`` would
otherwise cut 10,000 ``bytes`` objects out of one read, only for ``decode_raw`` to join them again;
``TextLineDataset(f).batch(1024).map(lambda s: decode_csv(s, defaults))`` would join the lines the
reader had just split and hand pyarrow 1,024 of them at a time. When ``map`` is given such a
function, the batch before it is built as a *record block* instead of an object array, and the
decoder reads the block's bytes directly:

* :class:`FixedBlock`: fixed-length records as one ``uint8[n, record_bytes]`` array (``decode_raw``
  is a view of it);
* :class:`LinesBlock`: lines of a text file as rows of a larger segment the reader returned at once
  (``decode_csv`` parses the whole segment in one native call, once, and each batch takes its rows).

A block never reaches user code. ``map`` hands the block over only when its function passes its
argument straight into a decoder that accepts blocks and uses it nowhere else (:func:`block_call`
checks the function's bytecode once; which function the name resolves to is checked at every
call); any other function, and any decoder argument the block path does not cover, gets exactly
the object array an unfused batch would be (:meth:`RecordBlock.materialize`). Decoders accept a
block by naming the parameter that takes it with :func:`accepts_blocks`.

Example:
    >>> blk = FixedBlock(np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> blk.materialize().tolist()
    [b'\\x00\\x01\\x02', b'\\x03\\x04\\x05']
"""

from __future__ import annotations

import dis
import functools
import sys
import threading
import types
from typing import Any, Callable

import numpy as np

from pipeline.workers import ProcessWorker

__all__ = ["RecordBlock", "FixedBlock", "LinesBlock", "FramedBlock", "accepts_blocks", "block_call", "concat_blocks",
           "decode_ahead", "ahead_executor"]

_PARAM = "_record_block_param"

#: Build batches as record blocks where a map decodes them (tests switch it off to compare).
ENABLED = True


def accepts_blocks(param: str) -> Callable[[Callable], Callable]:
    """Mark a decoder whose parameter ``param`` takes a :class:`RecordBlock` as well as records."""

    def mark(fn: Callable) -> Callable:
        setattr(fn, _PARAM, param)
        return fn

    return mark


def object_array(items: list) -> np.ndarray:
    """A 1-D object array holding ``items`` (bytes records)."""
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


class RecordBlock:
    """``n`` consecutive string records of one reader, not yet cut into ``bytes`` objects."""

    n: int

    def materialize(self) -> np.ndarray:  # pragma: no cover - abstract
        """The records as the object array of ``bytes`` an unfused batch holds."""
        raise NotImplementedError

    def slice(self, i: int, j: int) -> "RecordBlock":  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return self.n


class FixedBlock(RecordBlock):
    """Fixed-length records as the rows of one C-contiguous ``uint8[n, record_bytes]`` array."""

    __slots__ = ("rows", "n")

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.n = rows.shape[0]

    def materialize(self) -> np.ndarray:
        rows = self.rows
        if rows.shape[1] == 0:
            return object_array([b""] * self.n)
        # A void view's tolist() makes one exact bytes object per row (an "S" view would drop
        # trailing NUL bytes).
        return object_array(np.ascontiguousarray(rows).view(f"V{rows.shape[1]}").reshape(-1).tolist())

    def slice(self, i: int, j: int) -> "FixedBlock":
        return FixedBlock(self.rows[i:j])


class _LineSegment:
    """The lines one read returned, with what decoders computed from all of them (once).

    Either a list of lines, or (what :meth:`TextLineReader.read_segment` hands over) the raw text
    of ``n`` whole lines joined by ``"\\n"``, split into lines only if something asks for them.
    """

    def __init__(self, lines: list[bytes] | None, text: bytes | None = None, n: int = 0) -> None:
        self._lines = lines
        self.text = text
        self.n = len(lines) if lines is not None else n
        self.lock = threading.Lock()
        self.decoded: dict = {}  # decoder key -> its result for every line (None: declined)
        self.recipes: dict = {}  # decoder key -> how it computed that (for the next segment: decode_ahead)
        self._objects: np.ndarray | None = None

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            assert self.text is not None
            lines = self.text.split(b"\n") if self.n else []
            if b"\r" in self.text:  # "\r\n" endings: the reader's lines drop the "\r"
                lines = [ln[:-1] if ln[-1:] == b"\r" else ln for ln in lines]
            self._lines = lines
        return self._lines

    def text_from(self, i: int) -> bytes:
        """Lines ``i:`` of the segment joined by ``"\\n"`` (the raw text itself from line 0)."""
        text = self.text
        if text is None or b"\r" in text:
            return b"\n".join(self.lines[i:])
        if i == 0:
            return text
        p = 0
        for _ in range(i):
            p = text.index(b"\n", p) + 1
        return text[p:]

    def text_range(self, i: int, j: int) -> bytes | None:
        """The raw text of lines ``i:j`` (``i < j``), found from the nearer end of the text; None
        for a segment of split lines or with ``"\\r"`` (its text is not its lines)."""
        text = self.text
        if text is None or b"\r" in text:
            return None
        if j - i > self.n // 2:
            return b"\n".join(self.lines[i:j])
        if i < self.n - j:  # from the start
            p = 0
            for _ in range(i):
                p = text.index(b"\n", p) + 1
            e = p - 1
            for _ in range(j - i):
                e = text.find(b"\n", e + 1)
            return text[p:] if e < 0 else text[p:e]
        e = len(text)  # from the end
        for _ in range(self.n - j):
            e = text.rindex(b"\n", 0, e)
        p = e
        for _ in range(j - i):
            p = text.rfind(b"\n", 0, p)
        return text[p + 1 : e]

    def objects(self) -> np.ndarray:
        if self._objects is None:
            self._objects = object_array(self.lines)
        return self._objects


class LinesBlock(RecordBlock):
    """Lines ``i:j`` of a segment of text lines (``bytes`` without their line endings)."""

    __slots__ = ("seg", "i", "j", "n")

    def __init__(self, seg: _LineSegment, i: int = 0, j: int | None = None) -> None:
        self.seg, self.i = seg, i
        self.j = seg.n if j is None else j
        self.n = self.j - i

    @classmethod
    def of(cls, lines: list[bytes]) -> "LinesBlock":
        return cls(_LineSegment(lines))

    @classmethod
    def of_text(cls, text: bytes, n: int) -> "LinesBlock":
        """``n`` whole lines as their raw text, joined by ``"\\n"`` (no final one); a ``"\\r"``
        before a ``"\\n"`` (or at the end) is dropped from its line, as the reader does."""
        return cls(_LineSegment(None, text, n))

    def materialize(self) -> np.ndarray:
        return self.seg.objects()[self.i : self.j]

    def slice(self, i: int, j: int) -> "LinesBlock":
        return LinesBlock(self.seg, self.i + i, self.i + j)

    def lines(self) -> list[bytes]:
        return self.seg.lines[self.i : self.j]

    def segment_result(self, key: Any, compute: Callable[[bytes, int], Any]) -> tuple[int, Any]:
        """``(start, compute(text, lines))`` for the segment's lines from ``start`` on (their text
        joined by ``"\\n"`` and their count), computed once per segment and ``key`` from the first
        block asked for on (lines before it, e.g. a header that ``skip`` drops, are left out);
        again from an earlier block only if one is asked for later."""
        seg = self.seg
        with seg.lock:
            got = seg.decoded.get(key)
            if got is None or got[0] > self.i:
                got = seg.decoded[key] = (self.i, compute(seg.text_from(self.i), seg.n - self.i))
                seg.recipes[key] = compute
            return got


_AHEAD = ProcessWorker("read-ahead")


def decode_ahead(done: RecordBlock | None, nxt: RecordBlock) -> bool:
    """Start computing, on a worker thread, what decoders computed for ``done``'s segment
    (:meth:`LinesBlock.segment_result`) for ``nxt``'s segment too: the file iterator reads a
    segment ahead and the next one's parse (pyarrow, which releases the GIL) runs while the batches
    of the current one are served. The results are the ones the decoder would compute itself on
    its first batch (it waits for them, or computes them if this did not); errors are left to it.

    Returns:
        Whether there was anything to compute (``done`` is a segment a decoder used).
    """
    if type(done) is not LinesBlock or type(nxt) is not LinesBlock or not done.seg.recipes:
        return False
    recipes = list(done.seg.recipes.items())
    block = LinesBlock(nxt.seg, nxt.i)
    if block.n < 1:
        return True

    def run() -> None:
        for key, compute in recipes:
            try:
                block.segment_result(key, compute)
            except Exception:  # noqa: BLE001 - the decoder meets it again on its own thread
                pass

    ahead_executor().submit(run)
    return True


def ahead_executor() -> Any:
    """The one worker thread that reads and decodes ahead for the file datasets' iterators (a
    ``ThreadPoolExecutor``; a new one in a forked child, whose copy has no thread)."""
    return _AHEAD.executor()


class FramedBlock(RecordBlock):
    """Framed records (TFRecord) as where they lie in one buffer: ``runs`` of
    ``(data_offset, length, count, stride)``, each ``count`` records of one ``length`` every
    ``stride`` bytes of ``buf`` (bytes, or a read-only ``mmap`` of the file)."""

    __slots__ = ("buf", "runs", "n", "root", "at", "_lock", "_decoded", "_recipes")

    def __init__(self, buf: Any, runs: list[tuple[int, int, int, int]], root: "FramedBlock | None" = None,
                 at: int = 0) -> None:
        self.buf, self.runs = buf, runs
        self.n = sum(r[2] for r in runs)
        # A slice is records at:at+n of the block one read returned (root); a read's block is its own.
        self.root, self.at = root, at
        if root is None:
            self._lock = threading.Lock()
            self._decoded: dict = {}  # decoder key -> its result for every record of the read (None: declined)
            self._recipes: dict = {}  # decoder key -> how it computed that (for the next read: decode_read)

    def read_result(self, key: Any, compute: Callable[["FramedBlock"], Any]) -> tuple[int, Any]:
        """``(at, compute(read))``: what a decoder computed for every record of the block the read
        returned (``read``), computed once per read and ``key``, and where this block's records
        start in it. A result of None means the decoder declined the whole read."""
        root = self if self.root is None else self.root
        with root._lock:
            if key not in root._decoded:
                root._decoded[key] = compute(root)
                root._recipes[key] = compute
            return self.at, root._decoded[key]

    def decode_like(self, done: "FramedBlock | None") -> None:
        """Compute for this read what decoders computed for ``done``'s read (:meth:`read_result`),
        before they ask: the read-ahead worker parses the next read while the current one's
        batches are served. Errors are left to the decoder, which meets them on its own thread."""
        if done is None or type(done) is not FramedBlock or self.root is not None:
            return
        prev = done if done.root is None else done.root
        for key, compute in list(prev._recipes.items()):
            try:
                self.read_result(key, compute)
            except Exception:  # noqa: BLE001 - the decoder computes it again and raises
                with self._lock:
                    self._decoded.pop(key, None)

    @classmethod
    def of(cls, records: list[bytes]) -> "FramedBlock":
        """Records already cut out (what a record-by-record read returned), laid end to end."""
        if not records:
            return cls(b"", [])
        runs: list[tuple[int, int, int, int]] = []
        p = 0
        for r in records:
            ln = len(r)
            if runs and runs[-1][1] == ln and ln:
                f, _, k, st = runs[-1]
                runs[-1] = (f, ln, k + 1, st)
            else:
                runs.append((p, ln, 1, ln))
            p += ln
        return cls(b"".join(records), runs)

    def rows(self) -> np.ndarray | None:
        """The records as one ``uint8[n, length]`` view of the buffer, when they are one run."""
        if len(self.runs) != 1:
            return None
        first, length, k, stride = self.runs[0]
        return np.ndarray((k, length), np.uint8, self.buf, first, (stride, 1))

    def materialize(self) -> np.ndarray:
        buf = self.buf
        return object_array([bytes(buf[o : o + ln]) for f, ln, k, st in self.runs for o in range(f, f + k * st, st)])

    def slice(self, i: int, j: int) -> "FramedBlock":
        out: list[tuple[int, int, int, int]] = []
        at = 0
        for f, ln, k, st in self.runs:
            lo, hi = max(i - at, 0), min(j - at, k)
            if lo < hi:
                out.append((f + lo * st, ln, hi - lo, st))
            at += k
            if at >= j:
                break
        return FramedBlock(self.buf, out, self if self.root is None else self.root, self.at + i)


def concat_blocks(blocks: list[RecordBlock]) -> RecordBlock | np.ndarray:
    """Blocks end to end: a block where they join exactly, else the object array of them all."""
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    if all(type(b) is FixedBlock for b in blocks) and len({b.rows.shape[1] for b in blocks}) == 1:  # type: ignore[attr-defined]
        return FixedBlock(np.concatenate([b.rows for b in blocks]))  # type: ignore[attr-defined]
    if all(type(b) is FramedBlock for b in blocks) and len({id(b.buf) for b in blocks}) == 1:  # type: ignore[attr-defined]
        runs: list[tuple[int, int, int, int]] = []
        for b in blocks:
            for r in b.runs:  # type: ignore[attr-defined]
                if runs and runs[-1][1] == r[1] and runs[-1][3] == r[3] and runs[-1][0] + runs[-1][2] * r[3] == r[0]:
                    runs[-1] = (runs[-1][0], r[1], runs[-1][2] + r[2], r[3])  # contiguous: one run
                else:
                    runs.append(r)
        return FramedBlock(first.buf, runs)  # type: ignore[attr-defined]
    if all(type(b) is LinesBlock for b in blocks):
        segs = {id(b.seg) for b in blocks}  # type: ignore[attr-defined]
        if len(segs) == 1 and all(a.j == b.i for a, b in zip(blocks, blocks[1:])):  # type: ignore[attr-defined]
            return LinesBlock(first.seg, first.i, blocks[-1].j)  # type: ignore[attr-defined]
        # Lines of different segments (a batch across two reads): their texts joined, not split.
        texts = [b.seg.text_range(b.i, b.j) for b in blocks if b.n]  # type: ignore[attr-defined]
        if all(t is not None for t in texts):
            return LinesBlock.of_text(b"\n".join(texts), sum(b.n for b in blocks))
        return LinesBlock.of([line for b in blocks for line in b.lines()])  # type: ignore[attr-defined]
    return np.concatenate([b.materialize() for b in blocks])


# --------------------------------------------------------------------------- which functions
class _Ref:
    """How to find, at call time, the callable a name in the function's code stands for."""

    __slots__ = ("kind", "name", "base")

    def __init__(self, kind: str, name: Any, base: "_Ref | None" = None) -> None:
        self.kind, self.name, self.base = kind, name, base

    def resolve(self, fn: types.FunctionType) -> Any:
        """The object, or ``_MISSING`` when it cannot be found without running user code."""
        if self.kind == "global":
            g = fn.__globals__
            if self.name in g:
                return g[self.name]
            b = g.get("__builtins__")
            b = b.__dict__ if isinstance(b, types.ModuleType) else b
            return b.get(self.name, _MISSING) if isinstance(b, dict) else _MISSING
        if self.kind == "deref":
            names = fn.__code__.co_freevars
            if self.name not in names or fn.__closure__ is None:
                return _MISSING
            try:
                return fn.__closure__[names.index(self.name)].cell_contents
            except ValueError:  # an empty cell
                return _MISSING
        assert self.base is not None  # "attr": an attribute of a module only (no user code runs)
        owner = self.base.resolve(fn)
        if not isinstance(owner, types.ModuleType):
            return _MISSING
        return owner.__dict__.get(self.name, _MISSING)


_MISSING = object()
_NULL = ("null",)
_BLOCK = ("block",)
_OTHER = ("other",)
_311 = sys.version_info >= (3, 11)
_312 = sys.version_info >= (3, 12)
_313 = sys.version_info >= (3, 13)
# Instructions that pop n and push one value that cannot be the block (n from the oparg: None).
_POP_PUSH1 = {"BINARY_OP": 2, "BINARY_SUBSCR": 2, "COMPARE_OP": 2, "UNARY_NEGATIVE": 1, "UNARY_NOT": 1,
              "UNARY_INVERT": 1, "BUILD_LIST": None, "BUILD_TUPLE": None, "BUILD_SET": None, "BUILD_SLICE": None}
_NO_STACK = {"RESUME", "NOP", "CACHE", "COPY_FREE_VARS", "EXTENDED_ARG", "PRECALL", "MAKE_CELL"}


class _Plan:
    """The result of :func:`block_call`'s look at a function: which callee gets the block."""

    __slots__ = ("fn", "ref", "param", "positional")

    def __init__(self, fn: Any, ref: "_Ref | None", param: str | None, positional: bool) -> None:
        self.fn, self.ref, self.param, self.positional = fn, ref, param, positional

    def takes_block(self) -> bool:
        """Whether, right now, the callee is a decoder whose block parameter gets the argument."""
        if isinstance(self.fn, functools.partial):
            callee = self.fn.func
        else:
            assert self.ref is not None
            callee = self.ref.resolve(self.fn)
        want = getattr(callee, _PARAM, None)
        if want is None:
            return False
        return self.positional or self.param == want


def block_call(fn: Any) -> _Plan | None:
    """Whether ``fn(x)`` only passes ``x`` straight into one call as its first positional argument
    (or by keyword), and how to find that callee; None for anything else.

    Looked at once per ``map``: the function's straight-line code up to that call, with a
    symbolic stack. Any instruction not understood before the call, any other use of the argument
    (a second load, a store, a closure over it, a loop back over the call) gives None.
    """
    if not ENABLED:
        return None
    if isinstance(fn, functools.partial):
        inner = fn.func
        if fn.args or not hasattr(inner, _PARAM) or getattr(inner, _PARAM) in (fn.keywords or {}):
            return None
        return _Plan(fn, None, None, True)
    if not isinstance(fn, types.FunctionType) or not _311:
        return None
    code = fn.__code__
    if code.co_argcount < 1 or code.co_flags & (0x20 | 0x80 | 0x100 | 0x200):  # generators, coroutines
        return None
    arg = code.co_varnames[0]
    if arg in code.co_cellvars:
        return None
    try:
        ins = list(dis.get_instructions(code))
    except Exception:  # noqa: BLE001 - an odd code object: no fusion
        return None
    uses = [i for i in ins if "FAST" in i.opname and (i.argval == arg or (isinstance(i.argval, tuple) and arg in i.argval))]
    if len(uses) != 1 or uses[0].opname != "LOAD_FAST":
        return None
    try:
        return _Simulation(fn, ins, uses[0]).run()
    except _Unsure:
        return None


class _Unsure(Exception):
    """The function does something the simulation does not follow: no fusion."""


class _Simulation:
    """Runs the code's instructions on a symbolic stack until the call that takes the argument."""

    def __init__(self, fn: types.FunctionType, ins: list, load: Any) -> None:
        self.fn, self.ins, self.load = fn, ins, load
        self.stack: list[Any] = []
        self.kwnames: tuple = ()

    def pop(self, n: int = 1) -> list:
        if len(self.stack) < n or _BLOCK in self.stack[len(self.stack) - n:]:
            raise _Unsure
        out = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return out

    def run(self) -> _Plan | None:
        for k, i in enumerate(self.ins):
            op = i.opname
            if op in _NO_STACK:
                continue
            handler = getattr(self, "op_" + op, None)
            if handler is not None:
                plan = handler(i, k)
                if plan is not None:
                    return plan
            elif op in _POP_PUSH1:
                n = _POP_PUSH1[op]
                self.pop(int(i.arg or 0) if n is None else n)
                self.stack.append(_OTHER)
            else:
                raise _Unsure  # anything else before the call (a jump, a store elsewhere, ...)
        return None

    # -- loads ------------------------------------------------------------------------------------
    def op_PUSH_NULL(self, i: Any, k: int) -> None:
        self.stack.append(_NULL)

    def op_LOAD_GLOBAL(self, i: Any, k: int) -> None:
        null = isinstance(i.arg, int) and bool(i.arg & 1)
        ref = ("ref", _Ref("global", i.argval))
        self.stack.extend(([ref, _NULL] if _313 else [_NULL, ref]) if null else [ref])

    def op_LOAD_DEREF(self, i: Any, k: int) -> None:
        self.stack.append(("ref", _Ref("deref", i.argval)))

    op_LOAD_CLASSDEREF = op_LOAD_DEREF

    def op_LOAD_CONST(self, i: Any, k: int) -> None:
        self.stack.append(_BLOCK if i is self.load else _OTHER)

    op_LOAD_FAST = op_LOAD_FAST_CHECK = op_LOAD_SMALL_INT = op_LOAD_CONST

    def op_LOAD_ATTR(self, i: Any, k: int) -> None:
        top = self.pop()[0]
        ref = ("ref", _Ref("attr", i.argval, top[1])) if top[0] == "ref" else _OTHER
        if _312 and isinstance(i.arg, int) and i.arg & 1:
            self.op_LOAD_METHOD(i, k, ref)
        else:
            self.stack.append(ref)

    def op_LOAD_METHOD(self, i: Any, k: int, ref: Any = None) -> None:
        if ref is None:
            top = self.pop()[0]
            ref = ("ref", _Ref("attr", i.argval, top[1])) if top[0] == "ref" else _OTHER
        # On a module (the only owner _Ref.resolve accepts) this pushes NULL and the attribute.
        self.stack.extend([ref, _NULL] if _313 else [_NULL, ref])

    # -- other stack effects ------------------------------------------------------------------------
    def op_BUILD_MAP(self, i: Any, k: int) -> None:
        self.pop(2 * int(i.arg or 0))
        self.stack.append(_OTHER)

    def op_BUILD_CONST_KEY_MAP(self, i: Any, k: int) -> None:
        self.pop(int(i.arg or 0) + 1)
        self.stack.append(_OTHER)

    def op_POP_TOP(self, i: Any, k: int) -> None:
        self.pop()

    op_STORE_FAST = op_LIST_EXTEND = op_SET_UPDATE = op_DICT_UPDATE = op_DICT_MERGE = op_LIST_APPEND = op_POP_TOP

    def op_KW_NAMES(self, i: Any, k: int) -> None:
        self.kwnames = self.fn.__code__.co_consts[i.arg] if isinstance(i.arg, int) else i.argval

    # -- calls --------------------------------------------------------------------------------------
    def op_CALL_KW(self, i: Any, k: int) -> _Plan | None:
        names = self.ins[k - 1].argval if self.ins[k - 1].opname == "LOAD_CONST" else None
        if not isinstance(names, tuple):
            raise _Unsure
        self.pop()
        self.kwnames = names
        return self.op_CALL(i, k)

    def op_CALL(self, i: Any, k: int) -> _Plan | None:
        argc = int(i.arg or 0)
        stack = self.stack
        if len(stack) < argc + 2:
            raise _Unsure
        args, pair = stack[len(stack) - argc:], stack[len(stack) - argc - 2: len(stack) - argc]
        del stack[len(stack) - argc - 2:]
        names, self.kwnames = self.kwnames, ()
        stack.append(_OTHER)
        if _BLOCK in pair or args.count(_BLOCK) > 1:
            raise _Unsure
        if _BLOCK not in args:
            return None
        at, npos = args.index(_BLOCK), argc - len(names)
        refs = [p for p in pair if p[0] == "ref"]
        if len(refs) != 1 or _NULL not in pair or (at > 0 and at < npos):
            raise _Unsure
        if any(j.opcode in _JUMPS and isinstance(j.argval, int) and j.argval <= i.offset for j in self.ins[k:]):
            raise _Unsure  # a loop back over the call
        return _Plan(self.fn, refs[0][1], None if at < npos else names[at - npos], at < npos)


_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)
