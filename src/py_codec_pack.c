/*
 * py_codec_pack.c - Python object -> msgpack (the encoding half of the codec).
 *
 * Owns ck_py_pack(): the type dispatch, the encoding of our extension types
 * (py_codec.h, docs/format.md), canonical ordering for cache keys and the
 * key-only encodings of classes and __cachekit_key__() objects. Bytes are
 * produced by msgpack-c's packer writing into a ck_buf.
 *
 * Types are matched exactly (Py_TYPE(obj) == &PyLong_Type, ...): a subclass
 * such as IntEnum, OrderedDict or a namedtuple would decode as its base type,
 * so it is refused rather than silently changed by the round trip.
 *
 * Calls that can run user code, so containers may change under us while we
 * iterate them: tzinfo.utcoffset() (datetime.utcoffset() on a custom tzinfo),
 * the ZoneInfo "key" attribute, Decimal.__str__ and UUID attribute reads
 * (only on the exact stdlib types, but the modules can be patched), set
 * iteration, and, in key mode, __module__/__qualname__ lookups and
 * __cachekit_key__(). Hence every item we pack is held by a strong reference
 * for the duration, lists are indexed with their size re-checked and dicts
 * are walked with PyDict_Next plus a size check (RuntimeError on change).
 */
#include "py_codec.h"

#include <datetime.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    ck_state *st;
    int flags; /* CK_PACK_* */
    int depth; /* containers currently open; <= CK_CODEC_MAX_DEPTH */
} pack_ctx;

static int pack_obj(pack_ctx *c, ck_buf *out, PyObject *obj);

int ck_py_pack_init(void)
{
    /* This translation unit's copy of the datetime C API (see py_codec.h). */
    PyDateTime_IMPORT;
    return PyDateTimeAPI == NULL ? -1 : 0;
}

/* msgpack-c's packer only fails when ck_buf cannot grow. */
static int pack_nomem(void)
{
    PyErr_NoMemory();
    return -1;
}

/* msgpack's str/bin/ext/array/map lengths are 32-bit; msgpack-c would
   silently truncate a larger one, so refuse it here. */
static int check_len32(pack_ctx *c, size_t n, const char *what)
{
    if (n > UINT32_MAX) {
        PyErr_Format(c->st->SerializationError,
                     "%s of length %zu exceeds msgpack's 32-bit length limit", what, n);
        return -1;
    }
    return 0;
}

/* Open one level of nesting: lists, tuples, dicts, sets and every extension
   whose payload is nested msgpack. The explicit limit makes the result
   decodable (ck_py_unpack enforces the same limit) and turns a
   self-referencing list into a ValueError; Py_EnterRecursiveCall also
   protects the C stack when we are called deep inside Python code. */
static int depth_enter(pack_ctx *c)
{
    if (c->depth >= CK_CODEC_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError,
                     "cachekit cannot store values nested deeper than %d levels "
                     "(or a container that contains itself)",
                     CK_CODEC_MAX_DEPTH);
        return -1;
    }
    if (Py_EnterRecursiveCall(" while packing a cachekit value")) {
        return -1;
    }
    c->depth++;
    return 0;
}

static void depth_leave(pack_ctx *c)
{
    c->depth--;
    Py_LeaveRecursiveCall();
}

/* ------------------------------------------------------------------------ */
/* Type names                                                                */
/* ------------------------------------------------------------------------ */

/*
 * New reference to "<module><sep><qualname>" of tp. With omit_builtins the
 * module is dropped for builtins ("object", not "builtins.object"), which
 * reads better in error messages; key encodings always keep it.
 */
static PyObject *type_full_name(ck_state *st, PyTypeObject *tp, const char *sep, int omit_builtins)
{
    PyObject *module = NULL;
    PyObject *qualname = NULL;
    PyObject *res = NULL;

    qualname = PyType_GetQualName(tp);
    if (qualname == NULL) {
        goto error;
    }
    module = PyObject_GetAttr((PyObject *)tp, st->str_module);
    if (module == NULL) {
        goto error;
    }
    if (omit_builtins && PyUnicode_Check(module) &&
        PyUnicode_CompareWithASCIIString(module, "builtins") == 0) {
        res = Py_NewRef(qualname);
    } else {
        res = PyUnicode_FromFormat("%S%s%S", module, sep, qualname);
    }
error:
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    return res;
}

