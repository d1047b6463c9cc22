/*
 * ck_mac.c - a keyed HMAC-SHA256 under a random key of its own (pure C, no
 * Python; interface in ck_crypto.h). @cache.secure keys its L1 entries by
 * it, so the store holds a MAC of the call's key bytes, not the bytes.
 *
 * Why HMAC-SHA256: it is the approved MAC a FIPS provider offers (SipHash
 * and keyed BLAKE2 are faster but would fail to fetch under "fips=yes").
 * Cost, measured with callgrind on this machine's OpenSSL 3.0 (valgrind
 * does not emulate SHA-NI, so natively it is about 4x cheaper) for a
 * 60-byte message: EVP_MAC_CTX_dup of a keyed context per call 11,900
 * instructions; re-initialising one keyed context (EVP_MAC_init with a NULL
 * key keeps the key's inner and outer pads) 8,300; by hand with two keyed
 * EVP_MD_CTX copies 7,800. We re-initialise, under a mutex held for one
 * MAC, which also keeps allocation off the cache-hit path.
 *
 * The key is drawn from the CSPRNG, handed to the context and wiped; only
 * the context (OpenSSL's memory, like the AES key schedules) keeps its
 * pads, and OpenSSL cleanses them when the context is freed.
 */
#include "ck_crypto.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct ck_mac {
    pthread_mutex_t lock; /* held for one MAC; and across fork (ck_mac_lock_for_fork) */
    int lock_ready;
    EVP_MAC_CTX *ctx;     /* keyed once; guarded by lock */
};

ck_mac *ck_mac_new_random(ck_error *err)
{
    char digest[] = "SHA256";
    unsigned char key[CK_MAC_KEY_LEN];
    OSSL_PARAM params[2];
    EVP_MAC *mac = NULL;
    ck_mac *m = NULL;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory for a MAC key");
        goto error;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        ck_error_set(err, CK_ENOMEM, "cannot create the MAC lock");
        goto error;
    }
    m->lock_ready = 1;
    /* Fetched with the current default properties, so a FIPS configuration
       gets the FIPS provider's HMAC. */
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        ck_crypto_error(err, "HMAC fetch");
        goto error;
    }
    m->ctx = EVP_MAC_CTX_new(mac);
    if (m->ctx == NULL) {
        ck_crypto_error(err, "EVP_MAC_CTX_new");
        goto error;
    }
    if (ck_random_bytes(key, sizeof(key), err) < 0) {
        goto error;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(m->ctx, key, sizeof(key), params) != 1) {
        ck_crypto_error(err, "HMAC-SHA256 key setup");
        goto error;
    }
    ck_wipe(key, sizeof(key));
    EVP_MAC_free(mac); /* the context keeps its own reference */
    return m;
error:
    ck_wipe(key, sizeof(key));
    EVP_MAC_free(mac);
    ck_mac_free(m);
    return NULL;
}

void ck_mac_free(ck_mac *m)
{
    if (m == NULL) {
        return;
    }
    EVP_MAC_CTX_free(m->ctx); /* cleanses the key pads */
    if (m->lock_ready) {
        (void)pthread_mutex_destroy(&m->lock);
    }
    free(m);
}

int ck_mac_compute(ck_mac *m, const unsigned char *msg, size_t n, unsigned char out[CK_MAC_LEN],
                   ck_error *err)
{
    size_t outl = 0;
    int rc = -1;

    if (msg == NULL && n > 0) {
        return ck_error_set(err, CK_EINVAL, "NULL MAC input");
    }
    if (pthread_mutex_lock(&m->lock) != 0) {
        return ck_error_set(err, CK_ECRYPTO, "cannot take the MAC lock");
    }
    /* A NULL key restarts the MAC with the key already set. */
    if (EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(m->ctx, msg, n) != 1 ||
        EVP_MAC_final(m->ctx, out, &outl, CK_MAC_LEN) != 1 || outl != CK_MAC_LEN) {
        ck_crypto_error(err, "HMAC-SHA256");
        ck_wipe(out, CK_MAC_LEN);
        goto error;
    }
    rc = 0;
error:
    (void)pthread_mutex_unlock(&m->lock);
    return rc;
}

void ck_mac_lock_for_fork(ck_mac *m)
{
    (void)pthread_mutex_lock(&m->lock);
}

void ck_mac_unlock_after_fork(ck_mac *m)
{
    (void)pthread_mutex_unlock(&m->lock);
}
