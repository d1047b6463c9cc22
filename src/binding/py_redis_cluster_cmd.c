/*
 * py_redis_cluster_cmd.c - the methods of RedisClusterClient
 * (py_redis_cluster.h), in the three phases of RedisClient's
 * (py_redis_cmd.c): format with the GIL (keys and values copied into C
 * memory, each command's slot computed), route and run without it
 * (ck_redis_cluster_run: one pipeline per node), build the result with it.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "py_redis.h"
#include "py_redis_cluster.h"

static ck_state *state_of(ck_cluster_object *self)
{
    return ck_state_from_type(Py_TYPE(self));
}

static PyObject *protocol_error(ck_cluster_object *self, const char *what)
{
    ck_error err;

    ck_error_set(&err, CK_EPROTO, "unexpected reply to %s", what);
    return ck_redis_raise(state_of(self), &err);
}

/* A request and the slot of each of its commands. */
typedef struct {
    ck_redis_req req;
    unsigned *slots;
    size_t cap;
} creq;

static void creq_init(creq *r)
{
    ck_redis_req_init(&r->req);
    r->slots = NULL;
    r->cap = 0;
}

static void creq_free(creq *r)
{
    ck_redis_req_free(&r->req);
    PyMem_Free(r->slots);
}

/* name key [value] [extra...]: key and value bytes-like (copied). The slot
   is the key's. 0, or -1 with an exception set. */
