/*
 * py_interop.c - Python side of interop/v1 (src/core/ck_interop.c): walks
 * argument lists and values into canonical MessagePack, builds keys, checks
 * and decodes foreign values, and exposes the protocol's encryption.
 *
 * Two profiles share one walker: ARGS (number canonicalization, sets
 * sorted by encoded bytes, aware datetimes as Unix seconds, UUIDs as
 * lowercase strings) and VALUE (floats stay float64, temporal values as
 * the spec's sentinel maps, no sets). Errors are ValueError / TypeError;
 * cachekit/interop.py turns them into InteropError.
 *
 * User code that can run during a walk: str(UUID), isoformat() and
 * utcoffset() of datetime subclasses. Keys and values of a dict are held
 * as new references while it is walked, so such code mutating the dict
 * cannot free what we point at.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

#include <stdlib.h>
#include <string.h>

#include "ck_crypto.h"
#include "ck_interop.h"
#include "module_state.h"
#include "py_codec.h"

enum { PROFILE_ARGS = 0, PROFILE_VALUE = 1 };

int ck_interop_crypto_exec(PyObject *module); /* py_interop_crypto.c */

static int walk(ck_state *st, PyObject *obj, ck_buf *out, int profile, int depth);

static int nomem(void)
{
    PyErr_NoMemory();
    return -1;
}

static int put_utf8(PyObject *s, ck_buf *out)
{
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        /* An unpaired surrogate: never replacement-encoded. */
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "interop strings must be well-formed Unicode");
        return -1;
    }
    return ck_mp_put_str(out, p, (size_t)n) < 0 ? nomem() : 0;
}

static int put_long(PyObject *obj, ck_buf *out)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow == 0) {
        return ck_mp_put_int(out, (int64_t)v) < 0 ? nomem() : 0;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "integer out of interop range [-2^63, 2^64-1]");
            return -1;
        }
        return ck_mp_put_uint(out, (uint64_t)u) < 0 ? nomem() : 0;
    }
    PyErr_SetString(PyExc_ValueError, "integer out of interop range [-2^63, 2^64-1]");
    return -1;
}

typedef struct {
    const char *p;
    Py_ssize_t n;
    PyObject *key;   /* new reference */
    PyObject *value; /* new reference */
} map_item;

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0) {
        return c;
    }
    return an < bn ? -1 : an > bn ? 1 : 0;
}

static int cmp_items(const void *x, const void *y)
{
    const map_item *a = x, *b = y;
    return cmp_bytes(a->p, (size_t)a->n, b->p, (size_t)b->n);
}

/* Map keys sorted by UTF-8 bytes, which is Unicode code point order. */
static int walk_dict(ck_state *st, PyObject *obj, ck_buf *out, int profile, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(obj), pos = 0, i = 0;
    map_item *items = NULL;
    PyObject *k, *v;
    int rc = -1;

    items = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(map_item));
    if (items == NULL) {
        return nomem();
    }
    while (i < n && PyDict_Next(obj, &pos, &k, &v)) {
        if (!PyUnicode_Check(k)) {
            PyErr_Format(PyExc_TypeError, "interop map keys must be strings, got %.100s",
                         Py_TYPE(k)->tp_name);
            goto error;
        }
        items[i].key = Py_NewRef(k);
        items[i].value = Py_NewRef(v);
        items[i].p = PyUnicode_AsUTF8AndSize(k, &items[i].n);
        i++;
        if (items[i - 1].p == NULL) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "interop strings must be well-formed Unicode");
            goto error;
        }
    }
    if (i != n) {
        PyErr_SetString(PyExc_RuntimeError, "dict changed size during interop encoding");
        goto error;
    }
    qsort(items, (size_t)n, sizeof(map_item), cmp_items);
    if (ck_mp_put_map(out, (size_t)n) < 0) {
        nomem();
        goto error;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        if (ck_mp_put_str(out, items[j].p, (size_t)items[j].n) < 0) {
            nomem();
            goto error;
        }
        if (walk(st, items[j].value, out, profile, depth + 1) < 0) {
            goto error;
        }
    }
    rc = 0;
error:
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_XDECREF(items[j].key);
        Py_XDECREF(items[j].value);
    }
    PyMem_Free(items);
    return rc;
}

typedef struct {
    ck_buf b;
} enc_elem;

static int cmp_elems(const void *x, const void *y)
{
    const enc_elem *const *a = x, *const *b = y;
    return cmp_bytes((const char *)(*a)->b.data, (*a)->b.len, (const char *)(*b)->b.data,
                     (*b)->b.len);
}

/* A set: every element encoded on its own, sorted by bytes, duplicates
   (after canonicalization: {2, 2.0}) dropped. */
