/*
 * py_cached_secure.c - the call path of @cache.secure.
 *
 * Same shape as the plain path (py_cached.c) with three differences:
 *   - the L1 store holds sealed entries (bytes), never the Python object:
 *     every hit authenticates, decrypts and decodes a fresh copy;
 *   - with a tenant extractor, the tenant is part of the key bytes (so each
 *     tenant has its own entries) and of the AAD (so an entry cannot be
 *     opened as another tenant's);
 *   - the AAD binds the full cache key: the key prefix (namespace, module,
 *     qualname) followed by the key bytes, not just their hash;
 *   - the L1 key is not the key bytes (the arguments and tenant in clear)
 *     but the keyring's HMAC-SHA256 of them, and the bucket hash is taken
 *     over that MAC, so the store holds neither the arguments nor a hash
 *     of them anyone could test guesses against. Two calls whose MACs
 *     collided would only find an entry whose AAD fails: a miss.
 * An entry that fails to open (tampered, truncated, wrong key, unknown
 * master key) is a counted, logged miss: the function runs and its result
 * replaces the entry. A result that fails to seal (a key provider down) is
 * counted and logged and returned uncached, or with fail_closed the
 * EncryptionError propagates to the caller. Buffers holding plaintext or
 * the key bytes are secret ck_bufs: wiped when they grow and when freed.
 */
#include "py_cached.h"

#include <msgpack.h>

#include "py_codec.h"

static const char DEFAULT_TENANT[] = "default";

