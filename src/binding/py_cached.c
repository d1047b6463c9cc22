/*
 * py_cached.c - CachedFunction: the callable @cache returns (hot path).
 *
 * Called through vectorcall. A call builds the key bytes in a stack buffer
 * (py_keys.c), hashes them, probes the L1 store and, on a hit, returns the
 * stored object (or, for a result holding mutable containers, a fresh C
 * copy of it): no Python-level calls, no allocation for builtin argument
 * types and immutable results. A miss runs the function once, checks that
 * the codec can store the result (so L1 only ever holds values an L2
 * backend could hold too), stores it (py_cached_entry.c) and returns it.
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

#include "ck_crypto.h"
#include "ck_sign.h"
#include "py_codec.h"

/* -------------------------------------------------------------- hot path */

/* The L2 lookup of a plain call, for the lease wait (ck_cached_l2_lease). */
typedef struct {
    ck_cached *self;
    ck_state *st;
    ck_hash128 h;
    const ck_buf *key, *name;
    ck_l1_entry **detached;
} plain_lookup_ctx;

static int plain_lookup(void *arg, PyObject **result)
{
    plain_lookup_ctx *c = arg;

    return ck_cached_l2_lookup(c->self, c->st, c->h, c->key, c->name, result, c->detached);
}

/* One call of a plain @cache function. mode is NULL for a call through
   vectorcall; the async path passes one to look up without running the
   function, or to store a result it computed (ck_call_mode). */
static PyObject *cached_call(ck_cached *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames, ck_call_mode *mode)
{
    ck_state *st = self->st;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    ck_l1_entry *detached = NULL;
    PyObject *result = NULL, *identity;
    void *hit = NULL;
    ck_pack_stats stats = {0, 0, 0};
    uint32_t flags;
    uint64_t gen;
    ck_hash128 h;
    ck_buf key, value, name;
    ck_flight *flight = NULL;
    char token[CK_L2_TOKEN_LEN];
    int rc, fatal = 0, with_l2, waited = 0, leased = 0, relooked = 0;
    uint64_t miss_start = 0; /* set when a miss is observed (py_cached_observe.c) */

    ck_cached_touch(self);
    ck_buf_init(&key);
    ck_buf_init(&name);
    rc = ck_key_build(st, &self->spec, args, nargs, kwnames, &key, &identity);
    if (rc != 0) {
        if (rc < 0) {
            self->key_errors++;
            if (ck_cached_report_failure(self, "key_error") < 0) {
                goto done;
            }
        }
        self->misses++; /* the function runs: every call is a hit or a miss */
        result = ck_cached_run_uncached(self, mode, args, nargsf, kwnames);
        goto done;
    }
    h = ck_key_hash(key.data, key.len, self->seed);
    with_l2 = ck_cached_l2_configured(self, identity);
    if (with_l2 && ck_cached_l2_name(self, &key, &name) < 0) {
        goto done; /* MemoryError */
    }
    if (!CK_MODE_STORING(mode)) {
    lookup:
        if (ck_l1_get_gen(self->store->store, &self->owner, h, key.data, key.len, &hit, &flags,
                          &gen, &detached)) {
            self->hits++;
            result = (PyObject *)hit;
            if (flags != 0) {
                if (flags & CK_ENTRY_MUTABLE) {
                    /* A fresh copy: no caller can change what the next one gets. */
                    Py_SETREF(result, ck_py_copy(st, result));
                }
                if ((flags & (CK_L1_STALE | CK_L1_REFRESH)) && result != NULL &&
                    ck_cached_swr_hit(self, flags, gen, key.data, key.len, args, nargsf,
                                      kwnames) < 0) {
                    Py_CLEAR(result);
                }
            }
            goto done;
        }
        if (with_l2 && CK_MODE_DEFERS_L2(mode)) {
            /* The async path asks L2 off the event loop (ck_call_mode). */
            mode->missed = mode->needs_l2 = 1;
            (void)ck_cached_missed(mode, &key);
            goto done;
        }
        if (with_l2) {
            rc = ck_cached_l2_lookup(self, st, h, &key, &name, &result, &detached);
            if (rc > 0 && self->swr_fill_stale && !relooked && mode == NULL) {
                /* L2 held it past its logical expiry: L1 now holds it stale,
                   due; looking again serves it and claims the refresh. */
                relooked = 1;
                Py_CLEAR(result);
                goto lookup;
            }
            if (rc != 0) {
                if (rc > 0) {
                    self->hits++;
                }
                goto done;
            }
        }
        /* Threads missing this key at once: one computes, the others wait
           and look again (py_cached_flight.c). The async path has its own. */
        if (mode == NULL && !waited &&
            ck_flight_join(self, h, key.data, key.len, &flight) == CK_FLIGHT_WAITED) {
            waited = 1;
            goto lookup;
        }
        if (with_l2 && self->lease_ms > 0 && (mode == NULL || mode->with_l2)) {
            plain_lookup_ctx ctx = {self, st, h, &key, &name, &detached};
            rc = ck_cached_l2_lease(self, mode, &name, plain_lookup, &ctx, &result, token,
                                    &leased);
            if (rc != 0) {
                if (rc > 0) {
                    self->hits++;
                }
                goto done;
            }
        }
        self->misses++;
        if (mode == NULL && ck_cached_observing(self)) {
            miss_start = ck_cached_now_ns(); /* sync calls: async ones run it later */
        }
    }
    result = ck_cached_run(self, mode, args, nargsf, kwnames);
    if (result == NULL) {
        (void)ck_cached_missed(mode, &key);
        goto done; /* exceptions are not cached */
    }
    if (ck_cached_store_disabled(self)) {
        goto done;
    }
    ck_buf_init(&value);
    if (self->reference) {
        size_t charge;
        rc = ck_cached_reference_charge(self, result, &charge);
        if (rc == 0) {
            fatal = ck_cached_put(self, h, key.data, key.len, identity, result, charge, 0,
                                  self->ttl_ns, &detached) < 0;
        }
        fatal = fatal || rc < 0;
    } else if (self->ser_encode != NULL) {
        fatal = ck_cached_ser_store(self, st, h, &key, identity, result, with_l2 ? &name : NULL,
                                    &detached) < 0;
    } else if (ck_cached_encode_result(self, st, result, &value, &stats, &fatal) == 0) {
        fatal = ck_cached_put_value(self, st, h, &key, identity, result, &stats, self->ttl_ns,
                                    &detached) < 0;
        if (!fatal && with_l2 && !self->swr_dropped) {
            fatal = ck_cached_l2_store(self, &name, &value) < 0;
        }
    }
    if (fatal) {
        Py_CLEAR(result);
    }
    ck_buf_free(&value);
done:
    ck_flight_done(self, flight); /* after the store: waiters look again */
    ck_cached_l2_lease_release(self, &name, token, leased);
    ck_buf_free(&name);
    ck_buf_free(&key);
    ck_store_release(self->store, detached);
    ck_cached_observe(self, "miss", miss_start); /* after the store is consistent */
    return result;
}

