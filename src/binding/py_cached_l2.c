/*
 * py_cached_l2.c - the second tier of a plain @cache function.
 *
 * After an L1 miss the call asks L2 (py_l2.c) for the entry under the
 * call's L2 name; a hit is checked and decoded like any stored bytes
 * (frame, checksum, codec), fills L1 for the entry's remaining TTL and is
 * returned. After the function runs, its encoded result is framed and
 * written to L2 as well as L1. Names: the function's key prefix
 * ("<namespace>:<module>.<qualname>:") and 32 hex digits of SHA-256 of the
 * prefix and the key bytes: a cryptographic hash, so two calls cannot be made to share a
 * name by choosing their arguments (XXH3, which L1 uses behind a full key
 * comparison, gives no such guarantee).
 *
 * Calls keyed by an instance's identity never reach L2 (an address means
 * nothing in another process), nor does @cache.local.
 *
 * Every L2 failure is counted (l2_errors), reported once per function
 * through on_event("backend_error") and survived: the call goes on as an
 * L2 miss. An entry that is corrupt, truncated or of another serializer is
 * an integrity error: counted, reported, and replaced by the new result.
 */
#include "py_cached.h"

#include "ck_crypto.h"
#include "ck_format.h"
#include "ck_sign.h"

#include <time.h>
#include "py_codec.h"

/* Framing compresses and hashes the whole value: release the GIL above this. */
#define L2_NOGIL_MIN (64 * 1024)

