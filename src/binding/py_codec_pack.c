/*
 * py_codec_pack.c - Python object -> msgpack (the encoding half of the codec).
 *
 * Owns ck_py_pack() / ck_py_pack_ex() and what every encoder shares: the
 * nesting limit, error messages naming a type, ext32 framing, statistics,
 * the exact-type dispatch, and the encoders of int, str and bytes (kept here
 * so they inline into the dispatch). The other encoders live in
 * py_codec_pack_scalar.c, _container.c and _key.c
 * (py_codec_pack_internal.h lists them). Bytes are produced by
 * msgpack-c's packer writing into a ck_buf.
 *
 * Types are matched exactly (Py_TYPE(obj) == &PyLong_Type, ...): a subclass
 * such as IntEnum, OrderedDict or a namedtuple would decode as its base type,
 * so it never takes the builtin encoding; in value mode it goes to pack_app
 * (py_codec_app.c), which stores it with its class name or refuses it.
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
#include "py_codec_pack_internal.h"

#include <assert.h>
#include <datetime.h>

int ck_py_pack_init(void)
{
    /* This translation unit's copy of the datetime C API (see py_codec.h);
       the dispatch compares against its type objects. */
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return -1;
    }
    return pack_scalar_init();
}

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

int pack_raise_too_long(pack_ctx *c, size_t n, const char *what)
{
    PyErr_Format(c->st->SerializationError,
                 "%s of length %zu exceeds msgpack's 32-bit length limit", what, n);
    return -1;
}

/* The depth limit (pack_depth_enter in py_codec_pack_internal.h) turns a
   self-referencing list into a SerializationError, the codec's one failure
   class, so callers treating "cannot encode" as "do not cache" catch it with
   the rest. */
