/*
 * ck_crypto.c - AES-256-GCM, HKDF-SHA256 and randomness on OpenSSL 3 EVP
 * (pure C, no Python; interface in ck_crypto.h).
 *
 * Owns the ck_aead object and every call into libcrypto. The binding
 * (py_crypto.c) only checks argument lengths and turns ck_error into
 * Python exceptions.
 *
 * A ck_aead keeps two EVP_CIPHER_CTX, one per direction, each initialised
 * with the key once, on the first seal or open respectively. A seal or
 * open then only sets the IV (EVP_*Init_ex2 with a NULL cipher and key
 * keeps the key schedule and the GHASH table), feeds the AAD and data, and
 * finishes with the tag. No key expansion happens per message.
 *
 * Why lazily: the one-shot module functions build a ck_aead per call and
 * use one direction only; setting up both would double their key set-up
 * cost. The price is a copy of the key, held only until both contexts
 * exist and wiped then (or on free). It adds no exposure worth the name:
 * the AES-256 key schedule in the contexts begins with the key itself.
 *
 * Errors: every OpenSSL failure goes through crypto_error(), which records
 * the first reason string from the thread's error queue and always drains
 * the queue, so a stale error never surfaces in a later, unrelated call
 * (the CPython _hashopenssl.c model). Messages never contain key material
 * or user data.
 */
#include "ck_crypto.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* EVP_*Update and RAND_bytes take an int length. Larger inputs go through
   in pieces of this size: a multiple of the AES block, so every piece but
   the last keeps GCM on its whole-block fast path. */
#define CK_EVP_CHUNK ((size_t)1 << 30)
_Static_assert(CK_EVP_CHUNK <= INT_MAX && CK_EVP_CHUNK % 16 == 0, "chunk must fit an int");

/* RFC 5869: at most 255 blocks of the hash output (32 bytes for SHA-256). */
#define CK_HKDF_SHA256_MAX_OUT (255 * 32)

struct ck_aead {
    pthread_mutex_t lock;     /* held for one whole seal or open */
    int lock_ready;           /* lock was initialised, so free must destroy it */
    const EVP_CIPHER *cipher; /* the process-wide AES-256-GCM */
    /* The fields below are guarded by lock. Invariant: key holds the key
       while enc or dec is still NULL, and is wiped once both exist. */
    EVP_CIPHER_CTX *enc; /* NULL before the first seal; then keyed, IV set per seal */
    EVP_CIPHER_CTX *dec; /* NULL before the first open; then keyed, IV and tag per open */
    unsigned char key[CK_AEAD_KEY_LEN];
};

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Record an OpenSSL failure in err as "<what>: <first reason>" and drain
 * the thread's error queue. The first (oldest) entry is the root cause;
 * later ones are usually EVP-layer wrappers around it. Returns -1.
 */
static int crypto_error(ck_error *err, const char *what)
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
/* The cipher, fetched once per process                                     */
/* ------------------------------------------------------------------------ */

/*
 * EVP_CIPHER_fetch looks the algorithm up in the provider store under a
 * lock. Fetching once per process rather than per ck_aead keeps that off
 * the short-lived ck_aead path (the module-level functions build one per
 * call). A fetched EVP_CIPHER is immutable and reference-counted, so one
 * handle is safe to share between threads; it stays alive for the life of
 * the process, and a child after fork() keeps a valid copy. A failed fetch
 * is not retried: it means the provider configuration lacks AES-256-GCM,
 * which does not change while the process runs.
 */
static pthread_once_t aes256gcm_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *aes256gcm_cipher;