static int walk_set(ck_state *st, PyObject *obj, ck_buf *out, int depth)
{
    Py_ssize_t n = PySet_GET_SIZE(obj), i = 0, kept = 0;
    enc_elem *elems = NULL;
    enc_elem **order = NULL;
    PyObject *it = NULL, *item;
    int rc = -1;

    elems = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(enc_elem));
    order = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(enc_elem *));
    if (elems == NULL || order == NULL) {
        nomem();
        goto error;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        ck_buf_init(&elems[j].b);
    }
    it = PyObject_GetIter(obj);
    if (it == NULL) {
        goto error;
    }
    while ((item = PyIter_Next(it)) != NULL) {
        int r = i < n ? walk(st, item, &elems[i].b, PROFILE_ARGS, depth + 1) : 0;
        Py_DECREF(item);
        if (r < 0) {
            goto error;
        }
        if (i < n) {
            order[i] = &elems[i];
        }
        i++;
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    if (i != n) {
        PyErr_SetString(PyExc_RuntimeError, "set changed size during interop encoding");
        goto error;
    }
    qsort(order, (size_t)n, sizeof(enc_elem *), cmp_elems);
    for (Py_ssize_t j = 0; j < n; j++) {
        if (kept == 0 || cmp_elems(&order[kept - 1], &order[j]) != 0) {
            order[kept++] = order[j];
        }
    }
    if (ck_mp_put_array(out, (size_t)kept) < 0) {
        nomem();
        goto error;
    }
    for (Py_ssize_t j = 0; j < kept; j++) {
        if (ck_buf_append(out, order[j]->b.data, order[j]->b.len) < 0) {
            nomem();
            goto error;
        }
    }
    rc = 0;
error:
    Py_XDECREF(it);
    if (elems != NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            ck_buf_free(&elems[j].b);
        }
    }
    PyMem_Free(elems);
    PyMem_Free(order);
    return rc;
}

/* Aware datetime -> floor(microseconds since the epoch) / 1e6. */
static int walk_datetime_arg(PyObject *obj, ck_buf *out)
{
    PyObject *offset = NULL, *epoch = NULL, *delta = NULL;
    ck_error err;
    int rc = -1;

    offset = PyObject_CallMethod(obj, "utcoffset", NULL);
    if (offset == NULL) {
        return -1;
    }
    if (offset == Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "naive datetime is not an interop argument: give it a tzinfo");
        goto error;
    }
    epoch = PyDateTimeAPI->DateTime_FromDateAndTime(1970, 1, 1, 0, 0, 0, 0,
                                                    PyDateTime_TimeZone_UTC,
                                                    PyDateTimeAPI->DateTimeType);
    if (epoch == NULL) {
        goto error;
    }
    delta = PyNumber_Subtract(obj, epoch);
    if (delta == NULL) {
        goto error;
    }
    if (!PyDelta_Check(delta)) {
        PyErr_SetString(PyExc_TypeError, "datetime subtraction did not give a timedelta");
        goto error;
    }
    {
        /* timedelta is normalised: 0 <= seconds < 86400, 0 <= us < 10^6, so
           this is the floor toward negative infinity. |days| <= 3.7e6 fits. */
        long long us = (long long)PyDateTime_DELTA_GET_DAYS(delta) * 86400000000LL +
                       (long long)PyDateTime_DELTA_GET_SECONDS(delta) * 1000000LL +
                       (long long)PyDateTime_DELTA_GET_MICROSECONDS(delta);
        if (ck_mp_put_number(out, (double)us / 1e6, &err) < 0) {
            PyErr_SetString(PyExc_ValueError, err.msg);
            goto error;
        }
    }
    rc = 0;
error:
    Py_XDECREF(offset);
    Py_XDECREF(epoch);
    Py_XDECREF(delta);
    return rc;
}

/* {"__datetime__"|"__date__"|"__time__": true, "value": isoformat()} */
static int walk_temporal_value(PyObject *obj, const char *tag, ck_buf *out)
{
    PyObject *iso = PyObject_CallMethod(obj, "isoformat", NULL);
    int rc;

    if (iso == NULL) {
        return -1;
    }
    if (!PyUnicode_Check(iso)) {
        Py_DECREF(iso);
        PyErr_SetString(PyExc_TypeError, "isoformat() did not return a str");
        return -1;
    }
    if (ck_mp_put_map(out, 2) < 0 || ck_mp_put_str(out, tag, strlen(tag)) < 0 ||
        ck_mp_put_bool(out, 1) < 0 || ck_mp_put_str(out, "value", 5) < 0) {
        Py_DECREF(iso);
        return nomem();
    }
    rc = put_utf8(iso, out);
    Py_DECREF(iso);
    return rc;
}

