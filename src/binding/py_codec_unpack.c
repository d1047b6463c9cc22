/*
 * py_codec_unpack.c - msgpack -> Python objects (the decoding half of the
 * codec).
 *
 * Owns ck_py_unpack(): the decoding of each value the bounded reader
 * (py_codec_reader.c, which explains why it is ours and how it bounds
 * lengths, counts and depth) parses, and of our extension types back to
 * their exact Python types. Cache entries can come from a shared Redis, so
 * the input is hostile:
 *
 *   - maps and sets of more than CK_CODEC_MAX_SAME_HASH elements count their
 *     keys' hashes and are refused when too many share one, so inserting
 *     them stays linear (see "Hash-flooding guard" below);
 *   - exactly one value must consume all the input; extension payloads are
 *     parsed as nested msgpack inside a window [body, body + len) that must
 *     likewise be consumed exactly;
 *   - every failure raises SerializationError with the offset where it was
 *     found (exceptions from the constructors we call, such as datetime's
 *     range checks, become its __cause__); MemoryError is left as is.
 *
 * The extension decoders read their int fields from mp_heads, without
 * boxing them.
 */
#include "py_codec_reader.h"

#include "ck_hashcount.h"

#include <datetime.h>
#include <limits.h>
#include <stdint.h>

int ck_py_unpack_init(void)
{
    /* This translation unit's copy of the datetime C API (see py_codec.h). */
    PyDateTime_IMPORT;
    return PyDateTimeAPI == NULL ? -1 : 0;
}


/* ------------------------------------------------------------------------ */
/* Standard types                                                            */
/* ------------------------------------------------------------------------ */

static PyObject *decode_str(reader *r, const mp_head *h)
{
    /* Strict: also rejects encoded surrogates, which pack never emits for
       stored values. */
    PyObject *s = PyUnicode_DecodeUTF8((const char *)h->body, (Py_ssize_t)h->len, NULL);

    if (s == NULL) {
        return reader_fail(r, "invalid UTF-8 in str at offset %zu", h->offset);
    }
    return s;
}

