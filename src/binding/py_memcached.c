/*
 * py_memcached.c - MemcachedClient: the C memcached client
 * (ck_memcached.h) as a Python type.
 *
 * Arguments are pinned (key names as UTF-8 owned by the argument objects,
 * values as Py_buffer) and the GIL released around every round trip; no
 * PyObject is touched without it. Failures raise BackendError with an
 * error_type (timeout, connection, protocol, server), as the Redis client
 * does, with messages that never hold a key or value.
 */
#include "py_memcached.h"

#include <stdlib.h>
#include <unistd.h>

#include "py_redis.h" /* ck_redis_raise: ck_error -> BackendError */

ck_mc_client *ck_mc_client_of(ck_mc_object *self)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_ValueError, "MemcachedClient is closed");
        return NULL;
    }
    if (self->pid != getpid()) {
        /* A forked child: the parent's sockets and lock are not ours. */
        (void)pthread_mutex_init(&self->mc.lock, NULL);
        ck_mc_drop_idle(&self->mc);
        self->pid = getpid();
    }
    return &self->mc;
}

PyObject *ck_mc_raise(ck_mc_object *self, const ck_error *err)
{
    return ck_redis_raise(ck_state_from_type(Py_TYPE(self)), err);
}

static int mc_init(PyObject *self_, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"servers", "connect_timeout", "timeout", "pool_size", "retries",
                             "max_value", "key_prefix", NULL};
    ck_mc_object *self = (ck_mc_object *)self_;
    PyObject *servers, *seq = NULL;
    double connect_timeout = 2.0, timeout = 1.0;
    unsigned int pool_size = 10, retries = 2;
    Py_ssize_t max_value = 1024 * 1024 - 1024, prefix_len = 0, i, n;
    const char *prefix = "";
    const char *hosts[CK_MC_MAX_SERVERS];
    int ports[CK_MC_MAX_SERVERS], rc = -1;
    ck_error err;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|ddIInz#:MemcachedClient", kwlist, &servers,
                                     &connect_timeout, &timeout, &pool_size, &retries, &max_value,
                                     &prefix, &prefix_len)) {
        return -1;
    }
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "MemcachedClient already initialised");
        return -1;
    }
    if (prefix == NULL) {
        prefix = "";
        prefix_len = 0;
    }
    if (!(connect_timeout > 0 && connect_timeout <= 3600 && timeout > 0 && timeout <= 3600) ||
        max_value < 0) {
        PyErr_SetString(PyExc_ValueError, "timeouts must be in (0, 3600] seconds");
        return -1;
    }
    seq = PySequence_Fast(servers, "servers must be a sequence of (host, port)");
    if (seq == NULL) {
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > CK_MC_MAX_SERVERS) {
        PyErr_Format(PyExc_ValueError, "between 1 and %d servers", CK_MC_MAX_SERVERS);
        goto done;
    }
    for (i = 0; i < n; i++) {
        /* hosts[i] points into the tuple's str, alive while seq is. */
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "si;each server is (host, port)",
                              &hosts[i], &ports[i])) {
            goto done;
        }
        if (ports[i] < 1 || ports[i] > 65535) {
            PyErr_SetString(PyExc_ValueError, "port must be in 1..65535");
            goto done;
        }
    }
    if (ck_mc_init(&self->mc, hosts, ports, (size_t)n, pool_size, (int64_t)(connect_timeout * 1000 + 0.999),
                   (int64_t)(timeout * 1000 + 0.999), retries, (size_t)max_value, prefix,
                   (size_t)prefix_len, &err) < 0) {
        ck_mc_raise(self, &err);
        goto done;
    }
    self->ready = 1;
    self->pid = getpid();
    rc = 0;
done:
    Py_XDECREF(seq);
    return rc;
}

static int name_of(PyObject *arg, const char **name, Py_ssize_t *n)
{
    if (PyBytes_Check(arg)) {
        *name = PyBytes_AS_STRING(arg);
        *n = PyBytes_GET_SIZE(arg);
        return 0;
    }
    *name = PyUnicode_AsUTF8AndSize(arg, n);
    return *name == NULL ? -1 : 0;
}