static int walk(ck_state *st, PyObject *obj, ck_buf *out, int profile, int depth)
{
    ck_error err;

    if (depth > CK_INTEROP_MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "interop value nested too deeply");
        return -1;
    }
    if (obj == Py_None) {
        return ck_mp_put_nil(out) < 0 ? nomem() : 0;
    }
    if (PyBool_Check(obj)) {
        return ck_mp_put_bool(out, obj == Py_True) < 0 ? nomem() : 0;
    }
    if (PyLong_Check(obj)) {
        return put_long(obj, out);
    }
    if (PyFloat_Check(obj)) {
        double f = PyFloat_AS_DOUBLE(obj);
        if (profile == PROFILE_ARGS) {
            if (ck_mp_put_number(out, f, &err) < 0) {
                PyErr_SetString(PyExc_ValueError, err.msg);
                return -1;
            }
            return 0;
        }
        if (f != f || f - f != 0.0) {
            PyErr_SetString(PyExc_ValueError, "NaN and Infinity are not interop values");
            return -1;
        }
        return ck_mp_put_f64(out, f) < 0 ? nomem() : 0;
    }
    if (PyUnicode_Check(obj)) {
        return put_utf8(obj, out);
    }
    if (PyBytes_Check(obj)) {
        return ck_mp_put_bin(out, (const unsigned char *)PyBytes_AS_STRING(obj),
                             (size_t)PyBytes_GET_SIZE(obj)) < 0
                   ? nomem()
                   : 0;
    }
    if (PyByteArray_Check(obj)) {
        return ck_mp_put_bin(out, (const unsigned char *)PyByteArray_AS_STRING(obj),
                             (size_t)PyByteArray_GET_SIZE(obj)) < 0
                   ? nomem()
                   : 0;
    }
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        PyObject *seq = PySequence_Fast(obj, "expected a sequence"); /* new reference */
        Py_ssize_t n;
        int rc = 0;
        if (seq == NULL) {
            return -1;
        }
        n = PySequence_Fast_GET_SIZE(seq);
        if (ck_mp_put_array(out, (size_t)n) < 0) {
            Py_DECREF(seq);
            return nomem();
        }
        for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
            /* A list may shrink under user code run by an element's walk. */
            if (i >= PySequence_Fast_GET_SIZE(seq)) {
                PyErr_SetString(PyExc_RuntimeError, "list changed size during interop encoding");
                rc = -1;
                break;
            }
            PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
            rc = walk(st, item, out, profile, depth + 1);
            Py_DECREF(item);
        }
        Py_DECREF(seq);
        return rc;
    }
    if (PyDict_Check(obj)) {
        return walk_dict(st, obj, out, profile, depth);
    }
    if (profile == PROFILE_ARGS && PyAnySet_Check(obj)) {
        return walk_set(st, obj, out, depth);
    }
    if (PyDateTime_Check(obj)) {
        if (profile == PROFILE_ARGS) {
            return walk_datetime_arg(obj, out);
        }
        return walk_temporal_value(obj, "__datetime__", out);
    }
    if (profile == PROFILE_VALUE && PyDate_Check(obj)) {
        return walk_temporal_value(obj, "__date__", out);
    }
    if (profile == PROFILE_VALUE && PyTime_Check(obj)) {
        return walk_temporal_value(obj, "__time__", out);
    }
    if (profile == PROFILE_ARGS && st->UUIDType != NULL &&
        PyObject_TypeCheck(obj, (PyTypeObject *)st->UUIDType)) {
        PyObject *s = PyObject_Str(obj); /* lowercase hyphenated */
        int rc;
        if (s == NULL) {
            return -1;
        }
        rc = PyUnicode_Check(s) ? put_utf8(s, out) : -1;
        if (!PyUnicode_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "str(UUID) did not return a str");
        }
        Py_DECREF(s);
        return rc;
    }
    PyErr_Format(PyExc_TypeError, "type %.100s is not in the interop %s data model",
                 Py_TYPE(obj)->tp_name, profile == PROFILE_ARGS ? "argument" : "value");
    return -1;
}

static PyObject *buf_to_bytes(ck_buf *b)
{
    return PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->len);
}

static int canonical_args(ck_state *st, PyObject *args, ck_buf *out)
{
    if (!PyList_Check(args) && !PyTuple_Check(args)) {
        PyErr_Format(PyExc_TypeError, "interop arguments must be a list or tuple, not %.100s",
                     Py_TYPE(args)->tp_name);
        return -1;
    }
    return walk(st, args, out, PROFILE_ARGS, 0);
}

PyDoc_STRVAR(canonical_doc, "interop_canonical_args($module, args, /)\n--\n\n"
                            "Canonical MessagePack bytes of the flat argument array.");