static void aes256gcm_fetch(void)
{
    aes256gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/* The shared cipher, or NULL with err set. */
static const EVP_CIPHER *aes256gcm_get(ck_error *err)
{
    if (pthread_once(&aes256gcm_once, aes256gcm_fetch) != 0) {
        ck_error_set(err, CK_ECRYPTO, "AES-256-GCM initialisation failed");
        return NULL;
    }
    if (aes256gcm_cipher == NULL) {
        /* Only the thread that ran the fetch has the reason on its queue;
           others get the generic message. */
        crypto_error(err, "AES-256-GCM fetch");
        return NULL;
    }
    return aes256gcm_cipher;
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
/* ck_aead lifetime                                                         */
/* ------------------------------------------------------------------------ */

ck_aead *ck_aead_new(const unsigned char key[CK_AEAD_KEY_LEN], ck_error *err)
{
    const EVP_CIPHER *cipher = NULL;
    ck_aead *a = NULL;

    if (key == NULL) {
        ck_error_set(err, CK_EINVAL, "key is NULL");
        goto error;
    }
    cipher = aes256gcm_get(err);
    if (cipher == NULL) {
        goto error;
    }
    /* The struct holds a key copy until both directions are keyed. */
    a = ck_secure_zalloc(sizeof(*a));
    if (a == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    if (pthread_mutex_init(&a->lock, NULL) != 0) {
        ck_error_set(err, CK_ENOMEM, "cannot create the AEAD lock");
        goto error;
    }
    a->lock_ready = 1;
    a->cipher = cipher;
    memcpy(a->key, key, CK_AEAD_KEY_LEN);
    return a;
error:
    ck_aead_free(a);
    return NULL;
}

void ck_aead_free(ck_aead *a)
{
    if (a == NULL) {
        return;
    }
    /* EVP_CIPHER_CTX_free wipes the key schedule and GHASH state (the
       provider frees its context with OPENSSL_clear_free). */
    EVP_CIPHER_CTX_free(a->enc);
    EVP_CIPHER_CTX_free(a->dec);
    if (a->lock_ready) {
        (void)pthread_mutex_destroy(&a->lock);
    }
    /* Wipes the key copy, if still held, and leaves no context pointers
       behind for a use-after-free to follow. */
    ck_secure_free(a, sizeof(*a));
}

/* ------------------------------------------------------------------------ */
/* Seal / open                                                              */
/* ------------------------------------------------------------------------ */

/*
 * The context for one direction (encrypt != 0: seal), created and keyed on
 * first use. Called with a->lock held. NULL with err on failure; a later
 * call retries, since the key copy is kept until both contexts exist.
 */
static EVP_CIPHER_CTX *aead_ctx(ck_aead *a, int encrypt, ck_error *err)
{
    EVP_CIPHER_CTX **slot = encrypt ? &a->enc : &a->dec;
    EVP_CIPHER_CTX *ctx = NULL;

    if (*slot != NULL) {
        return *slot;
    }
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        crypto_error(err, "EVP_CIPHER_CTX_new");
        goto error;
    }
    /* The key schedule is computed here, once; GCM's default IV length is
       12 bytes, the only one we use. */
    if (EVP_CipherInit_ex2(ctx, a->cipher, a->key, NULL, encrypt, NULL) != 1) {
        crypto_error(err, "AES-256-GCM key setup");
        goto error;
    }
    *slot = ctx;
    if (a->enc != NULL && a->dec != NULL) {
        OPENSSL_cleanse(a->key, sizeof(a->key));
    }
    return ctx;
error:
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
}

/*
 * Feed in[0..n) through EVP_CipherUpdate in int-sized pieces. out == NULL
 * feeds AAD. GCM is a stream mode: each piece yields exactly as many bytes
 * as it consumed, which is checked so out never falls out of step with in.
 */
static int cipher_update(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in,
                         size_t n)
{
    while (n > 0) {
        int piece = (int)(n < CK_EVP_CHUNK ? n : CK_EVP_CHUNK);
        int outl = 0;

        if (EVP_CipherUpdate(ctx, out, &outl, in, piece) != 1 || outl != piece) {
            return -1;
        }
        in += piece;
        if (out != NULL) {
            out += piece;
        }
        n -= (size_t)piece;
    }
    return 0;
}

static int check_aead_args(const ck_aead *a, const unsigned char *nonce, const unsigned char *aad,
                           size_t aad_len, const unsigned char *in, const unsigned char *out,
                           size_t n, const unsigned char *tag, ck_error *err)
{
    if (a == NULL || nonce == NULL || tag == NULL || (aad == NULL && aad_len > 0) ||
        ((in == NULL || out == NULL) && n > 0)) {
        return ck_error_set(err, CK_EINVAL, "NULL argument to AES-256-GCM");
    }
    return 0;
}

int ck_aead_seal(ck_aead *a, const unsigned char nonce[CK_AEAD_NONCE_LEN],
                 const unsigned char *aad, size_t aad_len, const unsigned char *pt, size_t n,
                 unsigned char *ct, unsigned char tag[CK_AEAD_TAG_LEN], ck_error *err)
{
    OSSL_PARAM params[2];
    /* GCM's final step emits no bytes; a scratch buffer keeps ct (which may
       be NULL when n == 0) out of it. */
    unsigned char final_out[16];
    EVP_CIPHER_CTX *ctx = NULL; /* borrowed from a */
    int final_len = 0;
    int locked = 0;

    if (check_aead_args(a, nonce, aad, aad_len, pt, ct, n, tag, err) < 0) {
        goto error;
    }
    if (pthread_mutex_lock(&a->lock) != 0) {
        ck_error_set(err, CK_ECRYPTO, "cannot take the AEAD lock");
        goto error;
    }
    locked = 1;
    ctx = aead_ctx(a, 1, err);
    if (ctx == NULL) {
        goto error;
    }
    /* NULL cipher and key: keep the key schedule, reset the GCM state for
       this nonce. */
    if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1) {
        crypto_error(err, "AES-256-GCM nonce setup");
        goto error;
    }
    if (cipher_update(ctx, NULL, aad, aad_len) < 0) {
        crypto_error(err, "AES-256-GCM additional data");
        goto error;
    }
    if (cipher_update(ctx, ct, pt, n) < 0) {
        crypto_error(err, "AES-256-GCM encryption");
        goto error;
    }
    if (EVP_EncryptFinal_ex(ctx, final_out, &final_len) != 1 || final_len != 0) {
        crypto_error(err, "AES-256-GCM encryption");
        goto error;
    }
    /* The tag through OSSL_PARAM directly: the ctrl wrapper translates to
       the same parameter at about half again the cost. */
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag,
                                                  CK_AEAD_TAG_LEN);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_CIPHER_CTX_get_params(ctx, params) != 1) {
        crypto_error(err, "AES-256-GCM tag");
        goto error;
    }
    (void)pthread_mutex_unlock(&a->lock);
    return 0;