static int add(ck_cluster_object *self, creq *r, const char *name, PyObject *key,
               PyObject *value, const char *const *extra, int nextra)
{
    Py_buffer kv = {0}, vv = {0};
    const char *argv[6];
    size_t lens[6];
    int argc = 0, i, rc = -1;
    ck_error err;

    if (PyUnicode_Check(key) || (value != NULL && PyUnicode_Check(value))) {
        PyErr_SetString(PyExc_TypeError, "keys and values must be bytes-like, not str");
        return -1;
    }
    if (PyObject_GetBuffer(key, &kv, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (value != NULL && PyObject_GetBuffer(value, &vv, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    if (r->req.n >= r->cap || r->slots == NULL) {
        size_t cap = r->cap == 0 ? 8 : r->cap * 2;

        if (cap <= r->req.n) {
            cap = r->req.n + 8;
        }
        unsigned *slots = PyMem_Realloc(r->slots, cap * sizeof(*slots));
        if (slots == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        r->slots = slots;
        r->cap = cap;
    }
    argv[argc] = name;
    lens[argc++] = strlen(name);
    argv[argc] = kv.buf;
    lens[argc++] = (size_t)kv.len;
    if (value != NULL) {
        argv[argc] = vv.buf;
        lens[argc++] = (size_t)vv.len;
    }
    for (i = 0; i < nextra; i++) {
        argv[argc] = extra[i];
        lens[argc++] = strlen(extra[i]);
    }
    r->slots[r->req.n] = ck_cluster_key_slot(kv.buf, (size_t)kv.len);
    if (ck_redis_req_add(&r->req, argc, argv, lens, &err) < 0) {
        ck_redis_raise(state_of(self), &err);
        goto done;
    }
    rc = 0;
done:
    if (value != NULL && vv.obj != NULL) {
        PyBuffer_Release(&vv);
    }
    PyBuffer_Release(&kv);
    return rc;
}

/* Phase 2. replies: r->req.n slots, freed by free_replies. */
static redisReply **run(ck_cluster_object *self, creq *r)
{
    ck_redis_cluster *cl = self->cl;
    redisReply **replies = PyMem_Calloc(r->req.n > 0 ? r->req.n : 1, sizeof(*replies));
    ck_error err;
    int rc;

    if (replies == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_run(cl, &r->req, r->slots, replies, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyMem_Free(replies);
        ck_redis_raise(state_of(self), &err);
        return NULL;
    }
    return replies;
}

static void free_replies(redisReply **replies, size_t n)
{
    size_t i;

    if (replies == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        ck_redis_reply_free(replies[i]);
    }
    PyMem_Free(replies);
}

static PyObject *bytes_or_none(ck_cluster_object *self, const redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING) {
        return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
    }
    if (r->type == REDIS_REPLY_NIL) {
        Py_RETURN_NONE;
    }
    return protocol_error(self, "GET");
}

static int ms_arg(PyObject *obj, const char *name, char *buf, size_t size)
{
    long long ms;

    if (PyBool_Check(obj) || !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int (milliseconds)", name);
        return -1;
    }
    ms = PyLong_AsLongLong(obj);
    if (ms == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (ms <= 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive number of milliseconds", name);
        return -1;
    }
    snprintf(buf, size, "%lld", ms);
    return 0;
}

static int add_set(ck_cluster_object *self, creq *r, PyObject *key, PyObject *value,
                   PyObject *ttl)
{
    char ms[32];
    const char *extra[2] = {"PX", ms};

    if (ttl == NULL || ttl == Py_None) {
        return add(self, r, "SET", key, value, NULL, 0);
    }
    if (ms_arg(ttl, "ttl_ms", ms, sizeof(ms)) < 0) {
        return -1;
    }
    return add(self, r, "SET", key, value, extra, 2);
}

static int is_ok(const redisReply *r)
{
    return r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0;
}

/* One command on one key, an integer reply. *ok 0 with an exception set. */
static long long int_cmd(ck_cluster_object *self, const char *name, PyObject *key,
                         const char *const *extra, int nextra, int *ok)
{
    redisReply **replies = NULL;
    long long v = 0;
    creq r;

    *ok = 0;
    creq_init(&r);
    if (add(self, &r, name, key, NULL, extra, nextra) == 0 &&
        (replies = run(self, &r)) != NULL) {
        if (replies[0]->type != REDIS_REPLY_INTEGER) {
            protocol_error(self, name);
        } else {
            v = replies[0]->integer;
            *ok = 1;
        }
    }
    free_replies(replies, r.req.n);
    creq_free(&r);
    return v;
}

/* ---------------------------------------------------------------- methods */

static PyObject *cl_get(ck_cluster_object *self, PyObject *key)
{
    PyObject *keys = PyTuple_Pack(1, key), *vals, *res = NULL;

    if (keys == NULL) {
        return NULL;
    }
    vals = ck_cluster_get_many(self, keys);
    Py_DECREF(keys);
    if (vals != NULL) {
        res = Py_NewRef(PyList_GET_ITEM(vals, 0));
        Py_DECREF(vals);
    }
    return res;
}

PyObject *ck_cluster_get_many(ck_cluster_object *self, PyObject *keys)
{
    PyObject *seq = NULL, *res = NULL;
    redisReply **replies = NULL;
    Py_ssize_t i, n;
    creq r;

    creq_init(&r);
    seq = PySequence_Fast(keys, "get_many expects a sequence of keys");
    if (seq == NULL) {
        goto done;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        if (add(self, &r, "GET", PySequence_Fast_GET_ITEM(seq, i), NULL, NULL, 0) < 0) {
            goto done;
        }
    }
    res = PyList_New(n);
    if (res == NULL || n == 0) {
        goto done;
    }
    replies = run(self, &r);
    if (replies == NULL) {
        Py_CLEAR(res);
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *v = bytes_or_none(self, replies[i]);
        if (v == NULL) {
            Py_CLEAR(res);
            goto done;
        }
        PyList_SET_ITEM(res, i, v);
    }
done:
    free_replies(replies, r.req.n);
    creq_free(&r);
    Py_XDECREF(seq);
    return res;
}

static PyObject *cl_set(ck_cluster_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "ttl_ms", NULL};
    PyObject *key, *value, *ttl = Py_None, *res = NULL;
    redisReply **replies = NULL;
    creq r;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:set", kwlist, &key, &value, &ttl)) {
        return NULL;
    }
    creq_init(&r);
    if (add_set(self, &r, key, value, ttl) < 0 || (replies = run(self, &r)) == NULL) {
        goto done;
    }
    res = is_ok(replies[0]) ? Py_NewRef(Py_None) : protocol_error(self, "SET");
done:
    free_replies(replies, r.req.n);
    creq_free(&r);
    return res;
}

static PyObject *cl_set_many(ck_cluster_object *self, PyObject *items)
{
    PyObject *seq = NULL, *res = NULL;
    redisReply **replies = NULL;
    Py_ssize_t i, n;
    creq r;

    creq_init(&r);
    seq = PySequence_Fast(items, "set_many expects a sequence of (key, value, ttl_ms) tuples");
    if (seq == NULL) {
        goto done;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "set_many items must be (key, value, ttl_ms) tuples");
            goto done;
        }
        if (add_set(self, &r, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1),
                    PyTuple_GET_ITEM(item, 2)) < 0) {
            goto done;
        }
    }
    if (n > 0 && (replies = run(self, &r)) == NULL) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (!is_ok(replies[i])) {
            protocol_error(self, "SET");
            goto done;
        }
    }
    res = Py_NewRef(Py_None);
done:
    free_replies(replies, r.req.n);
    creq_free(&r);
    Py_XDECREF(seq);
    return res;
}