/* get_entry(name) -> (value, ttl_s) | None; ttl_s -1: no expiry. */
static PyObject *mc_get_entry(PyObject *self_, PyObject *arg)
{
    ck_mc_object *self = (ck_mc_object *)self_;
    ck_mc_client *mc = ck_mc_client_of(self);
    unsigned char *value = NULL;
    size_t len = 0;
    int64_t ttl_s = -1;
    const char *name;
    Py_ssize_t n;
    ck_error err;
    PyObject *res;
    int rc;

    if (mc == NULL || name_of(arg, &name, &n) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_get(mc, name, (size_t)n, &value, &len, &ttl_s, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return ck_mc_raise(self, &err);
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    res = Py_BuildValue("(y#L)", (const char *)value, (Py_ssize_t)len, (long long)ttl_s);
    free(value);
    return res;
}

static PyObject *mc_get(PyObject *self_, PyObject *arg)
{
    PyObject *entry = mc_get_entry(self_, arg), *value;

    if (entry == NULL || entry == Py_None) {
        return entry;
    }
    value = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
    Py_DECREF(entry);
    return value;
}

static PyObject *mc_set(PyObject *self_, PyObject *args)
{
    ck_mc_object *self = (ck_mc_object *)self_;
    ck_mc_client *mc = ck_mc_client_of(self);
    const char *name;
    Py_ssize_t n;
    Py_buffer value;
    long long ttl_ms = 0;
    ck_error err;
    int rc;

    if (mc == NULL || !PyArg_ParseTuple(args, "s#y*|L:set", &name, &n, &value, &ttl_ms)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_set(mc, name, (size_t)n, value.buf, (size_t)value.len, ttl_ms, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&value);
    if (rc < 0) {
        return ck_mc_raise(self, &err);
    }
    return PyBool_FromLong(rc);
}

static PyObject *mc_delete(PyObject *self_, PyObject *arg)
{
    ck_mc_object *self = (ck_mc_object *)self_;
    ck_mc_client *mc = ck_mc_client_of(self);
    const char *name;
    Py_ssize_t n;
    ck_error err;
    int rc;

    if (mc == NULL || name_of(arg, &name, &n) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_delete(mc, name, (size_t)n, &err);
    Py_END_ALLOW_THREADS
    return rc < 0 ? ck_mc_raise(self, &err) : PyBool_FromLong(rc);
}

static PyObject *mc_touch(PyObject *self_, PyObject *args)
{
    ck_mc_object *self = (ck_mc_object *)self_;
    ck_mc_client *mc = ck_mc_client_of(self);
    const char *name;
    Py_ssize_t n;
    long long ttl_ms;
    ck_error err;
    int rc;

    if (mc == NULL || !PyArg_ParseTuple(args, "s#L:touch", &name, &n, &ttl_ms)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_touch(mc, name, (size_t)n, ttl_ms, &err);
    Py_END_ALLOW_THREADS
    return rc < 0 ? ck_mc_raise(self, &err) : PyBool_FromLong(rc);
}

static PyObject *mc_ping(PyObject *self_, PyObject *Py_UNUSED(ignored))
{
    ck_mc_object *self = (ck_mc_object *)self_;
    ck_mc_client *mc = ck_mc_client_of(self);
    ck_error err;
    int rc;

    if (mc == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_mc_ping(mc, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return ck_mc_raise(self, &err);
    }
    Py_RETURN_TRUE;
}

static PyObject *mc_stats(PyObject *self_, PyObject *Py_UNUSED(ignored))
{
    ck_mc_object *self = (ck_mc_object *)self_;

    return Py_BuildValue("{sK}", "too_large",
                         (unsigned long long)__atomic_load_n(&self->mc.too_large, __ATOMIC_RELAXED));
}

static PyObject *mc_close(PyObject *self_, PyObject *Py_UNUSED(ignored))
{
    ck_mc_object *self = (ck_mc_object *)self_;

    if (self->ready) {
        ck_mc_destroy(&self->mc);
        self->ready = 0;
    }
    Py_RETURN_NONE;
}

static void mc_dealloc(PyObject *self_)
{
    PyTypeObject *tp = Py_TYPE(self_);

    Py_XDECREF(mc_close(self_, NULL));
    tp->tp_free(self_);
    Py_DECREF(tp);
}

int ck_mc_check(PyObject *o)
{
    return PyType_GetSlot(Py_TYPE(o), Py_tp_dealloc) == (void *)mc_dealloc;
}

static PyMethodDef mc_methods[] = {
    {"get", mc_get, METH_O, "get($self, name, /)\n--\n\nThe value, or None."},
    {"get_entry", mc_get_entry, METH_O,
     "get_entry($self, name, /)\n--\n\n(value, ttl_seconds) or None; ttl -1: no expiry."},
    {"set", mc_set, METH_VARARGS,
     "set($self, name, value, ttl_ms=0, /)\n--\n\nStore; False if too large or refused."},
    {"delete", mc_delete, METH_O, "delete($self, name, /)\n--\n\nTrue if it existed."},
    {"touch", mc_touch, METH_VARARGS,
     "touch($self, name, ttl_ms, /)\n--\n\nNew TTL; True if the key exists."},
    {"ping", mc_ping, METH_NOARGS, "ping($self, /)\n--\n\nmn on every server."},
    {"stats", mc_stats, METH_NOARGS, "stats($self, /)\n--\n\nthis client's counters."},
    {"close", mc_close, METH_NOARGS, "close($self, /)\n--\n\nClose the connections."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mc_slots[] = {
    {Py_tp_doc, "MemcachedClient(servers, connect_timeout=2.0, timeout=1.0, pool_size=10, "
                "retries=2, max_value=..., key_prefix='')\n--\n\nA memcached meta-protocol client."},
    {Py_tp_init, mc_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, mc_dealloc},
    {Py_tp_methods, mc_methods},
    {0, NULL},
};

static PyType_Spec mc_spec = {
    .name = "cachekit._core.MemcachedClient",
    .basicsize = sizeof(ck_mc_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = mc_slots,
};

int ck_memcached_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &mc_spec, NULL);
    int rc;

    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddType(module, (PyTypeObject *)type);
    Py_DECREF(type);
    return rc;
}