int ck_cached_set_signer(ck_cached *self, ck_keyring_object *keyring)
{
    ck_error err;

    self->sign_key = ck_secure_zalloc(CK_SIGN_KEY_LEN);
    if (self->sign_key == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (ck_keyring_sign_key(keyring->kr, self->sign_key, &err) < 0) {
        ck_secure_free(self->sign_key, CK_SIGN_KEY_LEN);
        self->sign_key = NULL;
        PyErr_Format(PyExc_ValueError, "%s", err.msg);
        return -1;
    }
    return 0;
}

int ck_cached_l2_configured(ck_cached *self, PyObject *identity)
{
    return self->l2 != NULL && identity == NULL && !self->reference;
}

int ck_cached_l2_name(ck_cached *self, const ck_buf *key, ck_buf *name)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[32];
    char digits[32];
    const char *prefix;
    Py_ssize_t prefix_len;
    ck_error err;
    int i;

    ck_buf full;
    int rc;

    prefix = PyUnicode_AsUTF8AndSize(self->key_prefix, &prefix_len);
    if (prefix == NULL) {
        return -1;
    }
    /* The digest covers the prefix too: it alone identifies the call. */
    ck_buf_init(&full);
    if (ck_buf_append(&full, prefix, (size_t)prefix_len) < 0 ||
        ck_buf_append(&full, key->data, key->len) < 0) {
        ck_buf_free(&full);
        PyErr_NoMemory();
        return -1;
    }
    rc = ck_sha256(full.data, full.len, digest, &err);
    ck_buf_free(&full);
    if (rc < 0) {
        PyErr_Format(PyExc_RuntimeError, "%s", err.msg);
        return -1;
    }
    for (i = 0; i < 16; i++) {
        digits[2 * i] = hex[digest[i] >> 4];
        digits[2 * i + 1] = hex[digest[i] & 0xf];
    }
    if (ck_buf_append(name, prefix, (size_t)prefix_len) < 0 ||
        ck_buf_append(name, digits, sizeof(digits)) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int ck_cached_l2_report(ck_cached *self)
{
    self->l2_errors++;
    return ck_cached_report_failure(self, "backend_error");
}

/* Decode stored bytes into the value they hold, or NULL with
   IntegrityError/SerializationError set. */
static PyObject *decode_entry(ck_cached *self, ck_state *st, PyObject *entry, const ck_buf *name,
                              size_t *payload_len)
{
    const ck_entry_limits lim = {.max_size = self->max_value_size,
                                 .max_ratio = CK_ENTRY_MAX_LZ4_RATIO};
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(entry);
    size_t n = (size_t)PyBytes_GET_SIZE(entry);
    const unsigned char *plaintext = NULL;
    size_t plaintext_len = 0;
    PyObject *value = NULL;
    ck_entry_header h;
    ck_buf out;
    ck_error err;
    int rc;

    ck_buf_init(&out);
    if (self->sign_key != NULL) {
        ck_span nm = {name->data, name->len};
        /* Before anything reads the payload: only our own writes decode. */
        if (ck_entry_verify(data, n, self->sign_key, nm, &err) < 0) {
            PyErr_Format(st->IntegrityError, "L2 entry refused: %s", err.msg);
            goto done;
        }
    }
    if (n >= L2_NOGIL_MIN) {
        /* entry is a bytes object we own a reference to: its buffer stays
           put while the GIL is released. */
        Py_BEGIN_ALLOW_THREADS
        rc = ck_entry_decode(data, n, &lim, &h, &plaintext, &plaintext_len, &out, &err);
        Py_END_ALLOW_THREADS
    } else {
        rc = ck_entry_decode(data, n, &lim, &h, &plaintext, &plaintext_len, &out, &err);
    }
    if (rc < 0) {
        PyErr_Format(st->IntegrityError, "L2 entry refused: %s", err.msg);
        goto done;
    }
    if (h.serializer != ck_cached_ser_id(self)) {
        PyErr_Format(st->IntegrityError, "L2 entry serializer %d is not this function's (%d)",
                     (int)h.serializer, (int)ck_cached_ser_id(self));
        goto done;
    }
    *payload_len = plaintext_len;
    value = self->ser_encode != NULL
                ? ck_cached_ser_decode(self, plaintext, plaintext_len)
                : ck_py_unpack_types(st, plaintext, plaintext_len, self->value_types);
done:
    ck_buf_free(&out);
    return value;
}

int ck_cached_l2_refresh(ck_cached *self, const ck_buf *name, int64_t pttl_ms)
{
    int64_t ttl_ms = (int64_t)(self->ttl_ns / 1000000u);

    if (self->refresh_threshold <= 0 || ttl_ms <= 0 || pttl_ms <= 0 ||
        (double)pttl_ms >= self->refresh_threshold * (double)ttl_ms) {
        return 0;
    }
    if (ck_l2_expire(self->l2, (const char *)name->data, name->len, ttl_ms) < 0) {
        return ck_cached_l2_report(self);
    }
    return 0;
}

uint64_t ck_cached_l2_fill_ttl(ck_cached *self, int64_t pttl_ms)
{
    uint64_t remaining;

    if (pttl_ms <= 0) {
        return self->ttl_ns;
    }
    remaining = (uint64_t)pttl_ms * 1000000u;
    return self->ttl_ns != 0 && self->ttl_ns < remaining ? self->ttl_ns : remaining;
}

int ck_cached_l2_lookup(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                        const ck_buf *name, PyObject **result, ck_l1_entry **detached)
{
    PyObject *entry = NULL, *value = NULL;
    ck_pack_stats stats = {0, 0, 0};
    int64_t pttl_ms;
    size_t payload_len = 0;
    ck_buf scratch;
    int rc;

    *result = NULL;
    rc = ck_cached_l2_get_timed(self, name, &entry, &pttl_ms);
    if (rc < 0) {
        return ck_cached_l2_report(self) < 0 ? -1 : 0;
    }
    if (rc == 0) {
        return 0;
    }
    value = decode_entry(self, st, entry, name, &payload_len);
    Py_DECREF(entry);
    if (value == NULL) {
        self->integrity_errors++;
        return ck_cached_report_failure(self, "integrity_error") < 0 ? -1 : 0;
    }
    if (self->ser_encode != NULL) {
        if (!ck_cached_store_disabled(self) &&
            ck_cached_ser_put(self, st, h, key, NULL, value, payload_len,
                              ck_cached_l2_fill_ttl(self, pttl_ms), detached) < 0) {
            Py_DECREF(value);
            return -1;
        }
        goto hit;
    }
    /* Size it as a miss would (the charge, and whether hits must copy). */
    ck_buf_init(&scratch);
    rc = ck_py_pack_ex(st, value, &scratch, 0, &stats);
    ck_buf_free(&scratch);
    if (rc != 0) {
        /* It decoded, so it encodes; only MemoryError gets here. */
        PyErr_Clear();
    } else if (!ck_cached_store_disabled(self) &&
               ck_cached_put_value(self, st, h, key, NULL, value, &stats, ck_cached_l2_fill_ttl(self, pttl_ms),
                                   detached) < 0) {
        Py_DECREF(value);
        return -1;
    }
hit:
    self->l2_hits++;
    *result = value;
    if (ck_cached_l2_refresh(self, name, pttl_ms) < 0) {
        Py_CLEAR(*result);
        return -1;
    }
    return 1;
}

int ck_cached_l2_put(ck_cached *self, const ck_buf *name, const unsigned char *data, size_t len)
{
    /* Round up so an entry never outlives its TTL by less than a ms, and
       a sub-millisecond TTL still expires. */
    int64_t ttl_ms = self->ttl_ns == 0 ? 0 : (int64_t)((self->ttl_ns + 999999u) / 1000000u);
    uint64_t start = ck_cached_now_ns();
    int rc = ck_l2_set(self->l2, (const char *)name->data, name->len, data, len, ttl_ms);

    ck_cached_l2_set_timed_done(self, start, rc);
    if (rc < 0) {
        return ck_cached_l2_report(self);
    }
    return 0;
}

int ck_cached_l2_store(ck_cached *self, const ck_buf *name, const ck_buf *packed)
{
    return ck_cached_l2_store_as(self, name, packed, CK_SER_MSGPACK);
}

int ck_cached_l2_store_as(ck_cached *self, const ck_buf *name, const ck_buf *packed,
                          unsigned char ser)
{
    ck_span nm = {name->data, name->len};
    int sign = self->sign_key != NULL, rc;
    ck_buf framed;
    ck_error err;

    ck_buf_init(&framed);
    if (packed->len >= L2_NOGIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        rc = ck_entry_encode_ex(packed->data, packed->len, ser,
                                CK_ENTRY_DEFAULT_COMPRESS_MIN, sign, &framed, &err);
        Py_END_ALLOW_THREADS
    } else {
        rc = ck_entry_encode_ex(packed->data, packed->len, ser,
                                CK_ENTRY_DEFAULT_COMPRESS_MIN, sign, &framed, &err);
    }
    if (rc == 0 && sign) {
        rc = ck_entry_sign(framed.data, framed.len, self->sign_key, nm, &err);
    }
    if (rc < 0) {
        ck_buf_free(&framed);
        PyErr_Format(ck_state_from_type(Py_TYPE(self))->SerializationError, "%s", err.msg);
        self->store_errors++;
        return ck_cached_report_failure(self, "store_error");
    }
    rc = ck_cached_l2_put(self, name, framed.data, framed.len);
    ck_buf_free(&framed);
    return rc;
}

int ck_cached_l2_invalidate(ck_cached *self, const ck_buf *name, int *removed)
{
    *removed = 0;
    if (ck_l2_delete(self->l2, (const char *)name->data, name->len, removed) < 0) {
        return ck_cached_l2_report(self);
    }
    return 0;
}

int ck_cached_l2_clear(ck_cached *self)
{
    const char *prefix;
    Py_ssize_t n;

    prefix = PyUnicode_AsUTF8AndSize(self->key_prefix, &n);
    if (prefix == NULL) {
        return -1;
    }
    if (ck_l2_clear_prefix(self->l2, prefix, (size_t)n) < 0) {
        return ck_cached_l2_report(self);
    }
    return 0;
}

int ck_cached_l2_lease(ck_cached *self, ck_call_mode *mode, const ck_buf *name,
                       ck_l2_lookup_fn lookup, void *ctx, PyObject **result,
                       char token[CK_L2_TOKEN_LEN], int *held)
{
    uint64_t deadline, pause_ms = 2;
    int rc;

    *held = 0;
    *result = NULL;
    rc = ck_l2_lease_acquire(self->l2, (const char *)name->data, name->len, self->lease_ms,
                             token);
    if (rc != 0) {
        if (rc == 1 && mode != NULL) {
            /* The async path runs the function after this call returns: it
               releases the lease itself (_l2_release). */
            mode->lease_token = PyBytes_FromStringAndSize(token, CK_L2_TOKEN_LEN);
            return mode->lease_token == NULL ? -1 : 0;
        }
        if (rc == 1) {
            *held = 1;
            return 0;
        }
        if (rc == 2) {
            return 0; /* no lease here: just compute */
        }
        return ck_cached_l2_report(self) < 0 ? -1 : 0;
    }
    /* Another process is computing this entry: wait for its write, a bounded
       time (the lease's own lifetime, after which it lapses anyway). */
    deadline = ck_l1_now_ns() + (uint64_t)self->lease_ms * 1000000u;
    while (ck_l1_now_ns() < deadline) {
        struct timespec ts = {0, (long)(pause_ms * 1000000u)};

        Py_BEGIN_ALLOW_THREADS
        (void)nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
        pause_ms = pause_ms * 2 > 50 ? 50 : pause_ms * 2;
        rc = lookup(ctx, result);
        if (rc != 0) {
            if (rc > 0) {
                self->lease_waits++;
            }
            return rc;
        }
    }
    return 0; /* compute anyway: a dead holder never wedges the key */
}

void ck_cached_l2_lease_release(ck_cached *self, const ck_buf *name, const char *token, int held)
{
    if (!held) {
        return;
    }
    if (ck_l2_lease_release(self->l2, (const char *)name->data, name->len, token) < 0 &&
        ck_cached_l2_report(self) < 0) {
        /* Only a non-Exception could propagate here, and the call is done:
           leave it set for the caller's next check. */
        return;
    }
}
