"""pandas DataFrame / Series and polars DataFrame as cached values, through
Arrow IPC (ext 21; cachekit/_data.py)."""

from __future__ import annotations

import pytest

from cachekit import cache
from cachekit._core import SerializationError, UnsupportedTypeError, copy_value, pack, unpack

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

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


def rich_frame():
    return pd.DataFrame(
        {
            "f": [1.5, None, 3.0],
            "cat": pd.Categorical(["x", "y", "x"], categories=["y", "x"], ordered=True),
            "ts": pd.date_range("2024-03-30", periods=3, freq="D", tz="Europe/Paris"),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "s": pd.array(["a", None, "c"], dtype="string"),
            "td": pd.to_timedelta([1, 2, 3], unit="s"),
        },
        index=pd.Index([10, 20, 30], name="idx"),
    )


FRAMES = {
    "rich": rich_frame,
    "multiindex": lambda: pd.DataFrame(
        {"v": [1, 2, 3, 4]},
        index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 2)], names=["k", "n"]),
    ),
    "str_index": lambda: pd.DataFrame({"v": [1, 2]}, index=["p", "q"]),
    "datetime_index": lambda: pd.DataFrame(
        {"v": [1.0, 2.0]}, index=pd.date_range("2020-01-01", periods=2, tz="UTC", name="when")
    ),
    "empty": lambda: pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    "rows_1000": lambda: pd.DataFrame({"i": range(1000), "x": [i / 7 for i in range(1000)]}),
}
SERIES = {
    "named": lambda: pd.Series([1.0, 2.0], index=["a", "b"], name="s"),
    "unnamed": lambda: pd.Series([1, 2, 3]),
    "int_name": lambda: pd.Series(["x", "y"], name=7),
    "categorical": lambda: pd.Series(pd.Categorical(["a", "b", "a"]), name="c"),
    "tz": lambda: pd.Series(pd.date_range("2021", periods=2, tz="America/New_York")),
}


def same(got, want):
    assert type(got) is type(want)
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_freq=False)  # Arrow keeps no index freq
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_freq=False)
    else:
        assert got.equals(want)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_dataframe_round_trip(name):
    want = FRAMES[name]()
    same(unpack(pack(want)), want)


@pytest.mark.parametrize("name", sorted(SERIES))
def test_series_round_trip(name):
    want = SERIES[name]()
    same(unpack(pack(want)), want)


def test_polars_round_trip():
    pl = pytest.importorskip("polars")
    want = pl.DataFrame({"a": [1, 2, None], "b": ["x", None, "z"], "c": [[1], [], [2, 3]]})
    got = unpack(pack(want))
    assert type(got) is pl.DataFrame and got.equals(want)
    assert copy_value(want).equals(want)


def test_non_str_columns_are_refused():
    with pytest.raises(UnsupportedTypeError, match="str column names"):
        pack(pd.DataFrame({1: [1]}))


def test_unknown_kind_is_refused():
    msgpack = pytest.importorskip("msgpack")
    body = msgpack.packb([9, None, b""], use_bin_type=True)
    with pytest.raises(SerializationError):
        unpack(msgpack.packb(msgpack.ExtType(21, body)))
    body = msgpack.packb([1, None, b"not arrow"], use_bin_type=True)
    with pytest.raises(SerializationError):
        unpack(msgpack.packb(msgpack.ExtType(21, body)))


def test_copy_is_deep():
    df = rich_frame()
    c = copy_value(df)
    c.iloc[0, 0] = 99.0
    assert df.iloc[0, 0] == 1.5


@pytest.mark.parametrize("kind", ["plain", "secure", "backend"])
@pytest.mark.parametrize("which", ["rich", "series", "polars"])
def test_decorator_round_trips(kind, which):
    if which == "polars":
        pl = pytest.importorskip("polars")
        factory = lambda: pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})  # noqa: E731
    else:
        factory = rich_frame if which == "rich" else SERIES["named"]
    backend = DictBackend() if kind == "backend" else None
    kw = {"backend": backend, "l1_max_entries": 1} if backend else {}
    calls = []

    def f(x: int):
        calls.append(x)
        return factory()

    f.__qualname__ = f"frames_{kind}_{which}"
    deco = cache.secure(master_key=KEY, **kw) if kind == "secure" else cache(**kw)
    f = deco(f)
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
    if which != "polars":
        second.iloc[0] = second.iloc[1]
        same(f(1), want)