int pack_raise_too_deep(pack_ctx *c)
{
    PyErr_Format(c->st->SerializationError,
                 "value nested deeper than %d levels or containing itself", CK_CODEC_MAX_DEPTH);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Type names                                                                */
/* ------------------------------------------------------------------------ */

/*
 * New reference to "<module><sep><qualname>" of tp. With omit_builtins the
 * module is dropped for builtins ("object", not "builtins.object"), which
 * reads better in error messages; key encodings always keep it.
 */
PyObject *pack_type_name(ck_state *st, PyTypeObject *tp, const char *sep, int omit_builtins)
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

int pack_raise_unsupported(pack_ctx *c, PyObject *obj)
{
    PyObject *name = pack_type_name(c->st, Py_TYPE(obj), ".", 1);

    if (name == NULL) {
        return -1;
    }
    PyErr_Format(c->st->UnsupportedTypeError,
                 "cachekit cannot store values of type '%U'; supported: None, bool, int, "
                 "float, str, bytes, bytearray, list, tuple, dict, set, frozenset, datetime, "
                 "date, time, timedelta, Decimal, UUID, and (values only) dataclasses, named "
                 "tuples, Enum members, OrderedDict, defaultdict, subclasses of builtin types, "
                 "pydantic models, attrs classes, numpy arrays and scalars, pandas DataFrame "
                 "and Series, polars DataFrame%s",
                 name,
                 (c->flags & CK_PACK_KEY)
                     ? " (in cache keys also classes, Enum members, named tuples, frozen "
                       "dataclasses and objects defining __cachekit_key__())"
                     : "");
    Py_DECREF(name);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Builtin scalars: int, str, bytes                                          */
/* ------------------------------------------------------------------------ */

/* The most common leaves live beside the dispatch so that the compiler
   inlines them into it: cache keys are mostly ints and strs. */

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
    if (pack_check_len32(c, n - skip, "int") < 0) {
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

    if (pack_check_len32(c, n, what) < 0) {
        return -1;
    }
    if (pack_would_pass(c, out, n)) {
        return pack_stop(c);
    }
    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    rc = is_str ? msgpack_pack_str_with_body(&pk, p, n) : msgpack_pack_bin_with_body(&pk, p, n);
    return rc != 0 ? pack_nomem() : 0;
}

int pack_str(pack_ctx *c, ck_buf *out, PyObject *obj)
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

/* ------------------------------------------------------------------------ */
/* Statistics (ck_py_pack_ex)                                                */
/* ------------------------------------------------------------------------ */

/* What a sys.getsizeof() would add for the GC header: two pointers. */
#define GC_HEADER_BYTES (2 * sizeof(void *))

/*
 * Add obj's own size to stats->graph_bytes, the way sys.getsizeof() counts
 * it: the object struct (tp_basicsize, plus items * tp_itemsize for
 * variable-size objects such as ints, tuples, bytes), the GC header, and the
 * separately allocated storage of the containers (a list's item array, a
 * dict's keys table, a set's hash table, a bytearray's buffer, a str's
 * characters). Shared objects are counted each time they are reached, like
 * the encoding they become. No Python calls; O(1) except that a non-ASCII
 * str gets its UTF-8 form a moment before pack_str would create it anyway.
 */
static void pack_account(pack_ctx *c, PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    size_t n = (size_t)tp->tp_basicsize;

    if (tp->tp_itemsize != 0) {
        Py_ssize_t items = Py_SIZE(obj);

        /* An int's ob_size carries its sign. */
        n += (size_t)(items < 0 ? -items : items) * (size_t)tp->tp_itemsize;
    }
    if (PyType_IS_GC(tp)) {
        n += GC_HEADER_BYTES;
    }
    if (tp == &PyUnicode_Type) {
        /* tp_basicsize is the legacy (non-compact) struct; compact strs are
           their header followed by the characters and a terminator. */
        if (PyUnicode_IS_COMPACT_ASCII(obj)) {
            n = sizeof(PyASCIIObject) + (size_t)PyUnicode_GET_LENGTH(obj) + 1;
        } else {
            Py_ssize_t utf8_len;

            n = sizeof(PyCompactUnicodeObject) +
                ((size_t)PyUnicode_GET_LENGTH(obj) + 1) * PyUnicode_KIND(obj);
            /* pack_str is about to cache the UTF-8 form in the str (this
               call creates it first, the encoder then reuses it); count it
               as getsizeof does. A str that has none (lone surrogates) is
               refused by pack_str, which raises the error again. */
            if (PyUnicode_AsUTF8AndSize(obj, &utf8_len) != NULL) {
                n += (size_t)utf8_len + 1;
            } else {
                PyErr_Clear();
            }
        }
    } else if (tp == &PyList_Type) {
        n += (size_t)((PyListObject *)obj)->allocated * sizeof(PyObject *);
        c->stats->has_mutable = 1;
    } else if (tp == &PyDict_Type) {
        /* The struct plus its keys table and values, as dict.__sizeof__. */
        n = (size_t)_PyDict_SizeOf((PyDictObject *)obj) + GC_HEADER_BYTES;
        c->stats->has_mutable = 1;
    } else if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        PySetObject *so = (PySetObject *)obj;

        if (so->table != so->smalltable) {
            n += ((size_t)so->mask + 1) * sizeof(setentry);
        }
        if (tp == &PySet_Type) {
            c->stats->has_mutable = 1;
        }
    } else if (tp == &PyByteArray_Type) {
        n += (size_t)((PyByteArrayObject *)obj)->ob_alloc;
        c->stats->has_mutable = 1;
    }
    c->stats->graph_bytes += n;
}

int pack_stop(pack_ctx *c)
{
    c->stopped = 1;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

/* Exact-type dispatch, most common value types first. Inlined into both
   pack_obj (no statistics: every branch a tail call) and pack_obj_counted. */
static inline __attribute__((always_inline)) int pack_dispatch(pack_ctx *c, ck_buf *out,
                                                               PyObject *obj)
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
    if (data_type_check(tp)) {
        return pack_data(c, out, obj);
    }
    return pack_app(c, out, obj);
}

/* With statistics: count obj, encode it, then check the limit. Checking
   after each value is what stops a walk after about `limit` bytes of
   encoding, whatever the shape of the graph; pack_raw and pack_ext_bytes
   also check before copying a large payload. */
static __attribute__((noinline)) int pack_obj_counted(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    pack_account(c, obj);
    if (pack_dispatch(c, out, obj) < 0) {
        return -1;
    }
    if (c->limit != 0 && out->len > c->limit) {
        return pack_stop(c);
    }
    return 0;
}

/* Every value goes through here. Without statistics (ck_py_pack, the key
   path) the only cost is one test of c->stats: the dispatch keeps its tail
   calls. (pack_would_pass in the raw encoders is one more test of limit.) */
int pack_obj(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    if (__builtin_expect(c->stats != NULL, 0)) {
        return pack_obj_counted(c, out, obj);
    }
    return pack_dispatch(c, out, obj);
}

int ck_py_pack_ex(ck_state *st, PyObject *obj, ck_buf *out, int flags, ck_pack_stats *stats)
{
    pack_ctx c = {.st = st,
                  .flags = flags,
                  .depth = 0,
                  .stats = stats,
                  .limit = stats != NULL ? stats->limit : 0,
                  .stopped = 0};
    int rc;

    if (stats != NULL) {
        stats->graph_bytes = 0;
        stats->has_mutable = 0;
    }
    rc = pack_obj(&c, out, obj);
    if (rc < 0 && c.stopped) {
        /* Every caller unwound without raising: the limit is not an error. */
        assert(!PyErr_Occurred());
        return 1;
    }
    return rc;
}

int ck_py_pack(ck_state *st, PyObject *obj, ck_buf *out, int flags)
{
    return ck_py_pack_ex(st, obj, out, flags, NULL);
}
