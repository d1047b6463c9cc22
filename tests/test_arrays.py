"""numpy arrays and scalars, pandas and polars frames as cached values
(py_codec_data.c, cachekit/_data.py; docs/format.md codes 20 and 21)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cachekit import cache
from cachekit._core import SerializationError, UnsupportedTypeError, copy_value, pack, unpack

np = pytest.importorskip("numpy")

KEY = "a1" * 32


class DictBackend:
    def __init__(self):
        self.data = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value, ttl=None):
        self.data[key] = value

    def delete(self, key):
        return self.data.pop(key, None) is not None

    def exists(self, key):
        return key in self.data

    def health_check(self):
        return True, {}


ARRAYS = {
    "f8_2d": lambda: np.arange(12.0).reshape(3, 4),
    "fortran": lambda: np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "strided": lambda: np.arange(10)[::3],
    "big_endian": lambda: np.arange(6, dtype=">i4").reshape(2, 3),
    "zero_d": lambda: np.array(3.5),
    "empty": lambda: np.zeros((0, 3), np.float32),
    "unicode": lambda: np.array(["a", "bcd"]),
    "bytes": lambda: np.array([b"x", b"yz"]),
    "datetime64": lambda: np.array(["2020-01-01", "2021-06-30T12"], "M8[ms]"),
    "timedelta64": lambda: np.array([1, 2], "m8[s]"),
    "complex": lambda: np.array([1 + 2j, 3 - 1j]),
    "bool": lambda: np.array([True, False]),
    "f2": lambda: np.array([1.5, -2], np.float16),
    "u8": lambda: np.array([2**64 - 1], np.uint64),
    "structured": lambda: np.array([(1, 2.0, "ab")], dtype=[("a", "<i4"), ("b", ">f8"), ("c", "U2")]),
    "void": lambda: np.array([b"\x01\x02"], "V2"),
}
SCALARS = {
    "float64": lambda: np.float64(2.5),
    "int8": lambda: np.int8(-3),
    "uint32": lambda: np.uint32(7),
    "bool_": lambda: np.bool_(True),
    "complex64": lambda: np.complex64(1j),
    "datetime64": lambda: np.datetime64("2020-01-01T10", "h"),
    "str_": lambda: np.str_("hé"),
}


def same(got, want):
    assert type(got) is type(want)
    assert got.dtype == want.dtype
    if isinstance(want, np.ndarray):
        assert got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    else:
        assert got == want


@pytest.mark.parametrize("name", sorted(ARRAYS) + [f"scalar_{n}" for n in sorted(SCALARS)])
def test_codec_round_trip(name):
    want = (ARRAYS.get(name) or SCALARS[name.removeprefix("scalar_")])()
    got = unpack(pack(want))
    same(got, want)
    if isinstance(want, np.ndarray):
        assert got.flags.writeable and got.flags.owndata is False  # a view over our bytearray
        if want.ndim > 1 and want.flags.f_contiguous and not want.flags.c_contiguous:
            assert got.flags.f_contiguous


def test_nested_in_containers():
    want = {"a": [np.arange(3), (np.float32(1.5),)], "b": np.ones((2, 2))}
    got = unpack(pack(want))
    assert np.array_equal(got["a"][0], want["a"][0])
    assert got["a"][1][0] == np.float32(1.5) and type(got["a"][1][0]) is np.float32


def test_object_arrays_are_refused():
    with pytest.raises(UnsupportedTypeError, match="object arrays"):
        pack(np.array([object()]))
    with pytest.raises(UnsupportedTypeError, match="object arrays"):
        pack(np.array([(1, None)], dtype=[("a", "i4"), ("b", "O")]))


def test_subclasses_are_not_arrays():
    with pytest.raises(UnsupportedTypeError):
        pack(np.ma.masked_array([1, 2], mask=[0, 1]))


def test_copy_copies_the_buffer():
    a = np.arange(4)
    c = copy_value(a)
    c[0] = 99
    assert a[0] == 0
    s = np.float64(1.0)
    assert copy_value(s) is s  # scalars are immutable


def forged(dtype, shape, flags, raw):
    import msgpack

    body = msgpack.packb([dtype, shape, flags, raw], use_bin_type=True)
    return msgpack.packb(msgpack.ExtType(20, body))


@pytest.mark.parametrize(
    "args",
    [
        ("|O", [1], 0, b"\x00" * 8),  # object dtype
        ([["a", "|O"]], [1], 0, b"\x00" * 8),  # object inside a structured dtype
        ("<f8", [2], 0, b"\x00" * 8),  # length does not match
        ("<f8", [-1], 0, b""),
        ("<f8", [1], 0x80, b"\x00" * 8),  # unknown flag
        ("<f8", [1], 2, b"\x00" * 8),  # a scalar with a shape
        ("os.system", [1], 0, b"\x00"),
    ],
)
def test_forged_payloads_are_refused(args):
    pytest.importorskip("msgpack")
    with pytest.raises(SerializationError):
        unpack(forged(*args))


def test_numpy_is_not_imported_by_cachekit():
    code = textwrap.dedent(
        """
        import sys, cachekit
        from cachekit import _core
        _core.unpack(_core.pack({"a": [1.5, (2,)]}))
        assert "numpy" not in sys.modules and "pandas" not in sys.modules, "imported"
        assert "pyarrow" not in sys.modules and "polars" not in sys.modules, "imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def make(kind, factory):
    backend = DictBackend() if kind == "backend" else None
    kw = {"backend": backend, "l1_max_entries": 1} if backend else {}
    calls = []

    def f(x: int):
        calls.append(x)
        return factory()

    f.__qualname__ = f"arrays_{kind}"
    deco = cache.secure(master_key=KEY, **kw) if kind == "secure" else cache(**kw)
    return deco(f), calls, backend


