/*
 * py_cached_entry.c - what a miss does with the function's result: run the
 * function (or take the async path's result), check the codec can store the
 * result and size it, choose what the entry holds (the result, a private
 * copy, or the object itself under @cache.local), store it, and report what
 * could not be stored. Failures here never lose the result: they are
 * counted, reported to on_event (logged once per function) and the result
 * is returned uncached.
 */
#include "py_cached.h"

#include <time.h>

/* ------------------------------------------------------------ cold paths */

/* Report a failure to on_event(kind, exc) and clear it. Returns 0 when the
   call may go on uncached, -1 when the error must propagate (it is not an
   Exception, e.g. KeyboardInterrupt, or on_event itself failed). */
int ck_cached_report_failure(ck_cached *self, const char *kind)
{
    PyObject *exc = NULL, *res = NULL;
    int rc = -1;

    PyObject *type = NULL, *tb = NULL;

    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL && PyException_SetTraceback(exc, tb) < 0) {
        goto error;
    }
    if (self->on_event != Py_None) {
        res = PyObject_CallFunction(self->on_event, "sO", kind, exc);
        if (res == NULL) {
            goto error;
        }
    }
    rc = 0;
error:
    Py_XDECREF(res);
    Py_XDECREF(exc);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return rc;
}

int ck_cached_store_disabled(ck_cached *self)
{
    size_t bound = ck_l1_max_bytes(self->store->store);

    return bound != 0 && bound < CK_L1_ENTRY_OVERHEAD;
}

/* The most encoded bytes worth producing for a result: past max_value_size
   or the L1 store's byte bound it cannot be stored, so encoding stops there
   instead of finishing a value that will be refused. */
static size_t encode_limit(ck_cached *self)
{
    size_t bound = ck_l1_max_bytes(self->store->store);

    return bound != 0 && bound < self->max_value_size ? bound : self->max_value_size;
}

int ck_cached_encode_result(ck_cached *self, ck_state *st, PyObject *result, ck_buf *buf,
                            ck_pack_stats *stats, int *fatal)
{
    size_t limit = encode_limit(self);
    int rc;

    stats->limit = limit;
    rc = ck_py_pack_ex(st, result, buf, 0, stats);
    if (rc < 0) {
        goto error;
    }
    if (rc > 0) {
        PyErr_Format(st->SerializationError,
                     "result encodes to more than %zu bytes, over %s", limit,
                     limit == self->max_value_size ? "max_value_size" : "the L1 store's byte bound");
        goto error;
    }
    return 0;
error:
    self->store_errors++;
    *fatal = ck_cached_report_failure(self, "store_error") < 0;
    return -1;
}

PyObject *ck_cached_run(ck_cached *self, ck_call_mode *mode, PyObject *const *args,
                        size_t nargsf, PyObject *kwnames)
{
    if (mode == NULL) {
        return PyObject_Vectorcall(self->func, args, nargsf, kwnames);
    }
    if (mode->result != NULL) {
        return Py_NewRef(mode->result);
    }
    mode->missed = 1;
    return NULL;
}

PyObject *ck_cached_run_uncached(ck_cached *self, ck_call_mode *mode, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames)
{
    if (mode != NULL) {
        if (mode->result != NULL) {
            return Py_NewRef(mode->result); /* nothing to store it under */
        }
        mode->bypassed = 1;
    }
    return PyObject_Vectorcall(self->func, args, nargsf, kwnames);
}

int ck_cached_missed(ck_call_mode *mode, const ck_buf *key)
{
    if (mode == NULL || !mode->missed) {
        return 0;
    }
    mode->key = PyBytes_FromStringAndSize((const char *)key->data, (Py_ssize_t)key->len);
    return 1;
}

int ck_cached_put(ck_cached *self, ck_hash128 h, const unsigned char *key, size_t key_len,
                  PyObject *identity, PyObject *value, size_t charge, uint32_t flags,
                  uint64_t ttl_ns, ck_l1_entry **detached)
{
    ck_l1_group *group = NULL;
    ck_error err;
    int rc;

    if (identity != NULL && ck_cached_instance_group(self, identity, &group) < 0) {
        self->store_errors++;
        return ck_cached_report_failure(self, "store_error");
    }
    self->swr_dropped = 0;
    self->swr_fill_stale = 0;
    if (self->refresher != NULL && ttl_ns != 0) {
        ck_l1_swr swr;

        ck_cached_swr_params(self, h, ttl_ns, &swr);
        self->swr_fill_stale = swr.fresh_ns == 0;
        rc = ck_l1_put_swr(self->store->store, &self->owner, group, h, key, key_len, value,
                           charge, &swr, flags, detached, &err);
        if (rc == 2) {
            /* A refresh whose entry was invalidated or replaced meanwhile. */
            self->refresh_dropped++;
            self->swr_dropped = 1;
            return 0;
        }
    } else {
        rc = ck_l1_put_ex(self->store->store, &self->owner, group, h, key, key_len, value,
                          charge, ttl_ns, flags, detached, &err);
    }
    if (rc < 0 && err.code == CK_ENOMEM) {
        /* Keep the result; the store just could not take it. */
        self->store_errors++;
    }
    if (rc == 0) {
        ck_state *st = ck_state_from_type(Py_TYPE(self));
        PyErr_Format(st->SerializationError,
                     "the result occupies about %zu bytes in memory, more than the L1 store's "
                     "byte bound (%zu); raise l1_max_size_mb to cache it",
                     charge, ck_l1_max_bytes(self->store->store));
        self->store_errors++;
        return ck_cached_report_failure(self, "store_error");
    }
    return 0;
}

