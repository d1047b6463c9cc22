/*
 * py_keyring_internal.h - PRIVATE to the files that make up the Keyring
 * type (py_keyring.c, py_keyring_args.c, py_keyring_provider.c). Nothing
 * else may include it; what the rest of the binding uses is py_keyring.h.
 *
 * The binding is split by job:
 *   py_keyring.c           the Keyring type: construction, lifetime, repr,
 *                          methods, the GIL hooks and the error mapping.
 *   py_keyring_args.c      argument parsing: the constructor's integer
 *                          limits and the shared seal/open argument form.
 *   py_keyring_provider.c  the bridge from a Python KeyProvider to the
 *                          ck_key_provider callbacks.
 */
#ifndef CK_PY_KEYRING_INTERNAL_H
#define CK_PY_KEYRING_INTERNAL_H

#include "py_keyring.h"

/* Arguments shared by seal, seal_value, open and open_value:
   f(x, /, tenant='default', cache_key=b'', <extra>=...), parsed with the
   vectorcall parser (these sit on benchmarked paths). */
typedef struct {
    PyObject *slots[4]; /* x, tenant, cache_key, extra (borrowed; NULL: not given) */
    Py_buffer key;      /* pinned cache_key, or zeroed */
    ck_span tenant;
    ck_span cache_key;
} keyring_args;

/* Parse f(x, /, tenant='default', cache_key=b'', <extra>=...) into a.
   extra NULL: no third optional argument; otherwise, when given, its
   integer value goes to *extra_value. Whatever this returns, the caller
   releases a->key with PyBuffer_Release (it is zeroed when nothing was
   pinned). 0, or -1 with an exception set. */
int ck_py_keyring_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, const char *extra, Py_ssize_t *extra_value,
                             keyring_args *a);

/* A positive integer limit in [1, max] (obj NULL: keep *out). 0 or -1. */
int ck_py_keyring_parse_limit(PyObject *obj, const char *name, unsigned long long max,
                              unsigned long long *out);

/* Build self->kr around a Python provider: provider_id (2..255), key_id
   (str), generate_data_key(context), decrypt_data_key(wrapped, context).
   Returns 0 (self->kr may still be NULL with err set), or -1 with a Python
   exception. */
int ck_py_keyring_make_external(ck_keyring_object *self, PyObject *provider,
                                const ck_keyring_limits *lim, ck_error *err);

#endif /* CK_PY_KEYRING_INTERNAL_H */
