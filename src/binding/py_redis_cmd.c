/*
 * py_redis_cmd.c - the methods of RedisClient (py_redis.h).
 *
 * Every method has the same three phases:
 *   1. with the GIL: check the arguments and format the commands into a
 *      ck_redis_req (this copies keys and values into C memory, so no
 *      Python buffer is pinned or read later);
 *   2. without the GIL: ck_redis_pool_run (pool wait, socket I/O);
 *      nothing in this phase touches a PyObject;
 *   3. with the GIL again: build the Python result from the C replies, or
 *      raise BackendError from the ck_error.
 *
 * The pool pointer is read with the GIL and used without it; the pool
 * lives until the object is deallocated, which cannot happen during a call
 * (the caller holds a reference to self).
 */
#include <limits.h>
#include <string.h>

#include "py_redis.h"

static PyObject *protocol_error(ck_state *st, const char *what)
{
    ck_error err;

    ck_error_set(&err, CK_EPROTO, "unexpected reply to %s", what);
    return ck_redis_raise(st, &err);
}

static ck_state *state_of(ck_redis_object *self)
{
    return ck_state_from_type(Py_TYPE(self));
}
/* ------------------------------------------------------ building requests */

#define SMALL_ARGC 8

/* Append the command name + objs (bytes-like, copied) + extra C strings.
   0, or -1 with an exception set. */
