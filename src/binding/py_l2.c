/*
 * py_l2.c - L2Backend: a backend behind a circuit breaker (py_l2.h).
 *
 * A RedisBackend's C client is driven directly: the command is formatted
 * with the GIL, the round trip runs without it (a GET is pipelined with a
 * PTTL, so an L2 hit learns its remaining TTL in the same round trip), and
 * the reply becomes Python objects with the GIL again. Any other backend is
 * called through its Python methods (get/set/delete, and clear_prefix if it
 * has one), with the GIL held as Python code needs.
 *
 * Every operation first asks the breaker: while it is open, or while too
 * many operations are in flight, the operation is skipped and the caller
 * goes on as if L2 missed. Failures (a BackendError, a timeout, anything a
 * Python backend raises) feed the breaker and are returned to the caller
 * as -1 with the exception set; the decorator counts and logs them and the
 * function runs. Nothing here ever raises to the user of a cached function.
 */
#include "py_l2.h"

#include <string.h>

#include <structmember.h>

#include "ck_l1.h"
#include "ck_crypto.h"
#include "py_store.h"

static uint64_t fork_generation;

static void l2_after_fork_child(void)
{
    fork_generation++;
}

/* A breaker inherited through fork: its lock may be held by a parent thread
   that does not exist here, and its in-flight counts never come back. */
static void l2_check_fork(ck_l2_object *l2)
{
    if (l2->fork_gen != fork_generation) {
        ck_breaker_after_fork(&l2->breaker);
        l2->fork_gen = fork_generation;
    }
}

static int l2_allow(ck_l2_object *l2)
{
    l2_check_fork(l2);
    if (ck_breaker_allow(&l2->breaker, ck_l1_now_ns())) {
        return 1;
    }
    l2->skipped++;
    return 0;
}

static void l2_done(ck_l2_object *l2, int ok)
{
    ck_breaker_done(&l2->breaker, ok, ck_l1_now_ns());
    if (!ok) {
        l2->errors++;
    }
}

/* ------------------------------------------------------------ Redis path */

/* Run req on the pool without the GIL; replies[0..n) filled on success. */
static int redis_run(ck_l2_object *l2, ck_redis_req *req, redisReply **replies)
{
    ck_state *st = ck_state_from_type(Py_TYPE(l2));
    ck_redis_pool *pool = l2->redis->pool;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_run(pool, req, replies, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(st, &err);
    }
    return rc;
}

static int add(ck_l2_object *l2, ck_redis_req *req, int argc, const char **argv,
               const size_t *lens)
{
    ck_error err;

    if (ck_redis_req_add(req, argc, argv, lens, &err) < 0) {
        ck_redis_raise(ck_state_from_type(Py_TYPE(l2)), &err);
        return -1;
    }
    return 0;
}

static PyObject *unexpected_reply(ck_l2_object *l2, const char *what)
{
    ck_error err;

    ck_error_set(&err, CK_EPROTO, "unexpected reply to %s", what);
    return ck_redis_raise(ck_state_from_type(Py_TYPE(l2)), &err);
}

static int redis_get(ck_l2_object *l2, const char *name, size_t n, PyObject **entry,
                     int64_t *pttl_ms)
{
    const char *argv[2] = {"GET", name};
    size_t lens[2] = {3, n};
    redisReply *replies[2] = {NULL, NULL};
    ck_redis_req req;
    int rc = -1;

    ck_redis_req_init(&req);
    if (add(l2, &req, 2, argv, lens) < 0) {
        goto done;
    }
    argv[0] = "PTTL";
    lens[0] = 4;
    if (add(l2, &req, 2, argv, lens) < 0 || redis_run(l2, &req, replies) < 0) {
        goto done;
    }
    if (replies[0]->type == REDIS_REPLY_NIL) {
        rc = 0;
        goto done;
    }
    if (replies[0]->type != REDIS_REPLY_STRING || replies[1]->type != REDIS_REPLY_INTEGER) {
        unexpected_reply(l2, "GET");
        goto done;
    }
    *entry = PyBytes_FromStringAndSize(replies[0]->str, (Py_ssize_t)replies[0]->len);
    if (*entry == NULL) {
        goto done;
    }
    /* -1: no expiry; -2: gone between the two commands (keep the value). */
    *pttl_ms = replies[1]->integer > 0 ? (int64_t)replies[1]->integer : -1;
    rc = 1;
done:
    ck_redis_reply_free(replies[0]);
    ck_redis_reply_free(replies[1]);
    ck_redis_req_free(&req);
    return rc;
}

