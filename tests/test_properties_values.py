"""Property tests of the values users return, through @cache with a backend
that forces serialization (FileBackend: every second call decodes the
stored bytes): dataclasses (nested, frozen, with defaults), NamedTuples,
Enums, numpy arrays of generated dtypes, shapes and orders, pandas frames
of several dtypes. And the decoders of those types: any byte string gives a
value or a CachekitError, never another exception or a crash."""

from __future__ import annotations

import dataclasses
import enum
import itertools
from typing import NamedTuple, Optional

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cachekit import _core, cache
from cachekit.app_types import type_name
from cachekit.backends.file import FileBackend, FileBackendConfig
from cachekit.exceptions import CachekitError

np = pytest.importorskip("numpy")
hnp = pytest.importorskip("hypothesis.extra.numpy")
pd = pytest.importorskip("pandas")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Color(enum.Enum):
    RED = "red"
    GREEN = 2
    BLUE = (3, "b")


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Pair(NamedTuple):
    left: int
    right: str = "r"


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Inner:
    tags: list[str]
    color: Color = Color.RED
    weights: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outer:
    inner: Inner
    points: tuple[Point, ...] = ()
    pair: Optional[Pair] = None
    level: Level = Level.LOW
    name: str = "outer"


@pytest.fixture(scope="module")
def file_backend(tmp_path_factory):
    return FileBackend(FileBackendConfig(cache_dir=tmp_path_factory.mktemp("props")))


_keys = itertools.count()


def through_backend(fn):
    """Call the cached fn for a fresh key twice: the miss, then (L1
    cleared) the value decoded from the backend's bytes."""
    k = next(_keys)
    fn(k)
    fn.store.clear()
    got = fn(k)
    assert fn.cache_stats()["l2_hits"] >= 1
    return got


def same(a, b):
    """Equal, and of the same type all the way down."""
    assert type(a) is type(b), (type(a), type(b))
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same(a[k], b[k])
    else:
        assert a == b or (a != a and b != b)


# ------------------------------------------------------- application types

text = st.text(max_size=8)
floats = st.floats(allow_nan=False, width=64)
points = st.builds(Point, floats, floats)
pairs = st.builds(Pair, st.integers(-2**63, 2**63 - 1), text)
inners = st.builds(Inner, st.lists(text, max_size=4), st.sampled_from(Color),
                   st.dictionaries(text, st.integers(-1000, 1000), max_size=3))
outers = st.builds(Outer, inners, st.lists(points, max_size=3).map(tuple),
                   st.none() | pairs, st.sampled_from(Level), text)
# Defaults left out on purpose: the constructor fills them, the round trip keeps them.
outers_defaulted = st.builds(Outer, inners)


@settings(max_examples=60, **SETTINGS)
@given(value=st.one_of(outers, outers_defaulted))
def test_dataclasses_round_trip_through_a_backend(file_backend, value):
    box = {}

    @cache(backend=file_backend)
    def f(k: int) -> Outer:
        return box["v"]

    box["v"] = value
    same(through_backend(f), value)


@settings(max_examples=60, **SETTINGS)
@given(value=st.one_of(
    points, pairs, st.sampled_from(Color), st.sampled_from(Level),
    st.lists(st.one_of(points, pairs, st.sampled_from(Color)), max_size=4),
))
def test_frozen_named_tuples_and_enums_round_trip(file_backend, value):
    box = {"v": value}

    @cache(backend=file_backend)
    def f(k: int) -> Point | Pair | Color | Level | list[Point | Pair | Color]:
        return box["v"]

    same(through_backend(f), value)


# ------------------------------------------------------------ numpy arrays

def _dtypes():
    endian = "?"
    return st.one_of(
        hnp.boolean_dtypes(),
        hnp.integer_dtypes(endianness=endian),
        hnp.unsigned_integer_dtypes(endianness=endian),
        hnp.floating_dtypes(endianness=endian),
        hnp.complex_number_dtypes(endianness=endian),
        hnp.datetime64_dtypes(endianness=endian),
        hnp.timedelta64_dtypes(endianness=endian),
        hnp.byte_string_dtypes(endianness=endian, max_len=6),
        hnp.unicode_string_dtypes(endianness=endian, max_len=6),
    )


@st.composite
def arrays(draw):
    a = draw(hnp.arrays(_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
    order = draw(st.sampled_from(["C", "F", "strided"]))
    if order == "F":
        a = np.asfortranarray(a)
    elif order == "strided" and a.ndim >= 1:
        a = a[::2]
    return a


def same_array(a, b):
    assert type(b) is np.ndarray
    assert b.dtype == a.dtype and b.shape == a.shape
    assert b.tobytes() == a.tobytes()  # same elements in logical order (NaNs bit for bit)
    if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
        assert b.flags.f_contiguous  # Fortran order kept
    assert b.flags.writeable


@settings(max_examples=120, **SETTINGS)
@given(a=arrays())
def test_numpy_arrays_round_trip_through_a_backend(file_backend, a):
    box = {"v": a}

    @cache(backend=file_backend)
    def f(k):
        return box["v"]

    same_array(a, through_backend(f))


@settings(max_examples=40, **SETTINGS)
@given(a=arrays())
def test_numpy_arrays_round_trip_encrypted(a):
    box = {"v": a}

    @cache.secure(master_key="ab" * 32, backend=None)
    def f(k):
        return box["v"]

    f(1)
    same_array(a, f(1))  # every secure hit decrypts and decodes


# ----------------------------------------------------------- pandas frames

_COLUMNS = {
    "i64": lambda n: st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n),
    "f64": lambda n: st.lists(st.floats(width=64), min_size=n, max_size=n),
    "str": lambda n: st.lists(text, min_size=n, max_size=n),
    "bool": lambda n: st.lists(st.booleans(), min_size=n, max_size=n),
    "Int64": lambda n: st.lists(st.none() | st.integers(-2**31, 2**31), min_size=n, max_size=n),
    "cat": lambda n: st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n),
    "ts": lambda n: st.lists(st.integers(0, 2**40), min_size=n, max_size=n),
}


