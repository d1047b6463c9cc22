/*
 * py_codec.h - Python objects <-> msgpack (binding layer).
 *
 * Wire format of every type, including our msgpack extension types, is in
 * docs/format.md. Packing uses msgpack-c's packer; decoding uses a bounded
 * reader of our own (see py_codec_reader.c for why).
 */
#ifndef CK_PY_CODEC_H
#define CK_PY_CODEC_H

#include "ck_buf.h"
#include "module_state.h"

/* Nesting deeper than this is refused when packing and when unpacking. */
#define CK_CODEC_MAX_DEPTH 64

/* Decoding refuses a map or set of more elements than this in which more
   than this many keys share one hash: a hash-flooding guard that keeps decode
   time linear in the entry size (py_codec_unpack.c, docs/format.md). */
#define CK_CODEC_MAX_SAME_HASH 32

/* Flags for ck_py_pack. */
#define CK_PACK_CANONICAL 0x1 /* equal values give equal bytes: dict items and
                                 set elements sorted by their encoding */
#define CK_PACK_KEY 0x2       /* cache-key mode: also accepts classes (by
                                 module + qualname), objects defining
                                 __cachekit_key__(), Enum members, named
                                 tuples and frozen dataclasses (by type and
                                 value); output is never decoded */

/* msgpack extension type codes (docs/format.md, "Extension types"). */
enum {
    CK_EXT_BIGINT = 1,
    CK_EXT_TUPLE = 2,
    CK_EXT_SET = 3,
    CK_EXT_FROZENSET = 4,
    CK_EXT_BYTEARRAY = 5,
    CK_EXT_DATETIME = 6,
    CK_EXT_DATE = 7,
    CK_EXT_TIME = 8,
    CK_EXT_TIMEDELTA = 9,
    CK_EXT_DECIMAL = 10,
    CK_EXT_UUID = 11,
    /* Application types (py_codec_app.c): payload [name, body], the class
       resolved by name only among the types trusted for the decode. */
    CK_EXT_APP_DATACLASS = 12,
    CK_EXT_APP_NAMEDTUPLE = 13,
    CK_EXT_APP_ENUM = 14,
    CK_EXT_APP_ORDEREDDICT = 15,
    CK_EXT_APP_DEFAULTDICT = 16,
    CK_EXT_APP_SUBCLASS = 17,
    CK_EXT_APP_PYDANTIC = 18,
    CK_EXT_APP_ATTRS = 19,
    CK_EXT_APP_FIRST = CK_EXT_APP_DATACLASS,
    CK_EXT_APP_LAST = CK_EXT_APP_ATTRS,
    /* Data types (py_codec_data.c): payload [head..., bin buffer]. */
    CK_EXT_NDARRAY = 20, /* [dtype, shape, flags, raw bytes] */
    CK_EXT_FRAME = 21,   /* [kind, name, Arrow IPC stream] */
    /* Key mode only; never produced for stored values, refused by decode. */
    CK_EXT_KEY_CLASS = 64,
    CK_EXT_KEY_CUSTOM = 65,
    CK_EXT_KEY_ENUM = 66,
    CK_EXT_KEY_NAMEDTUPLE = 67,
    CK_EXT_KEY_DATACLASS = 68,
    CK_EXT_KEY_INSTANCE = 96, /* a method's self keyed by identity (py_keys.c) */
};

/*
 * Append the msgpack encoding of obj to out.
 * Returns 0, or -1 with an exception set: UnsupportedTypeError (a TypeError)
 * naming the type for anything the codec cannot store, SerializationError
 * for nesting deeper than CK_CODEC_MAX_DEPTH (which is also how a value
 * containing itself fails) or a length over msgpack's 32 bits, MemoryError.
 * On failure out may hold a partial encoding; the caller discards it.
 * Same as ck_py_pack_ex(st, obj, out, flags, NULL).
 */
int ck_py_pack(ck_state *st, PyObject *obj, ck_buf *out, int flags);

/*
 * Statistics gathered while packing, for the L1 store's memory bound and to
 * decide whether a hit may share the stored object or needs a fresh copy.
 */
