"""What ``@cache(serializer=...)`` hands the C call path for JSON and Arrow.

The default codec runs in C. For ``serializer="orjson"`` / ``"arrow"`` (or
an OrjsonSerializer / ArrowSerializer, bare or inside an EncryptionWrapper)
the C path calls two functions built here: ``encode(result)`` gives the
payload the entry frame wraps (bare JSON or a bare Arrow IPC stream, no
frame of the serializer's own: the C path writes the one frame, with the
serializer id in header byte 4), and ``decode(payload)`` gives the value
back. Everything else (L1, L2, LZ4, checksum, signing, sealing) is the C
path's, as for the default codec (src/binding/py_cached_serializer.c).

Both functions raise only cachekit errors: ``UnsupportedTypeError`` for a
result the format cannot hold (returned uncached, counted, logged once),
``SerializationError`` for stored bytes that do not decode (a counted miss).
"""

from __future__ import annotations

from typing import Any, Callable

from cachekit.exceptions import ConfigurationError, SerializationError, UnsupportedTypeError
from cachekit.serializers.arrow_serializer import ArrowSerializer
from cachekit.serializers.encryption_wrapper import EncryptionWrapper
from cachekit.serializers.orjson_serializer import OrjsonSerializer
from cachekit.serializers.standard_serializer import StandardSerializer

__all__ = ["CodecSpec", "codec_for", "inner_serializer"]

# (serializer id, encode, decode, mutable) as CachedFunction(serializer=) takes it.
CodecSpec = tuple[int, Callable[[Any], Any], Callable[[bytes], Any], "bool | None"]

_NAMES: dict[str, Callable[[], Any]] = {"orjson": OrjsonSerializer, "arrow": ArrowSerializer}


def inner_serializer(serializer: Any) -> Any:
    """The serializer that writes the plaintext: the one inside an
    EncryptionWrapper, a new one for a registry name, else serializer."""
    if isinstance(serializer, EncryptionWrapper):
        return serializer.serializer
    if isinstance(serializer, str):
        make = _NAMES.get(serializer)
        return make() if make is not None else StandardSerializer()
    return serializer


def _orjson_codec(s: OrjsonSerializer) -> CodecSpec:
    dumps, loads, option = s._orjson.dumps, s._orjson.loads, s.option

    def encode(obj: Any) -> bytes:
        try:
            data: bytes = dumps(obj, option=option)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            # orjson's message names the type or the limit, not the value.
            raise UnsupportedTypeError(f"serializer='orjson' cannot encode this result: {exc}") from None
        return data

    def decode(payload: bytes) -> Any:
        try:
            return loads(payload)
        except ValueError as exc:  # orjson.JSONDecodeError
            raise SerializationError(f"invalid JSON in cache entry: {exc}") from None

    # None: the decoded value is plain data, sized by the C codec's walk.
    return (2, encode, decode, None)


def _arrow_codec(s: ArrowSerializer) -> CodecSpec:
    def encode(obj: Any) -> Any:
        return s._ipc(obj)  # a pyarrow Buffer: the C side reads it in place

    def decode(payload: bytes) -> Any:
        return s.decode_payload(payload)

    # pandas and polars frames are mutable (every hit gets a copy); pyarrow
    # Tables are not.
    return (3, encode, decode, s.return_format != "arrow")


def codec_for(serializer: Any) -> CodecSpec | None:
    """None when the C codec stores the values; else the spec for the C path.
    ConfigurationError for a serializer @cache cannot drive, or a missing
    optional package (naming the extra)."""
    inner = inner_serializer(serializer)
    if isinstance(inner, StandardSerializer):
        return None
    if isinstance(inner, OrjsonSerializer):
        return _orjson_codec(inner)
    if isinstance(inner, ArrowSerializer):
        return _arrow_codec(inner)
    raise ConfigurationError(
        f"serializer {type(inner).__name__} is not available with @cache in this release; use "
        "'default' / 'auto' (StandardSerializer, AutoSerializer), 'orjson' (OrjsonSerializer), "
        "'arrow' (ArrowSerializer), or EncryptionWrapper around one of them"
    )
