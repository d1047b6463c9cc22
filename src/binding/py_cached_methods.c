/*
 * py_cached_methods.c - the methods of CachedFunction besides calling it:
 * invalidation, keys, statistics, and the test and async hooks.
 */
#include "py_cached.h"

/* --------------------------------------------------------------- methods */

/* Build the L1 key of a call given to a method (same shape as a
   vectorcall): the key bytes, or under @cache.secure their MAC over the
   bytes with the tenant (ck_cached_secure_l1_key); *identity as
   ck_key_build sets it. With l2_name not NULL, also append the call's L2
   name to it when the call has an L2 entry (*has_l2 set), from the key
   bytes before the MAC replaces them. Returns 0, or -1 with an exception
   set (TypeError when the arguments do not bind). */
static int key_for_call(ck_cached *self, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                        ck_buf *key, PyObject **identity, ck_buf *l2_name, int *has_l2)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    PyObject *tenant = NULL;
    int rc = ck_key_build(st, &self->spec, args, PyVectorcall_NARGS(nargsf), kwnames, key,
                          identity);

    if (has_l2 != NULL) {
        *has_l2 = 0;
    }
    if (rc == 1) {
        PyErr_Format(PyExc_TypeError, "arguments do not match the signature of %R", self->func);
        return -1;
    }
    if (rc == 0 && self->tenant_extractor != NULL) {
        rc = ck_cached_tenant(self, args, nargsf, kwnames, key, &tenant);
    }
    if (rc == 0 && l2_name != NULL && ck_cached_l2_configured(self, *identity)) {
        if (self->keyring != NULL) {
            ck_span t = {(const unsigned char *)"default", 7};
            Py_ssize_t n;
            if (tenant != NULL) {
                t.p = (const unsigned char *)PyUnicode_AsUTF8AndSize(tenant, &n);
                t.n = (size_t)n;
            }
            rc = ck_cached_secure_l2_name(self, t, key, l2_name);
        } else {
            rc = ck_cached_l2_name(self, key, l2_name);
        }
        *has_l2 = rc == 0;
    }
    Py_XDECREF(tenant);
    if (rc == 0 && self->keyring != NULL) {
        unsigned char mac[CK_KEYRING_L1_KEY_LEN];

        rc = ck_cached_secure_l1_key(self, st, key->data, key->len, mac);
        ck_buf_clear(key);
        if (rc == 0 && ck_buf_append(key, mac, sizeof(mac)) < 0) {
            PyErr_NoMemory();
            rc = -1;
        }
    }
    return rc;
}

PyDoc_STRVAR(invalidate_doc,
             "invalidate_cache($self, /, *args, **kwargs)\n--\n\n"
             "Forget the entry of the call f(*args, **kwargs). Returns True if there\n"
             "was one. For a method, pass the instance first, or call it on the bound\n"
             "method: obj.method.invalidate_cache(*args). With no arguments (on a\n"
             "function that takes some): every entry of the function, as cache_clear().");

/* invalidate_cache() with no arguments, on a function that takes some:
   every entry of the function, in both tiers (as the reference API does). */
