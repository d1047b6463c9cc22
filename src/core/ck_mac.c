/*
 * ck_mac.c - a keyed HMAC-SHA256 under a random key of its own (pure C, no
 * Python; interface in ck_crypto.h). @cache.secure keys its L1 entries by
 * it, so the store holds a MAC of the call's key bytes, not the bytes.
 *
 * Why HMAC-SHA256: it is the approved MAC a FIPS provider offers (SipHash
 * and keyed BLAKE2 are faster but would fail to fetch under "fips=yes").
 *
 * Two implementations of the same function, picked once per MAC key:
 *
 * - Precomputed pads (the default): the SHA-256 states after the key's
 *   inner and outer pad blocks are kept, and a MAC copies them to the stack
 *   (a struct copy), hashes the message into the inner one and its digest
 *   into the outer one: two compression calls, no lock, no allocation, no
 *   provider dispatch. This uses OpenSSL's low-level SHA256_* functions
 *   (deprecated in 3.0, still built), which do not go through a provider.
 * - EVP_MAC (when the default properties ask for FIPS): one keyed HMAC
 *   context from the fetched (FIPS) provider, re-initialised per MAC under a
 *   mutex held for one MAC, so a FIPS configuration keeps every SHA-256 in
 *   the validated module.
 *
 * The precomputed path checks itself once at key setup against a one-shot
 * EVP HMAC of a test message under the same key, and falls back to EVP_MAC
 * if they differ.
 *
 * Cost per MAC of a short message with callgrind on OpenSSL 3.0 (valgrind
 * does not emulate SHA-NI, so natively both are several times cheaper): the
 * two SHA-256 compressions alone are ~4,100 instructions, and switching a
 * one-argument @cache.secure L1 hit from the EVP_MAC re-init path (params
 * lookups, context copy, mutex) to the pads took it from 10,722 to 9,149.
 * (EVP_MAC_CTX_dup of a keyed context per call was 11,900; two keyed
 * EVP_MD_CTX copies 7,800, each copy a provider dupctx and a malloc.)
 *
 * The key is drawn from the CSPRNG and wiped after setup; only the two
 * SHA-256 states (or the EVP context's pads) remain, wiped when freed.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1 /* SHA256_Init/Update/Final */

#include "ck_crypto.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#define HMAC_BLOCK 64

struct ck_mac {
    pthread_mutex_t lock; /* held for one EVP MAC; and across fork (ck_mac_lock_for_fork) */
    int lock_ready;
    EVP_MAC_CTX *ctx;     /* the EVP_MAC path: keyed once; guarded by lock; else NULL */
    SHA256_CTX inner;     /* the pads path: state after key ^ ipad */
    SHA256_CTX outer;     /* the pads path: state after key ^ opad */
};

/* The pads path: the two states of key (CK_MAC_KEY_LEN <= HMAC_BLOCK, so
   the key is used as is, zero-padded). 0, or -1 if OpenSSL refused. */
static int pads_init(ck_mac *m, const unsigned char *key)
{
    unsigned char pad[HMAC_BLOCK];
    int i, ok;

    for (i = 0; i < HMAC_BLOCK; i++) {
        pad[i] = (unsigned char)((i < CK_MAC_KEY_LEN ? key[i] : 0) ^ 0x36);
    }
    ok = SHA256_Init(&m->inner) == 1 && SHA256_Update(&m->inner, pad, HMAC_BLOCK) == 1;
    for (i = 0; i < HMAC_BLOCK; i++) {
        pad[i] = (unsigned char)((i < CK_MAC_KEY_LEN ? key[i] : 0) ^ 0x5c);
    }
    ok = ok && SHA256_Init(&m->outer) == 1 && SHA256_Update(&m->outer, pad, HMAC_BLOCK) == 1;
    ck_wipe(pad, sizeof(pad));
    return ok ? 0 : -1;
}

static int pads_compute(const ck_mac *m, const unsigned char *msg, size_t n,
                        unsigned char out[CK_MAC_LEN])
{
    SHA256_CTX c = m->inner;
    unsigned char ih[SHA256_DIGEST_LENGTH];
    int ok;

    ok = SHA256_Update(&c, msg, n) == 1 && SHA256_Final(ih, &c) == 1;
    c = m->outer;
    ok = ok && SHA256_Update(&c, ih, sizeof(ih)) == 1 && SHA256_Final(out, &c) == 1;
    ck_wipe(&c, sizeof(c));
    ck_wipe(ih, sizeof(ih));
    return ok ? 0 : -1;
}

/* 1 when the pads path gives what the provider's HMAC gives under key. */
static int pads_self_test(const ck_mac *m, const unsigned char *key)
{
    static const unsigned char msg[] = "cachekit ck_mac self-test: a message of some length";
    unsigned char want[CK_MAC_LEN], got[CK_MAC_LEN];
    size_t outl = 0;
    int same;

    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, CK_MAC_KEY_LEN, msg, sizeof(msg),
                  want, sizeof(want), &outl) == NULL ||
        outl != CK_MAC_LEN || pads_compute(m, msg, sizeof(msg), got) < 0) {
        ERR_clear_error();
        return 0;
    }
    same = CRYPTO_memcmp(want, got, CK_MAC_LEN) == 0;
    ck_wipe(want, sizeof(want));
    ck_wipe(got, sizeof(got));
    return same;
}

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
    if (ck_random_bytes(key, sizeof(key), err) < 0) {
        goto error;
    }
    if (!EVP_default_properties_is_fips_enabled(NULL) && pads_init(m, key) == 0 &&
        pads_self_test(m, key)) {
        ck_wipe(key, sizeof(key));
        return m;
    }
    ck_wipe(&m->inner, sizeof(m->inner));
    ck_wipe(&m->outer, sizeof(m->outer));
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
    ck_wipe(&m->inner, sizeof(m->inner));
    ck_wipe(&m->outer, sizeof(m->outer));
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
    if (m->ctx == NULL) {
        /* The pads path: the states are read-only, each call copies them. */
        if (pads_compute(m, msg, n, out) < 0) {
            ck_wipe(out, CK_MAC_LEN);
            return ck_error_set(err, CK_ECRYPTO, "HMAC-SHA256 failed");
        }
        return 0;
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
