/*
 * ck_crypto.c - HKDF-SHA256, randomness, wiping, the secure heap and the
 * shared OpenSSL error handling (pure C, no Python; interface in
 * ck_crypto.h). AES-256-GCM is in ck_aead.c.
 *
 * The binding (py_crypto.c) only checks argument lengths and turns
 * ck_error into Python exceptions.
 *
 * Errors: every OpenSSL failure goes through ck_crypto_error(), which
 * records the first reason string from the thread's error queue and always
 * drains the queue, so a stale error never surfaces in a later, unrelated
 * call (the CPython _hashopenssl.c model). Messages never contain key
 * material or user data.
 */
#include "ck_crypto.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* RAND_bytes takes an int length; larger requests go in pieces of this size. */
#define CK_RAND_CHUNK ((size_t)1 << 30)
_Static_assert(CK_RAND_CHUNK <= INT_MAX, "chunk must fit an int");

/* RFC 5869: at most 255 blocks of the hash output (32 bytes for SHA-256). */
#define CK_HKDF_SHA256_MAX_OUT (255 * 32)

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Record an OpenSSL failure in err as "<what>: <first reason>" and drain
 * the thread's error queue. The first (oldest) entry is the root cause;
 * later ones are usually EVP-layer wrappers around it. Returns -1.
 */
int ck_crypto_error(ck_error *err, const char *what)
{
    unsigned long code = ERR_get_error();
    const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;

    if (reason != NULL) {
        ck_error_set(err, CK_ECRYPTO, "%s: %s", what, reason);
    } else {
        ck_error_set(err, CK_ECRYPTO, "%s failed", what);
    }
    ERR_clear_error();
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Memory for key material                                                  */
/* ------------------------------------------------------------------------ */

/* 1 MiB holds thousands of keys (a ck_aead is ~100 bytes, a keyring ~1.5 KB);
   allocations beyond it fall back to the ordinary heap. */
#define CK_SECURE_HEAP_SIZE ((size_t)1 << 20)
#define CK_SECURE_HEAP_MIN 64

static pthread_once_t secure_heap_once = PTHREAD_ONCE_INIT;

static void secure_heap_init(void)
{
    /* Another library may own the process's secure heap already; share it.
       A result of 2 (pages not locked, e.g. a low RLIMIT_MEMLOCK) still
       leaves the heap usable and excluded from core dumps. */
    if (!CRYPTO_secure_malloc_initialized()) {
        (void)CRYPTO_secure_malloc_init(CK_SECURE_HEAP_SIZE, CK_SECURE_HEAP_MIN);
    }
}

void *ck_secure_zalloc(size_t n)
{
    void *p;

    (void)pthread_once(&secure_heap_once, secure_heap_init);
    p = OPENSSL_secure_zalloc(n);
    return p != NULL ? p : OPENSSL_zalloc(n);
}

void ck_secure_free(void *p, size_t n)
{
    /* Wipes first; handles memory from either heap. */
    OPENSSL_secure_clear_free(p, n);
}

long ck_secure_used(void)
{
    return CRYPTO_secure_malloc_initialized() ? (long)CRYPTO_secure_used() : -1;
}

/* ------------------------------------------------------------------------ */
/* SHA-256                                                                  */
/* ------------------------------------------------------------------------ */

int ck_sha256(const unsigned char *data, size_t n, unsigned char out[32], ck_error *err)
{
    unsigned int len = 0;

    if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        return ck_crypto_error(err, "SHA-256");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* HKDF-SHA256                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Key derivation runs once per configured key, not per value, so the KDF
 * is fetched per call rather than cached: nothing to keep alive.
 *
 * An empty salt is left out: OpenSSL then uses HashLen zero bytes, which
 * is what RFC 5869 specifies for "salt not provided" and gives the same
 * PRK as an explicit empty salt (HMAC pads its key with zeros either way).
 */
int ck_hkdf_sha256(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt,
                   size_t salt_len, const unsigned char *info, size_t info_len, unsigned char *out,
                   size_t out_len, ck_error *err)
{
    char digest[] = "SHA256";
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[5];
    OSSL_PARAM *p = params;
    int rc = -1;

    if (ikm == NULL || ikm_len == 0) {
        ck_error_set(err, CK_EINVAL, "HKDF input key material must not be empty");
        goto error;
    }
    if (out == NULL || out_len == 0 || out_len > CK_HKDF_SHA256_MAX_OUT) {
        ck_error_set(err, CK_EINVAL, "HKDF-SHA256 output length must be between 1 and %d",
                     CK_HKDF_SHA256_MAX_OUT);
        goto error;
    }
    if ((salt == NULL && salt_len > 0) || (info == NULL && info_len > 0)) {
        ck_error_set(err, CK_EINVAL, "NULL argument to HKDF");
        goto error;
    }
    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf == NULL) {
        ck_crypto_error(err, "HKDF fetch");
        goto error;
    }
    kctx = EVP_KDF_CTX_new(kdf);
    if (kctx == NULL) {
        ck_crypto_error(err, "EVP_KDF_CTX_new");
        goto error;
    }
    /* OSSL_PARAM has no const variant; OpenSSL copies and never writes
       these inputs. */
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    if (salt_len > 0) {
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    }
    if (info_len > 0) {
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    }
    *p = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, out_len, params) != 1) {
        ck_crypto_error(err, "HKDF-SHA256");
        OPENSSL_cleanse(out, out_len);
        goto error;
    }
    rc = 0;
error:
    /* EVP_KDF_CTX_free wipes its copies of the key and salt. */
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Randomness and wiping                                                    */
/* ------------------------------------------------------------------------ */

int ck_random_bytes(unsigned char *out, size_t n, ck_error *err)
{
    size_t done = 0;

    if (out == NULL && n > 0) {
        ck_error_set(err, CK_EINVAL, "NULL output buffer");
        goto error;
    }
    while (done < n) {
        size_t left = n - done;
        int piece = (int)(left < CK_RAND_CHUNK ? left : CK_RAND_CHUNK);

        if (RAND_bytes(out + done, piece) != 1) {
            ck_crypto_error(err, "RAND_bytes");
            goto error;
        }
        done += (size_t)piece;
    }
    return 0;
error:
    /* The caller may have meant the bytes as a key: leave no partial one. */
    ck_wipe(out, n);
    return -1;
}

/*
 * memset, then a compiler barrier that claims to read the memory, so the
 * store cannot be dropped as dead (the technique of glibc's explicit_bzero).
 * OPENSSL_cleanse does the same job a byte at a time: it was ~60
 * instructions of a 100-byte wipe under callgrind, five times per secure
 * L1 hit.
 */
void ck_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        memset(p, 0, n);
        __asm__ __volatile__("" : : "r"(p) : "memory");
    }
}
