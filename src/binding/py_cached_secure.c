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
    uint64_t expires_at_ms;
    ck_buf pt, out;
    ck_error err;

    ck_buf_init_secret(&pt); /* the encoded result, in clear */
    ck_buf_init(&out);       /* ciphertext only */
    if (self->ser_encode != NULL ? ck_cached_ser_encode(self, st, result, &pt, fatal) < 0
                                 : ck_cached_encode_result(self, st, result, &pt, &stats, fatal) < 0) {
        goto done;
    }
    /* The entry carries its expiry, bound by the AAD: a copy replayed into
       the store later, or one whose TTL was stripped there, is refused. */
    expires_at_ms = self->ttl_ns == 0 ? 0
                                      : ck_keyring_now_ms() + (self->ttl_ns + 999999u) / 1000000u;
    if (ck_keyring_seal_until(ko->kr, tenant, aad_key, ck_cached_ser_id(self), pt.data, pt.len,
                              expires_at_ms, &ck_gil_hooks, &out, &err) < 0) {
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

int ck_cached_secure_l2_name(ck_cached *self, ck_span tenant, const ck_buf *key, ck_buf *name)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[CK_KEYRING_L2_NAME_LEN];
    char digits[32];
    const char *prefix;
    Py_ssize_t prefix_len;
    ck_error err;
    int i;

    prefix = PyUnicode_AsUTF8AndSize(self->key_prefix, &prefix_len);
    if (prefix == NULL) {
        return -1;
    }
    if (ck_keyring_l2_name(((ck_keyring_object *)self->keyring)->kr, tenant, key->data, key->len,
                           mac, &err) < 0) {
        ck_raise_crypto_error(ck_state_from_type(Py_TYPE(self)), &err, 0);
        return -1;
    }
    /* 128 bits of the MAC name the entry: the AAD binds the full key, so
       even a colliding name could only give a failed open, a miss. */
    for (i = 0; i < 16; i++) {
        digits[2 * i] = hex[mac[i] >> 4];
        digits[2 * i + 1] = hex[mac[i] & 0xf];
    }
    ck_wipe(mac, sizeof(mac));
    if (ck_buf_append(name, prefix, (size_t)prefix_len) < 0 ||
        ck_buf_append(name, digits, sizeof(digits)) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* A lookup-only miss of the async path: its flight is keyed by the L1 key
   (a MAC), never by the key bytes, which hold the arguments in clear. */
static void secure_missed(ck_call_mode *mode, const unsigned char *l1_key, size_t n)
{
    ck_buf k;

    ck_buf_init(&k);
    if (ck_buf_append(&k, l1_key, n) < 0) {
        PyErr_NoMemory();
        mode->key = NULL;
        mode->missed = 1;
    } else {
        (void)ck_cached_missed(mode, &k);
    }
    ck_buf_free(&k);
}

/* An entry did not open (the exception set). Expired: a plain miss, only
   counted (an L1 entry can outlive its own expiry by the moments between
   sealing and storing it; a replayed one is why the expiry exists). Else a
   decrypt_error: counted and reported. 0 to go on, -1 to propagate. */
static int open_failed(ck_cached *self, ck_state *st)
{
    if (PyErr_ExceptionMatches(st->StaleEntryError)) {
        PyErr_Clear();
        self->stale_entries++;
        return 0;
    }
    self->decrypt_errors++;
    return ck_cached_report_failure(self, "decrypt_error");
}

/* L1's TTL for an entry that opened: as for plain entries, but never past
   the expiry sealed in it (authenticated), so under freshness its logical
   expiry (that expiry less stale_ttl) cannot be moved later by whoever
   controls the store's TTLs; only earlier, which costs a refresh. */
static uint64_t sealed_fill_ttl(ck_cached *self, PyObject *entry, int64_t pttl_ms)
{
    uint64_t ttl = ck_cached_l2_fill_ttl(self, pttl_ms), now_ms, left;
    ck_sealed s;
    ck_error err;

    if (ck_sealed_parse((const unsigned char *)PyBytes_AS_STRING(entry),
                        (size_t)PyBytes_GET_SIZE(entry), (size_t)PyBytes_GET_SIZE(entry), &s,
                        &err) < 0 ||
        s.expires_at_ms == 0) {
        return ttl;
    }
    now_ms = ck_keyring_now_ms();
    left = s.expires_at_ms > now_ms ? (s.expires_at_ms - now_ms) * 1000000u : 1;
    return ttl != 0 && ttl < left ? ttl : left;
}

/* After an L1 miss: ask L2. 1: *result (new reference) opened from it and
   L1 filled; 0: not there or unusable (reported); -1: propagate. */
static int secure_l2_lookup(ck_cached *self, ck_state *st, ck_hash128 h, const unsigned char *l1_key,
                            const ck_buf *name, ck_span tenant, ck_span aad_key,
                            PyObject **result, ck_l1_entry **detached)
{
    PyObject *entry = NULL;
    int64_t pttl_ms;
    int rc;

    *result = NULL;
    rc = ck_cached_l2_get_timed(self, name, &entry, &pttl_ms);
    if (rc <= 0) {
        return rc < 0 ? (ck_cached_l2_report(self) < 0 ? -1 : 0) : 0;
    }
    *result = ck_cached_secure_open(self, st, (const unsigned char *)PyBytes_AS_STRING(entry),
                                    (size_t)PyBytes_GET_SIZE(entry), tenant, aad_key);
    if (*result == NULL) {
        Py_DECREF(entry);
        return open_failed(self, st);
    }
    rc = 1;
    if (!ck_cached_store_disabled(self) &&
        ck_cached_put(self, h, l1_key, CK_KEYRING_L1_KEY_LEN, NULL, entry,
                      (size_t)PyBytes_GET_SIZE(entry), 0, sealed_fill_ttl(self, entry, pttl_ms),
                      detached) < 0) {
        Py_CLEAR(*result);
        rc = -1;
    }
    Py_DECREF(entry);
    if (rc == 1) {
        self->l2_hits++;
        if (ck_cached_l2_refresh(self, name, pttl_ms) < 0) {
            Py_CLEAR(*result);
            rc = -1;
        }
    }
    return rc;
}

/* The L2 lookup of a secure call, for the lease wait (ck_cached_l2_lease). */
typedef struct {
    ck_cached *self;
    ck_state *st;
    ck_hash128 h;
    const unsigned char *l1_key;
    const ck_buf *name;
    ck_span tenant, aad_key;
    ck_l1_entry **detached;
} secure_lookup_ctx;

static int secure_lookup(void *arg, PyObject **result)
{
    secure_lookup_ctx *c = arg;

    return secure_l2_lookup(c->self, c->st, c->h, c->l1_key, c->name, c->tenant, c->aad_key,
                            result, c->detached);
}

/* The call's L2 name into name, once (name->len != 0 afterwards), when
   *with_l2. No name, no L2 for this call (*with_l2 cleared, reported); L1
   still serves it. 0, or -1 to propagate. */
static int secure_name(ck_cached *self, ck_span tenant, const ck_buf *key, ck_buf *name,
                       int *with_l2)
{
    if (!*with_l2 || name->len != 0) {
        return 0;
    }
    if (ck_cached_secure_l2_name(self, tenant, key, name) < 0) {
        *with_l2 = 0;
        return ck_cached_l2_report(self) < 0 ? -1 : 0;
    }
    return 0;
}

PyObject *ck_cached_secure_call(ck_cached *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames, ck_call_mode *mode)
{
    ck_state *st = self->st;
    ck_l1_entry *detached = NULL;
    PyObject *result = NULL, *tenant_obj = NULL, *entry = NULL, *identity;
    void *hit = NULL;
    const char *prefix;
    Py_ssize_t prefix_len;
    ck_span tenant, aad_key;
    ck_buf key, full_key, name;
    unsigned char l1_key[CK_KEYRING_L1_KEY_LEN];
    ck_hash128 h;
    ck_flight *flight = NULL;
    char token[CK_L2_TOKEN_LEN];
    uint32_t flags = 0;
    uint64_t gen = 0;
    int rc, fatal = 0, with_l2, waited = 0, leased = 0, relooked = 0;
    uint64_t miss_start = 0; /* set when a miss is observed (py_cached_observe.c) */

    ck_cached_touch(self);
    /* The key bytes encode the call's arguments (and the tenant) in clear. */
    ck_buf_init_secret(&key);
    ck_buf_init_secret(&full_key);
    ck_buf_init(&name);
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
    h = ck_cached_hash(self, l1_key, sizeof(l1_key));
    with_l2 = ck_cached_l2_configured(self, identity);
    if (!CK_MODE_STORING(mode)) {
    lookup:
        if (ck_l1_get_gen(self->store->store, &self->owner, h, l1_key, sizeof(l1_key), &hit,
                          &flags, &gen, &detached)) {
            entry = (PyObject *)hit;
            result = PyBytes_Check(entry)
                         ? ck_cached_secure_open(self, st,
                                                 (const unsigned char *)PyBytes_AS_STRING(entry),
                                                 (size_t)PyBytes_GET_SIZE(entry), tenant, aad_key)
                         : NULL;
            Py_CLEAR(entry);
            if (result != NULL) {
                self->hits++;
                if ((flags & (CK_L1_STALE | CK_L1_REFRESH)) &&
                    ck_cached_swr_hit(self, flags, gen, l1_key, sizeof(l1_key), args, nargsf,
                                      kwnames) < 0) {
                    Py_CLEAR(result);
                }
                goto done;
            }
            if (!PyErr_Occurred()) {
                PyErr_SetString(st->IntegrityError, "L1 holds a non-bytes value for a secure key");
            }
            if (open_failed(self, st) < 0) {
                goto done;
            }
            /* The bad entry is replaced below once the function has run. */
        }
        /* The L2 name (an HMAC-SHA256) is computed only once L1 missed. */
        if (secure_name(self, tenant, &key, &name, &with_l2) < 0) {
            goto done;
        }
        if (with_l2 && CK_MODE_DEFERS_L2(mode)) {
            /* The async path asks L2 off the event loop (ck_call_mode). */
            mode->missed = mode->needs_l2 = 1;
            secure_missed(mode, l1_key, sizeof(l1_key));
            goto done;
        }
        if (with_l2) {
            rc = secure_l2_lookup(self, st, h, l1_key, &name, tenant, aad_key, &result,
                                  &detached);
            if (rc > 0 && self->swr_fill_stale && !relooked && mode == NULL) {
                relooked = 1; /* served stale from L1, claiming the refresh */
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
        /* One computation per missing key across threads (keyed by the
           L1 MAC, not the argument bytes). */
        if (mode == NULL && !waited &&
            ck_flight_join(self, h, l1_key, sizeof(l1_key), &flight) == CK_FLIGHT_WAITED) {
            waited = 1;
            goto lookup;
        }
        if (with_l2 && self->lease_ms > 0 && (mode == NULL || mode->with_l2)) {
            secure_lookup_ctx ctx = {self, st, h, l1_key, &name, tenant, aad_key, &detached};
            rc = ck_cached_l2_lease(self, mode, &name, secure_lookup, &ctx, &result, token,
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
    if (secure_name(self, tenant, &key, &name, &with_l2) < 0) {
        goto done;
    }
    result = ck_cached_run(self, mode, args, nargsf, kwnames);
    if (result == NULL) {
        if (mode != NULL && mode->missed) {
            secure_missed(mode, l1_key, sizeof(l1_key));
        }
        goto done;
    }
    if (ck_cached_store_disabled(self)) {
        goto done;
    }
    entry = seal_result(self, st, result, tenant, aad_key, &fatal);
    if (entry != NULL) {
        fatal = ck_cached_put(self, h, l1_key, sizeof(l1_key), identity, entry,
                              (size_t)PyBytes_GET_SIZE(entry), 0, self->ttl_ns, &detached) < 0;
        if (!fatal && with_l2 && !self->swr_dropped) {
            fatal = ck_cached_l2_put(self, &name, (const unsigned char *)PyBytes_AS_STRING(entry),
                                     (size_t)PyBytes_GET_SIZE(entry)) < 0;
        }
        Py_DECREF(entry);
    }
    if (fatal) {
        Py_CLEAR(result);
    }
done:
    ck_flight_done(self, flight); /* after the store: waiters look again */
    ck_cached_l2_lease_release(self, &name, token, leased);
    Py_XDECREF(tenant_obj);
    ck_buf_free(&name);
    ck_buf_free(&key); /* wipes */
    ck_buf_free(&full_key);
    ck_store_release(self->store, detached);
    ck_cached_observe(self, "miss", miss_start); /* after the store is consistent */
    return result;
}

PyObject *ck_cached_secure_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames)
{
    CK_BYPASS_CHECK(self, args, nargsf, kwnames);
    return ck_cached_secure_call(self, args, nargsf, kwnames, NULL);
}
