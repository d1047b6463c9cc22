/*
 * py_keys.c - binds a call to its signature and encodes it as key bytes.
 *
 * Hot path: a call with exactly the positional parameters and no keywords
 * writes the array header and packs each argument: no allocation, no Python
 * calls for builtin argument types. Anything else takes the general binder.
 */
#include "py_keys.h"

#include <msgpack.h>
#include <string.h>

#include "py_codec.h"

#define KEY_FLAGS (CK_PACK_CANONICAL | CK_PACK_KEY)

/* Host to big-endian (msgpack's byte order). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BE16(x) (x)
#define BE32(x) (x)
#define BE64(x) (x)
#else
#define BE16(x) __builtin_bswap16(x)
#define BE32(x) __builtin_bswap32(x)
#define BE64(x) __builtin_bswap64(x)
#endif

static int pack_array_header(ck_buf *out, size_t n)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, out, ck_buf_msgpack_write);
    return msgpack_pack_array(&pk, n) == 0 ? 0 : -1;
}

/* 1 if a class on type's MRO defines name, 0 if none does, -1 on error.
   Walks the MRO dicts directly: a failed getattr would build an
   AttributeError on every method call. */
static int type_defines(PyTypeObject *type, PyObject *name)
{
    PyObject *mro = type->tp_mro;
    Py_ssize_t i;

    for (i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyObject *dict = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
        if (dict != NULL && PyDict_GetItemWithError(dict, name) != NULL) {
            return 1;
        }
        if (PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

/* 1 when instances of tp are keyed by their value: the type defines
   __cachekit_key__, or the key encoding understands its values. */
static int keyed_by_value(ck_state *st, PyTypeObject *tp)
{
    int has = type_defines(tp, st->str_cachekit_key);

    if (has != 0) {
        return has;
    }
    return ck_py_key_by_value(tp);
}

/* How a method's `self` of type tp is keyed (see ck_self_mode). */
static int classify_self(ck_state *st, PyObject *self, PyTypeObject *tp)
{
    int by_value;

    if (PyType_Check(self)) {
        return CK_SELF_VALUE; /* a class: by module and qualified name */
    }
    by_value = keyed_by_value(st, tp);
    if (by_value < 0) {
        return -1;
    }
    if (by_value) {
        return CK_SELF_VALUE;
    }
    /* Builtin values (ints, strs, tuples...) are not weakly referenceable
       and are keyed by value by the codec; an instance that is neither gets
       a clear error below. */
    return tp->tp_weaklistoffset != 0 ? CK_SELF_IDENTITY : CK_SELF_UNTRACKABLE;
}

/* The identity key of an instance: a key-only extension holding its
   address. Valid only while the instance lives: the caller ties every
   entry keyed so to the instance's lifetime (*identity). */
static int pack_identity(ck_buf *out, PyObject *self)
{
    uint64_t be = BE64((uint64_t)(uintptr_t)self);
    unsigned char *p;

    if (ck_buf_reserve(out, 10) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    p = out->data + out->len;
    p[0] = 0xd7; /* fixext 8 */
    p[1] = (unsigned char)CK_EXT_KEY_INSTANCE;
    memcpy(p + 2, &be, 8);
    out->len += 10;
    return 0;
}

/* The `self` slot of a method. Two instances share an entry only when the
   user said they may (__cachekit_key__) or the type has value semantics the
   key encoding understands (Enum, named tuples, frozen dataclasses); any
   other instance is keyed by its identity, and *identity is set to it. */
static int pack_self(ck_state *st, ck_key_spec *spec, PyObject *self, ck_buf *out,
                     PyObject **identity)
{
    PyTypeObject *tp = Py_TYPE(self);
    int mode;

    if (tp == spec->self_type && (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) &&
        tp->tp_version_tag == spec->self_type_version) {
        mode = spec->self_mode;
    } else {
        mode = classify_self(st, self, tp);
        if (mode < 0) {
            return -1;
        }
        /* Memoised while the class is unmodified (its version tag holds). */
        if (tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) {
            Py_XSETREF(spec->self_type, (PyTypeObject *)Py_NewRef(tp));
            spec->self_type_version = tp->tp_version_tag;
            spec->self_mode = mode;
        }
    }
    if (mode == CK_SELF_IDENTITY) {
        *identity = self;
        return pack_identity(out, self);
    }
    if (ck_py_pack(st, self, out, KEY_FLAGS) == 0) {
        return 0;
    }
    if (mode == CK_SELF_UNTRACKABLE && PyErr_ExceptionMatches(st->UnsupportedTypeError)) {
        PyErr_Format(st->UnsupportedTypeError,
                     "cannot key a cached method on a %.200s instance: it cannot be weakly "
                     "referenced (add '__weakref__' to its __slots__) and has no "
                     "__cachekit_key__() method",
                     tp->tp_name);
    }
    return -1;
}

static int pack_slot(ck_state *st, ck_key_spec *spec, Py_ssize_t i, PyObject *v, ck_buf *out,
                     PyObject **identity)
{
    if (i == 0 && spec->self_is_instance) {
        return pack_self(st, spec, v, out, identity);
    }
    return ck_py_pack(st, v, out, KEY_FLAGS);
}

static size_t slot_count(const ck_key_spec *spec)
{
    return (size_t)(spec->n_pos + spec->n_kwonly) + (size_t)spec->has_varargs +
           (size_t)spec->has_varkw;
}

/* Index of name in names[start:], or -1. Keyword names from calls are
   usually the interned strings of the signature, so identity hits first. */
static Py_ssize_t find_name(PyObject *names, Py_ssize_t start, PyObject *name)
{
    Py_ssize_t i, n = PyTuple_GET_SIZE(names);

    for (i = start; i < n; i++) {
        if (PyTuple_GET_ITEM(names, i) == name) {
            return i;
        }
    }
    for (i = start; i < n; i++) {
        if (PyUnicode_Compare(PyTuple_GET_ITEM(names, i), name) == 0) {
            return i;
        }
    }
    return -1;
}

static int build_general(ck_state *st, ck_key_spec *spec, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames, ck_buf *out, PyObject **identity)
{
    PyObject *slots[CK_KEY_MAX_PARAMS]; /* borrowed; [0, n_named) used */
    PyObject *varkw = NULL;             /* owned */
    Py_ssize_t n_named = spec->n_pos + spec->n_kwonly, nkw, i, j;
    int rc = -1;

    /* Only the used prefix is cleared: zeroing the whole array would cost
       more than the rest of the binding. */
    memset(slots, 0, (size_t)n_named * sizeof(slots[0]));
    nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > spec->n_pos && !spec->has_varargs) {
        return 1;
    }
    for (i = 0; i < nargs && i < spec->n_pos; i++) {
        slots[i] = args[i];
    }
    for (j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j), *value = args[nargs + j];
        Py_ssize_t at = find_name(spec->pos_names, spec->n_posonly, name);

        if (at < 0) {
            at = find_name(spec->kwonly_names, 0, name);
            at = at < 0 ? -1 : spec->n_pos + at;
        }
        if (at >= 0) {
            if (slots[at] != NULL) {
                rc = 1; /* given twice */
                goto error;
            }
            slots[at] = value;
            continue;
        }
        if (!spec->has_varkw) {
            rc = 1; /* unexpected keyword */
            goto error;
        }
        if (varkw == NULL && (varkw = PyDict_New()) == NULL) {
            goto error;
        }
        if (PyDict_SetItem(varkw, name, value) < 0) {
            goto error;
        }
    }
    for (i = 0; i < n_named; i++) {
        if (slots[i] == NULL) {
            PyObject *name = i < spec->n_pos
                                 ? PyTuple_GET_ITEM(spec->pos_names, i)
                                 : PyTuple_GET_ITEM(spec->kwonly_names, i - spec->n_pos);
            slots[i] = PyDict_GetItemWithError(spec->defaults, name);
            if (slots[i] == NULL) {
                rc = PyErr_Occurred() ? -1 : 1; /* missing required argument */
                goto error;
            }
        }
    }
    if (pack_array_header(out, slot_count(spec)) < 0) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < n_named; i++) {
        if (pack_slot(st, spec, i, slots[i], out, identity) < 0) {
            goto error;
        }
    }
    if (spec->has_varargs) {
        Py_ssize_t extra = nargs > spec->n_pos ? nargs - spec->n_pos : 0;
        if (pack_array_header(out, (size_t)extra) < 0) {
            PyErr_NoMemory();
            goto error;
        }
        for (i = 0; i < extra; i++) {
            if (ck_py_pack(st, args[spec->n_pos + i], out, KEY_FLAGS) < 0) {
                goto error;
            }
        }
    }
    if (spec->has_varkw) {
        if (varkw == NULL && (varkw = PyDict_New()) == NULL) {
            goto error;
        }
        /* Canonical packing sorts the items, so keyword order is irrelevant. */
        if (ck_py_pack(st, varkw, out, KEY_FLAGS) < 0) {
            goto error;
        }
    }
    rc = 0;
error:
    Py_XDECREF(varkw);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Scalar fast path                                                          */
/* ------------------------------------------------------------------------ */

/*
 * The common scalar argument types written straight into the key buffer,
 * byte for byte what the general packer (msgpack-c through ck_py_pack)
 * writes for them: msgpack's smallest int form, float64, str8/16/32 and
 * bin8/16/32. tests/test_keys.py checks the two agree (positional calls
 * take this path, keyword calls the general one, and must share a key).
 */

/* n (2, 4 or 8) big-endian bytes of v; a byte swap and a store. */
static inline unsigned char *put_be(unsigned char *p, uint64_t v, int n)
{
    if (n == 8) {
        uint64_t b = BE64(v);
        memcpy(p, &b, 8);
    } else if (n == 4) {
        uint32_t b = BE32((uint32_t)v);
        memcpy(p, &b, 4);
    } else {
        uint16_t b = BE16((uint16_t)v);
        memcpy(p, &b, 2);
    }
    return p + n;
}

/* A raw payload (str or bin) with its length header; tag8 is 0 for str
   (fixstr and 0xd9..0xdb), 0xc4 for bin (0xc4..0xc6). */
static inline int put_raw(ck_buf *out, unsigned char tag8, const void *data, size_t n)
{
    unsigned char *p;

    if (n > UINT32_MAX || ck_buf_reserve(out, n + 5) < 0) {
        return 0; /* the general packer reports it */
    }
    p = out->data + out->len;
    if (tag8 == 0 && n < 32) {
        *p++ = (unsigned char)(0xa0 | n);
    } else if (n < 256) {
        *p++ = tag8 == 0 ? 0xd9 : tag8;
        *p++ = (unsigned char)n;
    } else if (n < 65536) {
        *p++ = tag8 == 0 ? 0xda : (unsigned char)(tag8 + 1);
        p = put_be(p, n, 2);
    } else {
        *p++ = tag8 == 0 ? 0xdb : (unsigned char)(tag8 + 2);
        p = put_be(p, n, 4);
    }
    memcpy(p, data, n);
    out->len = (size_t)(p - out->data) + n;
    return 1;
}

/* An exact int that fits a C long long (msgpack_pack_long_long's forms). */
static inline void put_int(ck_buf *out, long long v)
{
    unsigned char *p = out->data + out->len;

    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128) {
            *p++ = (unsigned char)u;
        } else if (u < 256) {
            *p++ = 0xcc;
            *p++ = (unsigned char)u;
        } else if (u < 65536) {
            *p++ = 0xcd;
            p = put_be(p, u, 2);
        } else if (u < ((uint64_t)1 << 32)) {
            *p++ = 0xce;
            p = put_be(p, u, 4);
        } else {
            *p++ = 0xcf;
            p = put_be(p, u, 8);
        }
    } else if (v >= -32) {
        *p++ = (unsigned char)(int8_t)v;
    } else if (v >= -128) {
        *p++ = 0xd0;
        *p++ = (unsigned char)(int8_t)v;
    } else if (v >= -32768) {
        *p++ = 0xd1;
        p = put_be(p, (uint64_t)v, 2);
    } else if (v >= -((long long)1 << 31)) {
        *p++ = 0xd2;
        p = put_be(p, (uint64_t)v, 4);
    } else {
        *p++ = 0xd3;
        p = put_be(p, (uint64_t)v, 8);
    }
    out->len = (size_t)(p - out->data);
}