error:
    if (locked) {
        (void)pthread_mutex_unlock(&a->lock);
    }
    return -1;
}

int ck_aead_open(ck_aead *a, const unsigned char nonce[CK_AEAD_NONCE_LEN],
                 const unsigned char *aad, size_t aad_len, const unsigned char *ct, size_t n,
                 const unsigned char tag[CK_AEAD_TAG_LEN], unsigned char *pt, ck_error *err)
{
    OSSL_PARAM params[2];
    unsigned char final_out[16];
    EVP_CIPHER_CTX *ctx = NULL; /* borrowed from a */
    int final_len = 0;
    int locked = 0;

    if (check_aead_args(a, nonce, aad, aad_len, ct, pt, n, tag, err) < 0) {
        goto error;
    }
    if (pthread_mutex_lock(&a->lock) != 0) {
        ck_error_set(err, CK_ECRYPTO, "cannot take the AEAD lock");
        goto error;
    }
    locked = 1;
    ctx = aead_ctx(a, 0, err);
    if (ctx == NULL) {
        goto error;
    }
    if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1) {
        crypto_error(err, "AES-256-GCM nonce setup");
        goto error;
    }
    /* The expected tag must be in place before the final step compares it.
       The provider copies it; the cast only satisfies the void * member. */
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)tag,
                                                  CK_AEAD_TAG_LEN);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_CIPHER_CTX_set_params(ctx, params) != 1) {
        crypto_error(err, "AES-256-GCM tag");
        goto error;
    }
    if (cipher_update(ctx, NULL, aad, aad_len) < 0) {
        crypto_error(err, "AES-256-GCM additional data");
        goto error;
    }
    if (cipher_update(ctx, pt, ct, n) < 0) {
        crypto_error(err, "AES-256-GCM decryption");
        goto error;
    }
    /* For GCM decryption the final step fails only on a tag mismatch. The
       provider raises nothing for it, but drain the queue anyway so no
       stale entry can leak into a later call. */
    if (EVP_DecryptFinal_ex(ctx, final_out, &final_len) != 1 || final_len != 0) {
        ERR_clear_error();
        ck_error_set(err, CK_EAUTH, "authentication failed");
        goto error;
    }
    (void)pthread_mutex_unlock(&a->lock);
    return 0;
error:
    if (locked) {
        (void)pthread_mutex_unlock(&a->lock);
    }
    /* Whatever was decrypted is unauthenticated: never hand it out. */
    ck_wipe(pt, n);
    return -1;
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
        crypto_error(err, "HKDF fetch");
        goto error;
    }
    kctx = EVP_KDF_CTX_new(kdf);
    if (kctx == NULL) {
        crypto_error(err, "EVP_KDF_CTX_new");
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
        crypto_error(err, "HKDF-SHA256");
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
        int piece = (int)(left < CK_EVP_CHUNK ? left : CK_EVP_CHUNK);

        if (RAND_bytes(out + done, piece) != 1) {
            crypto_error(err, "RAND_bytes");
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

void ck_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        OPENSSL_cleanse(p, n);
    }
}
