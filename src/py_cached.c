/*
 * py_cached.c - CachedFunction: the callable @cache returns (hot path).
 *
 * Called through vectorcall. A call builds the key bytes in a stack buffer
 * (py_keys.c), hashes them, probes the L1 store and, on a hit, returns the
 * stored object: no Python-level calls, no allocation for builtin argument
 * types. A miss runs the function once, checks that the codec can store the
 * result (so L1 only ever holds values an L2 backend could hold too, and
 * the encoded size is the entry's charge), stores it and returns it.
 *
 * Calls that can run user code: the wrapped function; __cachekit_key__()
 * of an argument (key building); __del__ of a value dropped by the store
 * (ck_store_release, always after the store lock is gone); the on_event
 * callback on cold failure paths. None of them runs under the store lock.
 *
 * Failures never lose a result: an argument the key encoding cannot
 * represent runs the function uncached; a result the codec cannot store is
 * returned uncached. Both are counted and reported to on_event(kind, exc),
 * which the Python layer uses to log once per function and update metrics.
 */
#include "py_cached.h"

#include <structmember.h>
#include <xxhash.h>

#include "py_codec.h"

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

PyObject *ck_cached_call_uncached(ck_cached *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    return PyObject_Vectorcall(self->func, args, nargsf, kwnames);
}

/* Check the codec can store result and return its encoded size, or -1 with
   the failure reported (and cleared when the call may go on; *fatal is set
   when it may not). */
int ck_cached_encode_result(ck_cached *self, ck_state *st, PyObject *result, ck_buf *buf,
                            int *fatal)
{
    if (ck_py_pack(st, result, buf, 0) < 0) {
        goto error;
    }
    if (buf->len > self->max_value_size) {
        PyErr_Format(st->SerializationError,
                     "result encodes to %zu bytes, over max_value_size (%zu)", buf->len,
                     self->max_value_size);
        goto error;
    }
    return 0;
error:
    self->store_errors++;
    *fatal = ck_cached_report_failure(self, "store_error") < 0;
    return -1;
}

/* -------------------------------------------------------------- hot path */

static PyObject *cached_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    ck_l1_entry *detached = NULL;
    PyObject *result = NULL;
    void *hit = NULL;
    ck_hash128 h;
    ck_buf key, value;
    ck_error err;
    int rc, fatal = 0;

    ck_buf_init(&key);
    rc = ck_key_build(st, &self->spec, args, nargs, kwnames, &key);
    if (rc != 0) {
        if (rc < 0) {
            self->key_errors++;
            if (ck_cached_report_failure(self, "key_error") < 0) {
                goto done;
            }
        }
        self->misses++; /* the function runs: every call is a hit or a miss */
        result = ck_cached_call_uncached(self, args, nargsf, kwnames);
        goto done;
    }
    h = ck_key_hash(key.data, key.len, self->seed);
    if (ck_l1_get(self->store->store, &self->owner, h, key.data, key.len, &hit, &detached)) {
        self->hits++;
        result = (PyObject *)hit;
        goto done;
    }
    self->misses++;
    result = ck_cached_call_uncached(self, args, nargsf, kwnames);
    if (result == NULL) {
        goto done; /* exceptions are not cached */
    }
    ck_buf_init(&value);
    if (ck_cached_encode_result(self, st, result, &value, &fatal) == 0) {
        rc = ck_l1_put(self->store->store, &self->owner, h, key.data, key.len, result, value.len,
                       self->ttl_ns, &detached, &err);
        if (rc < 0 && err.code == CK_ENOMEM) {
            /* Keep the result; the store just could not take it. */
            self->store_errors++;
        }
    } else if (fatal) {
        Py_CLEAR(result);
    }
    ck_buf_free(&value);
done:
    ck_buf_free(&key);
    ck_store_release(self->store, detached);
    return result;
}

/* ----------------------------------------------------------- constructor */

static int check_names(PyObject *names, const char *what)
{
    Py_ssize_t i;

    if (!PyTuple_CheckExact(names)) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple of str", what);
        return -1;
    }
    for (i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_Format(PyExc_TypeError, "%s must be a tuple of str", what);
            return -1;
        }
    }
    return 0;
}