static PyObject *cached_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    CK_BYPASS_CHECK(self, args, nargsf, kwnames);
    return cached_call(self, args, nargsf, kwnames, NULL);
}

PyObject *ck_cached_call_mode(ck_cached *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames, ck_call_mode *mode)
{
    return self->keyring != NULL ? ck_cached_secure_call(self, args, nargsf, kwnames, mode)
                                 : cached_call(self, args, nargsf, kwnames, mode);
}

/* ----------------------------------------------------------- constructor */

static int names_contain(PyObject *names, PyObject *name)
{
    Py_ssize_t i;

    for (i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (PyUnicode_Compare(PyTuple_GET_ITEM(names, i), name) == 0) {
            return 1;
        }
    }
    return 0;
}

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
                             "fail_closed",  "async_miss", "reference", "copy", "l2",
                             "refresh_threshold", "signer", "lease", "value_types",
                             "refresher", "stale_ttl", "swr_ratio", "swr_retry", "serializer", NULL};
    ck_state *st = ck_state_from_type(type);
    PyObject *func, *store, *key_prefix, *ttl, *pos_names, *kwonly_names, *defaults, *on_event,
        *info_type, *keyring = Py_None, *tenant_extractor = Py_None, *async_miss = Py_None,
        *l2 = Py_None, *signer = Py_None, *value_types = Py_None, *refresher = Py_None,
        *serializer = Py_None;
    const char *prefix_utf8;
    Py_ssize_t n_posonly, prefix_len, max_value_size = PY_SSIZE_T_MAX;
    int varargs, varkw, self_is_instance, fail_closed = 0, reference = 0, copy = 1;
    double refresh_threshold = 0.0, lease = 0.0, stale_ttl = 0.0, swr_ratio = 1.0,
           swr_retry = 10.0;
    ck_cached *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOUOOnOO!pppOO|nOOpOppOdOdOOdddO:CachedFunction", kwlist,
                                     &func, &store, &key_prefix, &ttl, &pos_names,
                                     &n_posonly, &kwonly_names, &PyDict_Type, &defaults,
                                     &varargs, &varkw, &self_is_instance, &on_event,
                                     &info_type, &max_value_size, &keyring,
                                     &tenant_extractor, &fail_closed, &async_miss, &reference,
                                     &copy, &l2, &refresh_threshold, &signer, &lease,
                                     &value_types, &refresher, &stale_ttl, &swr_ratio,
                                     &swr_retry, &serializer)) {
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
    if (l2 != Py_None && !PyObject_TypeCheck(l2, st->L2BackendType)) {
        PyErr_SetString(PyExc_TypeError, "l2 must be a cachekit._core.L2Backend or None");
        return NULL;
    }
    if (signer != Py_None && (!PyObject_TypeCheck(signer, st->KeyringType) || keyring != Py_None)) {
        PyErr_SetString(PyExc_TypeError,
                        "signer must be a cachekit._core.Keyring, for plain (not encrypted) entries");
        return NULL;
    }
    if (!(lease >= 0.0 && lease <= 3600.0)) {
        PyErr_SetString(PyExc_ValueError, "lease must be between 0 and 3600 seconds");
        return NULL;
    }
    if (!(refresh_threshold >= 0.0 && refresh_threshold <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "refresh_threshold must be between 0 and 1");
        return NULL;
    }
    if (value_types != Py_None && !PyDict_CheckExact(value_types)) {
        PyErr_SetString(PyExc_TypeError, "value_types must be a dict or None");
        return NULL;
    }
    if (reference && keyring != Py_None) {
        PyErr_SetString(PyExc_ValueError, "reference caching cannot be encrypted");
        return NULL;
    }
    if (async_miss != Py_None && !PyCallable_Check(async_miss)) {
        PyErr_SetString(PyExc_TypeError, "async_miss must be callable or None");
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
    self->st = st;
    if (ck_parse_ttl(ttl, &self->ttl_ns) < 0 ||
        ck_cached_swr_init(self, refresher, stale_ttl, swr_ratio, swr_retry) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    /* The call strategy is chosen once, here. */
    if (async_miss != Py_None) {
        self->vectorcall = (vectorcallfunc)ck_cached_async_vectorcall;
        self->async_miss = Py_NewRef(async_miss);
    } else {
        self->vectorcall = keyring == Py_None ? (vectorcallfunc)cached_vectorcall
                                              : (vectorcallfunc)ck_cached_secure_vectorcall;
    }
    self->keyring = keyring == Py_None ? NULL : Py_NewRef(keyring);
    self->tenant_extractor = tenant_extractor == Py_None ? NULL : Py_NewRef(tenant_extractor);
    self->fail_closed = (char)(fail_closed != 0);
    self->reference = (char)(reference != 0);
    self->l2 = l2 == Py_None ? NULL : (ck_l2_object *)Py_NewRef(l2);
    self->refresh_threshold = refresh_threshold;
    self->lease_ms = (int64_t)(lease * 1000.0 + 0.5);
    if (signer != Py_None && ck_cached_set_signer(self, (ck_keyring_object *)signer) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->value_types = value_types == Py_None ? NULL : Py_NewRef(value_types);
    if (ck_cached_ser_parse(self, serializer) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->copy = (char)(copy != 0 && !reference);
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
    self->bypass_kw = !names_contain(pos_names, st->str_bypass_cache) &&
                      !names_contain(kwonly_names, st->str_bypass_cache);
    return (PyObject *)self;
}

/* ------------------------------------------------------------- lifecycle */

/* Drop our entries from the (possibly shared) store. */
void ck_cached_drop_entries(ck_cached *self)
{
    ck_l1_entry *detached = NULL;

    if (self->store != NULL) {
        ck_l1_clear(self->store->store, &self->owner, &detached);
        ck_store_release(self->store, detached);
    }
    ck_cached_touch(self);
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
    Py_VISIT(self->instances);
    Py_VISIT(self->async_miss);
    Py_VISIT(self->l2);
    Py_VISIT(self->value_types);
    Py_VISIT(self->refresher);
    Py_VISIT(self->ser_encode);
    Py_VISIT(self->ser_decode);
    return ck_cached_obs_traverse(self, visit, arg);
}

static int cached_clear(ck_cached *self)
{
    /* Our cached values can reference us (a value holding the function):
       the store's traversal reports those edges, and clearing our entries
       breaks the cycle. */
    ck_cached_drop_entries(self);
    ck_cached_forget_instances(self);
    Py_CLEAR(self->async_miss);
    Py_CLEAR(self->l2);
    Py_CLEAR(self->value_types);
    Py_CLEAR(self->refresher);
    Py_CLEAR(self->ser_encode);
    Py_CLEAR(self->ser_decode);
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
    ck_cached_obs_clear(self);
    return 0;
}

static void cached_dealloc(ck_cached *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    if (self->sign_key != NULL) {
        ck_secure_free(self->sign_key, CK_SIGN_KEY_LEN); /* wipes */
        self->sign_key = NULL;
    }
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    (void)cached_clear(self);
    ck_flight_clear_spare(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *cached_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == Py_None || obj == NULL) {
        return Py_NewRef(self);
    }
    return ck_bound_new(ck_state_from_type(Py_TYPE(self)), (ck_cached *)self, obj);
}

static PyObject *cached_repr(ck_cached *self)
{
    return PyUnicode_FromFormat("<cachekit cached function %R>", self->func);
}

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
    {Py_tp_methods, ck_cached_methods},
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