@pytest.mark.parametrize("name", ["f8_2d", "fortran", "structured", "datetime64"])
@pytest.mark.parametrize("kind", ["plain", "secure", "backend"])
def test_decorator_round_trips(kind, name):
    factory = ARRAYS[name]
    f, calls, backend = make(kind, factory)
    want = factory()
    same(f(1), want)
    if backend is not None:
        assert backend.data
        f.store.clear()
    second, third = f(1), f(1)
    assert calls == [1]
    same(second, want)
    same(third, want)
    assert second is not third
    if second.size:
        second.flat[-1] = second.flat[0]
    same(f(1), want)  # mutating a hit does not change the cached value


@pytest.mark.parametrize("kind", ["plain", "secure", "backend"])
def test_decorator_scalar(kind):
    f, calls, _ = make(kind, lambda: np.float32(1.25))
    assert f(1) == np.float32(1.25)
    got = f(1)
    assert type(got) is np.float32 and calls == [1]


try:
    from hypothesis import given, settings
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=150, deadline=None)
    @given(
        hnp.arrays(
            dtype=hnp.scalar_dtypes() | hnp.byte_string_dtypes() | hnp.unicode_string_dtypes(),
            shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        )
    )
    def test_hypothesis_arrays_round_trip(arr):
        got = unpack(pack(arr))
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert got.tobytes() == arr.tobytes()
        f = np.asfortranarray(arr)
        assert unpack(pack(f)).tobytes(order="A") == f.tobytes(order="A")


def test_wire_layout_is_the_documented_one():
    msgpack = pytest.importorskip("msgpack")
    got = pack(np.array([[1, 2], [3, 4]], "<i2", order="F"))
    assert got[0] == 0xC9 and got[5] == 20  # ext 32, code 20
    ext = msgpack.unpackb(got, raw=False)
    assert ext.code == 20
    assert msgpack.unpackb(ext.data, raw=False) == ["<i2", [2, 2], 1, bytes([1, 0, 3, 0, 2, 0, 4, 0])]
    scalar = msgpack.unpackb(msgpack.unpackb(pack(np.float32(1.0))).data)
    assert scalar == ["<f4", [], 2, b"\x00\x00\x80\x3f"]
    structured = msgpack.unpackb(msgpack.unpackb(pack(ARRAYS["structured"]())).data)
    assert structured[0] == [["a", "<i4"], ["b", ">f8"], ["c", "<U2"]]


def test_frame_wire_layout():
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    msgpack = pytest.importorskip("msgpack")
    ext = msgpack.unpackb(pack(pd.Series([1.5], name="s")))
    assert ext.code == 21
    kind, name, ipc = msgpack.unpackb(ext.data)
    assert (kind, name) == (2, "s")
    table = pa.ipc.open_stream(ipc).read_all()
    assert table.column("__cachekit_series__").to_pylist() == [1.5]
