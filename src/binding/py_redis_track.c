/*
 * py_redis_track.c - cachekit._core.RedisTracker: the invalidation
 * listener of one Redis server (ck_redis_track) seen from Python.
 *
 * The tracker's C thread never takes the GIL: its callback copies each
 * invalidated key name into a bounded queue under a mutex (a FLUSH marker,
 * NULL, for "forget everything from this server"); drain() hands the queue
 * to Python. On overflow the queue collapses to one FLUSH, which
 * supersedes every key it replaces, so nothing is ever lost, only widened.
 */
#include <Python.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ck_redis.h"
#include "ck_redis_track.h"
#include "module_state.h"

#define QUEUE_MAX 65536

typedef struct {
    char *key; /* NULL: flush */
    size_t n;
} track_item;

typedef struct {
    pthread_mutex_t mu;
    track_item *items;
    size_t n;
    unsigned long long flushes, keys;
} track_queue;

typedef struct {
    PyObject_HEAD
    ck_redis_track *t;
    track_queue *q;
} track_object;

static void queue_clear(track_queue *q)
{
    size_t i;

    for (i = 0; i < q->n; i++) {
        free(q->items[i].key);
    }
    q->n = 0;
}

/* Runs on the tracker's thread: no Python here. */
static void on_key(void *ctx, const char *key, size_t n)
{
    track_queue *q = ctx;
    char *copy = NULL;

    pthread_mutex_lock(&q->mu);
    if (key == NULL) {
        q->flushes++;
    } else {
        q->keys++;
    }
    if (key != NULL && q->n < QUEUE_MAX) {
        copy = malloc(n + 1);
        if (copy != NULL) {
            memcpy(copy, key, n);
            copy[n] = '\0';
        }
    }
    if (key == NULL || copy == NULL) {
        /* A flush, overflow or no memory: one flush replaces the queue. */
        queue_clear(q);
        n = 0;
    }
    q->items[q->n].key = copy;
    q->items[q->n].n = n;
    q->n++;
    pthread_mutex_unlock(&q->mu);
}

