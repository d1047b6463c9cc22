/*
 * py_codec_pack.c - Python object -> msgpack (the encoding half of the codec).
 *
 * Owns ck_py_pack() and what every encoder shares: the nesting limit, error
 * messages naming a type, ext32 framing and the exact-type dispatch. The
 * encoders themselves live in py_codec_pack_scalar.c, _container.c and
 * _key.c (py_codec_pack_internal.h lists them). Bytes are produced by
 * msgpack-c's packer writing into a ck_buf.
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

/* msgpack's str/bin/ext/array/map lengths are 32-bit; msgpack-c would
   silently truncate a larger one, so refuse it here. */
int pack_check_len32(pack_ctx *c, size_t n, const char *what)
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
   self-referencing list into a SerializationError, the codec's one failure
   class, so callers treating "cannot encode" as "do not cache" catch it with
   the rest; Py_EnterRecursiveCall also protects the C stack when we are
   called deep inside Python code. */
int pack_depth_enter(pack_ctx *c)
{
    if (c->depth >= CK_CODEC_MAX_DEPTH) {
        PyErr_Format(c->st->SerializationError,
                     "value nested deeper than %d levels or containing itself",
                     CK_CODEC_MAX_DEPTH);
        return -1;
    }
    if (Py_EnterRecursiveCall(" while packing a cachekit value")) {
        return -1;
    }
    c->depth++;
    return 0;
}

void pack_depth_leave(pack_ctx *c)
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
                 "date, time, timedelta, Decimal, UUID%s",
                 name,
                 (c->flags & CK_PACK_KEY)
                     ? " (in cache keys also classes, Enum members, named tuples, frozen "
                       "dataclasses and objects defining __cachekit_key__())"
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
 * payload is encoded, so pack_ext_begin writes a zero placeholder and pack_ext_end
 * patches it in place. The alternative, encoding the payload into a temporary
 * buffer and copying it behind a minimal header, would copy every byte once
 * per enclosing tuple (O(size x depth)) and allocate on the hot path; the
 * price here is up to 4 header bytes more than the shortest ext form.
 * Positions are kept as offsets because the buffer may move when it grows.
 * Payloads of known length (bigint, bytearray, Decimal, UUID, key-class) use
 * msgpack-c's minimal ext header instead.
 */
int pack_ext_begin(ck_buf *out, int8_t type, size_t *hdr_pos)
{
    unsigned char hdr[6] = {0xc9, 0, 0, 0, 0, (unsigned char)type};

    *hdr_pos = out->len;
    if (ck_buf_append(out, hdr, sizeof(hdr)) < 0) {
        return pack_nomem();
    }
    return 0;
}

int pack_ext_end(pack_ctx *c, ck_buf *out, size_t hdr_pos)
{
    size_t n = out->len - hdr_pos - 6;
    unsigned char *p = out->data + hdr_pos + 1;

    if (pack_check_len32(c, n, "extension payload") < 0) {
        return -1;
    }
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    return 0;
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
 * the encoding they become. O(1) and no Python calls.
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

/* Exact-type dispatch, most common value types first. */
static int pack_dispatch(pack_ctx *c, ck_buf *out, PyObject *obj)
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
    return pack_raise_unsupported(c, obj);
}

/* Every value goes through here: one test of c->stats and one of c->limit
   when statistics are off, so the key path pays next to nothing. Checking
   the limit after each value is what stops a walk after about `limit`
   bytes of encoding, whatever the shape of the graph; pack_raw and
   pack_ext_bytes also check before copying a large payload. */
int pack_obj(pack_ctx *c, ck_buf *out, PyObject *obj)
{
    int rc;

    if (c->stats != NULL) {
        pack_account(c, obj);
    }
    rc = pack_dispatch(c, out, obj);
    if (rc == 0 && c->limit != 0 && out->len > c->limit) {
        return pack_stop(c);
    }
    return rc;
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