static PyObject *cl_delete(ck_cluster_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    redisReply **replies = NULL;
    PyObject *res = NULL;
    long long total = 0;
    Py_ssize_t i;
    creq r;

    if (nargs == 0) {
        return PyLong_FromLong(0);
    }
    creq_init(&r);
    for (i = 0; i < nargs; i++) {
        if (add(self, &r, "DEL", args[i], NULL, NULL, 0) < 0) {
            goto done;
        }
    }
    if ((replies = run(self, &r)) == NULL) {
        goto done;
    }
    for (i = 0; i < nargs; i++) {
        if (replies[i]->type != REDIS_REPLY_INTEGER) {
            protocol_error(self, "DEL");
            goto done;
        }
        total += replies[i]->integer;
    }
    res = PyLong_FromLongLong(total);
done:
    free_replies(replies, r.req.n);
    creq_free(&r);
    return res;
}

static PyObject *cl_exists(ck_cluster_object *self, PyObject *key)
{
    int ok;
    long long n = int_cmd(self, "EXISTS", key, NULL, 0, &ok);

    return ok ? PyBool_FromLong(n > 0) : NULL;
}

static PyObject *cl_pttl(ck_cluster_object *self, PyObject *key)
{
    int ok;
    long long n = int_cmd(self, "PTTL", key, NULL, 0, &ok);

    return ok ? PyLong_FromLongLong(n) : NULL;
}

static PyObject *cl_pexpire(ck_cluster_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    char ms[32];
    const char *extra[1] = {ms};
    int ok;
    long long n;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "pexpire expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (ms_arg(args[1], "ms", ms, sizeof(ms)) < 0) {
        return NULL;
    }
    n = int_cmd(self, "PEXPIRE", args[0], extra, 1, &ok);
    return ok ? PyBool_FromLong(n == 1) : NULL;
}

static PyObject *cl_clear_prefix(ck_cluster_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "count", NULL};
    Py_buffer prefix = {0};
    Py_ssize_t count = 1000;
    ck_redis_cluster *cl = self->cl;
    char *copy = NULL;
    long long unlinked = 0;
    PyObject *res = NULL;
    size_t n;
    ck_error err;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|n:clear_prefix", kwlist, &prefix, &count)) {
        return NULL;
    }
    if (count <= 0 || prefix.len == 0) {
        PyErr_SetString(PyExc_ValueError, "count must be positive and prefix not empty");
        goto done;
    }
    n = (size_t)prefix.len;
    copy = PyMem_Malloc(n + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(copy, prefix.buf, n);
    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_clear_prefix(cl, copy, n, (size_t)count, &unlinked, &err);
    Py_END_ALLOW_THREADS
    res = rc < 0 ? ck_redis_raise(state_of(self), &err) : PyLong_FromLongLong(unlinked);
done:
    PyMem_Free(copy);
    PyBuffer_Release(&prefix);
    return res;
}

static PyObject *cl_ping(ck_cluster_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_redis_cluster *cl = self->cl;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_ping(cl, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return ck_redis_raise(state_of(self), &err);
    }
    Py_RETURN_TRUE;
}

static PyObject *cl_refresh(ck_cluster_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_redis_cluster *cl = self->cl;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_refresh(cl, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return ck_redis_raise(state_of(self), &err);
    }
    Py_RETURN_NONE;
}

static PyObject *endpoint_str(const ck_cluster_seed *ep)
{
    int v6 = strchr(ep->host, ':') != NULL;

    return PyUnicode_FromFormat("%s%s%s:%d", v6 ? "[" : "", ep->host, v6 ? "]" : "", ep->port);
}

