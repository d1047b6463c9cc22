"""numpy arrays and scalars, pandas and polars frames: the rules the C codec calls.

The codec (src/binding/py_codec_data.c) recognises these types by name,
without importing anything, and calls :func:`encode`, :func:`decode` and
:func:`copy` below (installed once at import through ``_core._set_data_codec``).
Wire layout (docs/format.md, "Arrays and frames"):

* ext 20, numpy: ``[dtype, shape, flags, raw bytes]``; ``dtype`` is
  ``arr.dtype.str`` (byte order included), or the ``dtype.descr`` list for a
  structured dtype; flags bit 0 Fortran order, bit 1 a numpy scalar.
* ext 21, frames: ``[kind, name, Arrow IPC stream]``; kind 1 pandas
  DataFrame, 2 pandas Series (``name`` is its name), 3 polars DataFrame.

numpy, pandas, pyarrow and polars are imported only here, lazily: encoding
runs only for an object of theirs (so the package is already imported), and
decoding imports only those fixed packages for the fixed codes, never a name
the stored bytes carry.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

from cachekit import _core

NDARRAY = 20
FRAME = 21

F_ORDER = 0x1
SCALAR = 0x2

PANDAS_DATAFRAME = 1
PANDAS_SERIES = 2
POLARS_DATAFRAME = 3

_SERIES_COLUMN = "__cachekit_series__"
_MAX_NDIM = 64


class _Refused(Exception):
    pass


def _unsupported(msg: str) -> Exception:
    return _core.UnsupportedTypeError(msg)


# ---------------------------------------------------------------------------
# numpy


def _np() -> Any:
    return importlib.import_module("numpy")


def _dtype_spec(dt: Any) -> Any:
    if dt.hasobject:
        raise _unsupported(
            f"cachekit cannot store numpy arrays of dtype {dt!r}: object arrays hold "
            "arbitrary Python objects (convert to a list, or to a fixed-width dtype)"
        )
    if dt.fields is None:
        return dt.str
    descr = _lists(dt.descr)
    if _np().dtype(_tuples(descr)).itemsize != dt.itemsize:
        raise _unsupported(f"cachekit cannot store numpy dtype {dt!r}: its layout has no descr form")
    return descr


def _lists(v: Any) -> Any:
    return [_lists(x) for x in v] if isinstance(v, (list, tuple)) else v


def _tuples(v: Any) -> Any:
    """A stored descr (lists of [name, format(, shape)]) as numpy wants it."""
    if isinstance(v, str):
        return v
    if not isinstance(v, list):
        raise ValueError("invalid dtype description")
    out = []
    for field in v:
        if not isinstance(field, list) or len(field) not in (2, 3) or not isinstance(field[0], str):
            raise ValueError("invalid dtype field")
        item: list[Any] = [field[0], _tuples(field[1])]
        if len(field) == 3:
            item.append(tuple(field[2]))
        out.append(tuple(item))
    return out


def _encode_numpy(obj: Any) -> tuple[int, list[Any], Any, bool] | None:
    np = _np()
    flags = 0
    if isinstance(obj, np.generic):
        arr, flags, mutable = np.asarray(obj), SCALAR, False
    elif type(obj) is np.ndarray:
        arr, mutable = obj, True
    else:
        return None
    spec = _dtype_spec(arr.dtype)
    if arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
        flags |= F_ORDER
        flat = arr.ravel(order="F")
    else:
        flat = np.ascontiguousarray(arr).reshape(-1)
    raw = flat.view(np.uint8) if flat.dtype.itemsize else np.empty(0, np.uint8)
    return NDARRAY, [spec, list(arr.shape), flags], raw, mutable


def _decode_numpy(head: tuple[Any, ...], buf: bytearray) -> Any:
    np = _np()
    if len(head) != 3:
        raise ValueError("numpy payload needs dtype, shape, flags")
    spec, shape, flags = head
    if not isinstance(flags, int) or flags & ~(F_ORDER | SCALAR):
        raise ValueError("invalid numpy flags")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
        raise ValueError("invalid shape")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError("invalid shape")
    dt = np.dtype(_tuples(spec))
    if dt.hasobject:
        raise ValueError("object dtypes are never stored")
    if math.prod(shape) * dt.itemsize != len(buf):
        raise ValueError("buffer length does not match dtype and shape")
    if dt.itemsize == 0:
        arr = np.empty(shape, dt)
    else:
        arr = np.frombuffer(buf, dtype=dt).reshape(shape, order="F" if flags & F_ORDER else "C")
    if flags & SCALAR:
        if shape:
            raise ValueError("a scalar has no shape")
        return arr[()]
    return arr


# ---------------------------------------------------------------------------
# frames (Arrow IPC)


def _pa() -> Any:
    try:
        pyarrow = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.ipc")
    except ImportError:
        raise _unsupported(
            "cachekit stores pandas and polars frames through Arrow: install pyarrow "
            "(the arrow extra: pip install '.[arrow]' from the source checkout)"
        ) from None
    return pyarrow


def write_ipc_table(pa: Any, writer: Any, table: Any) -> None:
    """Write table to an IPC stream writer. A table with no rows has no
    record batches, and a stream without a batch carries no dictionaries:
    an empty categorical column would come back without its categories, so
    it is written as one empty batch."""
    if table.num_rows == 0 and table.num_columns > 0 and all(
        c.num_chunks > 0 for c in table.columns
    ):
        writer.write_batch(pa.RecordBatch.from_arrays(
            [c.combine_chunks() for c in table.columns], schema=table.schema))
        return
    writer.write_table(table)


def _ipc_bytes(table: Any) -> Any:
    pa = _pa()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        write_ipc_table(pa, writer, table)
    return sink.getvalue()


def _read_ipc(buf: Any) -> Any:
    pa = _pa()
    table = pa.ipc.open_stream(pa.py_buffer(buf)).read_all()
    table.validate(full=True)  # offsets and lengths, before pandas reads them
    return table


def _encode_frame(obj: Any) -> tuple[int, list[Any], Any, bool] | None:
    mod = type(obj).__module__.partition(".")[0]
    if mod == "pandas":
        pd = sys.modules.get("pandas")
        if pd is None:
            return None
        pa = _pa()
        if type(obj) is pd.DataFrame:
            if not all(isinstance(c, str) for c in obj.columns):
                raise _unsupported("cachekit stores pandas DataFrames with str column names only")
            table = pa.Table.from_pandas(obj, preserve_index=True)
            return FRAME, [PANDAS_DATAFRAME, None], _ipc_bytes(table), True
        if type(obj) is pd.Series:
            table = pa.Table.from_pandas(obj.to_frame(_SERIES_COLUMN), preserve_index=True)
            return FRAME, [PANDAS_SERIES, obj.name], _ipc_bytes(table), True
        return None
    if mod == "polars":
        pl = sys.modules.get("polars")
        if pl is None or type(obj) is not pl.DataFrame:
            return None
        return FRAME, [POLARS_DATAFRAME, None], _ipc_bytes(obj.to_arrow()), True
    return None


def _decode_frame(head: tuple[Any, ...], buf: bytearray) -> Any:
    if len(head) != 2:
        raise ValueError("frame payload needs kind and name")
    kind, name = head
    if kind == PANDAS_DATAFRAME:
        importlib.import_module("pandas")  # to_pandas needs it
        # to_pandas shares some Arrow buffers (categorical codes, for one)
        # read-only; the copy makes the frame as writeable as the original.
        return _read_ipc(buf).to_pandas().copy(deep=True)
    if kind == PANDAS_SERIES:
        importlib.import_module("pandas")

        s = _read_ipc(buf).to_pandas()[_SERIES_COLUMN].copy(deep=True)
        s.name = name
        return s
    if kind == POLARS_DATAFRAME:
        return importlib.import_module("polars").from_arrow(_read_ipc(buf))
    raise ValueError(f"unknown frame kind {kind!r}")


# ---------------------------------------------------------------------------
# the hooks


def encode(obj: Any) -> tuple[int, list[Any], Any, bool] | None:
    """(code, head, buffer, mutable) for an array or frame, else None."""
    if type(obj).__module__ == "numpy":
        return _encode_numpy(obj)
    return _encode_frame(obj)


def decode(code: int, head: tuple[Any, ...], buf: bytearray) -> Any:
    """The value stored as ext ``code``; raises on anything malformed."""
    if code == NDARRAY:
        return _decode_numpy(head, buf)
    if code == FRAME:
        return _decode_frame(head, buf)
    raise ValueError(f"unknown data extension {code}")


def copy(obj: Any) -> Any:
    """An L1 hit's private copy: arrays and frames are mutable."""
    if type(obj).__module__ == "numpy":
        np = _np()
        if isinstance(obj, np.generic):
            return obj
        if type(obj) is np.ndarray:
            return obj.copy(order="K")
    else:
        found = _frame_kind(obj)
        if found == POLARS_DATAFRAME:
            return obj.clone()
        if found is not None:
            return obj.copy(deep=True)
    raise _unsupported(f"cachekit cannot copy values of type {type(obj).__qualname__!r}")


def _frame_kind(obj: Any) -> int | None:
    """The frame kind of obj, without encoding it; None if it is none."""
    mod = type(obj).__module__.partition(".")[0]
    pd = sys.modules.get("pandas") if mod == "pandas" else None
    if pd is not None and type(obj) is pd.DataFrame:
        return PANDAS_DATAFRAME
    if pd is not None and type(obj) is pd.Series:
        return PANDAS_SERIES
    pl = sys.modules.get("polars") if mod == "polars" else None
    if pl is not None and type(obj) is pl.DataFrame:
        return POLARS_DATAFRAME
    return None


_core._set_data_codec(encode, decode, copy)