static int add_cmd(ck_state *st, ck_redis_req *req, const char *name, PyObject *const *objs,
                   Py_ssize_t nobjs, const char *const *extra, Py_ssize_t nextra)
{
    Py_ssize_t argc = 1 + nobjs + nextra, i, nviews = 0;
    const char *argv_s[SMALL_ARGC], **argv = argv_s;
    size_t lens_s[SMALL_ARGC], *lens = lens_s;
    Py_buffer views_s[SMALL_ARGC], *views = views_s;
    ck_error err;
    int rc = -1;

    if (argc > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many arguments for one command");
        return -1;
    }
    if (argc > SMALL_ARGC) {
        argv = PyMem_Malloc((size_t)argc * sizeof(*argv));
        lens = PyMem_Malloc((size_t)argc * sizeof(*lens));
        views = PyMem_Malloc((size_t)argc * sizeof(*views));
        if (argv == NULL || lens == NULL || views == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    argv[0] = name;
    lens[0] = strlen(name);
    for (i = 0; i < nobjs; i++) {
        /* str is refused: which encoding a key is stored in must be the
           caller's decision, not ours. */
        if (PyUnicode_Check(objs[i])) {
            PyErr_SetString(PyExc_TypeError, "keys and values must be bytes-like, not str");
            goto done;
        }
        if (PyObject_GetBuffer(objs[i], &views[nviews], PyBUF_SIMPLE) < 0) {
            goto done;
        }
        argv[1 + i] = views[nviews].buf;
        lens[1 + i] = (size_t)views[nviews].len;
        nviews++;
    }
    for (i = 0; i < nextra; i++) {
        argv[1 + nobjs + i] = extra[i];
        lens[1 + nobjs + i] = strlen(extra[i]);
    }
    if (ck_redis_req_add(req, (int)argc, argv, lens, &err) < 0) {
        ck_redis_raise(st, &err);
        goto done;
    }
    rc = 0;
done:
    for (i = 0; i < nviews; i++) {
        PyBuffer_Release(&views[i]);
    }
    if (argv != argv_s) {
        PyMem_Free(argv);
        PyMem_Free(lens);
        PyMem_Free(views);
    }
    return rc;
}

/* A positive integer of milliseconds into buf (for PX / PEXPIRE). */
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

/* Phase 2: run req without the GIL. replies has req->n slots. */
static int run(ck_redis_object *self, const ck_redis_req *req, redisReply **replies)
{
    ck_redis_pool *pool = self->pool;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_run(pool, req, replies, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(state_of(self), &err);
    }
    return rc;
}

/* One command, one reply: *reply owned by the caller. */
static int run_cmd(ck_redis_object *self, const char *name, PyObject *const *objs, Py_ssize_t nobjs,
                   const char *const *extra, Py_ssize_t nextra, redisReply **reply)
{
    ck_redis_req req;
    int rc = -1;

    *reply = NULL;
    ck_redis_req_init(&req);
    if (add_cmd(state_of(self), &req, name, objs, nobjs, extra, nextra) == 0) {
        rc = run(self, &req, reply);
    }
    ck_redis_req_free(&req);
    return rc;
}

/* Phase 3 helpers. */
static PyObject *bytes_or_none(ck_redis_object *self, const redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING) {
        return PyBytes_FromStringAndSize(r->str, (Py_ssize_t)r->len);
    }
    if (r->type == REDIS_REPLY_NIL) {
        Py_RETURN_NONE;
    }
    return protocol_error(state_of(self), "GET");
}

static int is_ok(const redisReply *r)
{
    return r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0;
}

/* An integer command on one key (+ extras); -1 with an exception set is
   reported through *ok = 0. */
static long long int_cmd(ck_redis_object *self, const char *name, PyObject *key,
                         const char *const *extra, Py_ssize_t nextra, int *ok)
{
    redisReply *r = NULL;
    long long v = 0;

    *ok = 0;
    if (run_cmd(self, name, &key, 1, extra, nextra, &r) < 0) {
        return 0;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        protocol_error(state_of(self), name);
    } else {
        v = r->integer;
        *ok = 1;
    }
    ck_redis_reply_free(r);
    return v;
}

/* ---------------------------------------------------------------- methods */

PyDoc_STRVAR(get_doc, "get($self, key, /)\n--\n\nThe value stored under key, or None.");

static PyObject *redis_get(ck_redis_object *self, PyObject *key)
{
    redisReply *r = NULL;
    PyObject *res;

    if (run_cmd(self, "GET", &key, 1, NULL, 0, &r) < 0) {
        return NULL;
    }
    res = bytes_or_none(self, r);
    ck_redis_reply_free(r);
    return res;
}

/* SET key value [PX ttl_ms] into req. */
static int add_set(ck_state *st, ck_redis_req *req, PyObject *key, PyObject *value, PyObject *ttl)
{
    PyObject *objs[2] = {key, value};
    char ms[32];
    const char *extra[2] = {"PX", ms};

    if (ttl == NULL || ttl == Py_None) {
        return add_cmd(st, req, "SET", objs, 2, NULL, 0);
    }
    if (ms_arg(ttl, "ttl_ms", ms, sizeof(ms)) < 0) {
        return -1;
    }
    return add_cmd(st, req, "SET", objs, 2, extra, 2);
}

PyDoc_STRVAR(set_doc, "set($self, key, value, /, ttl_ms=None)\n--\n\n"
                      "Store value under key; ttl_ms: expiry in milliseconds, None for none.");

static PyObject *redis_set(ck_redis_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "ttl_ms", NULL};
    PyObject *key, *value, *ttl = Py_None, *res = NULL;
    ck_redis_req req;
    redisReply *r = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:set", kwlist, &key, &value, &ttl)) {
        return NULL;
    }
    ck_redis_req_init(&req);
    if (add_set(state_of(self), &req, key, value, ttl) < 0 || run(self, &req, &r) < 0) {
        goto done;
    }
    if (!is_ok(r)) {
        protocol_error(state_of(self), "SET");
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    ck_redis_reply_free(r);
    ck_redis_req_free(&req);
    return res;
}

PyDoc_STRVAR(delete_doc, "delete($self, /, *keys)\n--\n\nDelete keys; return how many existed.");

static PyObject *redis_delete(ck_redis_object *self, PyObject *const *args, Py_ssize_t nargs)
{
    redisReply *r = NULL;
    PyObject *res = NULL;

    if (nargs == 0) {
        return PyLong_FromLong(0);
    }
    if (run_cmd(self, "DEL", args, nargs, NULL, 0, &r) < 0) {
        return NULL;
    }
    res = r->type == REDIS_REPLY_INTEGER ? PyLong_FromLongLong(r->integer)
                                         : protocol_error(state_of(self), "DEL");
    ck_redis_reply_free(r);
    return res;
}