typedef struct {
    size_t limit;        /* 0: none. Stop as soon as out->len exceeds it. */
    size_t graph_bytes;  /* out: approximate bytes of the Python object graph (sum of
                            sys.getsizeof-like sizes of every object visited:
                            tp_basicsize + items*itemsize for var objects, plus the
                            allocated item arrays of list/dict/set, string data) */
    int has_mutable;     /* out: 1 if the graph holds any mutable object (list, dict,
                            set, bytearray) */
} ck_pack_stats;

/*
 * ck_py_pack with statistics; stats may be NULL (then identical to
 * ck_py_pack). Returns 0, 1 when out->len passed stats->limit (no exception
 * set, out holds a partial encoding; the walk stops within about one value
 * of the limit, so refusing a huge value costs about `limit` bytes of work),
 * -1 with exception set. graph_bytes and has_mutable cover what was visited
 * before the walk stopped. The limit is checked on the buffer being written:
 * in canonical mode a dict's or set's elements are first encoded into a
 * scratch buffer, which is checked on its own.
 */
int ck_py_pack_ex(ck_state *st, PyObject *obj, ck_buf *out, int flags, ck_pack_stats *stats);

/*
 * 1 if instances of tp are keyed by value in CK_PACK_KEY mode: tp defines
 * __cachekit_key__ (not None), or is an Enum class, a tuple subclass with
 * _fields (collections.namedtuple, typing.NamedTuple) or a frozen dataclass.
 * 0 otherwise (instances are unsupported in keys, or keyed by their exact
 * builtin type), -1 with an exception set on error. Looks at the class only,
 * but can run Python code (dataclasses.fields(), attribute reads of the
 * dataclass parameters); not memoised, so callers on a hot path cache the
 * answer per type version.
 */
int ck_py_key_by_value(PyTypeObject *tp);

/*
 * New reference to a deep copy of obj, or NULL with an exception set: what
 * ck_py_unpack(ck_py_pack(obj)) would return, without the bytes. list,
 * dict, set and bytearray are new objects; immutable leaves (int, float,
 * str, bytes, None, bool, Decimal, UUID, the datetime family) and tuples and
 * frozensets holding only immutable values are shared (the same object).
 * Application types are rebuilt through their class's constructor from
 * copies of their fields (py_codec_app.c); Enum members, and named tuples
 * and frozen dataclasses whose fields came back as themselves, are shared.
 * Same types, depth limit and errors as ck_py_pack (flags 0); aliasing inside
 * the graph is not preserved, as in a decode.
 */
PyObject *ck_py_copy(ck_state *st, PyObject *obj);

/*
 * Decode exactly one msgpack value occupying all of data[0..len).
 * Returns a new reference, or NULL with SerializationError set for malformed,
 * truncated, trailing-garbage, too deep or over-long input, and for maps and
 * sets in which more than CK_CODEC_MAX_SAME_HASH keys share a hash. Never
 * allocates more than a small constant times len.
 */
PyObject *ck_py_unpack(ck_state *st, const unsigned char *data, size_t len);

/*
 * ck_py_unpack that may also build application types (dataclasses, named
 * tuples, Enums, ... docs/format.md codes 12-19): `types` (borrowed; a dict
 * "module:qualname" -> class, or NULL) lists the classes trusted for this
 * decode besides the process-wide registry (st->app_registry). A name found
 * in neither is a SerializationError; nothing is ever imported.
 */
PyObject *ck_py_unpack_types(ck_state *st, const unsigned char *data, size_t len,
                             PyObject *types);

/*
 * Per-file setup, run from ck_codec_exec. datetime.h gives every translation
 * unit its own static PyDateTimeAPI pointer, so each file that uses the
 * datetime macros imports the C API itself. 0, or -1 with an exception set.
 */
int ck_py_pack_init(void);
int ck_py_unpack_init(void);
int ck_py_copy_init(void);
/* py_codec_app.c: adds _set_app_codec and unpack_trusted to the module. */
int ck_codec_app_exec(PyObject *module);
int ck_codec_data_exec(PyObject *module); /* py_codec_data.c */

#endif /* CK_PY_CODEC_H */