static PyObject *cached_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"func",         "store",     "key_prefix", "ttl",
                             "pos_names",    "n_posonly", "kwonly_names", "defaults",
                             "varargs",      "varkw",     "self_is_instance", "on_event",
                             "info_type",    "max_value_size", "keyring", "tenant_extractor",
                             "fail_closed",  NULL};
    ck_state *st = ck_state_from_type(type);
    PyObject *func, *store, *key_prefix, *ttl, *pos_names, *kwonly_names, *defaults, *on_event,
        *info_type, *keyring = Py_None, *tenant_extractor = Py_None;
    const char *prefix_utf8;
    Py_ssize_t n_posonly, prefix_len, max_value_size = PY_SSIZE_T_MAX;
    int varargs, varkw, self_is_instance, fail_closed = 0;
    ck_cached *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOUOOnOO!pppOO|nOOp:CachedFunction", kwlist,
                                     &func, &store, &key_prefix, &ttl, &pos_names,
                                     &n_posonly, &kwonly_names, &PyDict_Type, &defaults,
                                     &varargs, &varkw, &self_is_instance, &on_event,
                                     &info_type, &max_value_size, &keyring,
                                     &tenant_extractor, &fail_closed)) {
        return NULL;
    }
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "func must be callable");
        return NULL;
    }
    if (!PyObject_TypeCheck(store, st->L1StoreType)) {
        PyErr_SetString(PyExc_TypeError, "store must be a cachekit._core.L1Store");
        return NULL;
    }
    if (check_names(pos_names, "pos_names") < 0 || check_names(kwonly_names, "kwonly_names") < 0) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(pos_names) + PyTuple_GET_SIZE(kwonly_names) > CK_KEY_MAX_PARAMS) {
        PyErr_Format(PyExc_ValueError, "cannot cache a function with more than %d parameters",
                     CK_KEY_MAX_PARAMS);
        return NULL;
    }
    if (n_posonly < 0 || n_posonly > PyTuple_GET_SIZE(pos_names)) {
        PyErr_SetString(PyExc_ValueError, "n_posonly out of range");
        return NULL;
    }
    prefix_utf8 = PyUnicode_AsUTF8AndSize(key_prefix, &prefix_len);
    if (prefix_utf8 == NULL) {
        return NULL;
    }
    if (keyring != Py_None && !PyObject_TypeCheck(keyring, st->KeyringType)) {
        PyErr_SetString(PyExc_TypeError, "keyring must be a cachekit._core.Keyring or None");
        return NULL;
    }
    if (tenant_extractor != Py_None &&
        (keyring == Py_None || !PyCallable_Check(tenant_extractor))) {
        PyErr_SetString(PyExc_TypeError, "tenant_extractor must be callable and needs a keyring");
        return NULL;
    }
    if (max_value_size <= 0) {
        PyErr_SetString(PyExc_ValueError, "max_value_size must be > 0");
        return NULL;
    }
    if (on_event != Py_None && !PyCallable_Check(on_event)) {
        PyErr_SetString(PyExc_TypeError, "on_event must be callable or None");
        return NULL;
    }
    self = (ck_cached *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (ck_parse_ttl(ttl, &self->ttl_ns) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    /* The call strategy is chosen once, here. */
    self->vectorcall = keyring == Py_None ? (vectorcallfunc)cached_vectorcall
                                          : (vectorcallfunc)ck_cached_secure_vectorcall;
    self->keyring = keyring == Py_None ? NULL : Py_NewRef(keyring);
    self->tenant_extractor = tenant_extractor == Py_None ? NULL : Py_NewRef(tenant_extractor);
    self->fail_closed = (char)(fail_closed != 0);
    self->func = Py_NewRef(func);
    self->store = (ck_store_object *)Py_NewRef(store);
    /* The key hash is seeded by the function's identity (key_prefix names
       namespace, module and qualname) and the key scheme version, so equal
       arguments of two functions never share a hash. */
    self->seed = XXH3_64bits_withSeed(prefix_utf8, (size_t)prefix_len, CK_KEY_SCHEME_VERSION);
    self->key_prefix = Py_NewRef(key_prefix);
    self->max_value_size = (size_t)max_value_size;
    self->on_event = Py_NewRef(on_event);
    self->info_type = Py_NewRef(info_type);
    self->spec.pos_names = Py_NewRef(pos_names);
    self->spec.kwonly_names = Py_NewRef(kwonly_names);
    self->spec.defaults = Py_NewRef(defaults);
    self->spec.n_pos = PyTuple_GET_SIZE(pos_names);
    self->spec.n_posonly = n_posonly;
    self->spec.n_kwonly = PyTuple_GET_SIZE(kwonly_names);
    self->spec.has_varargs = varargs;
    self->spec.has_varkw = varkw;
    self->spec.self_is_instance = self_is_instance && self->spec.n_pos > 0;
    return (PyObject *)self;
}

/* ------------------------------------------------------------- lifecycle */

/* Drop our entries from the (possibly shared) store. */
static void drop_entries(ck_cached *self)
{
    ck_l1_entry *detached = NULL;

    if (self->store != NULL) {
        ck_l1_clear(self->store->store, &self->owner, &detached);
        ck_store_release(self->store, detached);
    }
}

static int cached_traverse(ck_cached *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->func);
    Py_VISIT(self->store);
    Py_VISIT(self->key_prefix);
    Py_VISIT(self->on_event);
    Py_VISIT(self->info_type);
    Py_VISIT(self->keyring);
    Py_VISIT(self->tenant_extractor);
    Py_VISIT(self->dict);
    Py_VISIT(self->spec.pos_names);
    Py_VISIT(self->spec.kwonly_names);
    Py_VISIT(self->spec.defaults);
    Py_VISIT(self->spec.self_type);
    Py_VISIT(self->spec.self_type_key);
    return 0;
}