PyDoc_STRVAR(exists_doc, "exists($self, key, /)\n--\n\nWhether key exists.");

static PyObject *redis_exists(ck_redis_object *self, PyObject *key)
{
    int ok;
    long long n = int_cmd(self, "EXISTS", key, NULL, 0, &ok);

    return ok ? PyBool_FromLong(n > 0) : NULL;
}

PyDoc_STRVAR(pttl_doc, "pttl($self, key, /)\n--\n\n"
                       "Milliseconds key has left; -1 if it never expires, -2 if missing.");

static PyObject *redis_pttl(ck_redis_object *self, PyObject *key)
{
    int ok;
    long long n = int_cmd(self, "PTTL", key, NULL, 0, &ok);

    return ok ? PyLong_FromLongLong(n) : NULL;
}

PyDoc_STRVAR(pexpire_doc, "pexpire($self, key, ms, /)\n--\n\n"
                          "Let key expire in ms milliseconds; False if it does not exist.");

static PyObject *redis_pexpire(ck_redis_object *self, PyObject *const *args, Py_ssize_t nargs)
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

PyDoc_STRVAR(get_many_doc, "get_many($self, keys, /)\n--\n\n"
                           "Values of keys (a sequence), None for missing ones; one pipeline.");

static PyObject *redis_get_many(ck_redis_object *self, PyObject *keys)
{
    PyObject *seq = NULL, *res = NULL;
    redisReply **replies = NULL;
    ck_redis_req req;
    Py_ssize_t i, n;

    ck_redis_req_init(&req);
    seq = PySequence_Fast(keys, "get_many expects a sequence of keys");
    if (seq == NULL) {
        goto done;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        /* Borrowed from seq, which we hold. */
        PyObject *key = PySequence_Fast_GET_ITEM(seq, i);
        if (add_cmd(state_of(self), &req, "GET", &key, 1, NULL, 0) < 0) {
            goto done;
        }
    }
    replies = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(*replies));
    if (replies == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (run(self, &req, replies) < 0) {
        goto done;
    }
    res = PyList_New(n);
    if (res == NULL) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *v = bytes_or_none(self, replies[i]);
        if (v == NULL) {
            Py_CLEAR(res);
            goto done;
        }
        PyList_SET_ITEM(res, i, v); /* steals v */
    }
done:
    if (replies != NULL) {
        for (i = 0; i < (Py_ssize_t)req.n; i++) {
            ck_redis_reply_free(replies[i]);
        }
        PyMem_Free(replies);
    }
    ck_redis_req_free(&req);
    Py_XDECREF(seq);
    return res;
}

PyDoc_STRVAR(set_many_doc, "set_many($self, items, /)\n--\n\n"
                           "Store (key, value, ttl_ms or None) triples; one pipeline.");

static PyObject *redis_set_many(ck_redis_object *self, PyObject *items)
{
    PyObject *seq = NULL, *res = NULL;
    redisReply **replies = NULL;
    ck_redis_req req;
    Py_ssize_t i, n;

    ck_redis_req_init(&req);
    seq = PySequence_Fast(items, "set_many expects a sequence of (key, value, ttl_ms) tuples");
    if (seq == NULL) {
        goto done;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i); /* borrowed */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "set_many items must be (key, value, ttl_ms) tuples");
            goto done;
        }
        if (add_set(state_of(self), &req, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1),
                    PyTuple_GET_ITEM(item, 2)) < 0) {
            goto done;
        }
    }
    replies = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(*replies));
    if (replies == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (run(self, &req, replies) < 0) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (!is_ok(replies[i])) {
            protocol_error(state_of(self), "SET");
            goto done;
        }
    }
    res = Py_NewRef(Py_None);