/* One command whose reply must be of type want (argv[0] names it in the
   error); *integer gets an integer reply's value when not NULL. 0, or -1
   with an exception set. */
static int redis_one(ck_l2_object *l2, int argc, const char **argv, const size_t *lens,
                     int want, long long *integer)
{
    redisReply *reply = NULL;
    ck_redis_req req;
    int rc = -1;

    ck_redis_req_init(&req);
    if (add(l2, &req, argc, argv, lens) < 0 || redis_run(l2, &req, &reply) < 0) {
        goto done;
    }
    if (reply->type != want) {
        unexpected_reply(l2, argv[0]);
        goto done;
    }
    if (integer != NULL) {
        *integer = reply->integer;
    }
    rc = 0;
done:
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    return rc;
}

static int redis_set(ck_l2_object *l2, const char *name, size_t n, const unsigned char *data,
                     size_t len, int64_t ttl_ms)
{
    char ms[24];
    const char *argv[5] = {"SET", name, (const char *)data, "PX", ms};
    size_t lens[5] = {3, n, len, 2, 0};

    lens[4] = (size_t)snprintf(ms, sizeof(ms), "%lld", (long long)ttl_ms);
    return redis_one(l2, ttl_ms > 0 ? 5 : 3, argv, lens, REDIS_REPLY_STATUS, NULL);
}

static int redis_delete(ck_l2_object *l2, const char *name, size_t n, int *removed)
{
    const char *argv[2] = {"UNLINK", name};
    size_t lens[2] = {6, n};
    long long count = 0;

    if (redis_one(l2, 2, argv, lens, REDIS_REPLY_INTEGER, &count) < 0) {
        return -1;
    }
    *removed = count > 0;
    return 0;
}

static int redis_expire(ck_l2_object *l2, const char *name, size_t n, int64_t ttl_ms)
{
    char ms[24];
    const char *argv[3] = {"PEXPIRE", name, ms};
    size_t lens[3] = {7, n, 0};

    lens[2] = (size_t)snprintf(ms, sizeof(ms), "%lld", (long long)ttl_ms);
    return redis_one(l2, 3, argv, lens, REDIS_REPLY_INTEGER, NULL);
}

static int redis_clear(ck_l2_object *l2, const char *prefix, size_t n)
{
    ck_redis_pool *pool = l2->redis->pool;
    long long unlinked = 0;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_pool_clear_prefix(pool, prefix, n, 1000, &unlinked, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(ck_state_from_type(Py_TYPE(l2)), &err);
    }
    return rc;
}

/* A lease's name: the entry's name and a suffix no entry name has (entry
   names end in 32 hex digits). */
static int lease_name(ck_l2_object *l2, const char *name, size_t n, ck_buf *out)
{
    if (ck_buf_append(out, name, n) < 0 || ck_buf_append(out, ":lease", 6) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    (void)l2;
    return 0;
}

int ck_l2_lease_acquire(ck_l2_object *l2, const char *name, size_t n, int64_t lease_ms,
                        char token[CK_L2_TOKEN_LEN])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[CK_L2_TOKEN_LEN / 2];
    char ms[24];
    const char *argv[6] = {"SET", NULL, token, "NX", "PX", ms};
    size_t lens[6] = {3, 0, CK_L2_TOKEN_LEN, 2, 2, 0};
    redisReply *reply = NULL;
    ck_redis_req req;
    ck_buf lname;
    ck_error err;
    int rc = -1;
    size_t i;

    if (l2->redis == NULL) {
        return 2; /* leases need Redis; other backends just compute */
    }
    if (ck_random_bytes(raw, sizeof(raw), &err) < 0) {
        PyErr_Format(PyExc_RuntimeError, "%s", err.msg);
        return -1;
    }
    for (i = 0; i < sizeof(raw); i++) {
        token[2 * i] = hex[raw[i] >> 4];
        token[2 * i + 1] = hex[raw[i] & 0xf];
    }
    ck_buf_init(&lname);
    ck_redis_req_init(&req);
    if (lease_name(l2, name, n, &lname) < 0) {
        goto done;
    }
    argv[1] = (const char *)lname.data;
    lens[1] = lname.len;
    lens[5] = (size_t)snprintf(ms, sizeof(ms), "%lld", (long long)lease_ms);
    if (!l2_allow(l2)) {
        rc = 2; /* the backend is being skipped: compute, do not wait on it */
        goto done;
    }
    rc = add(l2, &req, 6, argv, lens) < 0 || redis_run(l2, &req, &reply) < 0 ? -1 : 0;
    l2_done(l2, rc == 0);
    if (rc == 0) {
        /* OK: ours. Nil: someone holds it. */
        rc = reply->type == REDIS_REPLY_STATUS ? 1 : 0;
    }
done:
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    ck_buf_free(&lname);
    return rc;
}