static int cached_clear(ck_cached *self)
{
    /* Our cached values can reference us (a value holding the function):
       the store's traversal reports those edges, and clearing our entries
       breaks the cycle. */
    drop_entries(self);
    Py_CLEAR(self->func);
    Py_CLEAR(self->store);
    Py_CLEAR(self->key_prefix);
    Py_CLEAR(self->on_event);
    Py_CLEAR(self->info_type);
    Py_CLEAR(self->keyring);
    Py_CLEAR(self->tenant_extractor);
    Py_CLEAR(self->dict);
    Py_CLEAR(self->spec.pos_names);
    Py_CLEAR(self->spec.kwonly_names);
    Py_CLEAR(self->spec.defaults);
    Py_CLEAR(self->spec.self_type);
    Py_CLEAR(self->spec.self_type_key);
    return 0;
}

static void cached_dealloc(ck_cached *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    (void)cached_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *cached_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == Py_None || obj == NULL) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *cached_repr(ck_cached *self)
{
    return PyUnicode_FromFormat("<cachekit cached function %R>", self->func);
}

/* --------------------------------------------------------------- methods */

/* Build the key bytes of a call given to a method (same shape as a
   vectorcall), with the tenant under @cache.secure. With l1 set, under
   @cache.secure, turn them into the L1 key, their MAC
   (ck_cached_secure_l1_key). Returns 0, or -1 with an exception set
   (TypeError when the arguments do not bind). */
static int key_for_call(ck_cached *self, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                        int l1, ck_buf *key)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    PyObject *tenant = NULL;
    int rc = ck_key_build(st, &self->spec, args, PyVectorcall_NARGS(nargsf), kwnames, key);

    if (rc == 1) {
        PyErr_Format(PyExc_TypeError, "arguments do not match the signature of %R", self->func);
        return -1;
    }
    if (rc == 0 && self->tenant_extractor != NULL) {
        rc = ck_cached_tenant(self, args, nargsf, kwnames, key, &tenant);
        Py_XDECREF(tenant);
    }
    if (rc == 0 && l1 && self->keyring != NULL) {
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
             "was one. For a method, pass the instance (or class) first.");

static PyObject *cached_invalidate(ck_cached *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    ck_l1_entry *detached = NULL;
    ck_buf key;
    int removed = -1;

    ck_buf_init_secret(&key);
    if (key_for_call(self, args, nargsf, kwnames, 1, &key) == 0) {
        removed = ck_l1_remove(self->store->store, &self->owner,
                               ck_key_hash(key.data, key.len, self->seed), key.data, key.len,
                               &detached);
    }
    ck_buf_free(&key);
    ck_store_release(self->store, detached);
    return removed < 0 ? NULL : PyBool_FromLong(removed);
}

PyDoc_STRVAR(cache_key_doc,
             "cache_key($self, /, *args, **kwargs)\n--\n\n"
             "Return the printable cache key of the call f(*args, **kwargs):\n"
             "'<namespace>:<module>.<qualname>:<32 hex digits of XXH3-128>'.");