def _column(kind, values):
    if kind == "Int64":
        return pd.array(values, dtype="Int64")
    if kind == "cat":
        return pd.Categorical(values, categories=["a", "b", "c"])
    if kind == "ts":
        return pd.to_datetime(values, unit="s", utc=True).tz_convert("Europe/Paris")
    if kind == "i64":
        return np.array(values, dtype=np.int64)
    return values


@st.composite
def frames(draw):
    n = draw(st.integers(0, 6))
    kinds = draw(st.lists(st.sampled_from(sorted(_COLUMNS)), min_size=1, max_size=5, unique=True))
    data = {k: _column(k, draw(_COLUMNS[k](n))) for k in kinds}
    index = draw(st.sampled_from(["range", "str", "named"]))
    df = pd.DataFrame(data)
    if index == "str":
        df.index = [f"r{i}" for i in range(n)]
    elif index == "named":
        df.index = pd.Index(np.arange(n, dtype=np.int64) * 3, name="key")
    return df


@settings(max_examples=50, **SETTINGS)
@given(df=frames())
# Found by this test: a frame with no rows lost its categories.
@example(df=pd.DataFrame({"cat": pd.Categorical([], categories=["a", "b", "c"])}))
def test_pandas_frames_round_trip_through_a_backend(file_backend, df):
    box = {"v": df}

    @cache(backend=file_backend)
    def f(k):
        return box["v"]

    got = through_backend(f)
    assert type(got) is pd.DataFrame
    pd.testing.assert_frame_equal(got, df)


@settings(max_examples=30, **SETTINGS)
@given(df=frames())
def test_pandas_frames_round_trip_with_serializer_arrow(file_backend, df):
    pytest.importorskip("pyarrow")
    box = {"v": df}

    @cache(backend=file_backend, serializer="arrow")
    def f(k):
        return box["v"]

    got = through_backend(f)
    pd.testing.assert_frame_equal(got, df, check_index_type=False)


# ------------------------------------------------ decoders of hostile bytes

TYPES = {type_name(t): t for t in (Outer, Inner, Point, Pair, Color, Level)}
SEEDS = [
    _core.pack(Outer(Inner(["a"], Color.BLUE, {"w": 1}), (Point(1.0, 2.0),), Pair(1, "x"))),
    _core.pack([Color.GREEN, Level.HIGH, Pair(2)]),
    _core.pack(np.arange(6, dtype=">i4").reshape(2, 3)),
    _core.pack(np.asfortranarray(np.ones((2, 2), dtype=np.complex64))),
    _core.pack(np.array(["ab", "c"], dtype="<U2")),
    _core.pack(pd.DataFrame({"a": [1, 2], "c": pd.Categorical(["x", "y"])})),
]


@st.composite
def hostile(draw):
    """A valid encoding, damaged: bytes flipped, cut, inserted; or random bytes."""
    kind = draw(st.sampled_from(["mutate", "random", "ext"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "ext":
        # An ext header of the array (20), frame (21) or app-type codes
        # around random bytes.
        code = draw(st.sampled_from([17, 18, 19, 20, 21, 22, 23]))
        body = draw(st.binary(max_size=40))
        return bytes([0xC7, len(body), code]) + body
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@settings(max_examples=400, **SETTINGS)
@given(data=hostile())
def test_any_bytes_decode_to_a_value_or_a_cachekit_error(data):
    for decode in (_core.unpack, lambda d: _core.unpack_trusted(d, TYPES)):
        try:
            decode(data)
        except CachekitError:
            pass


@settings(max_examples=150, **SETTINGS)
@given(data=st.one_of(st.binary(max_size=80), hostile()))
def test_any_bytes_to_the_json_and_arrow_decoders(data):
    from cachekit.serializers import ArrowSerializer, OrjsonSerializer
    from cachekit.serializers.cache_codec import codec_for

    pa = pytest.importorskip("pyarrow")
    table = pa.table({"a": [1, 2], "b": ["x", None]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    ipc = sink.getvalue().to_pybytes()
    for serializer, payloads in ((OrjsonSerializer(), [data]),
                                 (ArrowSerializer(), [data, ipc[: len(data)], ipc + data])):
        decode = codec_for(serializer)[2]
        for payload in payloads:
            try:
                decode(payload)
            except CachekitError:
                pass
