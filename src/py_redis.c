/*
 * py_redis.c - RedisClient: the Python type around a ck_redis_pool.
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
 * BackendError messages come from ck_redis/ck_sock, which never put keys,
 * values or credentials into them; error_type says what kind of failure it
 * was. The repr shows the target with the password masked.
 */
#include <limits.h>
#include <string.h>

#include "ck_redis.h"
#include "module_state.h"
#include "py_store.h"

typedef struct {
    PyObject_HEAD
    ck_redis_pool *pool;
    PyObject *repr; /* str, password masked */
} redis_object;

/* ------------------------------------------------------------------ errors */

static const char *error_type(ck_errcode code)
{
    switch (code) {
    case CK_ETIMEOUT:
        return "timeout";
    case CK_ECONN:
        return "connection";
    case CK_EDENIED:
        return "auth";
    case CK_ELIMIT:
        return "reply_too_large";
    case CK_ESERVER:
        return "server";
    default:
        return "protocol";
    }
}

/* Raise the Python form of err; always returns NULL. */
static PyObject *raise_ck(ck_state *st, const ck_error *err)
{
    PyObject *msg = NULL, *exc = NULL, *type = NULL;

    if (err->code == CK_ENOMEM) {
        return PyErr_NoMemory();
    }
    if (err->code == CK_EINVAL) {
        PyErr_SetString(PyExc_ValueError, err->msg);
        return NULL;
    }
    msg = PyUnicode_DecodeUTF8(err->msg, (Py_ssize_t)strlen(err->msg), "replace");
    if (msg == NULL) {
        goto done;
    }
    exc = PyObject_CallOneArg(st->BackendError, msg);
    if (exc == NULL) {
        goto done;
    }
    type = PyUnicode_InternFromString(error_type(err->code));
    if (type == NULL || PyObject_SetAttrString(exc, "error_type", type) < 0) {
        goto done;
    }
    PyErr_SetObject(st->BackendError, exc);
done:
    Py_XDECREF(msg);
    Py_XDECREF(exc);
    Py_XDECREF(type);
    return NULL;
}

static PyObject *protocol_error(ck_state *st, const char *what)
{
    ck_error err;

    ck_error_set(&err, CK_EPROTO, "unexpected reply to %s", what);
    return raise_ck(st, &err);
}

static ck_state *state_of(redis_object *self)
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
        raise_ck(st, &err);
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
static int run(redis_object *self, const ck_redis_req *req, redisReply **replies)
{
    ck_redis_pool *pool = self->pool;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_run(pool, req, replies, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        raise_ck(state_of(self), &err);
    }
    return rc;
}

