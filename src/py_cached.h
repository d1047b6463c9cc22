/*
 * py_cached.h - the CachedFunction object, shared by the plain hot path
 * (py_cached.c) and the encrypted one (py_cached_secure.c).
 */
#ifndef CK_PY_CACHED_H
#define CK_PY_CACHED_H

#include "module_state.h"

#include "ck_buf.h"
#include "py_keyring.h"
#include "py_keys.h"
#include "py_store.h"

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *func;          /* the wrapped callable */
    ck_store_object *store;  /* the L1Store holding our entries */
    ck_l1_owner owner;       /* our share of the store */
    ck_key_spec spec;        /* owns pos_names, kwonly_names, defaults */
    uint64_t seed;           /* XXH3 seed from the function's identity */
    uint64_t ttl_ns;         /* 0: entries never expire */
    size_t max_value_size;   /* larger encoded results are not stored */
    PyObject *key_prefix;    /* str "namespace:module.qualname:" */
    PyObject *on_event;      /* callable(kind: str, exc) or None */
    PyObject *info_type;     /* CacheInfo named tuple class */
    PyObject *keyring;       /* ck_keyring_object under @cache.secure, else NULL */
    PyObject *tenant_extractor; /* callable(*args, **kwargs) -> str, or NULL */
    char fail_closed;        /* @cache.secure: a failed seal raises instead of being logged */
    PyObject *dict;          /* __dict__ (functools.update_wrapper writes here) */
    PyObject *weakreflist;
    /* Counters. Updated with the GIL held. */
    uint64_t hits;
    uint64_t misses;
    uint64_t key_errors;
    uint64_t store_errors;
    uint64_t decrypt_errors;
} ck_cached;

/* Report the current exception to on_event(kind, exc) and clear it.
   0: the call may go on uncached; -1: the error must propagate. */
int ck_cached_report_failure(ck_cached *self, const char *kind);

PyObject *ck_cached_call_uncached(ck_cached *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames);

/* Encode result into buf for storing. 0, or -1 with the failure reported
   as a store_error (*fatal set when it must propagate instead). */
int ck_cached_encode_result(ck_cached *self, ck_state *st, PyObject *result, ck_buf *buf,
                            int *fatal);

/* The @cache.secure call path (py_cached_secure.c), chosen at creation. */
PyObject *ck_cached_secure_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames);

/* Under @cache.secure with a tenant extractor: run it for this call, append
   the tenant to the key bytes and return it (new reference, a str) in
   *tenant. Without an extractor *tenant is NULL. 0, or -1 with an error. */
int ck_cached_tenant(ck_cached *self, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                     ck_buf *key, PyObject **tenant);

/* Under @cache.secure: the L1 key for key bytes (args and tenant), the
   keyring's MAC of them (ck_keyring_l1_key). 0, or -1 with an exception. */
int ck_cached_secure_l1_key(ck_cached *self, ck_state *st, const unsigned char *key, size_t n,
                            unsigned char out[CK_KEYRING_L1_KEY_LEN]);

#endif /* CK_PY_CACHED_H */