static PyObject *py_canonical_args(PyObject *module, PyObject *args)
{
    ck_buf b;
    PyObject *r = NULL;
    ck_buf_init(&b);
    if (canonical_args(ck_state_from_module(module), args, &b) == 0) {
        r = buf_to_bytes(&b);
    }
    ck_buf_free(&b);
    return r;
}

static int segment(PyObject *obj, const char *what, const char **p, Py_ssize_t *n)
{
    if (!PyUnicode_Check(obj) || (*p = PyUnicode_AsUTF8AndSize(obj, n)) == NULL ||
        !ck_interop_segment_ok(*p, (size_t)*n)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "invalid interop %s %R: must full-string match ^[a-z0-9][a-z0-9._-]{0,63}$",
                     what, obj);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(key_doc, "interop_key($module, namespace, operation, args, /)\n--\n\n"
                      "The interop/v1 cache key {namespace}:{operation}:{args_hash}.");

static PyObject *py_interop_key(PyObject *module, PyObject *const *argv, Py_ssize_t argc)
{
    ck_buf canon, key;
    const char *ns, *op;
    Py_ssize_t ns_n, op_n;
    PyObject *r = NULL;

    if (argc != 3) {
        PyErr_SetString(PyExc_TypeError, "interop_key(namespace, operation, args)");
        return NULL;
    }
    if (segment(argv[0], "namespace", &ns, &ns_n) < 0 ||
        segment(argv[1], "operation", &op, &op_n) < 0) {
        return NULL;
    }
    ck_buf_init(&canon);
    ck_buf_init(&key);
    if (canonical_args(ck_state_from_module(module), argv[2], &canon) < 0) {
        goto error;
    }
    if (ck_interop_key(&key, ns, (size_t)ns_n, op, (size_t)op_n, canon.data, canon.len) < 0) {
        PyErr_NoMemory();
        goto error;
    }
    r = PyUnicode_DecodeASCII((const char *)key.data, (Py_ssize_t)key.len, NULL);
error:
    ck_buf_free(&canon);
    ck_buf_free(&key);
    return r;
}

PyDoc_STRVAR(blake_doc, "interop_blake2b_256($module, data, /)\n--\n\n"
                        "Unkeyed BLAKE2b with a 32-byte digest.");

static PyObject *py_blake2b(PyObject *module, PyObject *arg)
{
    Py_buffer in = {0};
    unsigned char d[CK_BLAKE2B_256_LEN];
    (void)module;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    ck_blake2b_256(in.buf, (size_t)in.len, d);
    PyBuffer_Release(&in);
    return PyBytes_FromStringAndSize((const char *)d, sizeof(d));
}

PyDoc_STRVAR(encode_doc, "interop_encode_value($module, value, /)\n--\n\n"
                         "Plain canonical MessagePack bytes of a value (value profile).");

static PyObject *py_encode_value(PyObject *module, PyObject *value)
{
    ck_buf b;
    PyObject *r = NULL;
    ck_buf_init(&b);
    if (walk(ck_state_from_module(module), value, &b, PROFILE_VALUE, 0) == 0) {
        r = buf_to_bytes(&b);
    }
    ck_buf_free(&b);
    return r;
}

PyDoc_STRVAR(decode_doc, "interop_decode_value($module, data, /)\n--\n\n"
                         "Decode exactly one plain MessagePack document (no extension types);\n"
                         "ValueError for anything else.");

static PyObject *py_decode_value(PyObject *module, PyObject *arg)
{
    ck_state *st = ck_state_from_module(module);
    Py_buffer in = {0};
    PyObject *r = NULL;
    ck_error err;

    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (ck_interop_check_document(in.buf, (size_t)in.len, &err) < 0) {
        PyErr_SetString(PyExc_ValueError, err.msg);
        goto error;
    }
    r = ck_py_unpack(st, in.buf, (size_t)in.len);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
        /* Our codec's own checks (duplicate-hash bounds, unhashable keys). */
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "not a decodable interop value");
    }
error:
    PyBuffer_Release(&in);
    return r;
}

static PyMethodDef interop_functions[] = {
    {"interop_canonical_args", (PyCFunction)py_canonical_args, METH_O, canonical_doc},
    {"interop_key", (PyCFunction)(void (*)(void))py_interop_key, METH_FASTCALL, key_doc},
    {"interop_blake2b_256", (PyCFunction)py_blake2b, METH_O, blake_doc},
    {"interop_encode_value", (PyCFunction)py_encode_value, METH_O, encode_doc},
    {"interop_decode_value", (PyCFunction)py_decode_value, METH_O, decode_doc},
    {NULL, NULL, 0, NULL},
};

int ck_interop_exec(PyObject *module)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return -1;
    }
    if (PyModule_AddFunctions(module, interop_functions) < 0) {
        return -1;
    }
    return ck_interop_crypto_exec(module);
}