int ck_l2_lease_release(ck_l2_object *l2, const char *name, size_t n,
                        const char token[CK_L2_TOKEN_LEN])
{
    /* Compare-and-delete: a lease that expired and was taken by another
       process is theirs now, and stays. */
    static const char script[] =
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
        "else return 0 end";
    const char *argv[5] = {"EVAL", script, "1", NULL, token};
    size_t lens[5] = {4, sizeof(script) - 1, 1, 0, CK_L2_TOKEN_LEN};
    redisReply *reply = NULL;
    ck_redis_req req;
    ck_buf lname;
    int rc = -1;

    ck_buf_init(&lname);
    ck_redis_req_init(&req);
    if (lease_name(l2, name, n, &lname) < 0) {
        goto done;
    }
    argv[3] = (const char *)lname.data;
    lens[3] = lname.len;
    rc = add(l2, &req, 5, argv, lens) < 0 || redis_run(l2, &req, &reply) < 0 ? -1 : 0;
done:
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    ck_buf_free(&lname);
    return rc;
}

/* ----------------------------------------------------------- Python path */

static PyObject *name_str(const char *name, size_t n)
{
    return PyUnicode_DecodeUTF8(name, (Py_ssize_t)n, "strict");
}

static int py_get(ck_l2_object *l2, const char *name, size_t n, PyObject **entry)
{
    PyObject *key = name_str(name, n), *res;

    if (key == NULL) {
        return -1;
    }
    res = PyObject_CallMethod(l2->backend, "get", "O", key);
    Py_DECREF(key);
    if (res == NULL) {
        return -1;
    }
    if (res == Py_None) {
        Py_DECREF(res);
        return 0;
    }
    if (!PyBytes_Check(res)) {
        PyErr_Format(PyExc_TypeError, "backend.get() returned %.100s, not bytes or None",
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        return -1;
    }
    *entry = res;
    return 1;
}

static int py_set(ck_l2_object *l2, const char *name, size_t n, const unsigned char *data,
                  size_t len, int64_t ttl_ms)
{
    PyObject *key = name_str(name, n), *value = NULL, *ttl = NULL, *res = NULL;
    int rc = -1;

    if (key == NULL) {
        goto done;
    }
    value = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)len);
    /* The backend protocol takes whole seconds: round up, never to 0. */
    ttl = ttl_ms > 0 ? PyLong_FromLongLong((ttl_ms + 999) / 1000) : Py_NewRef(Py_None);
    if (value == NULL || ttl == NULL) {
        goto done;
    }
    res = PyObject_CallMethod(l2->backend, "set", "OOO", key, value, ttl);
    rc = res == NULL ? -1 : 0;
done:
    Py_XDECREF(res);
    Py_XDECREF(ttl);
    Py_XDECREF(value);
    Py_XDECREF(key);
    return rc;
}

static int py_delete(ck_l2_object *l2, const char *name, size_t n, int *removed)
{
    PyObject *key = name_str(name, n), *res;

    if (key == NULL) {
        return -1;
    }
    res = PyObject_CallMethod(l2->backend, "delete", "O", key);
    Py_DECREF(key);
    if (res == NULL) {
        return -1;
    }
    *removed = PyObject_IsTrue(res) > 0;
    Py_DECREF(res);
    return 0;
}

/* TTLInspectableBackend.refresh_ttl(key, seconds) when the backend has it;
   a backend without it keeps its own TTLs. */
static int py_expire(ck_l2_object *l2, const char *name, size_t n, int64_t ttl_ms)
{
    PyObject *key, *res;

    if (!PyObject_HasAttrString(l2->backend, "refresh_ttl")) {
        return 0;
    }
    key = name_str(name, n);
    if (key == NULL) {
        return -1;
    }
    res = PyObject_CallMethod(l2->backend, "refresh_ttl", "OL", key, (long long)((ttl_ms + 999) / 1000));
    Py_DECREF(key);
    Py_XDECREF(res);
    return res == NULL ? -1 : 0;
}

