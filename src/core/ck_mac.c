/*
 * ck_mac.c - a keyed PRF under a random key of its own (pure C, no Python;
 * interface in ck_crypto.h). @cache.secure keys its L1 entries by it, so
 * the in-process store holds a MAC of the call's key bytes, not the bytes.
 *
 * Two functions, picked once per MAC key (docs/security.md, "L1 under
 * @cache.secure"), both with 128-bit outputs:
 *
 * - SipHash-2-4 with a 128-bit key and 128-bit output (the default): a PRF
 *   built for exactly this job, keying a hash table by secret inputs. It
 *   is not a FIPS-approved algorithm, which is acceptable here because the
 *   output never leaves the process: it only indexes the L1 store, and the
 *   AAD of every entry still binds the full key bytes. Computed by
 *   ck_siphash.c, with no lock (the key is immutable once set up): through
 *   OpenSSL's EVP_MAC it cost ~930 callgrind instructions per 2-byte MAC,
 *   of which ~150 are SipHash; ours costs ~150. At key setup ours must give
 *   what OpenSSL's EVP_MAC "SIPHASH" gives under the same key for several
 *   message lengths, or this MAC key uses HMAC instead.
 * - HMAC-SHA256 truncated to 128 bits, OpenSSL's EVP_MAC with one keyed
 *   context re-initialised per MAC (a NULL key keeps the key) under a
 *   mutex (when the default properties ask for FIPS, or OpenSSL's SipHash
 *   cannot be fetched to check ours against), so a FIPS configuration
 *   keeps every MAC inside the validated module.
 *
 * The key is drawn from the CSPRNG. SipHash keeps it in this struct, which
 * lives on the secure heap (ck_secure_zalloc: excluded from core dumps)
 * and is wiped when freed; HMAC keeps it only in the EVP context, cleansed
 * when freed.
 */
#include "ck_crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define SIPHASH_KEY_LEN 16
#define HMAC_KEY_LEN 32
#define HMAC_OUT_LEN 32

struct ck_mac {
    pthread_mutex_t lock; /* HMAC: held for one MAC; and across fork (ck_mac_lock_for_fork) */
    int lock_ready;
    int siphash;          /* 1: SipHash-2-4-128, 0: HMAC-SHA256 truncated */
    uint64_t sip_key[2];  /* SipHash: the key words, set once before m is shared */
    EVP_MAC_CTX *ctx;     /* HMAC: keyed once; guarded by lock */
};

/* An HMAC-SHA256 context keyed with key[0..n); NULL on failure (the
   OpenSSL error queue holds why). */