/* One command, one reply: *reply owned by the caller. */
static int run_cmd(redis_object *self, const char *name, PyObject *const *objs, Py_ssize_t nobjs,
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
static PyObject *bytes_or_none(redis_object *self, const redisReply *r)
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
static long long int_cmd(redis_object *self, const char *name, PyObject *key,
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

static PyObject *redis_get(redis_object *self, PyObject *key)
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

static PyObject *redis_set(redis_object *self, PyObject *args, PyObject *kwargs)
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

static PyObject *redis_delete(redis_object *self, PyObject *const *args, Py_ssize_t nargs)
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

static PyObject *redis_exists(redis_object *self, PyObject *key)
{
    int ok;
    long long n = int_cmd(self, "EXISTS", key, NULL, 0, &ok);

    return ok ? PyBool_FromLong(n > 0) : NULL;
}

PyDoc_STRVAR(pttl_doc, "pttl($self, key, /)\n--\n\n"
                       "Milliseconds key has left; -1 if it never expires, -2 if missing.");

static PyObject *redis_pttl(redis_object *self, PyObject *key)
{
    int ok;
    long long n = int_cmd(self, "PTTL", key, NULL, 0, &ok);

    return ok ? PyLong_FromLongLong(n) : NULL;
}

PyDoc_STRVAR(pexpire_doc, "pexpire($self, key, ms, /)\n--\n\n"
                          "Let key expire in ms milliseconds; False if it does not exist.");

static PyObject *redis_pexpire(redis_object *self, PyObject *const *args, Py_ssize_t nargs)
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

static PyObject *redis_get_many(redis_object *self, PyObject *keys)
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

static PyObject *redis_set_many(redis_object *self, PyObject *items)
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
             "Unlink every key starting with prefix (SCAN MATCH, COUNT count per page;\n"
             "never KEYS). Returns how many keys were unlinked.");

static PyObject *redis_clear_prefix(redis_object *self, PyObject *args, PyObject *kwargs)
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
        raise_ck(state_of(self), &err);
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

static PyObject *redis_ping(redis_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_redis_pool *pool = self->pool;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_ping(pool, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        return raise_ck(state_of(self), &err);
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(close_doc, "close($self, /)\n--\n\n"
                        "Close the connections; later calls raise BackendError.");

static PyObject *redis_close(redis_object *self, PyObject *Py_UNUSED(ignored))
{
    /* Closes idle sockets only (no I/O wait); connections in use are
       closed by the threads using them when they return them. */
    ck_redis_pool_close(self->pool);
    Py_RETURN_NONE;
}

static PyObject *redis_enter(redis_object *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyObject *redis_exit(redis_object *self, PyObject *Py_UNUSED(args))
{
    ck_redis_pool_close(self->pool);
    Py_RETURN_FALSE;
}

static PyMethodDef redis_methods[] = {
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

/* ------------------------------------------------------------- type slots */

/* seconds -> milliseconds, rounded up so 0.0001 s is not "no time". */
static int timeout_ms(double seconds, const char *name, int64_t *ms)
{
    uint64_t ns;

    if (ck_seconds_to_ns(seconds, name, &ns) < 0) {
        return -1;
    }
    *ms = (int64_t)((ns + 999999) / 1000000);
    return 0;
}

static int set_opt(ck_state *st, char **slot, const char *s)
{
    ck_error err;

    if (s != NULL && ck_redis_config_set(slot, s, strlen(s), &err) < 0) {
        raise_ck(st, &err);
        return -1;
    }
    return 0;
}

/* The target as a URL without the password. */
static PyObject *masked_repr(const ck_redis_config *c)
{
    const char *user = c->username != NULL ? c->username : "";
    const char *at = c->password != NULL ? ":***@" : (c->username != NULL ? "@" : "");

    if (c->unix_path != NULL) {
        return PyUnicode_FromFormat("<cachekit._core.RedisClient unix://%s%s%s?db=%d pool_size=%zu>",
                                    user, at, c->unix_path, c->db, c->pool_size);
    }
    return PyUnicode_FromFormat("<cachekit._core.RedisClient %s://%s%s%s%s%s:%d/%d pool_size=%zu>",
                                c->tls ? "rediss" : "redis", user, at,
                                strchr(c->host, ':') ? "[" : "", c->host,
                                strchr(c->host, ':') ? "]" : "", c->port, c->db, c->pool_size);
}

static PyObject *redis_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"url", "pool_size", "socket_timeout", "socket_connect_timeout",
                             "password", "username", "db", "ssl_ca_certs", "ssl_certfile",
                             "ssl_keyfile", "ssl_check_hostname", "max_reply_bytes", NULL};
    ck_state *st = ck_state_from_type(type);
    const char *url, *password = NULL, *username = NULL, *ca = NULL, *cert = NULL, *key = NULL;
    Py_ssize_t pool_size = 10, max_reply = (Py_ssize_t)CK_REDIS_DEFAULT_MAX_REPLY_BYTES;
    double sock_timeout = 5.0, conn_timeout = 5.0;
    PyObject *db = Py_None;
    int check_hostname = 1;
    ck_redis_config cfg;
    redis_object *self = NULL;
    ck_error err;

    ck_redis_config_init(&cfg);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$nddzzOzzzpn:RedisClient", kwlist, &url,
                                     &pool_size, &sock_timeout, &conn_timeout, &password,
                                     &username, &db, &ca, &cert, &key, &check_hostname,
                                     &max_reply)) {
        goto error;
    }
    if (ck_redis_config_parse_url(&cfg, url, &err) < 0) {
        raise_ck(st, &err);
        goto error;
    }
    /* Explicit arguments win over the URL's. */
    if (set_opt(st, &cfg.password, password) < 0 || set_opt(st, &cfg.username, username) < 0 ||
        set_opt(st, &cfg.ca_file, ca) < 0 || set_opt(st, &cfg.cert_file, cert) < 0 ||
        set_opt(st, &cfg.key_file, key) < 0) {
        goto error;
    }
    if (db != Py_None) {
        long v = PyBool_Check(db) ? -1 : PyLong_AsLong(db);
        if (v == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (v < 0 || v > (1 << 24)) {
            PyErr_SetString(PyExc_ValueError, "db must be an int >= 0 (or None)");
            goto error;
        }
        cfg.db = (int)v;
    }
    if (!cfg.tls && (ca != NULL || cert != NULL || key != NULL)) {
        PyErr_SetString(PyExc_ValueError, "ssl_* options need a rediss:// URL");
        goto error;
    }
    if (pool_size <= 0 || max_reply <= 0) {
        PyErr_SetString(PyExc_ValueError, "pool_size and max_reply_bytes must be positive");
        goto error;
    }
    if (timeout_ms(sock_timeout, "socket_timeout", &cfg.socket_timeout_ms) < 0 ||
        timeout_ms(conn_timeout, "socket_connect_timeout", &cfg.connect_timeout_ms) < 0) {
        goto error;
    }
    cfg.pool_size = (size_t)pool_size;
    cfg.max_reply_bytes = (size_t)max_reply;
    cfg.check_hostname = check_hostname;

    self = (redis_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->repr = masked_repr(&cfg);
    if (self->repr == NULL) {
        goto error;
    }
    /* Loads the CA and client certificate files, opens no connection. */
    self->pool = ck_redis_pool_new(&cfg, &err);
    if (self->pool == NULL) {
        raise_ck(st, &err);
        goto error;
    }
    ck_redis_config_free(&cfg);
    return (PyObject *)self;
error:
    ck_redis_config_free(&cfg);
    Py_XDECREF(self);
    return NULL;
}

static void redis_dealloc(redis_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    /* Nobody else can hold the pool now: every call holds a reference. */
    ck_redis_pool_free(self->pool);
    Py_XDECREF(self->repr);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *redis_repr(redis_object *self)
{
    return Py_NewRef(self->repr);
}

PyDoc_STRVAR(redis_doc,
             "RedisClient(url, *, pool_size=10, socket_timeout=5.0, socket_connect_timeout=5.0,\n"
             "            password=None, username=None, db=None, ssl_ca_certs=None,\n"
             "            ssl_certfile=None, ssl_keyfile=None, ssl_check_hostname=True,\n"
             "            max_reply_bytes=536870912)\n--\n\n"
             "Thread-safe Redis client with a connection pool; the GIL is released\n"
             "during I/O. url: redis://[[user]:password@]host[:port][/db], rediss://\n"
             "(TLS, verified), unix:///path[?db=N]. Failures raise BackendError.");

static PyType_Slot redis_slots[] = {
    {Py_tp_new, redis_new},
    {Py_tp_dealloc, redis_dealloc},
    {Py_tp_repr, redis_repr},
    {Py_tp_methods, redis_methods},
    {Py_tp_doc, (void *)redis_doc},
    {0, NULL},
};

static PyType_Spec redis_spec = {
    .name = "cachekit._core.RedisClient",
    .basicsize = sizeof(redis_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = redis_slots,
};

int ck_redis_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->RedisClientType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &redis_spec, NULL);
    if (st->RedisClientType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->RedisClientType);
}