static int py_clear(ck_l2_object *l2, const char *prefix, size_t n)
{
    PyObject *key, *res;
    int has = PyObject_HasAttrString(l2->backend, "clear_prefix");

    if (!has) {
        PyErr_Format(PyExc_TypeError,
                     "%.100s has no clear_prefix(prefix) method: cache_clear() cleared L1 only",
                     Py_TYPE(l2->backend)->tp_name);
        return -1;
    }
    key = name_str(prefix, n);
    if (key == NULL) {
        return -1;
    }
    res = PyObject_CallMethod(l2->backend, "clear_prefix", "O", key);
    Py_DECREF(key);
    Py_XDECREF(res);
    return res == NULL ? -1 : 0;
}

/* -------------------------------------------------------------- the API */

int ck_l2_get(ck_l2_object *l2, const char *name, size_t n, PyObject **entry, int64_t *pttl_ms)
{
    int rc;

    *entry = NULL;
    *pttl_ms = -1;
    if (!l2_allow(l2)) {
        return 0;
    }
    rc = l2->redis != NULL ? redis_get(l2, name, n, entry, pttl_ms)
         : l2->ops != NULL ? l2->ops->get(l2->native, name, n, entry, pttl_ms)
                            : py_get(l2, name, n, entry);
    l2_done(l2, rc >= 0);
    if (rc == 1) {
        l2->hits++;
    } else if (rc == 0) {
        l2->misses++;
    }
    return rc;
}

int ck_l2_set(ck_l2_object *l2, const char *name, size_t n, const unsigned char *data,
              size_t len, int64_t ttl_ms)
{
    int rc;

    if (!l2_allow(l2)) {
        return 0;
    }
    rc = l2->redis != NULL ? redis_set(l2, name, n, data, len, ttl_ms)
         : l2->ops != NULL ? l2->ops->set(l2->native, name, n, data, len, ttl_ms)
                           : py_set(l2, name, n, data, len, ttl_ms);
    l2_done(l2, rc == 0);
    return rc;
}

int ck_l2_delete(ck_l2_object *l2, const char *name, size_t n, int *removed)
{
    int rc;

    *removed = 0;
    /* Invalidations bypass the breaker: one asked for explicitly is tried
       even while reads and writes are being skipped, and a failure is
       reported, since the entry it was meant to remove is still there. */
    l2_check_fork(l2);
    rc = l2->redis != NULL ? redis_delete(l2, name, n, removed)
         : l2->ops != NULL ? l2->ops->del(l2->native, name, n, removed)
                            : py_delete(l2, name, n, removed);
    if (rc < 0) {
        l2->errors++;
    }
    return rc;
}

int ck_l2_expire(ck_l2_object *l2, const char *name, size_t n, int64_t ttl_ms)
{
    int rc;

    if (!l2_allow(l2)) {
        return 0;
    }
    rc = l2->redis != NULL ? redis_expire(l2, name, n, ttl_ms)
         : l2->ops != NULL ? l2->ops->expire(l2->native, name, n, ttl_ms)
                            : py_expire(l2, name, n, ttl_ms);
    l2_done(l2, rc == 0);
    return rc;
}

int ck_l2_clear_prefix(ck_l2_object *l2, const char *prefix, size_t n)
{
    int rc;

    l2_check_fork(l2);
    rc = l2->redis != NULL ? redis_clear(l2, prefix, n)
         : l2->ops != NULL ? l2->ops->clear(l2->native, prefix, n)
                            : py_clear(l2, prefix, n);
    if (rc < 0) {
        l2->errors++;
    }
    return rc;
}

/* ------------------------------------------------------------- the type */