/* 1 when v was one of the fast types and is written, 0 when the general
   packer must take it (nothing written). No Python calls, no errors. */
static inline int put_scalar(ck_buf *out, PyObject *v)
{
    PyTypeObject *tp = Py_TYPE(v);

    if (ck_buf_reserve(out, 9) < 0) {
        return 0;
    }
    if (tp == &PyLong_Type) {
        /* A compact int (|v| < 2**30) needs no conversion call. */
        Py_ssize_t size = Py_SIZE(v);
        long long x;
        int overflow;

        if (size >= -1 && size <= 1) {
            x = size * (long long)((PyLongObject *)v)->ob_digit[0];
        } else {
            x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 0;
            }
        }
        put_int(out, x);
        return 1;
    }
    if (tp == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *p;

        if (PyUnicode_IS_COMPACT_ASCII(v)) {
            return put_raw(out, 0, PyUnicode_DATA(v), (size_t)PyUnicode_GET_LENGTH(v));
        }
        /* Only a UTF-8 form the str already caches: no encoding here. */
        if (!PyUnicode_IS_COMPACT(v) || ((PyCompactUnicodeObject *)v)->utf8 == NULL) {
            return 0;
        }
        p = ((PyCompactUnicodeObject *)v)->utf8;
        n = ((PyCompactUnicodeObject *)v)->utf8_length;
        return put_raw(out, 0, p, (size_t)n);
    }
    if (tp == &PyFloat_Type) {
        union {
            double d;
            uint64_t u;
        } bits;
        unsigned char *p = out->data + out->len;

        bits.d = PyFloat_AS_DOUBLE(v);
        *p = 0xcb;
        (void)put_be(p + 1, bits.u, 8);
        out->len += 9;
        return 1;
    }
    if (v == Py_None || v == Py_True || v == Py_False) {
        out->data[out->len++] = v == Py_None ? 0xc0 : v == Py_True ? 0xc3 : 0xc2;
        return 1;
    }
    if (tp == &PyBytes_Type) {
        return put_raw(out, 0xc4, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
    }
    return 0;
}

int ck_key_build(ck_state *st, ck_key_spec *spec, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, ck_buf *out, PyObject **identity)
{
    Py_ssize_t i;
    size_t slots;

    *identity = NULL;
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs != spec->n_pos ||
        spec->n_kwonly != 0 || spec->has_varkw) {
        return build_general(st, spec, args, nargs, kwnames, out, identity);
    }
    /* Fast path: exactly the positional parameters, nothing else. */
    slots = slot_count(spec);
    if (slots < 16 && out->cap - out->len >= 1) {
        out->data[out->len++] = (unsigned char)(0x90 | slots); /* fixarray */
    } else if (pack_array_header(out, slots) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        if ((i != 0 || !spec->self_is_instance) && put_scalar(out, args[i])) {
            continue;
        }
        if (pack_slot(st, spec, i, args[i], out, identity) < 0) {
            return -1;
        }
    }
    if (spec->has_varargs && ck_buf_append_byte(out, 0x90) < 0) { /* empty *args */
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}