static PyObject *invalidate_all(ck_cached *self)
{
    size_t had = self->owner.count;

    ck_cached_drop_entries(self);
    if (self->l2 != NULL && ck_cached_l2_clear(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(had > 0 || self->l2 != NULL);
}

PyObject *ck_cached_invalidate(ck_cached *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    ck_l1_entry *detached = NULL;
    PyObject *identity;
    ck_buf key, name;
    int removed = -1, in_l2, has_l2;

    if (PyVectorcall_NARGS(nargsf) == 0 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) &&
        (self->spec.n_pos > 0 || self->spec.n_kwonly > 0 || self->spec.has_varargs ||
         self->spec.has_varkw)) {
        return invalidate_all(self);
    }
    ck_buf_init_secret(&key);
    ck_buf_init(&name);
    if (key_for_call(self, args, nargsf, kwnames, &key, &identity, &name, &has_l2) == 0) {
        removed = ck_l1_remove(self->store->store, &self->owner,
                               ck_cached_hash(self, key.data, key.len), key.data, key.len,
                               &detached);
        if (has_l2) {
            if (ck_cached_l2_invalidate(self, &name, &in_l2) < 0) {
                removed = -1;
            } else {
                removed = removed || in_l2;
            }
        }
    }
    ck_buf_free(&name);
    ck_buf_free(&key);
    ck_store_release(self->store, detached);
    ck_cached_touch(self);
    return removed < 0 ? NULL : PyBool_FromLong(removed);
}

PyDoc_STRVAR(ainvalidate_doc, "ainvalidate_cache($self, /, *args, **kwargs)\n--\n\n"
                              "invalidate_cache as an awaitable, for async code.");

PyObject *ck_cached_ainvalidate(ck_cached *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    PyObject *removed, *res, *method;

    if (self->l2 != NULL) {
        /* L2 I/O must not block an event loop: run it in a thread. */
        method = PyObject_GetAttrString((PyObject *)self, "invalidate_cache");
        return method == NULL ? NULL : ck_cached_off_loop(self, method, args, nargsf, kwnames);
    }
    removed = ck_cached_invalidate(self, args, nargsf, kwnames);
    if (removed == NULL) {
        return NULL;
    }
    res = ck_ready_new(ck_state_from_type(Py_TYPE(self)), removed);
    Py_DECREF(removed);
    return res;
}

PyDoc_STRVAR(cache_key_doc,
             "cache_key($self, /, *args, **kwargs)\n--\n\n"
             "Return the printable cache key of the call f(*args, **kwargs):\n"
             "'<namespace>:<module>.<qualname>:<32 hex digits>', the name of its L2\n"
             "entry (the digits: SHA-256 of the prefix and key bytes; under\n"
             "@cache.secure a MAC under a key derived from the master key and tenant,\n"
             "which reveals nothing about the arguments).");

PyObject *ck_cached_cache_key(ck_cached *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames)
{
    static const char hex[] = "0123456789abcdef";
    char digits[32];
    PyObject *tail = NULL, *res = NULL, *identity;
    ck_hash128 h;
    ck_buf key, name;
    int i, has_l2;

    ck_buf_init_secret(&key);
    ck_buf_init(&name);
    if (key_for_call(self, args, nargsf, kwnames, &key, &identity, &name, &has_l2) < 0) {
        goto error;
    }
    if (has_l2 || (self->keyring == NULL && ck_cached_l2_name(self, &key, &name) == 0)) {
        res = PyUnicode_DecodeUTF8((const char *)name.data, (Py_ssize_t)name.len, "strict");
        goto error;
    }
    if (self->keyring == NULL) {
        goto error; /* MemoryError from ck_cached_l2_name */
    }
    h = ck_cached_hash(self, key.data, key.len);
    for (i = 0; i < 16; i++) {
        uint64_t word = i < 8 ? h.hi : h.lo;
        unsigned byte = (unsigned)(word >> (56 - 8 * (i % 8))) & 0xffu;
        digits[2 * i] = hex[byte >> 4];
        digits[2 * i + 1] = hex[byte & 0xf];
    }
    tail = PyUnicode_FromStringAndSize(digits, sizeof(digits));
    if (tail == NULL) {
        goto error;
    }
    res = PyUnicode_Concat(self->key_prefix, tail);
error:
    Py_XDECREF(tail);
    ck_buf_free(&name);
    ck_buf_free(&key);
    return res;
}

PyDoc_STRVAR(peek_doc, "_peek($self, /, *args, **kwargs)\n--\n\n"
                       "Tests only: the raw L1 value stored for this call, or None.");

static PyObject *cached_peek(ck_cached *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames)
{
    ck_l1_entry *detached = NULL;
    void *value = NULL;
    PyObject *identity;
    ck_buf key;
    int rc;

    ck_buf_init_secret(&key);
    rc = key_for_call(self, args, nargsf, kwnames, &key, &identity, NULL, NULL);
    if (rc == 0) {
        rc = ck_l1_get(self->store->store, &self->owner, ck_cached_hash(self, key.data, key.len),
                       key.data, key.len, &value, &detached);
    }
    ck_buf_free(&key);
    ck_store_release(self->store, detached);
    if (rc < 0) {
        return NULL;
    }
    return rc ? (PyObject *)value : Py_NewRef(Py_None);
}

PyDoc_STRVAR(poke_doc, "_poke($self, value, /, *args, **kwargs)\n--\n\n"
                       "Tests only: store value as the raw L1 value of this call, bypassing\n"
                       "encoding and encryption (to simulate corrupted entries).");

static PyObject *cached_poke(ck_cached *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    ck_l1_entry *detached = NULL;
    ck_error err;
    PyObject *identity;
    ck_buf key;
    int rc;

    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_poke needs the value to store");
        return NULL;
    }
    ck_buf_init_secret(&key);
    rc = key_for_call(self, args + 1, (size_t)(nargs - 1), kwnames, &key, &identity, NULL,
                      NULL);
    if (rc == 0) {
        rc = ck_l1_put(self->store->store, &self->owner, ck_cached_hash(self, key.data, key.len),
                       key.data, key.len, args[0], 0, self->ttl_ns, &detached, &err);
        if (rc < 0) {
            PyErr_NoMemory();
        }
    }
    ck_buf_free(&key);
    ck_store_release(self->store, detached);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(cache_clear_doc, "cache_clear($self, /)\n--\n\n"
                              "Forget every entry of this function.");

static PyObject *cached_cache_clear(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    ck_cached_drop_entries(self);
    if (self->l2 != NULL && ck_cached_l2_clear(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(acache_clear_doc, "acache_clear($self, /)\n--\n\n"
                               "cache_clear as an awaitable, for async code.");

static PyObject *cached_acache_clear(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *method;

    if (self->l2 != NULL) {
        /* L2 I/O must not block an event loop: run it in a thread. */
        method = PyObject_GetAttrString((PyObject *)self, "cache_clear");
        return method == NULL ? NULL : ck_cached_off_loop(self, method, NULL, 0, NULL);
    }
    ck_cached_drop_entries(self);
    return ck_ready_new(ck_state_from_type(Py_TYPE(self)), Py_None);
}

PyDoc_STRVAR(complete_doc,
             "_complete($self, result, /, *args, **kwargs)\n--\n\n"
             "Async path only: store result as the value of f(*args, **kwargs), as a\n"
             "miss would have. Returns result.");

static PyObject *cached_complete(ck_cached *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    ck_call_mode mode = {.result = NULL};

    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_complete needs the result");
        return NULL;
    }
    mode.result = args[0];
    return ck_cached_call_mode(self, args + 1, (size_t)(nargs - 1), kwnames, &mode);
}

PyDoc_STRVAR(l2_fetch_doc,
             "_l2_fetch($self, /, *args, **kwargs)\n--\n\n"
             "Async path only, run off the event loop: look the call up in L1 and L2\n"
             "(filling L1 from L2), taking a stampede lease on a miss when set ->\n"
             "(True, value, None), or (False, None, lease token or None) on a miss.");

static PyObject *cached_l2_fetch(ck_cached *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    ck_call_mode mode = {.with_l2 = 1};
    PyObject *res = ck_cached_call_mode(self, args, nargsf, kwnames, &mode), *out;

    Py_XDECREF(mode.key);
    if (res != NULL) {
        Py_XDECREF(mode.lease_token);
        return Py_BuildValue("(ONO)", Py_True, res, Py_None);
    }
    if (!mode.missed) {
        Py_XDECREF(mode.lease_token);
        return NULL;
    }
    out = Py_BuildValue("(OOO)", Py_False, Py_None,
                        mode.lease_token != NULL ? mode.lease_token : Py_None);
    Py_XDECREF(mode.lease_token);
    return out;
}

PyDoc_STRVAR(l2_release_doc,
             "_l2_release($self, token, /, *args, **kwargs)\n--\n\n"
             "Async path only, off the event loop: release the stampede lease token\n"
             "that _l2_fetch took for f(*args, **kwargs).");

static PyObject *cached_l2_release(ck_cached *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *identity;
    ck_buf key, name;
    int has_l2 = 0, rc;

    if (nargs < 1 || !PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) != CK_L2_TOKEN_LEN) {
        PyErr_SetString(PyExc_TypeError, "_l2_release needs the lease token");
        return NULL;
    }
    ck_buf_init_secret(&key);
    ck_buf_init(&name);
    rc = key_for_call(self, args + 1, (size_t)(nargs - 1), kwnames, &key, &identity, &name,
                      &has_l2);
    if (rc == 0 && has_l2) {
        ck_cached_l2_lease_release(self, &name, PyBytes_AS_STRING(args[0]), 1);
    }
    ck_buf_free(&name);
    ck_buf_free(&key);
    if (rc < 0 || PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fresh_doc, "_fresh($self, value, /)\n--\n\n"
                       "Async path only: what a waiter that shared a miss gets: a fresh copy of\n"
                       "value under the copy rule of plain @cache, else value itself.");

static PyObject *cached_fresh(ck_cached *self, PyObject *value)
{
    PyObject *copy;

    if (!self->copy || self->keyring != NULL) {
        return Py_NewRef(value);
    }
    copy = ck_py_copy(ck_state_from_type(Py_TYPE(self)), value);
    if (copy == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        /* Not storable, so not stored either: shared, as the result of an
           uncached call would be. */
        PyErr_Clear();
        return Py_NewRef(value);
    }
    return copy;
}

PyDoc_STRVAR(reduce_doc, "__reduce__($self, /)\n--\n\n"
                         "Pickled by reference (module and qualified name), as functions are.");

static PyObject *cached_reduce(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttrString((PyObject *)self, "__qualname__");
}

PyDoc_STRVAR(cache_info_doc,
             "cache_info($self, /)\n--\n\n"
             "Return a CacheInfo: hits, misses, l1_hits, l2_hits, maxsize, currsize,\n"
             "l2_avg_latency_ms, last_operation_at, session_id, currbytes.");

static PyObject *cached_cache_info(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    ck_l1_stats st;
    PyObject *maxsize = NULL, *res = NULL, *last_op;

    if (self->last_op_ns == 0) {
        last_op = Py_NewRef(Py_None);
    } else if ((last_op = PyFloat_FromDouble((double)self->last_op_ns / 1e9)) == NULL) {
        return NULL;
    }
    ck_l1_get_stats(self->store->store, &st);
    if (st.max_entries == 0) {
        maxsize = Py_NewRef(Py_None);
    } else if ((maxsize = PyLong_FromSize_t(st.max_entries)) == NULL) {
        Py_DECREF(last_op);
        return NULL;
    }
    /* Counts are read without the store lock: a snapshot, not a transaction. */
    res = PyObject_CallFunction(self->info_type, "KKKKOndOOn", (unsigned long long)self->hits,
                                (unsigned long long)self->misses,
                                (unsigned long long)(self->hits - self->l2_hits),
                                (unsigned long long)self->l2_hits, maxsize,
                                (Py_ssize_t)self->owner.count, ck_cached_l2_avg_ms(self),
                                last_op, self->obs.session_id == NULL ? Py_None : self->obs.session_id,
                                (Py_ssize_t)self->owner.bytes);
    Py_DECREF(maxsize);
    Py_DECREF(last_op);
    return res;
}

PyDoc_STRVAR(cache_stats_doc,
             "cache_stats($self, /)\n--\n\n"
             "Return a dict of raw counters: hits (L1 and L2), misses, l2_hits,\n"
             "l2_errors, integrity_errors, stale_entries, lease_waits, key_errors,\n"
             "store_errors, decrypt_errors, entries, bytes (the last two: L1);\n"
             "stale_hits, refreshes, refresh_errors, refresh_dropped (docs/freshness.md).");

static PyObject *cached_cache_stats(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *d = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:n,s:n}", "hits",
                         (unsigned long long)self->hits, "misses",
                         (unsigned long long)self->misses, "l2_hits",
                         (unsigned long long)self->l2_hits, "l2_errors",
                         (unsigned long long)self->l2_errors, "integrity_errors",
                         (unsigned long long)self->integrity_errors, "stale_entries",
                         (unsigned long long)self->stale_entries, "lease_waits",
                         (unsigned long long)self->lease_waits, "key_errors",
                         (unsigned long long)self->key_errors, "store_errors",
                         (unsigned long long)self->store_errors, "decrypt_errors",
                         (unsigned long long)self->decrypt_errors, "entries",
                         (Py_ssize_t)self->owner.count, "bytes", (Py_ssize_t)self->owner.bytes);

    if (d != NULL && self->refresher != NULL && ck_cached_swr_stats(self, d) < 0) {
        Py_CLEAR(d);
    }
    return d;
}

PyMethodDef ck_cached_methods[] = {
    {"invalidate_cache", (PyCFunction)(void (*)(void))ck_cached_invalidate,
     METH_FASTCALL | METH_KEYWORDS, invalidate_doc},
    {"ainvalidate_cache", (PyCFunction)(void (*)(void))ck_cached_ainvalidate,
     METH_FASTCALL | METH_KEYWORDS, ainvalidate_doc},
    {"cache_key", (PyCFunction)(void (*)(void))ck_cached_cache_key,
     METH_FASTCALL | METH_KEYWORDS, cache_key_doc},
    {"cache_clear", (PyCFunction)cached_cache_clear, METH_NOARGS, cache_clear_doc},
    {"acache_clear", (PyCFunction)cached_acache_clear, METH_NOARGS, acache_clear_doc},
    {"_complete", (PyCFunction)(void (*)(void))cached_complete, METH_FASTCALL | METH_KEYWORDS,
     complete_doc},
    {"_fresh", (PyCFunction)cached_fresh, METH_O, fresh_doc},
    {"_swr_complete", (PyCFunction)(void (*)(void))ck_cached_swr_complete,
     METH_FASTCALL | METH_KEYWORDS, ck_cached_swr_complete_doc},
    {"_swr_failed", (PyCFunction)ck_cached_swr_failed, METH_NOARGS, ck_cached_swr_failed_doc},
    {"_l2_fetch", (PyCFunction)(void (*)(void))cached_l2_fetch, METH_FASTCALL | METH_KEYWORDS,
     l2_fetch_doc},
    {"_l2_release", (PyCFunction)(void (*)(void))cached_l2_release,
     METH_FASTCALL | METH_KEYWORDS, l2_release_doc},
    {"__reduce__", (PyCFunction)cached_reduce, METH_NOARGS, reduce_doc},
    {"_peek", (PyCFunction)(void (*)(void))cached_peek, METH_FASTCALL | METH_KEYWORDS, peek_doc},
    {"_poke", (PyCFunction)(void (*)(void))cached_poke, METH_FASTCALL | METH_KEYWORDS, poke_doc},
    {"cache_info", (PyCFunction)cached_cache_info, METH_NOARGS, cache_info_doc},
    {"cache_stats", (PyCFunction)cached_cache_stats, METH_NOARGS, cache_stats_doc},
    {"_set_observer", (PyCFunction)(void (*)(void))ck_cached_set_observer, METH_FASTCALL,
     ck_cached_set_observer_doc},
    {"_latencies", (PyCFunction)ck_cached_latencies, METH_NOARGS, ck_cached_latencies_doc},
    {NULL, NULL, 0, NULL},
};