/* What a plain (not encrypted, not reference) entry holds and is charged:
   the result itself when its whole graph is immutable (sharing it is
   safe), else a private deep copy, flagged so every hit copies it again;
   charged the object graph's size, which is what the entry keeps alive. */
int ck_cached_put_value(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                        PyObject *identity, PyObject *result, const ck_pack_stats *stats,
                        uint64_t ttl_ns, ck_l1_entry **detached)
{
    PyObject *stored;
    int rc;

    if (!self->copy || !stats->has_mutable) {
        return ck_cached_put(self, h, key->data, key->len, identity, result, stats->graph_bytes, 0,
                             ttl_ns, detached);
    }
    stored = ck_py_copy(st, result);
    if (stored == NULL) {
        self->store_errors++;
        return ck_cached_report_failure(self, "store_error");
    }
    rc = ck_cached_put(self, h, key->data, key->len, identity, stored, stats->graph_bytes,
                       CK_ENTRY_MUTABLE, ttl_ns, detached);
    Py_DECREF(stored);
    return rc;
}

int ck_cached_reference_charge(ck_cached *self, PyObject *result, size_t *charge)
{
    PyObject *size = PyObject_CallMethod(result, "__sizeof__", NULL);
    Py_ssize_t n;

    if (size == NULL) {
        goto error;
    }
    n = PyLong_AsSsize_t(size);
    Py_DECREF(size);
    if (n < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "__sizeof__() returned a negative size");
        }
        goto error;
    }
    /* A reference entry holds the object the caller holds too: it is
       charged the object itself (with its GC header), not what it refers
       to, which it shares with the program. */
    *charge = (size_t)n + (PyObject_IS_GC(result) ? 16 : 0);
    return 0;
error:
    self->store_errors++;
    return ck_cached_report_failure(self, "store_error") < 0 ? -1 : 1;
}


Py_ssize_t ck_cached_bypass_index(ck_cached *self, PyObject *kwnames)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_ssize_t i, n = PyTuple_GET_SIZE(kwnames);

    if (!self->bypass_kw) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (PyTuple_GET_ITEM(kwnames, i) == st->str_bypass_cache) {
            return i;
        }
    }
    /* Keyword names are nearly always interned; compare the rare others. */
    for (i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_GET_LENGTH(name) == 13 && PyUnicode_Compare(name, st->str_bypass_cache) == 0) {
            return i;
        }
    }
    return -1;
}

PyObject *ck_cached_bypass(ck_cached *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames, Py_ssize_t at)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = PyTuple_GET_SIZE(kwnames), i, j;
    PyObject **argv = NULL, *names = NULL, *res = NULL;
    int bypass = PyObject_IsTrue(args[nargs + at]);

    if (bypass < 0) {
        return NULL;
    }
    argv = PyMem_New(PyObject *, (size_t)(nargs + nkw));
    names = nkw > 1 ? PyTuple_New(nkw - 1) : NULL;
    if (argv == NULL || (nkw > 1 && names == NULL)) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < nargs; i++) {
        argv[i] = args[i];
    }
    for (i = 0, j = 0; i < nkw; i++) {
        if (i == at) {
            continue;
        }
        argv[nargs + j] = args[nargs + i];
        if (names != NULL) { /* NULL only when this was the one keyword */
            PyTuple_SET_ITEM(names, j, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
        }
        j++;
    }
    if (bypass) {
        /* Runs the function itself: nothing is read from or written to the
           cache for this call. */
        self->misses++;
        res = PyObject_Vectorcall(self->func, argv, (size_t)nargs, names);
    } else {
        res = self->vectorcall((PyObject *)self, argv, (size_t)nargs, names);
    }
done:
    Py_XDECREF(names);
    PyMem_Free(argv);
    return res;
}