static EVP_MAC_CTX *hmac_ctx(const unsigned char *key, size_t n)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx = NULL;

    /* Fetched with the current default properties, so a FIPS
       configuration gets the FIPS provider's HMAC. */
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return NULL;
    }
    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (ctx == NULL) {
        return NULL;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key, n, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One HMAC with m's context; m->lock held. 0, or -1 (out wiped). */
static int compute_locked(ck_mac *m, const unsigned char *msg, size_t n,
                          unsigned char out[CK_MAC_LEN])
{
    unsigned char full[HMAC_OUT_LEN];
    size_t want = HMAC_OUT_LEN, outl = 0;
    int ok;

    /* A NULL key restarts the MAC with the key already set. */
    ok = EVP_MAC_init(m->ctx, NULL, 0, NULL) == 1 && EVP_MAC_update(m->ctx, msg, n) == 1 &&
         EVP_MAC_final(m->ctx, full, &outl, sizeof(full)) == 1 && outl == want;
    if (ok) {
        memcpy(out, full, CK_MAC_LEN); /* HMAC: its first 128 bits */
    } else {
        ck_wipe(out, CK_MAC_LEN);
    }
    ck_wipe(full, sizeof(full));
    return ok ? 0 : -1;
}

/* 1 when ck_siphash128 under key gives what OpenSSL's one-shot SipHash
   gives, for messages of 0 to 63 bytes (every tail length, one to seven
   full words). */
static int siphash_self_test(const ck_mac *m, const unsigned char *key)
{
    unsigned char msg[63], want[CK_MAC_LEN], got[CK_MAC_LEN];
    OSSL_PARAM params[2];
    size_t size = CK_MAC_LEN, outl = 0, n;
    int same = 1;

    for (n = 0; n < sizeof(msg); n++) {
        msg[n] = (unsigned char)(0x5a ^ (n * 7));
    }
    params[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size);
    params[1] = OSSL_PARAM_construct_end();
    for (n = 0; n <= sizeof(msg) && same; n++) {
        if (EVP_Q_mac(NULL, "SIPHASH", NULL, NULL, params, key, SIPHASH_KEY_LEN, msg, n, want,
                      sizeof(want), &outl) == NULL ||
            outl != CK_MAC_LEN) {
            ERR_clear_error();
            same = 0;
            break;
        }
        ck_siphash128(m->sip_key, msg, n, got);
        same = CRYPTO_memcmp(want, got, CK_MAC_LEN) == 0;
    }
    ck_wipe(want, sizeof(want));
    ck_wipe(got, sizeof(got));
    return same;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

ck_mac *ck_mac_new_random(ck_error *err)
{
    unsigned char key[HMAC_KEY_LEN];
    ck_mac *m = NULL;

    m = ck_secure_zalloc(sizeof(*m));
    if (m == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for a MAC key");
        goto error;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        ck_error_set(err, CK_ENOMEM, "cannot create the MAC lock");
        goto error;
    }
    m->lock_ready = 1;
    if (ck_random_bytes(key, sizeof(key), err) < 0) {
        goto error;
    }
    if (!EVP_default_properties_is_fips_enabled(NULL)) {
        m->sip_key[0] = le64(key);
        m->sip_key[1] = le64(key + 8);
        if (siphash_self_test(m, key)) {
            m->siphash = 1;
            ck_wipe(key, sizeof(key));
            return m;
        }
        ck_wipe(m->sip_key, sizeof(m->sip_key));
        ERR_clear_error();
    }
    m->siphash = 0;
    m->ctx = hmac_ctx(key, HMAC_KEY_LEN);
    if (m->ctx == NULL) {
        ck_crypto_error(err, "HMAC-SHA256 key setup");
        goto error;
    }
    ck_wipe(key, sizeof(key));
    return m;
error:
    ck_wipe(key, sizeof(key));
    ck_mac_free(m);
    return NULL;
}

void ck_mac_free(ck_mac *m)
{
    if (m == NULL) {
        return;
    }
    EVP_MAC_CTX_free(m->ctx); /* cleanses the key */
    if (m->lock_ready) {
        (void)pthread_mutex_destroy(&m->lock);
    }
    ck_secure_free(m, sizeof(*m)); /* wipes the SipHash key */
}

const char *ck_mac_name(const ck_mac *m)
{
    return m->siphash ? "SipHash-2-4-128" : "HMAC-SHA256-128";
}

int ck_mac_compute(ck_mac *m, const unsigned char *msg, size_t n, unsigned char out[CK_MAC_LEN],
                   ck_error *err)
{
    int rc;

    if (msg == NULL && n > 0) {
        return ck_error_set(err, CK_EINVAL, "NULL MAC input");
    }
    if (m->siphash) {
        ck_siphash128(m->sip_key, msg, n, out);
        return 0;
    }
    if (pthread_mutex_lock(&m->lock) != 0) {
        return ck_error_set(err, CK_ECRYPTO, "cannot take the MAC lock");
    }
    rc = compute_locked(m, msg, n, out);
    (void)pthread_mutex_unlock(&m->lock);
    if (rc < 0) {
        return ck_crypto_error(err, m->siphash ? "SipHash" : "HMAC-SHA256");
    }
    return 0;
}

void ck_mac_lock_for_fork(ck_mac *m)
{
    (void)pthread_mutex_lock(&m->lock);
}

void ck_mac_unlock_after_fork(ck_mac *m)
{
    (void)pthread_mutex_unlock(&m->lock);
}
