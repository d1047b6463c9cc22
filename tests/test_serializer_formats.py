"""AutoSerializer, OrjsonSerializer, ArrowSerializer, the registry, and the
serializer id each entry records (docs/format.md, header byte 4)."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import textwrap

import pytest

from cachekit import ConfigurationError, cache
from cachekit.exceptions import IntegrityError, SerializationError, UnsupportedTypeError
from cachekit.serializers import (
    SERIALIZER_REGISTRY,
    ArrowSerializer,
    AutoSerializer,
    EncryptionWrapper,
    OrjsonSerializer,
    SerializationFormat,
    SerializerProtocol,
    StandardSerializer,
    benchmark_serializers,
    get_available_serializers,
    get_serializer,
    get_serializer_info,
)

KEY = "5e" * 32
JSONABLE = {"id": 7, "tags": ["a", "b"], "nested": {"x": 1.5, "y": None}}


def frame():
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(
        {"a": [1, 2, 3], "cat": pd.Categorical(["x", "y", "x"]),
         "n": pd.array([1, None, 3], dtype="Int64")},
        index=pd.Index(["p", "q", "r"], name="key"),
    )


def test_submodules_exist():
    for name in ("standard_serializer", "auto_serializer", "orjson_serializer", "arrow_serializer",
                 "encryption_wrapper", "base"):
        importlib.import_module(f"cachekit.serializers.{name}")
    from cachekit.serializers.arrow_serializer import ArrowSerializer as A
    from cachekit.serializers.auto_serializer import AutoSerializer as B
    from cachekit.serializers.orjson_serializer import OrjsonSerializer as C

    assert (A, B, C) == (ArrowSerializer, AutoSerializer, OrjsonSerializer)


def test_importing_serializers_imports_no_optional_package():
    code = textwrap.dedent("""
        import sys, cachekit.serializers
        bad = {"numpy", "pandas", "pyarrow", "polars", "orjson"} & set(sys.modules)
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("integrity", [True, False])
def test_auto_serializer_is_the_default_codec(integrity):
    np = pytest.importorskip("numpy")
    s = AutoSerializer(enable_integrity_checking=integrity)
    assert isinstance(s, SerializerProtocol)
    value = {"arr": np.arange(6.0).reshape(2, 3), "t": (1, 2), "s": {3}}
    data, meta = s.serialize(value)
    assert meta.serialization_format is SerializationFormat.MSGPACK
    got = s.deserialize(data, meta)
    assert got["t"] == (1, 2) and got["s"] == {3}
    assert np.array_equal(got["arr"], value["arr"])
    assert s.validate_data(data)
    assert not s.validate_data(b"garbage")
    assert s.estimate_compression_ratio([0] * 5000) > 10
    assert s.estimate_compression_ratio(b"x") == 1.0
    with pytest.raises(ConfigurationError, match="only 'msgpack'"):
        AutoSerializer(default_format="arrow")


@pytest.mark.parametrize("integrity", [True, False])
def test_orjson_round_trip(integrity):
    pytest.importorskip("orjson")
    s = OrjsonSerializer(enable_integrity_checking=integrity)
    data, meta = s.serialize(JSONABLE)
    assert meta.serialization_format is SerializationFormat.ORJSON
    assert s.deserialize(data, meta) == JSONABLE
    if integrity:
        assert data[:2] == b"CK" and data[4] == 2
    else:
        assert data.startswith(b"{")
    # sorted keys by default: equal dicts, equal bytes
    assert s.serialize({"b": 1, "a": 2})[0] == s.serialize({"a": 2, "b": 1})[0]


def test_orjson_refuses_what_json_cannot_hold():
    pytest.importorskip("orjson")
    with pytest.raises(UnsupportedTypeError):
        OrjsonSerializer().serialize({1j})
    with pytest.raises(SerializationError):
        OrjsonSerializer(enable_integrity_checking=False).deserialize(b"{nope")


@pytest.mark.parametrize("compression", ["auto", None, "lz4", "zstd"])
def test_arrow_round_trip_pandas(compression):
    pd = pytest.importorskip("pandas")
    s = ArrowSerializer(compression=compression)
    df = frame()
    data, meta = s.serialize(df)
    assert meta.serialization_format is SerializationFormat.ARROW and data[4] == 3
    pd.testing.assert_frame_equal(s.deserialize(data, meta), df)


def test_arrow_return_formats_and_inputs():
    pa = pytest.importorskip("pyarrow")
    pl = pytest.importorskip("polars")
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    for obj in (table, table.to_batches()[0], pl.from_arrow(table)):
        data, _ = ArrowSerializer(return_format="arrow").serialize(obj)
        # polars writes large_string; the values are the same
        assert ArrowSerializer(return_format="arrow").deserialize(data).to_pylist() == table.to_pylist()
        assert ArrowSerializer(return_format="polars").deserialize(data).equals(pl.from_arrow(table))
    raw, _ = ArrowSerializer(enable_integrity_checking=False).serialize(table)
    assert pa.ipc.open_stream(raw).read_all().equals(table)  # any Arrow reader opens it
    with pytest.raises(UnsupportedTypeError, match="ArrowSerializer stores"):
        ArrowSerializer().serialize({"a": 1})
    with pytest.raises(ConfigurationError):
        ArrowSerializer(return_format="excel")
    with pytest.raises(SerializationError):
        ArrowSerializer(enable_integrity_checking=False).deserialize(b"\xff" * 40)


