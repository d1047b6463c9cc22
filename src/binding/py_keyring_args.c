/*
 * py_keyring_args.c - argument parsing of the Keyring type: the integer
 * limits of the constructor, checked instead of wrapped, and the argument
 * form shared by seal, seal_value, open and open_value.
 */
#include "py_keyring_internal.h"

#include <string.h>

#include "py_args.h"

/* A positive integer limit in [1, max] (obj NULL: keep *out). 0 or -1. */
int ck_py_keyring_parse_limit(PyObject *obj, const char *name, unsigned long long max,
                              unsigned long long *out)
{
    unsigned long long v;

    if (obj == NULL) {
        return 0;
    }
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    v = PyLong_AsUnsignedLongLong(obj); /* OverflowError for negatives and > 2**64-1 */
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        v = 0; /* out of range: reported below */
    }
    if (v == 0 || v > max) {
        PyErr_Format(PyExc_ValueError, "%s must be between 1 and %llu", name, max);
        return -1;
    }
    *out = v;
    return 0;
}

int ck_py_keyring_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, const char *extra, Py_ssize_t *extra_value,
                             keyring_args *a)
{
    const char *names[3] = {"tenant", "cache_key", extra};
    Py_ssize_t n;

    memset(a, 0, sizeof(*a));
    if (ck_parse_fastcall(fname, args, nargs, kwnames, 1, names, extra != NULL ? 3 : 2,
                          a->slots) < 0) {
        return -1;
    }
    a->tenant.p = (const unsigned char *)"default";
    a->tenant.n = 7;
    if (a->slots[1] != NULL) {
        if (!PyUnicode_Check(a->slots[1])) {
            PyErr_Format(PyExc_TypeError, "%s(): tenant must be str", fname);
            return -1;
        }
        a->tenant.p = (const unsigned char *)PyUnicode_AsUTF8AndSize(a->slots[1], &n);
        if (a->tenant.p == NULL) {
            return -1;
        }
        a->tenant.n = (size_t)n;
    }
    if (a->slots[2] != NULL && PyBytes_CheckExact(a->slots[2])) {
        /* The common case: immutable and borrowed for the call, no pinning. */
        a->cache_key.p = (const unsigned char *)PyBytes_AS_STRING(a->slots[2]);
        a->cache_key.n = (size_t)PyBytes_GET_SIZE(a->slots[2]);
    } else if (a->slots[2] != NULL) {
        if (PyObject_GetBuffer(a->slots[2], &a->key, PyBUF_SIMPLE) < 0) {
            return -1;
        }
        a->cache_key.p = a->key.buf;
        a->cache_key.n = (size_t)a->key.len;
    }
    if (extra != NULL && a->slots[3] != NULL) {
        *extra_value = PyNumber_AsSsize_t(a->slots[3], PyExc_OverflowError);
        if (*extra_value == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}