static int raise_unsupported(pack_ctx *c, PyObject *obj)
{
    PyObject *name = type_full_name(c->st, Py_TYPE(obj), ".", 1);

    if (name == NULL) {
        return -1;
    }
    PyErr_Format(c->st->UnsupportedTypeError,
                 "cachekit cannot store values of type '%U'; supported: None, bool, int, "
                 "float, str, bytes, bytearray, list, tuple, dict, set, frozenset, datetime, "
                 "date, time, timedelta, Decimal, UUID%s",
                 name,
                 (c->flags & CK_PACK_KEY)
                     ? " (in cache keys also classes and objects defining __cachekit_key__())"
                     : "");
    Py_DECREF(name);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Extension framing                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Extensions whose payload is nested msgpack (tuple, set, frozenset, the
 * datetime family, key-custom) are always framed as ext32: 0xc9, a 4-byte
 * big-endian payload length, the type byte. The length is unknown until the
 * payload is encoded, so ext_begin writes a zero placeholder and ext_end
 * patches it in place. The alternative, encoding the payload into a temporary
 * buffer and copying it behind a minimal header, would copy every byte once
 * per enclosing tuple (O(size x depth)) and allocate on the hot path; the
 * price here is up to 4 header bytes more than the shortest ext form.
 * Positions are kept as offsets because the buffer may move when it grows.
 * Payloads of known length (bigint, bytearray, Decimal, UUID, key-class) use
 * msgpack-c's minimal ext header instead.
 */
static int ext_begin(ck_buf *out, int8_t type, size_t *hdr_pos)
{
    unsigned char hdr[6] = {0xc9, 0, 0, 0, 0, (unsigned char)type};

    *hdr_pos = out->len;
    if (ck_buf_append(out, hdr, sizeof(hdr)) < 0) {
        return pack_nomem();
    }
    return 0;
}

static int ext_end(pack_ctx *c, ck_buf *out, size_t hdr_pos)
{
    size_t n = out->len - hdr_pos - 6;
    unsigned char *p = out->data + hdr_pos + 1;

    if (check_len32(c, n, "extension payload") < 0) {
        return -1;
    }
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */
/* ------------------------------------------------------------------------ */

/* Ints outside [-2**63, 2**64 - 1]: ext BIGINT holding the minimal signed
   big-endian two's complement bytes (what int.to_bytes(n, "big",
   signed=True) gives for the smallest n). Rare, so a temporary is fine. */
static int pack_bigint(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    unsigned char *bytes = NULL;
    size_t nbits, n, skip = 0;
    int rc = -1;

    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    nbits = _PyLong_NumBits(obj);
    if (nbits == (size_t)-1 && PyErr_Occurred()) {
        goto error;
    }
    /* nbits counts |obj|; one more bit for the sign. Exact for positives,
       one byte too many for negative powers of two (-2**k needs k+1 bits),
       which the loop below strips. */
    n = nbits / 8 + 1;
    bytes = PyMem_Malloc(n);
    if (bytes == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if (_PyLong_AsByteArray((PyLongObject *)obj, bytes, n, 0, 1) < 0) {
        goto error;
    }
    while (n - skip > 1 && ((bytes[skip] == 0x00 && !(bytes[skip + 1] & 0x80)) ||
                            (bytes[skip] == 0xff && (bytes[skip + 1] & 0x80)))) {
        skip++;
    }
    if (check_len32(c, n - skip, "int") < 0) {
        goto error;
    }
    if (msgpack_pack_ext_with_body(&pk, bytes + skip, n - skip, CK_EXT_BIGINT) != 0) {
        pack_nomem();
        goto error;
    }
    rc = 0;
error:
    PyMem_Free(bytes);
    return rc;
}

static int pack_int(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    int overflow;
    long long v;
    unsigned long long u;

    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow == 0) {
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        /* msgpack-c picks the smallest form (fixint, uint8, int16, ...). */
        return msgpack_pack_long_long(&pk, v) != 0 ? pack_nomem() : 0;
    }
    if (overflow > 0) {
        u = PyLong_AsUnsignedLongLong(obj);
        if (u != (unsigned long long)-1 || !PyErr_Occurred()) {
            return msgpack_pack_unsigned_long_long(&pk, u) != 0 ? pack_nomem() : 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
    }
    return pack_bigint(c, out, obj);
}

static int pack_raw(pack_ctx *c, ck_buf *out, const char *what, int is_str, const void *p,
                    size_t n)
{
    msgpack_packer pk;
    int rc;

    if (check_len32(c, n, what) < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    rc = is_str ? msgpack_pack_str_with_body(&pk, p, n) : msgpack_pack_bin_with_body(&pk, p, n);
    return rc != 0 ? pack_nomem() : 0;
}

static int pack_str(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *encoded = NULL;
    const char *p;
    Py_ssize_t n;
    int rc = -1;

    /* Hot path: compact ASCII strs are their own UTF-8. */
    if (PyUnicode_IS_COMPACT_ASCII(obj)) {
        return pack_raw(c, out, "str", 1, PyUnicode_DATA(obj), (size_t)PyUnicode_GET_LENGTH(obj));
    }
    /* Caches the UTF-8 form in the str: a key argument packed on every call
       is encoded once. */
    p = PyUnicode_AsUTF8AndSize(obj, &n);
    if (p != NULL) {
        return pack_raw(c, out, "str", 1, p, (size_t)n);
    }
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        goto error;
    }
    if (!(c->flags & CK_PACK_KEY)) {
        /* A stored value must decode to an equal str, and strict UTF-8
           decoding rejects encoded surrogates. */
        _PyErr_FormatFromCause(c->st->SerializationError,
                               "cachekit cannot store a str containing lone surrogates "
                               "(it is not valid UTF-8)");
        goto error;
    }
    /* Keys are never decoded; surrogatepass keeps distinct strs distinct. */
    PyErr_Clear();
    encoded = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
    if (encoded == NULL) {
        goto error;
    }
    rc = pack_raw(c, out, "str", 1, PyBytes_AS_STRING(encoded), (size_t)PyBytes_GET_SIZE(encoded));
error:
    Py_XDECREF(encoded);
    return rc;
}

/* Extension with a payload of known length. */
static int pack_ext_bytes(pack_ctx *c, ck_buf *out, int8_t type, const void *p, size_t n)
{
    msgpack_packer pk;

    if (check_len32(c, n, "extension payload") < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    return msgpack_pack_ext_with_body(&pk, p, n, type) != 0 ? pack_nomem() : 0;
}

static int pack_decimal(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *s = NULL;
    const char *p;
    Py_ssize_t n;
    int rc = -1;

    /* str(d) is exact and keeps NaN/sNaN/Infinity, the sign of zero and the
       exponent, so Decimal(str(d)) reproduces d. */
    s = PyObject_Str(obj);
    if (s == NULL) {
        goto error;
    }
    p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        goto error;
    }
    rc = pack_ext_bytes(c, out, CK_EXT_DECIMAL, p, (size_t)n);
error:
    Py_XDECREF(s);
    return rc;
}

static int pack_uuid(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *value = NULL;
    unsigned char bytes[16];
    int rc = -1;

    /* UUID.int is a slot; converting it here is cheaper than the .bytes
       property, which runs Python code. */
    value = PyObject_GetAttr(obj, c->st->str_int);
    if (value == NULL) {
        goto error;
    }
    if (!PyLong_CheckExact(value)) {
        PyErr_SetString(c->st->SerializationError, "UUID.int is not an int");
        goto error;
    }
    if (_PyLong_AsByteArray((PyLongObject *)value, bytes, sizeof(bytes), 0, 0) < 0) {
        goto error;
    }
    rc = pack_ext_bytes(c, out, CK_EXT_UUID, bytes, sizeof(bytes));
error:
    Py_XDECREF(value);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Datetime family                                                           */
/* ------------------------------------------------------------------------ */

/* tz field, aware value not keyed by a ZoneInfo: the UTC offset in
   microseconds. obj.utcoffset() asks the tzinfo with the right argument (the
   datetime itself, or None for a time) and validates the result. */
static int pack_tz_offset(pack_ctx *c, ck_buf *out, PyObject *obj, PyObject *tz)
{
    msgpack_packer pk;
    PyObject *offset = NULL;
    PyObject *name = NULL;
    long long us;
    int rc = -1;

    /* No interned "utcoffset" in the shared state; this path is only taken
       for aware values that are not ZoneInfo, so the name lookup is fine. */
    offset = PyObject_CallMethod(obj, "utcoffset", NULL);
    if (offset == NULL) {
        goto error;
    }
    if (offset == Py_None) {
        /* Dropping the tzinfo would turn an aware value into a naive one. */
        name = type_full_name(c->st, Py_TYPE(tz), ".", 1);
        if (name != NULL) {
            PyErr_Format(c->st->UnsupportedTypeError,
                         "cachekit cannot store a %s whose tzinfo of type '%U' gives no UTC "
                         "offset",
                         Py_TYPE(obj)->tp_name, name);
        }
        goto error;
    }
    if (!PyDelta_Check(offset)) {
        PyErr_SetString(PyExc_TypeError, "utcoffset() did not return a timedelta");
        goto error;
    }
    /* |offset| < 24h (checked by utcoffset()), so this cannot overflow. */
    us = ((long long)PyDateTime_DELTA_GET_DAYS(offset) * 86400 +
          PyDateTime_DELTA_GET_SECONDS(offset)) *
             1000000 +
         PyDateTime_DELTA_GET_MICROSECONDS(offset);
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_long_long(&pk, us) != 0) {
        pack_nomem();
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(offset);
    Py_XDECREF(name);
    return rc;
}

/* The tz field of DATETIME and TIME: nil when naive, the IANA key when the
   tzinfo is exactly a ZoneInfo with a key, else the UTC offset. */
static int pack_tz(pack_ctx *c, ck_buf *out, PyObject *obj, PyObject *tz)
{
    msgpack_packer pk;
    PyObject *key;
    int rc;

    if (tz == Py_None) {
        msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
        return msgpack_pack_nil(&pk) != 0 ? pack_nomem() : 0;
    }
    if (Py_IS_TYPE(tz, (PyTypeObject *)c->st->ZoneInfoType)) {
        key = PyObject_GetAttr(tz, c->st->str_key);
        if (key == NULL) {
            return -1;
        }
        if (PyUnicode_CheckExact(key)) {
            rc = pack_str(c, out, key);
            Py_DECREF(key);
            return rc;
        }
        /* ZoneInfo.from_file() zones have no key: stored as an offset. */
        Py_DECREF(key);
    }
    return pack_tz_offset(c, out, obj, tz);
}

/* Ext `type` whose payload is an array of the n ints in fields, then, if
   with_tz, the tz field of obj. */
static int pack_datetime_like(pack_ctx *c, ck_buf *out, PyObject *obj, int8_t type,
                              const int *fields, size_t n, PyObject *tz)
{
    msgpack_packer pk;
    size_t hdr, i;
    int rc = -1;

    if (depth_enter(c) < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (ext_begin(out, type, &hdr) < 0) {
        goto error;
    }
    if (msgpack_pack_array(&pk, n + (tz != NULL)) != 0) {
        pack_nomem();
        goto error;
    }
    for (i = 0; i < n; i++) {
        if (msgpack_pack_int(&pk, fields[i]) != 0) {
            pack_nomem();
            goto error;
        }
    }
    if (tz != NULL && pack_tz(c, out, obj, tz) < 0) {
        goto error;
    }
    rc = ext_end(c, out, hdr);
error:
    depth_leave(c);
    return rc;
}

static int pack_datetime(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[8] = {
        PyDateTime_GET_YEAR(obj),        PyDateTime_GET_MONTH(obj),
        PyDateTime_GET_DAY(obj),         PyDateTime_DATE_GET_HOUR(obj),
        PyDateTime_DATE_GET_MINUTE(obj), PyDateTime_DATE_GET_SECOND(obj),
        PyDateTime_DATE_GET_MICROSECOND(obj), PyDateTime_DATE_GET_FOLD(obj),
    };

    return pack_datetime_like(c, out, obj, CK_EXT_DATETIME, f, 8,
                              PyDateTime_DATE_GET_TZINFO(obj));
}

static int pack_date(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[3] = {PyDateTime_GET_YEAR(obj), PyDateTime_GET_MONTH(obj), PyDateTime_GET_DAY(obj)};

    return pack_datetime_like(c, out, obj, CK_EXT_DATE, f, 3, NULL);
}

static int pack_time(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[5] = {
        PyDateTime_TIME_GET_HOUR(obj),        PyDateTime_TIME_GET_MINUTE(obj),
        PyDateTime_TIME_GET_SECOND(obj),      PyDateTime_TIME_GET_MICROSECOND(obj),
        PyDateTime_TIME_GET_FOLD(obj),
    };

    return pack_datetime_like(c, out, obj, CK_EXT_TIME, f, 5, PyDateTime_TIME_GET_TZINFO(obj));
}

static int pack_timedelta(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int f[3] = {PyDateTime_DELTA_GET_DAYS(obj), PyDateTime_DELTA_GET_SECONDS(obj),
                PyDateTime_DELTA_GET_MICROSECONDS(obj)};

    return pack_datetime_like(c, out, obj, CK_EXT_TIMEDELTA, f, 3, NULL);
}

/* ------------------------------------------------------------------------ */
/* Containers in insertion order                                             */
/* ------------------------------------------------------------------------ */

static int raise_changed(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size while cachekit was packing it", what);
    return -1;
}

static int pack_list(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    PyObject *item = NULL;
    Py_ssize_t i, n = PyList_GET_SIZE(obj);
    int rc = -1;

    if (depth_enter(c) < 0) {
        return -1;
    }
    if (check_len32(c, (size_t)n, "list") < 0) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        pack_nomem();
        goto error;
    }
    for (i = 0; i < n; i++) {
        /* The header promised n items; user code run while packing an item
           (utcoffset, __cachekit_key__) may have resized the list. */
        if (PyList_GET_SIZE(obj) != n) {
            raise_changed("list");
            goto error;
        }
        item = Py_NewRef(PyList_GET_ITEM(obj, i));
        if (pack_obj(c, out, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    rc = 0;
error:
    Py_XDECREF(item);
    depth_leave(c);
    return rc;
}

/* The TUPLE extension's payload. Tuples are immutable and own their items,
   so unlike lists no re-checks or extra references are needed. */
static int pack_tuple_items(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    Py_ssize_t i, n = PyTuple_GET_SIZE(obj);

    if (check_len32(c, (size_t)n, "tuple") < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        return pack_nomem();
    }
    for (i = 0; i < n; i++) {
        if (pack_obj(c, out, PyTuple_GET_ITEM(obj, i)) < 0) {
            return -1;
        }
    }
    return 0;
}

static int pack_tuple(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    size_t hdr;
    int rc = -1;

    if (depth_enter(c) < 0) {
        return -1;
    }
    if (ext_begin(out, CK_EXT_TUPLE, &hdr) < 0 || pack_tuple_items(c, out, obj) < 0) {
        goto error;
    }
    rc = ext_end(c, out, hdr);
error:
    depth_leave(c);
    return rc;
}

static int pack_dict_ordered(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    PyObject *key = NULL;
    PyObject *value = NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0, done = 0, n = PyDict_GET_SIZE(obj);
    int rc = -1;

    if (check_len32(c, (size_t)n, "dict") < 0) {
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_map(&pk, (size_t)n) != 0) {
        return pack_nomem();
    }
    while (PyDict_Next(obj, &pos, &k, &v)) {
        if (done == n) {
            raise_changed("dict");
            goto error;
        }
        /* Borrowed from the dict, which user code may mutate meanwhile. */
        key = Py_NewRef(k);
        value = Py_NewRef(v);
        if (pack_obj(c, out, key) < 0 || pack_obj(c, out, value) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
        done++;
        if (PyDict_GET_SIZE(obj) != n) {
            raise_changed("dict");
            goto error;
        }
    }
    if (done != n) {
        raise_changed("dict");
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Canonical containers                                                      */
/* ------------------------------------------------------------------------ */

/*
 * CK_PACK_CANONICAL: a dict's items and a set's elements are emitted in the
 * byte order of their encodings (dict: of the key, ties broken by the whole
 * item), so equal values give equal bytes whatever their insertion or hash
 * order. Each element is encoded once into one scratch ck_buf; spans record
 * where it landed and are sorted, then copied out in order.
 */
typedef struct {
    size_t off;              /* of the element in scratch */
    size_t key_len;          /* bytes of the sort key (dict: the key) */
    size_t len;              /* bytes of the whole element (dict: key+value) */
    const unsigned char *p;  /* scratch.data + off, set once scratch is final */
} span;

#define SPANS_INLINE 8 /* small dicts (keyword arguments) sort without malloc */

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int r = memcmp(x->p, y->p, n);

    if (r != 0) {
        return r;
    }
    if (x->key_len != y->key_len) {
        return x->key_len < y->key_len ? -1 : 1;
    }
    /* Equal keys can only be distinct NaNs (or equal-set elements): break
       the tie on the full bytes so the order is still total. */
    n = x->len < y->len ? x->len : y->len;
    r = memcmp(x->p, y->p, n);
    if (r != 0) {
        return r;
    }
    return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

/* Scratch encodings and their spans for one dict or set being sorted. */
typedef struct {
    span inline_[SPANS_INLINE];
    span *spans;
    ck_buf scratch;
    Py_ssize_t n;
} sorter;

/* The scratch encodings are as sensitive as the output they go into, so
   they are secret when out is. */
static int sorter_init(sorter *s, const ck_buf *out, Py_ssize_t n)
{
    if (out->secret) {
        ck_buf_init_secret(&s->scratch);
    } else {
        ck_buf_init(&s->scratch);
    }
    s->n = 0;
    s->spans = s->inline_;
    if (n > SPANS_INLINE) {
        s->spans = PyMem_New(span, (size_t)n);
        if (s->spans == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static void sorter_free(sorter *s)
{
    if (s->spans != s->inline_) {
        PyMem_Free(s->spans);
    }
    s->spans = s->inline_;
    ck_buf_free(&s->scratch);
}

/* Encode one element (value may be NULL for sets) into the next span. */
static int sorter_add(pack_ctx *c, sorter *s, Py_ssize_t cap, PyObject *key, PyObject *value)
{
    span *sp;

    if (s->n >= cap) {
        return raise_changed(value != NULL ? "dict" : "set");
    }
    sp = &s->spans[s->n];
    sp->off = s->scratch.len;
    if (pack_obj(c, &s->scratch, key) < 0) {
        return -1;
    }
    sp->key_len = s->scratch.len - sp->off;
    if (value != NULL && pack_obj(c, &s->scratch, value) < 0) {
        return -1;
    }
    sp->len = s->scratch.len - sp->off;
    s->n++;
    return 0;
}

static int sorter_emit(sorter *s, ck_buf *out)
{
    Py_ssize_t i;

    for (i = 0; i < s->n; i++) {
        s->spans[i].p = s->scratch.data + s->spans[i].off;
    }
    qsort(s->spans, (size_t)s->n, sizeof(span), span_cmp);
    for (i = 0; i < s->n; i++) {
        if (ck_buf_append(out, s->spans[i].p, s->spans[i].len) < 0) {
            return pack_nomem();
        }
    }
    return 0;
}

static int pack_dict_canonical(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    msgpack_packer pk;
    sorter s;
    PyObject *key = NULL;
    PyObject *value = NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0, n = PyDict_GET_SIZE(obj);
    int rc = -1;

    if (sorter_init(&s, out, n) < 0) {
        return -1;
    }
    while (PyDict_Next(obj, &pos, &k, &v)) {
        key = Py_NewRef(k);
        value = Py_NewRef(v);
        if (sorter_add(c, &s, n, key, value) < 0) {
            goto error;
        }
        Py_CLEAR(key);
        Py_CLEAR(value);
        if (PyDict_GET_SIZE(obj) != n) {
            raise_changed("dict");
            goto error;
        }
    }
    if (s.n != n) {
        raise_changed("dict");
        goto error;
    }
    if (check_len32(c, (size_t)n, "dict") < 0) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (msgpack_pack_map(&pk, (size_t)n) != 0) {
        pack_nomem();
        goto error;
    }
    rc = sorter_emit(&s, out);
error:
    Py_XDECREF(key);
    Py_XDECREF(value);
    sorter_free(&s);
    return rc;
}

static int pack_dict(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int rc;

    if (depth_enter(c) < 0) {
        return -1;
    }
    if (c->flags & CK_PACK_CANONICAL) {
        rc = pack_dict_canonical(c, out, obj);
    } else {
        rc = pack_dict_ordered(c, out, obj);
    }
    depth_leave(c);
    return rc;
}

/* set and frozenset: ext SET/FROZENSET around an array of the elements,
   sorted by encoding in canonical mode, in iteration order otherwise. */
static int pack_set(pack_ctx *c, ck_buf *out, PyObject *obj, int8_t type)
{
    msgpack_packer pk;
    sorter s;
    PyObject *it = NULL;
    PyObject *item = NULL;
    Py_ssize_t done = 0, n = PySet_GET_SIZE(obj);
    int canonical = c->flags & CK_PACK_CANONICAL;
    size_t hdr;
    int rc = -1;

    if (sorter_init(&s, out, canonical ? n : 0) < 0) {
        return -1;
    }
    if (depth_enter(c) < 0) {
        sorter_free(&s);
        return -1;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (check_len32(c, (size_t)n, "set") < 0 || ext_begin(out, type, &hdr) < 0) {
        goto error;
    }
    if (msgpack_pack_array(&pk, (size_t)n) != 0) {
        pack_nomem();
        goto error;
    }
    /* The set iterator raises RuntimeError itself if the set is resized. */
    it = PyObject_GetIter(obj);
    if (it == NULL) {
        goto error;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        if (canonical) {
            if (sorter_add(c, &s, n, item, NULL) < 0) {
                goto error;
            }
        } else if (done == n) {
            raise_changed("set");
            goto error;
        } else if (pack_obj(c, out, item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
        done++;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    if (done != n) {
        raise_changed("set");
        goto error;
    }
    if (canonical && sorter_emit(&s, out) < 0) {
        goto error;
    }
    rc = ext_end(c, out, hdr);
error:
    Py_XDECREF(item);
    Py_XDECREF(it);
    depth_leave(c);
    sorter_free(&s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Key-only encodings                                                        */
/* ------------------------------------------------------------------------ */

/* A class in a cache key: ext KEY_CLASS "module:qualname". */
static int pack_key_class(pack_ctx *c, ck_buf *out, PyObject *cls)
{
    PyObject *name = NULL;
    const char *p;
    Py_ssize_t n;
    int rc = -1;

    name = type_full_name(c->st, (PyTypeObject *)cls, ":", 0);
    if (name == NULL) {
        goto error;
    }
    /* A __qualname__ may hold lone surrogates; keys never decode them. */
    p = PyUnicode_AsUTF8AndSize(name, &n);
    if (p == NULL) {
        goto error;
    }
    rc = pack_ext_bytes(c, out, CK_EXT_KEY_CLASS, p, (size_t)n);
error:
    Py_XDECREF(name);
    return rc;
}

/*
 * An object whose type defines __cachekit_key__: ext KEY_CUSTOM around
 * ["module:qualname of its type", key-packing of obj.__cachekit_key__()].
 * The method is looked up on the type (like any special method), then bound
 * through the descriptor protocol, so an instance attribute cannot shadow it.
 * `meth` is a strong reference held by the caller.
 */
static int pack_key_custom(pack_ctx *c, ck_buf *out, PyObject *obj, PyObject *meth)
{
    msgpack_packer pk;
    PyObject *bound = NULL;
    PyObject *keyval = NULL;
    PyObject *name = NULL;
    descrgetfunc get = Py_TYPE(meth)->tp_descr_get;
    size_t hdr;
    int rc = -1;

    if (depth_enter(c) < 0) {
        return -1;
    }
    if (get != NULL) {
        bound = get(meth, obj, (PyObject *)Py_TYPE(obj));
    } else {
        bound = Py_NewRef(meth);
    }
    if (bound == NULL) {
        goto error;
    }
    keyval = PyObject_CallNoArgs(bound);
    if (keyval == NULL) {
        goto error;
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (ext_begin(out, CK_EXT_KEY_CUSTOM, &hdr) < 0) {
        goto error;
    }
    if (msgpack_pack_array(&pk, 2) != 0) {
        pack_nomem();
        goto error;
    }
    name = type_full_name(c->st, Py_TYPE(obj), ":", 0);
    if (name == NULL || pack_str(c, out, name) < 0 || pack_obj(c, out, keyval) < 0) {
        goto error;
    }
    rc = ext_end(c, out, hdr);
error:
    Py_XDECREF(bound);
    Py_XDECREF(keyval);
    Py_XDECREF(name);
    depth_leave(c);
    return rc;
}

static int pack_key_extra(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyObject *meth;
    int rc;

    if (PyType_Check(obj)) {
        return pack_key_class(c, out, obj);
    }
    /* Borrowed from the type's MRO cache; held while user code runs. A
       __cachekit_key__ set to None opts out, like __hash__ = None. */
    meth = _PyType_Lookup(Py_TYPE(obj), c->st->str_cachekit_key);
    if (meth == NULL || meth == Py_None) {
        return raise_unsupported(c, obj);
    }
    Py_INCREF(meth);
    rc = pack_key_custom(c, out, obj, meth);
    Py_DECREF(meth);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

/* Exact-type dispatch, most common value types first. */
static int pack_obj(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    msgpack_packer pk;
    int rc;

    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    if (tp == &PyLong_Type) {
        return pack_int(c, out, obj);
    }
    if (tp == &PyUnicode_Type) {
        return pack_str(c, out, obj);
    }
    if (tp == &PyFloat_Type) {
        rc = msgpack_pack_double(&pk, PyFloat_AS_DOUBLE(obj));
        return rc != 0 ? pack_nomem() : 0;
    }
    if (obj == Py_None) {
        return msgpack_pack_nil(&pk) != 0 ? pack_nomem() : 0;
    }
    if (tp == &PyBool_Type) {
        rc = obj == Py_True ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        return rc != 0 ? pack_nomem() : 0;
    }
    if (tp == &PyDict_Type) {
        return pack_dict(c, out, obj);
    }
    if (tp == &PyList_Type) {
        return pack_list(c, out, obj);
    }
    if (tp == &PyTuple_Type) {
        return pack_tuple(c, out, obj);
    }
    if (tp == &PyBytes_Type) {
        return pack_raw(c, out, "bytes", 0, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
    }
    if (tp == &PyByteArray_Type) {
        return pack_ext_bytes(c, out, CK_EXT_BYTEARRAY, PyByteArray_AS_STRING(obj),
                              (size_t)PyByteArray_GET_SIZE(obj));
    }
    if (tp == &PySet_Type) {
        return pack_set(c, out, obj, CK_EXT_SET);
    }
    if (tp == &PyFrozenSet_Type) {
        return pack_set(c, out, obj, CK_EXT_FROZENSET);
    }
    if (tp == PyDateTimeAPI->DateTimeType) {
        return pack_datetime(c, out, obj);
    }
    if (tp == PyDateTimeAPI->DateType) {
        return pack_date(c, out, obj);
    }
    if (tp == PyDateTimeAPI->TimeType) {
        return pack_time(c, out, obj);
    }
    if (tp == PyDateTimeAPI->DeltaType) {
        return pack_timedelta(c, out, obj);
    }
    if ((PyObject *)tp == c->st->DecimalType) {
        return pack_decimal(c, out, obj);
    }
    if ((PyObject *)tp == c->st->UUIDType) {
        return pack_uuid(c, out, obj);
    }
    if (c->flags & CK_PACK_KEY) {
        return pack_key_extra(c, out, obj);
    }
    return raise_unsupported(c, obj);
}

int ck_py_pack(ck_state *st, PyObject *obj, ck_buf *out, int flags)
{
    pack_ctx c = {.st = st, .flags = flags, .depth = 0};

    return pack_obj(&c, out, obj);
}