static PyObject *track_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"url", "prefixes", "socket_timeout", NULL};
    const char *url;
    PyObject *prefixes = NULL, *seq = NULL;
    double sock_timeout = 5.0;
    const char **pv = NULL;
    size_t *pl = NULL;
    Py_ssize_t i, np = 0;
    ck_redis_config cfg;
    track_object *self = NULL;
    ck_error err;

    ck_redis_config_init(&cfg);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|O$d:RedisTracker", kwlist, &url, &prefixes,
                                     &sock_timeout)) {
        goto error;
    }
    if (ck_redis_config_parse_url(&cfg, url, &err) < 0) {
        PyErr_Format(PyExc_ValueError, "RedisTracker: %s", err.msg);
        goto error;
    }
    if (!(sock_timeout > 0.0 && sock_timeout < 3600.0)) {
        PyErr_SetString(PyExc_ValueError, "socket_timeout must be in (0, 3600) seconds");
        goto error;
    }
    cfg.socket_timeout_ms = (int64_t)(sock_timeout * 1000.0);
    cfg.connect_timeout_ms = cfg.socket_timeout_ms;
    if (prefixes != NULL && prefixes != Py_None) {
        seq = PySequence_Fast(prefixes, "prefixes must be a sequence of str");
        if (seq == NULL) {
            goto error;
        }
        np = PySequence_Fast_GET_SIZE(seq);
        pv = PyMem_Calloc((size_t)np + 1, sizeof(*pv));
        pl = PyMem_Calloc((size_t)np + 1, sizeof(*pl));
        if (pv == NULL || pl == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        for (i = 0; i < np; i++) {
            Py_ssize_t len;
            pv[i] = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
            if (pv[i] == NULL) {
                goto error;
            }
            pl[i] = (size_t)len;
        }
    }
    self = (track_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->q = calloc(1, sizeof(*self->q));
    if (self->q == NULL || (self->q->items = calloc(QUEUE_MAX + 1, sizeof(track_item))) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if (pthread_mutex_init(&self->q->mu, NULL) != 0) {
        free(self->q->items);
        free(self->q);
        self->q = NULL;
        PyErr_NoMemory();
        goto error;
    }
    self->t = ck_redis_track_new(&cfg, pv, pl, (size_t)np, on_key, self->q, &err);
    if (self->t == NULL) {
        PyErr_Format(PyExc_RuntimeError, "RedisTracker: %s", err.msg);
        goto error;
    }
    ck_redis_config_free(&cfg);
    PyMem_Free(pv);
    PyMem_Free(pl);
    Py_XDECREF(seq);
    return (PyObject *)self;
error:
    ck_redis_config_free(&cfg);
    PyMem_Free(pv);
    PyMem_Free(pl);
    Py_XDECREF(seq);
    Py_XDECREF(self);
    return NULL;
}

static void track_stop(track_object *self)
{
    ck_redis_track *t = self->t;

    self->t = NULL;
    if (t != NULL) {
        Py_BEGIN_ALLOW_THREADS
        ck_redis_track_free(t);
        Py_END_ALLOW_THREADS
    }
}

static void track_dealloc(track_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    track_stop(self);
    if (self->q != NULL) {
        queue_clear(self->q);
        pthread_mutex_destroy(&self->q->mu);
        free(self->q->items);
        free(self->q);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *track_drain(track_object *self, PyObject *Py_UNUSED(ignored))
{
    track_item *items;
    size_t i, n;
    PyObject *out = NULL;

    items = PyMem_Malloc((QUEUE_MAX + 1) * sizeof(*items));
    if (items == NULL) {
        return PyErr_NoMemory();
    }
    pthread_mutex_lock(&self->q->mu);
    n = self->q->n;
    memcpy(items, self->q->items, n * sizeof(*items));
    self->q->n = 0;
    pthread_mutex_unlock(&self->q->mu);
    out = PyList_New((Py_ssize_t)n);
    for (i = 0; i < n; i++) {
        if (out != NULL) {
            PyObject *v = items[i].key == NULL
                              ? Py_NewRef(Py_None)
                              : PyBytes_FromStringAndSize(items[i].key, (Py_ssize_t)items[i].n);
            if (v == NULL) {
                Py_CLEAR(out);
            } else {
                PyList_SET_ITEM(out, (Py_ssize_t)i, v);
            }
        }
        free(items[i].key);
    }
    PyMem_Free(items);
    return out;
}

static PyObject *track_status(track_object *self, PyObject *Py_UNUSED(ignored))
{
    uint64_t connects = 0;
    long long id = self->t != NULL ? ck_redis_track_id(self->t, &connects) : 0;
    unsigned long long flushes, keys;

    pthread_mutex_lock(&self->q->mu);
    flushes = self->q->flushes;
    keys = self->q->keys;
    pthread_mutex_unlock(&self->q->mu);
    return Py_BuildValue("{sLsKsKsK}", "client_id", id, "connects", (unsigned long long)connects,
                         "flushes", flushes, "keys", keys);
}

static PyObject *track_close(track_object *self, PyObject *Py_UNUSED(ignored))
{
    track_stop(self);
    Py_RETURN_NONE;
}

static PyMethodDef track_methods[] = {
    {"drain", (PyCFunction)track_drain, METH_NOARGS,
     "drain() -> list: invalidated key names (bytes) since the last drain; None = flush all."},
    {"status", (PyCFunction)track_status, METH_NOARGS,
     "status() -> dict: client_id (0 = disconnected), connects, flushes, keys."},
    {"close", (PyCFunction)track_close, METH_NOARGS, "close(): stop the listener thread."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot track_slots[] = {
    {Py_tp_new, track_new},
    {Py_tp_dealloc, track_dealloc},
    {Py_tp_methods, track_methods},
    {Py_tp_doc, (void *)"RedisTracker(url, prefixes=(), *, socket_timeout=5.0): listens for "
                        "Redis invalidations (CLIENT TRACKING BCAST, RESP2 redirect) on its own "
                        "C thread."},
    {0, NULL},
};

static PyType_Spec track_spec = {
    .name = "cachekit._core.RedisTracker",
    .basicsize = sizeof(track_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = track_slots,
};

int ck_redis_track_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &track_spec, NULL);
    int rc;

    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "RedisTracker", type);
    Py_DECREF(type);
    return rc;
}