def test_arrow_serialize_to_sink():
    pytest.importorskip("pandas")
    s = ArrowSerializer()
    sink = io.BytesIO()
    meta = s.serialize_to_sink(frame(), sink)
    assert meta.serialization_format is SerializationFormat.ARROW
    assert s.deserialize(sink.getvalue()).equals(frame())
    small = io.BytesIO()
    with pytest.raises(SerializationError, match="max_bytes"):
        s.serialize_to_sink(frame(), small, max_bytes=10)
    assert small.getvalue() == b""


def writers():
    out = [("msgpack", StandardSerializer(), {"a": 1})]
    if importlib.util.find_spec("orjson"):
        out.append(("orjson", OrjsonSerializer(), {"a": 1}))
    if importlib.util.find_spec("pyarrow") and importlib.util.find_spec("pandas"):
        out.append(("arrow", ArrowSerializer(), frame()))
    return out


def test_reading_another_serializers_entry_is_an_integrity_error():
    ws = writers()
    for wname, writer, value in ws:
        data, _ = writer.serialize(value)
        for rname, reader, _ in ws:
            if rname != wname:
                with pytest.raises(IntegrityError, match="entry serializer"):
                    reader.deserialize(data)


def test_encryption_wrapper_records_and_checks_the_serializer_id():
    pytest.importorskip("orjson")
    inner = OrjsonSerializer(enable_integrity_checking=False)
    w = EncryptionWrapper(inner, master_key=KEY)
    data, meta = w.serialize(JSONABLE, cache_key="k")
    assert meta.encrypted and meta.serialization_format is SerializationFormat.ORJSON
    assert b"tags" not in data
    assert w.deserialize(data, meta, cache_key="k") == JSONABLE
    other = EncryptionWrapper(StandardSerializer(enable_integrity_checking=False), master_key=KEY)
    with pytest.raises(IntegrityError):
        other.deserialize(data, meta, cache_key="k")


def test_encryption_wrapper_around_arrow():
    pd = pytest.importorskip("pandas")
    w = EncryptionWrapper(ArrowSerializer(enable_integrity_checking=False), master_key=KEY)
    data, meta = w.serialize(frame(), cache_key="k")
    pd.testing.assert_frame_equal(w.deserialize(data, meta, cache_key="k"), frame())


def test_registry_and_info():
    assert set(SERIALIZER_REGISTRY) >= {"default", "std", "auto", "orjson", "arrow"}
    assert type(get_serializer("auto")) is AutoSerializer
    assert type(get_serializer("std", enable_integrity_checking=False)) is StandardSerializer
    with pytest.raises(ConfigurationError, match="unknown serializer"):
        get_serializer("pickle")
    info = get_serializer_info()
    assert info["orjson"]["serializer_id"] == 2 and info["orjson"]["extra"] == "json"
    assert info["arrow"]["serializer_id"] == 3 and info["default"]["serializer_id"] == 1
    available = get_available_serializers()
    assert "default" in available
    assert ("orjson" in available) == info["orjson"]["available"]
    assert "default" in benchmark_serializers()


def test_missing_package_names_the_extra(monkeypatch):
    real = importlib.import_module

    def fake(name, *a):
        if name.split(".")[0] in ("orjson", "pyarrow"):
            raise ImportError(name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ConfigurationError, match=r"json extra.*\.\[json\]"):
        OrjsonSerializer()
    with pytest.raises(ConfigurationError, match=r"arrow extra"):
        ArrowSerializer()


def test_cache_accepts_auto():
    np = pytest.importorskip("numpy")
    for serializer in ("auto", AutoSerializer(), EncryptionWrapper(AutoSerializer(), master_key=KEY)):
        calls = []

        @cache(serializer=serializer)
        def f(x):
            calls.append(x)
            return np.arange(x)

        assert np.array_equal(f(3), np.arange(3)) and np.array_equal(f(3), np.arange(3))
        assert calls == [3]


def test_cache_refuses_serializers_it_cannot_drive():
    class Custom:
        def serialize(self, obj):
            return b"", None

        def deserialize(self, data, metadata=None):
            return None

    for serializer in (Custom(), EncryptionWrapper(Custom(), master_key=KEY)):
        with pytest.raises(ConfigurationError, match="not available with @cache") as info:
            cache(serializer=serializer)(lambda: 1)
        assert "'orjson'" in str(info.value) and "'arrow'" in str(info.value)
    with pytest.raises(ConfigurationError, match="'orjson'"):
        cache(serializer="yaml")(lambda: 1)