static PyObject *read_list(reader *r, const mp_head *h)
{
    PyObject *list = NULL;
    PyObject *item;
    size_t i;

    if (reader_depth_enter(r) < 0) {
        return NULL;
    }
    list = PyList_New((Py_ssize_t)h->len);
    if (list == NULL) {
        goto error;
    }
    for (i = 0; i < h->len; i++) {
        item = reader_value(r);
        if (item == NULL) {
            goto error;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    r->depth--;
    return list;
error:
    /* Unfilled slots are NULL, which list dealloc skips. */
    Py_XDECREF(list);
    r->depth--;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Hash-flooding guard                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Inserting n keys that share one hash into a dict or set costs n*n/2 __eq__
 * calls (CPython probes every entry with that hash), and hashes of ints,
 * tuples of ints and the like are not randomised: multiples of 2**61 - 1 all
 * hash to 0, so a 145 KB map of them took seconds to decode. Maps and sets
 * of more than CK_CODEC_MAX_SAME_HASH elements therefore count their keys'
 * hashes (ck_hashcount.h) and are refused once more than that many share
 * one: the insertions then cost at most n * CK_CODEC_MAX_SAME_HASH
 * comparisons, linear in the entry size. Honest data gets nowhere near it:
 * distinct ints below 2**61 never share a hash, strs and bytes use seeded
 * SipHash, and equal keys (1, 1.0, True) are duplicates, refused anyway.
 * Smaller containers skip the guard: none of their keys can exceed it.
 */
static int guard_init(ck_hashcount *hc, size_t n, int *on)
{
    /* Seeded from the interpreter's hash secret, so the table's own slots
       cannot be targeted (see ck_hashcount.h). */
    uint64_t seed = (uint64_t)_Py_HashSecret.siphash.k0 ^ (uint64_t)_Py_HashSecret.siphash.k1;

    *on = n > CK_CODEC_MAX_SAME_HASH;
    if (*on && ck_hashcount_init(hc, n, CK_CODEC_MAX_SAME_HASH, seed) < 0) {
        *on = 0;
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Hash a map key (is_map) or set element and count it. 0, or -1 with
   SerializationError set (also for an unhashable key, which the insertion
   would refuse with the same message). */
static int guard_add(reader *r, ck_hashcount *hc, PyObject *key, int is_map,
                     size_t container_offset, size_t key_offset)
{
    Py_hash_t h = PyObject_Hash(key);

    if (h == -1) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            reader_fail(r, "unhashable %s at offset %zu", is_map ? "key in map" : "set element",
                 key_offset);
        }
        return -1;
    }
    if (ck_hashcount_add(hc, (uint64_t)h) < 0) {
        reader_fail(r, "%s at offset %zu: more than %d keys share one hash (refused as hash "
                "flooding)",
             is_map ? "map" : "set", container_offset, CK_CODEC_MAX_SAME_HASH);
        return -1;
    }
    return 0;
}

/* Insert into a fresh dict, refusing unhashable and duplicate keys: pack
   never emits duplicates, and refusing them keeps one encoding per value. */
static int map_insert(reader *r, PyObject *dict, PyObject *key, PyObject *value, size_t offset)
{
    Py_ssize_t before = PyDict_GET_SIZE(dict);

    if (PyDict_SetItem(dict, key, value) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            reader_fail(r, "unhashable key in map at offset %zu", offset);
        }
        return -1;
    }
    if (PyDict_GET_SIZE(dict) == before) {
        reader_fail(r, "duplicate key in map at offset %zu", offset);
        return -1;
    }
    return 0;
}

static PyObject *read_map(reader *r, const mp_head *h)
{
    PyObject *dict = NULL;
    PyObject *key = NULL;
    PyObject *value = NULL;
    ck_hashcount hc;
    size_t i, key_offset;
    int guarded = 0;

    if (reader_depth_enter(r) < 0) {
        return NULL;
    }
    if (guard_init(&hc, h->len, &guarded) < 0) {
        goto error;
    }
    dict = PyDict_New();
    if (dict == NULL) {
        goto error;
    }
    for (i = 0; i < h->len; i++) {
        key_offset = reader_offset(r, r->p);
        key = reader_value(r);
        if (key == NULL) {
            goto error;
        }
        /* Counted before the value is decoded: a flood is refused after
           CK_CODEC_MAX_SAME_HASH + 1 keys, not after reading them all. */
        if (guarded && guard_add(r, &hc, key, 1, h->offset, key_offset) < 0) {
            goto error;
        }
        value = reader_value(r);
        if (value == NULL || map_insert(r, dict, key, value, key_offset) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
    }
    if (guarded) {
        ck_hashcount_free(&hc);
    }
    r->depth--;
    return dict;
error:
    if (guarded) {
        ck_hashcount_free(&hc);
    }
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(dict);
    r->depth--;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Extension payloads                                                        */
/* ------------------------------------------------------------------------ */

/* The head of an ext payload that must be an array; with want >= 0 it must
   have exactly that many elements. */
static int read_payload_array(reader *r, const mp_head *ext, Py_ssize_t want, size_t *n)
{
    mp_head h;

    if (reader_head(r, &h) < 0) {
        return -1;
    }
    if (h.kind != MP_ARRAY || (want >= 0 && h.len != (size_t)want)) {
        if (want >= 0) {
            reader_fail(r, "extension type %d at offset %zu: payload must be an array of %zd",
                 ext->ext_type, ext->offset, want);
        } else {
            reader_fail(r, "extension type %d at offset %zu: payload must be an array", ext->ext_type,
                 ext->offset);
        }
        return -1;
    }
    *n = h.len;
    return 0;
}

static PyObject *read_tuple(reader *r, const mp_head *ext)
{
    PyObject *tuple = NULL;
    PyObject *item;
    size_t i, n;

    if (read_payload_array(r, ext, -1, &n) < 0) {
        return NULL;
    }
    tuple = PyTuple_New((Py_ssize_t)n);
    if (tuple == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        item = reader_value(r);
        if (item == NULL) {
            Py_DECREF(tuple); /* unfilled slots are NULL, which is fine */
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, (Py_ssize_t)i, item);
    }
    return tuple;
}

/* set or frozenset; PySet_Add may fill a frozenset that is not yet shared. */
static PyObject *read_set(reader *r, const mp_head *ext, int frozen)
{
    PyObject *set = NULL;
    PyObject *item = NULL;
    ck_hashcount hc;
    size_t i, n, item_offset;
    Py_ssize_t before;
    int guarded = 0;

    if (read_payload_array(r, ext, -1, &n) < 0) {
        return NULL;
    }
    if (guard_init(&hc, n, &guarded) < 0) {
        goto error;
    }
    set = frozen ? PyFrozenSet_New(NULL) : PySet_New(NULL);
    if (set == NULL) {
        goto error;
    }
    for (i = 0; i < n; i++) {
        item_offset = reader_offset(r, r->p);
        item = reader_value(r);
        if (item == NULL) {
            goto error;
        }
        if (guarded && guard_add(r, &hc, item, 0, ext->offset, item_offset) < 0) {
            goto error;
        }
        before = PySet_GET_SIZE(set);
        if (PySet_Add(set, item) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                reader_fail(r, "unhashable set element at offset %zu", item_offset);
            }
            goto error;
        }
        if (PySet_GET_SIZE(set) == before) {
            reader_fail(r, "duplicate set element at offset %zu", item_offset);
            goto error;
        }
        Py_CLEAR(item);
    }
    if (guarded) {
        ck_hashcount_free(&hc);
    }
    return set;
error:
    if (guarded) {
        ck_hashcount_free(&hc);
    }
    Py_XDECREF(item);
    Py_XDECREF(set);
    return NULL;
}

/* An int field of a datetime-family payload, bounded to C int (the
   constructors then check the real ranges). */
static int read_int_field(reader *r, const mp_head *ext, int *out)
{
    mp_head h;

    if (reader_head(r, &h) < 0) {
        return -1;
    }
    if (h.kind != MP_INT || h.i < INT_MIN || h.i > INT_MAX) {
        reader_fail(r, "extension type %d at offset %zu: field at offset %zu must be a small int",
             ext->ext_type, ext->offset, h.offset);
        return -1;
    }
    *out = (int)h.i;
    return 0;
}

/* New reference to the tzinfo the tz field describes: None, ZoneInfo(key),
   datetime.timezone.utc or datetime.timezone(timedelta(microseconds=off)). */
static PyObject *read_tz(reader *r, const mp_head *ext)
{
    /* A timezone offset must be strictly within one day. */
    const int64_t day_us = (int64_t)86400 * 1000000;
    PyObject *key = NULL;
    PyObject *delta = NULL;
    PyObject *tz = NULL;
    mp_head h;

    if (reader_head(r, &h) < 0) {
        return NULL;
    }
    switch (h.kind) {
    case MP_NIL:
        return Py_NewRef(Py_None);
    case MP_STR:
        key = decode_str(r, &h);
        if (key == NULL) {
            return NULL;
        }
        tz = PyObject_CallOneArg(r->st->ZoneInfoType, key);
        if (tz == NULL) {
            reader_fail(r, "extension type %d at offset %zu: unknown time zone %R", ext->ext_type,
                 ext->offset, key);
        }
        Py_DECREF(key);
        return tz;
    case MP_INT:
        if (h.i == 0) {
            return Py_NewRef(PyDateTime_TimeZone_UTC);
        }
        if (h.i <= -day_us || h.i >= day_us) {
            break;
        }
        /* Split so that each constructor argument fits a C int. */
        delta = PyDelta_FromDSU(0, (int)(h.i / 1000000), (int)(h.i % 1000000));
        if (delta == NULL) {
            break;
        }
        tz = PyTimeZone_FromOffset(delta);
        Py_DECREF(delta);
        if (tz == NULL) {
            break;
        }
        return tz;
    default:
        break;
    }
    return reader_fail(r, "extension type %d at offset %zu: invalid tz field at offset %zu",
                ext->ext_type, ext->offset, h.offset);
}

/* DATETIME [y, mo, d, h, mi, s, us, fold, tz], DATE [y, mo, d],
   TIME [h, mi, s, us, fold, tz], TIMEDELTA [days, seconds, microseconds].
   ext->ext_type is one of these four (read_ext dispatches on it). */
static PyObject *read_datetime_like(reader *r, const mp_head *ext)
{
    static const Py_ssize_t n_ints[] = {
        [CK_EXT_DATETIME] = 8, [CK_EXT_DATE] = 3, [CK_EXT_TIME] = 5, [CK_EXT_TIMEDELTA] = 3};
    int with_tz = ext->ext_type == CK_EXT_DATETIME || ext->ext_type == CK_EXT_TIME;
    Py_ssize_t i, n = n_ints[ext->ext_type];
    PyObject *tz = NULL;
    PyObject *res = NULL;
    int f[8];
    size_t count;

    if (read_payload_array(r, ext, n + with_tz, &count) < 0) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (read_int_field(r, ext, &f[i]) < 0) {
            return NULL;
        }
    }
    if (with_tz) {
        tz = read_tz(r, ext);
        if (tz == NULL) {
            return NULL;
        }
    }
    switch (ext->ext_type) {
    case CK_EXT_DATETIME:
        res = PyDateTimeAPI->DateTime_FromDateAndTimeAndFold(
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], tz, f[7], PyDateTimeAPI->DateTimeType);
        break;
    case CK_EXT_DATE:
        res = PyDateTimeAPI->Date_FromDate(f[0], f[1], f[2], PyDateTimeAPI->DateType);
        break;
    case CK_EXT_TIME:
        res = PyDateTimeAPI->Time_FromTimeAndFold(f[0], f[1], f[2], f[3], tz, f[4],
                                                  PyDateTimeAPI->TimeType);
        break;
    default:
        /* Pack only emits the normalised form; anything else is forged. */
        if (f[1] < 0 || f[1] >= 86400 || f[2] < 0 || f[2] >= 1000000) {
            break;
        }
        res = PyDateTimeAPI->Delta_FromDelta(f[0], f[1], f[2], 0, PyDateTimeAPI->DeltaType);
        break;
    }
    Py_XDECREF(tz);
    if (res == NULL) {
        return reader_fail(r, "extension type %d at offset %zu: invalid value", ext->ext_type,
                    ext->offset);
    }
    return res;
}

static PyObject *read_decimal(reader *r, const mp_head *ext)
{
    PyObject *s = NULL;
    PyObject *res = NULL;

    s = PyUnicode_DecodeASCII((const char *)ext->body, (Py_ssize_t)ext->len, NULL);
    if (s == NULL) {
        goto error;
    }
    /* Decimal(str) is exact whatever the context precision. */
    res = PyObject_CallOneArg(r->st->DecimalType, s);
error:
    Py_XDECREF(s);
    if (res == NULL) {
        return reader_fail(r, "extension type %d at offset %zu: invalid Decimal", ext->ext_type,
                    ext->offset);
    }
    return res;
}

static PyObject *read_uuid(reader *r, const mp_head *ext)
{
    PyObject *args[3] = {NULL, Py_None, NULL};
    PyObject *res = NULL;

    if (ext->len != 16) {
        return reader_fail(r, "extension type %d at offset %zu: UUID payload must be 16 bytes, not %zu",
                    ext->ext_type, ext->offset, ext->len);
    }
    args[2] = PyBytes_FromStringAndSize((const char *)ext->body, 16);
    if (args[2] == NULL) {
        return NULL;
    }
    /* UUID(hex=None, bytes=b): positional, so no keyword tuple to build. */
    res = PyObject_Vectorcall(r->st->UUIDType, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                              NULL);
    Py_DECREF(args[2]);
    if (res == NULL) {
        return reader_fail(r, "extension type %d at offset %zu: invalid UUID", ext->ext_type,
                    ext->offset);
    }
    return res;
}

/* Payloads that are nested msgpack: parse inside the window
   [body, body + len), which must be consumed exactly. */
static PyObject *read_nested_ext(reader *r, const mp_head *ext)
{
    const unsigned char *saved_p = r->p;
    const unsigned char *saved_end = r->end;
    size_t saved_pending = r->pending;
    PyObject *res = NULL;

    if (reader_depth_enter(r) < 0) {
        return NULL;
    }
    /* The window holds exactly one value; values promised outside it lie
       after it and do not count against its bytes. */
    r->p = ext->body;
    r->end = ext->body + ext->len;
    r->pending = 1;
    switch (ext->ext_type) {
    case CK_EXT_TUPLE:
        res = read_tuple(r, ext);
        break;
    case CK_EXT_SET:
    case CK_EXT_FROZENSET:
        res = read_set(r, ext, ext->ext_type == CK_EXT_FROZENSET);
        break;
    case CK_EXT_DATETIME:
    case CK_EXT_DATE:
    case CK_EXT_TIME:
    case CK_EXT_TIMEDELTA:
        res = read_datetime_like(r, ext);
        break;
    case CK_EXT_NDARRAY:
    case CK_EXT_FRAME:
        res = ck_unpack_data(r, ext);
        break;
    default:
        res = ck_unpack_app(r, ext);
        break;
    }
    if (res != NULL && r->p != r->end) {
        Py_CLEAR(res);
        reader_fail(r, "extension type %d at offset %zu: trailing bytes in payload at offset %zu",
             ext->ext_type, ext->offset, reader_offset(r, r->p));
    }
    r->p = saved_p;
    r->end = saved_end;
    r->pending = saved_pending;
    r->depth--;
    return res;
}

static PyObject *read_ext(reader *r, const mp_head *h)
{
    switch (h->ext_type) {
    case CK_EXT_BIGINT:
        if (h->len == 0) {
            return reader_fail(r, "extension type %d at offset %zu: empty int", h->ext_type, h->offset);
        }
        return _PyLong_FromByteArray(h->body, h->len, 0, 1);
    case CK_EXT_BYTEARRAY:
        return PyByteArray_FromStringAndSize((const char *)h->body, (Py_ssize_t)h->len);
    case CK_EXT_DECIMAL:
        return read_decimal(r, h);
    case CK_EXT_UUID:
        return read_uuid(r, h);
    case CK_EXT_TUPLE:
    case CK_EXT_SET:
    case CK_EXT_FROZENSET:
    case CK_EXT_DATETIME:
    case CK_EXT_DATE:
    case CK_EXT_TIME:
    case CK_EXT_TIMEDELTA:
        return read_nested_ext(r, h);
    case CK_EXT_APP_DATACLASS:
    case CK_EXT_APP_NAMEDTUPLE:
    case CK_EXT_APP_ENUM:
    case CK_EXT_APP_ORDEREDDICT:
    case CK_EXT_APP_DEFAULTDICT:
    case CK_EXT_APP_SUBCLASS:
    case CK_EXT_APP_PYDANTIC:
    case CK_EXT_APP_ATTRS:
    case CK_EXT_NDARRAY:
    case CK_EXT_FRAME:
        return read_nested_ext(r, h);
    case CK_EXT_KEY_CLASS:
    case CK_EXT_KEY_CUSTOM:
    case CK_EXT_KEY_ENUM:
    case CK_EXT_KEY_NAMEDTUPLE:
    case CK_EXT_KEY_DATACLASS:
        return reader_fail(r, "extension type %d at offset %zu is only used in cache keys and cannot "
                       "be decoded",
                    h->ext_type, h->offset);
    default:
        return reader_fail(r, "unknown extension type %d at offset %zu", h->ext_type, h->offset);
    }
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */
/* ------------------------------------------------------------------------ */

PyObject *reader_value(reader *r)
{
    mp_head h;

    if (reader_head(r, &h) < 0) {
        return NULL;
    }
    switch (h.kind) {
    case MP_NIL:
        return Py_NewRef(Py_None);
    case MP_BOOL:
        return PyBool_FromLong((long)h.i);
    case MP_INT:
        /* Returns the cached object for small ints. */
        return PyLong_FromLongLong(h.i);
    case MP_UINT:
        return PyLong_FromUnsignedLongLong(h.u);
    case MP_FLOAT:
        return PyFloat_FromDouble(h.f);
    case MP_STR:
        return decode_str(r, &h);
    case MP_BIN:
        return PyBytes_FromStringAndSize((const char *)h.body, (Py_ssize_t)h.len);
    case MP_ARRAY:
        return read_list(r, &h);
    case MP_MAP:
        return read_map(r, &h);
    case MP_EXT:
        return read_ext(r, &h);
    }
    return reader_fail(r, "internal error: unhandled msgpack kind");
}

PyObject *ck_py_unpack(ck_state *st, const unsigned char *data, size_t len)
{
    return ck_py_unpack_types(st, data, len, NULL);
}

PyObject *ck_py_unpack_types(ck_state *st, const unsigned char *data, size_t len,
                             PyObject *types)
{
    reader r = {.st = st,
                .start = data,
                .p = data,
                .end = data + len,
                .pending = 1,
                .depth = 0,
                .types = types};
    PyObject *res;

    res = reader_value(&r);
    if (res != NULL && r.p != r.end) {
        Py_DECREF(res);
        return reader_fail(&r, "trailing bytes after msgpack value at offset %zu",
                    reader_offset(&r, r.p));
    }
    return res;
}