static PyObject *l2_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"backend",           "client",          "breaker_enabled",
                             "failure_threshold", "success_threshold", "recovery_timeout",
                             "half_open_requests", "max_concurrent",  NULL};
    ck_state *st = ck_state_from_type(type);
    PyObject *backend, *client = Py_None;
    int enabled = 1;
    unsigned int failures = 5, successes = 3, half_open = 3, max_concurrent = 100;
    double recovery = 30.0;
    uint64_t recovery_ns;
    const ck_l2_ops *ops;
    ck_l2_object *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OpIIdII:L2Backend", kwlist, &backend,
                                     &client, &enabled, &failures, &successes, &recovery,
                                     &half_open, &max_concurrent)) {
        return NULL;
    }
    ops = client == Py_None ? NULL : ck_l2_file_ops_for(client);
    ops = ops != NULL || client == Py_None ? ops : ck_l2_memcached_ops_for(client);
    ops = ops != NULL || client == Py_None ? ops : ck_l2_cluster_ops_for(client);
    if (client != Py_None && ops == NULL && !PyObject_TypeCheck(client, st->RedisClientType)) {
        PyErr_SetString(PyExc_TypeError, "client must be a cachekit._core.RedisClient, "
                                         "RedisClusterClient, FileStore, MemcachedClient or None");
        return NULL;
    }
    if (ck_seconds_to_ns(recovery, "recovery_timeout", &recovery_ns) < 0) {
        return NULL;
    }
    self = (ck_l2_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (ck_breaker_init(&self->breaker, enabled, failures, successes, half_open, recovery_ns,
                        max_concurrent) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->breaker_ready = 1;
    self->fork_gen = fork_generation;
    self->backend = Py_NewRef(backend);
    if (ops != NULL) {
        self->native = Py_NewRef(client);
        self->ops = ops;
    } else {
        self->redis = client == Py_None ? NULL : (ck_redis_object *)Py_NewRef(client);
    }
    return (PyObject *)self;
}

static int l2_traverse(ck_l2_object *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->backend);
    Py_VISIT(self->redis);
    Py_VISIT(self->native);
    return 0;
}

static int l2_clear(ck_l2_object *self)
{
    Py_CLEAR(self->backend);
    Py_CLEAR(self->redis);
    Py_CLEAR(self->native);
    return 0;
}

static void l2_dealloc(ck_l2_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    (void)l2_clear(self);
    if (self->breaker_ready) {
        ck_breaker_destroy(&self->breaker);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static const char *state_name(int state)
{
    return state == CK_BREAKER_OPEN ? "open" : state == CK_BREAKER_HALF_OPEN ? "half_open" : "closed";
}

PyDoc_STRVAR(l2_stats_doc, "stats($self, /)\n--\n\n"
                           "Counters and breaker state: hits, misses, errors, skipped,\n"
                           "times_opened, skipped_open, skipped_pressure, in_flight, state.");

static PyObject *l2_stats(ck_l2_object *self, PyObject *Py_UNUSED(ignored))
{
    int state;

    l2_check_fork(self);
    state = ck_breaker_state(&self->breaker, ck_l1_now_ns());
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:I,s:s}", "hits",
                         (unsigned long long)self->hits, "misses",
                         (unsigned long long)self->misses, "errors",
                         (unsigned long long)self->errors, "skipped",
                         (unsigned long long)self->skipped, "times_opened",
                         (unsigned long long)self->breaker.times_opened, "skipped_open",
                         (unsigned long long)self->breaker.skipped_open, "skipped_pressure",
                         (unsigned long long)self->breaker.skipped_pressure, "in_flight",
                         (unsigned int)self->breaker.inflight, "state", state_name(state));
}

static PyMethodDef l2_methods[] = {
    {"stats", (PyCFunction)l2_stats, METH_NOARGS, l2_stats_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef l2_members[] = {
    {"backend", T_OBJECT, offsetof(ck_l2_object, backend), READONLY, "The backend object."},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(l2_doc,
             "L2Backend(backend, *, client=None, breaker_enabled=True, failure_threshold=5,\n"
             "          success_threshold=3, recovery_timeout=30.0, half_open_requests=3,\n"
             "          max_concurrent=100)\n--\n\n"
             "A backend as the second tier of cached functions: the C client of a\n"
             "RedisBackend (client=) or the backend's own get/set/delete methods, behind\n"
             "a circuit breaker and a bound on operations in flight. Built by\n"
             "cachekit.backends, shared by every function using that backend.");

static PyType_Slot l2_slots[] = {
    {Py_tp_new, l2_new},
    {Py_tp_dealloc, l2_dealloc},
    {Py_tp_traverse, l2_traverse},
    {Py_tp_clear, l2_clear},
    {Py_tp_methods, l2_methods},
    {Py_tp_members, l2_members},
    {Py_tp_doc, (void *)l2_doc},
    {0, NULL},
};

static PyType_Spec l2_spec = {
    .name = "cachekit._core.L2Backend",
    .basicsize = sizeof(ck_l2_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = l2_slots,
};

int ck_l2_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);
    static int atfork_registered;

    if (!atfork_registered) {
        if (pthread_atfork(NULL, NULL, l2_after_fork_child) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "cannot register the L2 fork handler");
            return -1;
        }
        atfork_registered = 1;
    }
    st->L2BackendType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &l2_spec, NULL);
    if (st->L2BackendType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->L2BackendType);
}