static PyObject *cached_cache_key(ck_cached *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
    static const char hex[] = "0123456789abcdef";
    char digits[32];
    PyObject *tail = NULL, *res = NULL;
    ck_hash128 h;
    ck_buf key;
    int i;

    ck_buf_init_secret(&key);
    /* The printable key stays a hash of the key bytes (not of the
       per-process L1 MAC), so it names the same entry in every process. */
    if (key_for_call(self, args, nargsf, kwnames, 0, &key) < 0) {
        goto error;
    }
    h = ck_key_hash(key.data, key.len, self->seed);
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
    ck_buf key;
    int rc;

    ck_buf_init_secret(&key);
    rc = key_for_call(self, args, nargsf, kwnames, 1, &key);
    if (rc == 0) {
        rc = ck_l1_get(self->store->store, &self->owner, ck_key_hash(key.data, key.len, self->seed),
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
    ck_buf key;
    int rc;

    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "_poke needs the value to store");
        return NULL;
    }
    ck_buf_init_secret(&key);
    rc = key_for_call(self, args + 1, (size_t)(nargs - 1), kwnames, 1, &key);
    if (rc == 0) {
        rc = ck_l1_put(self->store->store, &self->owner, ck_key_hash(key.data, key.len, self->seed),
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
    drop_entries(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(cache_info_doc,
             "cache_info($self, /)\n--\n\n"
             "Return a CacheInfo: hits, misses, l1_hits, l2_hits, maxsize, currsize,\n"
             "l2_avg_latency_ms, last_operation_at, session_id, currbytes.");

static PyObject *cached_cache_info(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    ck_l1_stats st;
    PyObject *maxsize = NULL, *res = NULL;

    ck_l1_get_stats(self->store->store, &st);
    if (st.max_entries == 0) {
        maxsize = Py_NewRef(Py_None);
    } else if ((maxsize = PyLong_FromSize_t(st.max_entries)) == NULL) {
        return NULL;
    }
    /* Counts are read without the store lock: a snapshot, not a transaction. */
    res = PyObject_CallFunction(self->info_type, "KKKiOndOOn", (unsigned long long)self->hits,
                                (unsigned long long)self->misses,
                                (unsigned long long)self->hits, 0, maxsize,
                                (Py_ssize_t)self->owner.count, 0.0, Py_None, Py_None,
                                (Py_ssize_t)self->owner.bytes);
    Py_DECREF(maxsize);
    return res;
}

PyDoc_STRVAR(cache_stats_doc,
             "cache_stats($self, /)\n--\n\n"
             "Return a dict of raw counters: hits, misses, key_errors, store_errors,\n"
             "decrypt_errors, entries, bytes.");

static PyObject *cached_cache_stats(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:n,s:n}", "hits",
                         (unsigned long long)self->hits, "misses",
                         (unsigned long long)self->misses, "key_errors",
                         (unsigned long long)self->key_errors, "store_errors",
                         (unsigned long long)self->store_errors, "decrypt_errors",
                         (unsigned long long)self->decrypt_errors, "entries",
                         (Py_ssize_t)self->owner.count, "bytes", (Py_ssize_t)self->owner.bytes);
}

static PyMethodDef cached_methods[] = {
    {"invalidate_cache", (PyCFunction)(void (*)(void))cached_invalidate,
     METH_FASTCALL | METH_KEYWORDS, invalidate_doc},
    {"cache_key", (PyCFunction)(void (*)(void))cached_cache_key, METH_FASTCALL | METH_KEYWORDS,
     cache_key_doc},
    {"cache_clear", (PyCFunction)cached_cache_clear, METH_NOARGS, cache_clear_doc},
    {"_peek", (PyCFunction)(void (*)(void))cached_peek, METH_FASTCALL | METH_KEYWORDS, peek_doc},
    {"_poke", (PyCFunction)(void (*)(void))cached_poke, METH_FASTCALL | METH_KEYWORDS, poke_doc},
    {"cache_info", (PyCFunction)cached_cache_info, METH_NOARGS, cache_info_doc},
    {"cache_stats", (PyCFunction)cached_cache_stats, METH_NOARGS, cache_stats_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef cached_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(ck_cached, vectorcall), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(ck_cached, dict), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(ck_cached, weakreflist), READONLY, NULL},
    {"store", T_OBJECT, offsetof(ck_cached, store), READONLY, "The L1Store holding the entries."},
    {"keyring", T_OBJECT, offsetof(ck_cached, keyring), READONLY,
     "The Keyring of @cache.secure, else None."},
    {"fail_closed", T_BOOL, offsetof(ck_cached, fail_closed), READONLY,
     "Whether a result that cannot be encrypted raises EncryptionError (else it is "
     "logged and returned uncached)."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef cached_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(cached_doc, "A function wrapped by @cache: calls are answered from the L1 store\n"
                         "when possible. Created by cachekit.cache, not directly.");

static PyType_Slot cached_slots[] = {
    {Py_tp_new, cached_new},
    {Py_tp_dealloc, cached_dealloc},
    {Py_tp_traverse, cached_traverse},
    {Py_tp_clear, cached_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, cached_descr_get},
    {Py_tp_repr, cached_repr},
    {Py_tp_methods, cached_methods},
    {Py_tp_members, cached_members},
    {Py_tp_getset, cached_getset},
    {Py_tp_doc, (void *)cached_doc},
    {0, NULL},
};

static PyType_Spec cached_spec = {
    .name = "cachekit._core.CachedFunction",
    .basicsize = sizeof(ck_cached),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = cached_slots,
};

int ck_cached_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->CachedFunctionType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &cached_spec, NULL);
    if (st->CachedFunctionType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->CachedFunctionType);
}
