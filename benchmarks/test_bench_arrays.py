"""A 1 MB float64 array and a 1,000-row DataFrame, round trip (encode +
decode), plain entry and encrypted, against pickle and pyarrow IPC used
directly. Baseline of each group: pickle (protocol 5, in-band)."""

from __future__ import annotations

import pickle

import pytest

from cachekit import _core

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

KEYRING = _core.Keyring(bytes(32))
CACHE_KEY = b"cachekit:bench.arrays:\x91\x01"

ARRAY = np.random.default_rng(7).random(1 << 17)  # 131072 x 8 B = 1 MiB
FRAME = pd.DataFrame(
    {
        "id": np.arange(1000),
        "x": np.random.default_rng(8).random(1000),
        "name": [f"user-{i}" for i in range(1000)],
        "cat": pd.Categorical(np.array(["a", "b", "c"])[np.arange(1000) % 3]),
        "ts": pd.date_range("2026-01-01", periods=1000, freq="min", tz="UTC"),
    }
)


def pickle_rt(v):
    return pickle.loads(pickle.dumps(v, protocol=5))


def plain_rt(v):
    return _core.decode_entry(_core.encode_entry(v))


def encrypted_rt(v):
    return KEYRING.open_value(KEYRING.seal_value(v, cache_key=CACHE_KEY), cache_key=CACHE_KEY)


def ipc_rt_frame(df):
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(df, preserve_index=True)
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all().to_pandas()


def ipc_rt_array(a):
    sink = pa.BufferOutputStream()
    table = pa.table({"v": a})
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all().column("v").to_numpy()


MODES = {
    "pickle": pickle_rt,
    "pyarrow IPC directly": None,
    "cachekit plain entry": plain_rt,
    "cachekit encrypted": encrypted_rt,
}
VALUES = {"1 MiB float64 array": (ARRAY, ipc_rt_array), "1000-row DataFrame": (FRAME, ipc_rt_frame)}


def same(a, b):
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a.equals(b)


@pytest.mark.parametrize("value_name", list(VALUES))
@pytest.mark.parametrize("mode", list(MODES))
def test_round_trip(benchmark, recorder, value_name, mode):
    value, ipc = VALUES[value_name]
    fn = MODES[mode] or ipc
    assert same(fn(value), value)
    benchmark(fn, value)
    recorder(benchmark, f"round trip, {value_name}", mode, baseline=mode == "pickle")


@pytest.mark.parametrize("value_name", list(VALUES))
def test_entry_size(value_name):
    value, _ = VALUES[value_name]
    assert len(_core.encode_entry(value)) < 1.1 * len(pickle.dumps(value, protocol=5))