int ck_cached_secure_l1_key(ck_cached *self, ck_state *st, const unsigned char *key, size_t n,
                            unsigned char out[CK_KEYRING_L1_KEY_LEN])
{
    ck_error err;

    if (ck_keyring_l1_key(((ck_keyring_object *)self->keyring)->kr, key, n, out, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        return -1;
    }
    return 0;
}

int ck_cached_tenant(ck_cached *self, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                     ck_buf *key, PyObject **tenant)
{
    PyObject *t = NULL;
    msgpack_packer pk;
    const char *utf8;
    Py_ssize_t n;

    *tenant = NULL;
    if (self->tenant_extractor == NULL) {
        return 0;
    }
    t = PyObject_Vectorcall(self->tenant_extractor, args, nargsf, kwnames);
    if (t == NULL) {
        return -1;
    }
    if (!PyUnicode_Check(t) || PyUnicode_GET_LENGTH(t) == 0) {
        PyErr_Format(PyExc_TypeError, "tenant_extractor must return a non-empty str, not %.100s",
                     Py_TYPE(t)->tp_name);
        goto error;
    }
    utf8 = PyUnicode_AsUTF8AndSize(t, &n);
    if (utf8 == NULL) {
        goto error;
    }
    /* The key bytes are a complete msgpack array; a str after it is
       unambiguous. */
    msgpack_packer_init(&pk, key, ck_buf_msgpack_write);
    if (msgpack_pack_str_with_body(&pk, utf8, (size_t)n) != 0) {
        PyErr_NoMemory();
        goto error;
    }
    *tenant = t;
    return 0;
error:
    Py_DECREF(t);
    return -1;
}

/* Encode and seal result; a new bytes object, or NULL with the failure
   reported (and *fatal set, the exception left set, when it must
   propagate). */
static PyObject *seal_result(ck_cached *self, ck_state *st, PyObject *result, ck_span tenant,
                             ck_span aad_key, int *fatal)
{
    ck_keyring_object *ko = (ck_keyring_object *)self->keyring;
    PyObject *entry = NULL;
    ck_pack_stats stats = {0, 0, 0};
    ck_buf pt, out;
    ck_error err;

    ck_buf_init_secret(&pt); /* the encoded result, in clear */
    ck_buf_init(&out);       /* ciphertext only */
    if (ck_cached_encode_result(self, st, result, &pt, &stats, fatal) < 0) {
        goto done;
    }
    if (ck_keyring_seal(ko->kr, tenant, aad_key, CK_SER_MSGPACK, pt.data, pt.len, &ck_gil_hooks,
                        &out, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        self->store_errors++;
        /* Fail closed: the caller learns the value could not be protected. */
        *fatal = self->fail_closed || ck_cached_report_failure(self, "store_error") < 0;
        goto done;
    }
    entry = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    if (entry == NULL) {
        self->store_errors++;
        *fatal = ck_cached_report_failure(self, "store_error") < 0;
    }
done:
    ck_buf_free(&pt); /* wipes */
    ck_buf_free(&out);
    return entry;
}

PyObject *ck_cached_secure_call(ck_cached *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames, ck_call_mode *mode)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    ck_l1_entry *detached = NULL;
    PyObject *result = NULL, *tenant_obj = NULL, *entry = NULL, *identity;
    void *hit = NULL;
    const char *prefix;
    Py_ssize_t prefix_len;
    ck_span tenant, aad_key;
    ck_buf key, full_key;
    unsigned char l1_key[CK_KEYRING_L1_KEY_LEN];
    ck_hash128 h;
    int rc, fatal = 0;

    ck_cached_touch(self);
    /* The key bytes encode the call's arguments (and the tenant) in clear. */
    ck_buf_init_secret(&key);
    ck_buf_init_secret(&full_key);
    rc = ck_key_build(st, &self->spec, args, PyVectorcall_NARGS(nargsf), kwnames, &key,
                      &identity);
    if (rc == 0 && ck_cached_tenant(self, args, nargsf, kwnames, &key, &tenant_obj) < 0) {
        rc = -1;
    }
    if (rc != 0) {
        if (rc < 0) {
            self->key_errors++;
            if (ck_cached_report_failure(self, "key_error") < 0) {
                goto done;
            }
        }
        self->misses++;
        result = ck_cached_run_uncached(self, mode, args, nargsf, kwnames);
        goto done;
    }
    if (tenant_obj != NULL) {
        Py_ssize_t n;
        tenant.p = (const unsigned char *)PyUnicode_AsUTF8AndSize(tenant_obj, &n);
        tenant.n = (size_t)n; /* cannot fail: ck_cached_tenant already encoded it */
    } else {
        tenant.p = (const unsigned char *)DEFAULT_TENANT;
        tenant.n = sizeof(DEFAULT_TENANT) - 1;
    }
    /* AAD key: the full cache key, prefix then key bytes. */
    prefix = PyUnicode_AsUTF8AndSize(self->key_prefix, &prefix_len);
    if (prefix == NULL || ck_buf_append(&full_key, prefix, (size_t)prefix_len) < 0 ||
        ck_buf_append(&full_key, key.data, key.len) < 0) {
        if (prefix != NULL) {
            PyErr_NoMemory();
        }
        goto done;
    }
    aad_key.p = full_key.data;
    aad_key.n = full_key.len;

    if (ck_cached_secure_l1_key(self, st, key.data, key.len, l1_key) < 0) {
        /* As for a key that cannot be built: the call still runs, uncached. */
        self->key_errors++;
        if (ck_cached_report_failure(self, "key_error") < 0) {
            goto done;
        }
        self->misses++;
        result = ck_cached_run_uncached(self, mode, args, nargsf, kwnames);
        goto done;
    }
    h = ck_key_hash(l1_key, sizeof(l1_key), self->seed);
    if (!CK_MODE_STORING(mode) &&
        ck_l1_get(self->store->store, &self->owner, h, l1_key, sizeof(l1_key), &hit, &detached)) {
        entry = (PyObject *)hit;
        result = PyBytes_Check(entry)
                     ? ck_keyring_open_to_value(
                           st, ((ck_keyring_object *)self->keyring)->kr,
                           (const unsigned char *)PyBytes_AS_STRING(entry),
                           (size_t)PyBytes_GET_SIZE(entry), self->max_value_size, tenant, aad_key,
                           &ck_gil_hooks)
                     : NULL;
        Py_CLEAR(entry);
        if (result != NULL) {
            self->hits++;
            goto done;
        }
        if (!PyErr_Occurred()) {
            PyErr_SetString(st->IntegrityError, "L1 holds a non-bytes value for a secure key");
        }
        self->decrypt_errors++;
        if (ck_cached_report_failure(self, "decrypt_error") < 0) {
            goto done;
        }
        /* The bad entry is replaced below once the function has run. */
    }
    if (!CK_MODE_STORING(mode)) {
        self->misses++;
    }
    result = ck_cached_run(self, mode, args, nargsf, kwnames);
    if (result == NULL) {
        (void)ck_cached_missed(mode, &key);
        goto done;
    }
    if (ck_cached_store_disabled(self)) {
        goto done;
    }
    entry = seal_result(self, st, result, tenant, aad_key, &fatal);
    if (entry != NULL) {
        fatal = ck_cached_put(self, h, l1_key, sizeof(l1_key), identity, entry,
                              (size_t)PyBytes_GET_SIZE(entry), 0, self->ttl_ns, &detached) < 0;
        Py_DECREF(entry);
    }
    if (fatal) {
        Py_CLEAR(result);
    }
done:
    Py_XDECREF(tenant_obj);
    ck_buf_free(&key); /* wipes */
    ck_buf_free(&full_key);
    ck_store_release(self->store, detached);
    return result;
}

PyObject *ck_cached_secure_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames)
{
    return ck_cached_secure_call(self, args, nargsf, kwnames, NULL);
}