done:
    if (replies != NULL) {
        for (i = 0; i < (Py_ssize_t)req.n; i++) {
            ck_redis_reply_free(replies[i]);
        }
        PyMem_Free(replies);
    }
    ck_redis_req_free(&req);
    Py_XDECREF(seq);
    return res;
}

PyDoc_STRVAR(clear_prefix_doc,
             "clear_prefix($self, prefix, /, count=1000)\n--\n\n"
             "Unlink every key starting with prefix, which must not be empty (SCAN\n"
             "MATCH, COUNT count per page; never KEYS). Returns how many keys were\n"
             "unlinked.");

static PyObject *redis_clear_prefix(ck_redis_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "count", NULL};
    Py_buffer prefix = {0};
    Py_ssize_t count = 1000;
    char *copy = NULL;
    size_t n;
    long long unlinked = 0;
    ck_error err;
    int rc;
    PyObject *res = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|n:clear_prefix", kwlist, &prefix, &count)) {
        return NULL;
    }
    if (count <= 0) {
        PyErr_SetString(PyExc_ValueError, "count must be positive");
        goto done;
    }
    /* An empty prefix would match every key of the database: refuse what
       is almost certainly a missing namespace rather than flush it. */
    if (prefix.len == 0) {
        PyErr_SetString(PyExc_ValueError, "prefix must not be empty");
        goto done;
    }
    /* Copy: the buffer may be a bytearray another thread can resize. */
    n = (size_t)prefix.len;
    copy = PyMem_Malloc(n + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(copy, prefix.buf, n);
    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_clear_prefix(self->pool, copy, n, (size_t)count, &unlinked, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(state_of(self), &err);
        goto done;
    }
    res = PyLong_FromLongLong(unlinked);
done:
    PyMem_Free(copy);
    PyBuffer_Release(&prefix);
    return res;
}

PyDoc_STRVAR(ping_doc, "ping($self, /)\n--\n\n"
                       "True when the server answers PONG; raises BackendError otherwise.");

static PyObject *redis_ping(ck_redis_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_redis_pool *pool = self->pool;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_ping(pool, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return ck_redis_raise(state_of(self), &err);
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(close_doc, "close($self, /)\n--\n\n"
                        "Close the connections; later calls raise BackendError.");

static PyObject *redis_close(ck_redis_object *self, PyObject *Py_UNUSED(ignored))
{
    /* Closes idle sockets only (no I/O wait); connections in use are
       closed by the threads using them when they return them. */
    ck_redis_pool_close(self->pool);
    Py_RETURN_NONE;
}

static PyObject *redis_enter(ck_redis_object *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyObject *redis_exit(ck_redis_object *self, PyObject *Py_UNUSED(args))
{
    ck_redis_pool_close(self->pool);
    Py_RETURN_FALSE;
}

PyMethodDef ck_redis_methods[] = {
    {"get", (PyCFunction)redis_get, METH_O, get_doc},
    {"set", (PyCFunction)(void (*)(void))redis_set, METH_VARARGS | METH_KEYWORDS, set_doc},
    {"delete", (PyCFunction)(void (*)(void))redis_delete, METH_FASTCALL, delete_doc},
    {"exists", (PyCFunction)redis_exists, METH_O, exists_doc},
    {"pttl", (PyCFunction)redis_pttl, METH_O, pttl_doc},
    {"pexpire", (PyCFunction)(void (*)(void))redis_pexpire, METH_FASTCALL, pexpire_doc},
    {"get_many", (PyCFunction)redis_get_many, METH_O, get_many_doc},
    {"set_many", (PyCFunction)redis_set_many, METH_O, set_many_doc},
    {"clear_prefix", (PyCFunction)(void (*)(void))redis_clear_prefix,
     METH_VARARGS | METH_KEYWORDS, clear_prefix_doc},
    {"ping", (PyCFunction)redis_ping, METH_NOARGS, ping_doc},
    {"close", (PyCFunction)redis_close, METH_NOARGS, close_doc},
    {"__enter__", (PyCFunction)redis_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)redis_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
