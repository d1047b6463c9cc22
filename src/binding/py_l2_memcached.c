/*
 * py_l2_memcached.c - the L2 fast path for a MemcachedBackend (py_l2.h):
 * the L2Backend drives the C memcached client directly, so an L2 hit runs
 * no Python code; the GIL is released for each round trip. Name and data
 * pointers stay valid: the caller holds the objects they point into.
 */
#include "py_l2.h"
#include "py_memcached.h"

#include <stdlib.h>

static int mc_get(PyObject *c, const char *name, size_t n, PyObject **entry, int64_t *pttl_ms)
{
    ck_mc_object *self = (ck_mc_object *)c;
    ck_mc_client *mc = ck_mc_client_of(self);
    unsigned char *value = NULL;
    size_t len = 0;
    int64_t ttl_s = -1;
    ck_error err;
    int rc;

    if (mc == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_get(mc, name, n, &value, &len, &ttl_s, &err);
    Py_END_ALLOW_THREADS
    if (rc <= 0) {
        if (rc < 0) {
            ck_mc_raise(self, &err);
        }
        return rc;
    }
    *entry = PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)len);
    free(value);
    if (ttl_s >= 0) {
        *pttl_ms = ttl_s * 1000;
    }
    return *entry == NULL ? -1 : 1;
}

static int mc_set(PyObject *c, const char *name, size_t n, const unsigned char *data, size_t len,
                  int64_t ttl_ms)
{
    ck_mc_object *self = (ck_mc_object *)c;
    ck_mc_client *mc = ck_mc_client_of(self);
    ck_error err;
    int rc;

    if (mc == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_set(mc, name, n, data, len, ttl_ms, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_mc_raise(self, &err);
        return -1;
    }
    return 0; /* not stored (too large: counted) is not a failure */
}

static int mc_delete(PyObject *c, const char *name, size_t n, int *removed)
{
    ck_mc_object *self = (ck_mc_object *)c;
    ck_mc_client *mc = ck_mc_client_of(self);
    ck_error err;
    int rc;

    if (mc == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_delete(mc, name, n, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_mc_raise(self, &err);
        return -1;
    }
    *removed = rc;
    return 0;
}

static int mc_expire(PyObject *c, const char *name, size_t n, int64_t ttl_ms)
{
    ck_mc_object *self = (ck_mc_object *)c;
    ck_mc_client *mc = ck_mc_client_of(self);
    ck_error err;
    int rc;

    if (mc == NULL) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_touch(mc, name, n, ttl_ms, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_mc_raise(self, &err);
        return -1;
    }
    return 0;
}

static int mc_clear(PyObject *c, const char *prefix, size_t n)
{
    (void)c;
    (void)prefix;
    (void)n;
    PyErr_SetString(PyExc_TypeError,
                    "memcached cannot list keys: cache_clear() cleared L1 only");
    return -1;
}

static const ck_l2_ops memcached_ops = {mc_get, mc_set, mc_delete, mc_expire, mc_clear};

const ck_l2_ops *ck_l2_memcached_ops_for(PyObject *client)
{
    return ck_mc_check(client) ? &memcached_ops : NULL;
}
