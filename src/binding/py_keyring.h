/*
 * py_keyring.h - the Keyring Python type (binding of ck_keyring), shared
 * with the cached-call object, which seals and opens entries through it.
 */
#ifndef CK_PY_KEYRING_H
#define CK_PY_KEYRING_H

#include "ck_keyring.h"
#include "module_state.h"

typedef struct {
    PyObject_HEAD
    ck_keyring *kr;
    size_t n_previous;
    PyObject *provider; /* external key provider, or NULL */
} ck_keyring_object;

/* Values at least this large are sealed and opened with the GIL released. */
#define CK_KEYRING_NOGIL_MIN ((size_t)64 * 1024)

/* Hooks that release the GIL around large AES-GCM passes. */
extern const ck_unlock_hooks ck_gil_hooks;
/* The same for waits only: for inputs that could change while unlocked. */
extern const ck_unlock_hooks ck_gil_hooks_wait_only;

/* Raise the Python exception for a keyring/seal failure. When opening an
   entry, every failure but ENOMEM and a failed authentication means the
   stored bytes are malformed: IntegrityError. */
void ck_raise_crypto_error(ck_state *st, const ck_error *err, int opening);

/* Open an entry and decode its msgpack plaintext (wiped after). New
   reference, or NULL with DecryptionError / IntegrityError /
   EncryptionError / SerializationError set. types: the application types
   trusted for this decode (ck_py_unpack_types), or NULL. */
PyObject *ck_keyring_open_to_value(ck_state *st, ck_keyring *kr, const unsigned char *entry,
                                   size_t n, size_t max_size, ck_span tenant, ck_span cache_key,
                                   const ck_unlock_hooks *hooks, PyObject *types);

#endif /* CK_PY_KEYRING_H */