static PyObject *cl_masters(ck_cluster_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_redis_cluster *cl = self->cl;
    ck_cluster_seed *eps = PyMem_Malloc(CK_CLUSTER_MAX_NODES * sizeof(*eps));
    PyObject *res = NULL;
    size_t n = 0, i;
    ck_error err;
    int rc;

    if (eps == NULL) {
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_masters(cl, eps, CK_CLUSTER_MAX_NODES, &n, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(state_of(self), &err);
        goto done;
    }
    res = PyList_New((Py_ssize_t)n);
    for (i = 0; res != NULL && i < n; i++) {
        PyObject *s = endpoint_str(&eps[i]);
        if (s == NULL) {
            Py_CLEAR(res);
            break;
        }
        PyList_SET_ITEM(res, (Py_ssize_t)i, s);
    }
done:
    PyMem_Free(eps);
    return res;
}

static PyObject *cl_node_for(ck_cluster_object *self, PyObject *key)
{
    Py_buffer kv;
    ck_cluster_seed ep;
    unsigned slot;

    if (PyObject_GetBuffer(key, &kv, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    slot = ck_cluster_key_slot(kv.buf, (size_t)kv.len);
    PyBuffer_Release(&kv);
    if (ck_redis_cluster_owner(self->cl, slot, &ep) < 0) {
        Py_RETURN_NONE;
    }
    return endpoint_str(&ep);
}

static PyObject *cl_stats(ck_cluster_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_cluster_stats s;

    ck_redis_cluster_get_stats(self->cl, &s);
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:O}", "moved", (unsigned long long)s.moved,
                         "ask", (unsigned long long)s.ask, "tryagain",
                         (unsigned long long)s.tryagain, "refreshes",
                         (unsigned long long)s.refreshes, "refresh_failures",
                         (unsigned long long)s.refresh_failures, "conn_errors",
                         (unsigned long long)s.conn_errors, "standalone",
                         ck_redis_cluster_standalone(self->cl) ? Py_True : Py_False);
}

static PyObject *cl_close(ck_cluster_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_redis_cluster_close(self->cl);
    Py_RETURN_NONE;
}

static PyObject *cl_enter(ck_cluster_object *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyObject *cl_exit(ck_cluster_object *self, PyObject *Py_UNUSED(args))
{
    ck_redis_cluster_close(self->cl);
    Py_RETURN_FALSE;
}

PyMethodDef ck_cluster_methods[] = {
    {"get", (PyCFunction)cl_get, METH_O, "get($self, key, /)\n--\n\nThe value, or None."},
    {"set", (PyCFunction)(void (*)(void))cl_set, METH_VARARGS | METH_KEYWORDS,
     "set($self, key, value, /, ttl_ms=None)\n--\n\nStore value under key."},
    {"delete", (PyCFunction)(void (*)(void))cl_delete, METH_FASTCALL,
     "delete($self, /, *keys)\n--\n\nDelete keys (each on its node); how many existed."},
    {"exists", (PyCFunction)cl_exists, METH_O, "exists($self, key, /)\n--\n\nWhether key exists."},
    {"pttl", (PyCFunction)cl_pttl, METH_O,
     "pttl($self, key, /)\n--\n\nMilliseconds left; -1 no expiry, -2 missing."},
    {"pexpire", (PyCFunction)(void (*)(void))cl_pexpire, METH_FASTCALL,
     "pexpire($self, key, ms, /)\n--\n\nLet key expire in ms; False if missing."},
    {"get_many", (PyCFunction)ck_cluster_get_many, METH_O,
     "get_many($self, keys, /)\n--\n\nValues of keys, None for missing; one pipeline per node."},
    {"set_many", (PyCFunction)cl_set_many, METH_O,
     "set_many($self, items, /)\n--\n\n(key, value, ttl_ms or None) triples; one pipeline per node."},
    {"clear_prefix", (PyCFunction)(void (*)(void))cl_clear_prefix, METH_VARARGS | METH_KEYWORDS,
     "clear_prefix($self, prefix, /, count=1000)\n--\n\n"
     "Unlink every key starting with prefix on every master; how many were unlinked."},
    {"ping", (PyCFunction)cl_ping, METH_NOARGS,
     "ping($self, /)\n--\n\nTrue when every master answers PONG; BackendError otherwise."},
    {"refresh", (PyCFunction)cl_refresh, METH_NOARGS,
     "refresh($self, /)\n--\n\nReload the slot map (CLUSTER SLOTS) now."},
    {"masters", (PyCFunction)cl_masters, METH_NOARGS,
     "masters($self, /)\n--\n\nThe 'host:port' of every node serving slots."},
    {"node_for", (PyCFunction)cl_node_for, METH_O,
     "node_for($self, key, /)\n--\n\nThe 'host:port' serving key's slot in the current map, or None."},
    {"stats", (PyCFunction)cl_stats, METH_NOARGS,
     "stats($self, /)\n--\n\nRouting counters: moved, ask, tryagain, refreshes,\n"
     "refresh_failures, conn_errors, and standalone."},
    {"close", (PyCFunction)cl_close, METH_NOARGS,
     "close($self, /)\n--\n\nClose every node's connections; later calls fail."},
    {"__enter__", (PyCFunction)cl_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)cl_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
