/*
 * ck_aead.c - AES-256-GCM seal and open (pure C, no Python; interface in
 * ck_crypto.h).
 *
 * Which code does the cipher: OpenSSL's own AES-256-GCM, the one
 * EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL) selects (so the provider
 * configuration, e.g. a FIPS provider, is honoured). We call that
 * implementation through its provider dispatch table, the same function
 * pointers EVP calls, looked up with the public
 * OSSL_PROVIDER_query_operation() on first use and again whenever a
 * keyring is created and the fetch picks another provider (see "The
 * implementation" below). Nothing cryptographic is ours.
 *
 * Why not through EVP_Cipher*: for a 100-byte value OpenSSL 3.0's EVP layer
 * costs about as much as the cipher. Each EVP_CipherInit_ex2 re-reads the
 * IV length through the OSSL_PARAM layer, and the wrappers add checks and
 * indirections; by callgrind a seal + open of 100 bytes (80 bytes of AAD)
 * takes ~6,000 instructions through EVP and ~4,100 through the dispatch
 * table. What EVP adds on this path is bookkeeping we keep ourselves: one
 * context per direction, keyed once, used under a mutex, lengths checked
 * below, every return value checked.
 *
 * A ck_aead keeps two provider contexts, one per direction, each keyed on
 * the first seal or open respectively. A seal or open then only sets the
 * IV (init with a NULL key keeps the key schedule and the GHASH table),
 * feeds the AAD and data, and finishes with the tag. No key expansion
 * happens per message.
 *
 * Why lazily: the one-shot module functions build a ck_aead per call and
 * use one direction only; setting up both would double their key set-up
 * cost. The price is a copy of the key, held only until both contexts
 * exist and wiped then (or on free). It adds no exposure worth the name:
 * the AES-256 key schedule in the contexts begins with the key itself.
 */
#include "ck_crypto.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#define CK_AEAD_NAME "AES-256-GCM"

/* GCM's limit on one message (NIST SP 800-38D): 2^39 - 256 bits. OpenSSL
   enforces it too; checking first gives a clear error. */
#define CK_GCM_MAX_PLAINTEXT ((((uint64_t)1) << 36) - 32)

/* ------------------------------------------------------------------------ */
/* The implementation, re-checked when a keyring is created                 */
/* ------------------------------------------------------------------------ */

typedef struct {
    EVP_CIPHER *pin; /* the fetched cipher, never freed: pins the provider */
    const OSSL_PROVIDER *prov;
    void *provctx;
    OSSL_FUNC_cipher_newctx_fn *newctx;
    OSSL_FUNC_cipher_freectx_fn *freectx;
    OSSL_FUNC_cipher_encrypt_init_fn *encrypt_init;
    OSSL_FUNC_cipher_decrypt_init_fn *decrypt_init;
    OSSL_FUNC_cipher_update_fn *update;
    OSSL_FUNC_cipher_final_fn *final;
    OSSL_FUNC_cipher_get_ctx_params_fn *get_ctx_params;
    OSSL_FUNC_cipher_set_ctx_params_fn *set_ctx_params;
} gcm_impl;

/*
 * gcm_current is the implementation new ck_aead objects use. It is
 * resolved on first use and re-checked by ck_aead_recheck() (called when a
 * keyring is created): a fetch with the default properties of that moment,
 * and when it picks another provider than the current implementation's (a
 * FIPS provider enabled later, a changed default property query), the new
 * one is resolved and becomes current. Earlier implementations are never
 * freed: ck_aead objects made under them keep calling into them until they
 * are freed, and the pinned EVP_CIPHER keeps that code loaded (also in a
 * child after fork()). One implementation per provider switch: a bounded
 * leak by construction.
 *
 * gcm_lock serialises resolution; it is held only around a fetch, which
 * from Python runs with the GIL held, so no thread can be inside it when
 * os.fork() runs.
 */
static pthread_mutex_t gcm_lock = PTHREAD_MUTEX_INITIALIZER;
static const gcm_impl *gcm_current; /* atomic pointer; NULL until resolved */

/* Whether name is one of the ':'-separated names in names (ASCII case-insensitive). */
static int names_include(const char *names, const char *name)
{
    size_t len = strlen(name);

    while (names != NULL && *names != '\0') {
        const char *end = strchr(names, ':');
        size_t n = end != NULL ? (size_t)(end - names) : strlen(names);

        if (n == len && strncasecmp(names, name, len) == 0) {
            return 1;
        }
        names = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* Copy the functions we call out of a dispatch table; 0 if one is missing. */
static int take_functions(const OSSL_DISPATCH *fns, gcm_impl *impl)
{
    for (; fns->function_id != 0; fns++) {
        switch (fns->function_id) {
        case OSSL_FUNC_CIPHER_NEWCTX:
            impl->newctx = OSSL_FUNC_cipher_newctx(fns);
            break;
        case OSSL_FUNC_CIPHER_FREECTX:
            impl->freectx = OSSL_FUNC_cipher_freectx(fns);
            break;
        case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
            impl->encrypt_init = OSSL_FUNC_cipher_encrypt_init(fns);
            break;
        case OSSL_FUNC_CIPHER_DECRYPT_INIT:
            impl->decrypt_init = OSSL_FUNC_cipher_decrypt_init(fns);
            break;
        case OSSL_FUNC_CIPHER_UPDATE:
            impl->update = OSSL_FUNC_cipher_update(fns);
            break;
        case OSSL_FUNC_CIPHER_FINAL:
            impl->final = OSSL_FUNC_cipher_final(fns);
            break;
        case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
            impl->get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(fns);
            break;
        case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
            impl->set_ctx_params = OSSL_FUNC_cipher_set_ctx_params(fns);
            break;
        default:
            break;
        }
    }
    return impl->newctx != NULL && impl->freectx != NULL && impl->encrypt_init != NULL &&
           impl->decrypt_init != NULL && impl->update != NULL && impl->final != NULL &&
           impl->get_ctx_params != NULL && impl->set_ctx_params != NULL;
}

/*
 * A new implementation for the cipher pin (whose reference it takes over;
 * freed here on failure). NULL with err when the provider's implementation
 * lacks a function we call.
 */
static gcm_impl *gcm_resolve(EVP_CIPHER *pin, ck_error *err)
{
    const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(pin);
    const OSSL_ALGORITHM *algs = NULL, *alg;
    gcm_impl *impl = NULL;
    int no_cache = 0;

    if (prov == NULL) {
        ck_error_set(err, CK_ECRYPTO, "AES-256-GCM: the fetched cipher names no provider");
        goto error;
    }
    algs = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_cache);
    if (algs == NULL) {
        ck_error_set(err, CK_ECRYPTO, "AES-256-GCM: the provider lists no ciphers");
        goto error;
    }
    for (alg = algs; alg->algorithm_names != NULL; alg++) {
        if (names_include(alg->algorithm_names, CK_AEAD_NAME)) {
            break;
        }
    }
    impl = calloc(1, sizeof(*impl));
    if (impl == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    if (alg->algorithm_names == NULL || !take_functions(alg->implementation, impl)) {
        ck_error_set(err, CK_ECRYPTO,
                     "AES-256-GCM: the provider's implementation lacks a needed function");
        goto error;
    }
    OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
    impl->pin = pin;
    impl->prov = prov;
    impl->provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
    return impl;
error:
    if (algs != NULL) {
        OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
    }
    free(impl);
    EVP_CIPHER_free(pin);
    return NULL;
}

/* Resolve under gcm_lock; force makes a new implementation even for the
   current provider (tests). */
static int gcm_recheck_locked(int force, ck_error *err)
{
    const gcm_impl *cur = __atomic_load_n(&gcm_current, __ATOMIC_ACQUIRE);
    EVP_CIPHER *pin;
    gcm_impl *impl;

    pin = EVP_CIPHER_fetch(NULL, CK_AEAD_NAME, NULL);
    if (pin == NULL) {
        ck_crypto_error(err, "AES-256-GCM fetch with OpenSSL's current default properties "
                             "(no loaded provider satisfies them, e.g. fips=yes without the "
                             "FIPS provider)");
        return -1;
    }
    if (!force && cur != NULL && EVP_CIPHER_get0_provider(pin) == cur->prov) {
        EVP_CIPHER_free(pin);
        return 0;
    }
    impl = gcm_resolve(pin, err);
    if (impl == NULL) {
        return -1;
    }
    __atomic_store_n(&gcm_current, impl, __ATOMIC_RELEASE);
    return 0;
}

int ck_aead_recheck(int force, ck_error *err)
{
    int rc;

    if (pthread_mutex_lock(&gcm_lock) != 0) {
        return ck_error_set(err, CK_ECRYPTO, "AES-256-GCM initialisation failed");
    }
    rc = gcm_recheck_locked(force, err);
    /* The fetch may have queued errors; they belong to no caller. */
    ERR_clear_error();
    (void)pthread_mutex_unlock(&gcm_lock);
    return rc;
}

const char *ck_aead_provider_name(void)
{
    const gcm_impl *cur = __atomic_load_n(&gcm_current, __ATOMIC_ACQUIRE);

    return cur != NULL ? OSSL_PROVIDER_get0_name(cur->prov) : NULL;
}

static const gcm_impl *gcm_get(ck_error *err)
{
    const gcm_impl *cur = __atomic_load_n(&gcm_current, __ATOMIC_ACQUIRE);

    if (cur != NULL) {
        return cur;
    }
    if (ck_aead_recheck(0, err) < 0) {
        return NULL;
    }
    return __atomic_load_n(&gcm_current, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------------ */
/* ck_aead lifetime                                                         */
/* ------------------------------------------------------------------------ */

struct ck_aead {
    pthread_mutex_t lock;  /* held for one whole seal or open */
    int lock_ready;        /* lock was initialised, so free must destroy it */
    const gcm_impl *impl;  /* the process-wide implementation */
    /* The fields below are guarded by lock. Invariant: key holds the key
       while enc or dec is still NULL, and is wiped once both exist. */
    void *enc; /* provider context; NULL before the first seal, then keyed */
    void *dec; /* provider context; NULL before the first open, then keyed */
    unsigned char key[CK_AEAD_KEY_LEN];
};

ck_aead *ck_aead_new(const unsigned char key[CK_AEAD_KEY_LEN], ck_error *err)
{
    const gcm_impl *impl;
    ck_aead *a = NULL;

    if (key == NULL) {
        ck_error_set(err, CK_EINVAL, "key is NULL");
        goto error;
    }
    impl = gcm_get(err);
    if (impl == NULL) {
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
    a->impl = impl;
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
    /* The provider's freectx wipes the key schedule and GHASH state
       (OpenSSL's GCM frees its context with OPENSSL_clear_free). */
    if (a->enc != NULL) {
        a->impl->freectx(a->enc);
    }
    if (a->dec != NULL) {
        a->impl->freectx(a->dec);
    }
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
 * Initialise ctx for one direction (encrypt != 0: seal) with a key, a nonce
 * or both; a NULL one is left as it is. 0, or -1 on failure.
 */
static int init_direction(const gcm_impl *impl, void *ctx, int encrypt, const unsigned char *key,
                          const unsigned char *nonce)
{
    /* The two init functions have the same signature. */
    OSSL_FUNC_cipher_encrypt_init_fn *init = encrypt ? impl->encrypt_init : impl->decrypt_init;
    size_t key_len = key != NULL ? CK_AEAD_KEY_LEN : 0;
    size_t nonce_len = nonce != NULL ? CK_AEAD_NONCE_LEN : 0;

    return init(ctx, key, key_len, nonce, nonce_len, NULL) == 1 ? 0 : -1;
}

/*
 * The context for one direction (encrypt != 0: seal), created and keyed on
 * first use. Called with a->lock held. NULL with err on failure; a later
 * call retries, since the key copy is kept until both contexts exist.
 */
static void *aead_ctx(ck_aead *a, int encrypt, ck_error *err)
{
    const gcm_impl *impl = a->impl;
    void **slot = encrypt ? &a->enc : &a->dec;
    void *ctx = NULL;

    if (*slot != NULL) {
        return *slot;
    }
    ctx = impl->newctx(impl->provctx);
    if (ctx == NULL) {
        ck_crypto_error(err, "AES-256-GCM context");
        goto error;
    }
    /* The key schedule is computed here, once; GCM's default IV length is
       12 bytes, the only one we use. */
    if (init_direction(impl, ctx, encrypt, a->key, NULL) < 0) {
        ck_crypto_error(err, "AES-256-GCM key setup");
        goto error;
    }
    *slot = ctx;
    if (a->enc != NULL && a->dec != NULL) {
        OPENSSL_cleanse(a->key, sizeof(a->key));
    }
    return ctx;
error:
    if (ctx != NULL) {
        impl->freectx(ctx);
    }
    return NULL;
}

/*
 * Feed in[0..n) to the context: out == NULL feeds AAD. GCM is a stream
 * mode, so it reports exactly n bytes processed (for AAD too); that is
 * checked so out can never fall out of step with in. The provider takes
 * size_t lengths, so there is no int limit to split around.
 */
static int feed(const gcm_impl *impl, void *ctx, unsigned char *out, const unsigned char *in,
                size_t n)
{
    size_t outl = 0;

    if (n == 0) {
        return 0;
    }
    /* For AAD the provider still wants room "for" the input. */
    if (impl->update(ctx, out, &outl, n, in, n) != 1 || outl != n) {
        return -1;
    }
    return 0;
}

/* GCM's final step emits no bytes; a scratch buffer keeps the caller's
   (possibly NULL) output out of it. */
static int finish(const gcm_impl *impl, void *ctx)
{
    unsigned char scratch[16];
    size_t outl = 0;

    return impl->final(ctx, scratch, &outl, sizeof(scratch)) == 1 && outl == 0 ? 0 : -1;
}

static int check_aead_args(const ck_aead *a, const unsigned char *nonce, const unsigned char *aad,
                           size_t aad_len, const unsigned char *in, const unsigned char *out,
                           size_t n, const unsigned char *tag, ck_error *err)
{
    if (a == NULL || nonce == NULL || tag == NULL || (aad == NULL && aad_len > 0) ||
        ((in == NULL || out == NULL) && n > 0)) {
        return ck_error_set(err, CK_EINVAL, "NULL argument to AES-256-GCM");
    }
    if ((uint64_t)n > CK_GCM_MAX_PLAINTEXT) {
        return ck_error_set(err, CK_ELIMIT, "AES-256-GCM message of %zu bytes exceeds GCM's limit",
                            n);
    }
    return 0;
}

/*
 * Start one message: take a's lock, get the context for the direction and
 * set the nonce (a NULL key keeps the key schedule and resets the GCM
 * state). Returns the context with the lock held, or NULL with err and the
 * lock released.
 */
static void *begin_message(ck_aead *a, int encrypt, const unsigned char *nonce, ck_error *err)
{
    void *ctx;

    if (pthread_mutex_lock(&a->lock) != 0) {
        ck_error_set(err, CK_ECRYPTO, "cannot take the AEAD lock");
        return NULL;
    }
    ctx = aead_ctx(a, encrypt, err);
    if (ctx == NULL) {
        goto error;
    }
    if (init_direction(a->impl, ctx, encrypt, NULL, nonce) < 0) {
        ck_crypto_error(err, "AES-256-GCM nonce setup");
        goto error;
    }
    return ctx;
error:
    (void)pthread_mutex_unlock(&a->lock);
    return NULL;
}

int ck_aead_seal(ck_aead *a, const unsigned char nonce[CK_AEAD_NONCE_LEN],
                 const unsigned char *aad, size_t aad_len, const unsigned char *pt, size_t n,
                 unsigned char *ct, unsigned char tag[CK_AEAD_TAG_LEN], ck_error *err)
{
    OSSL_PARAM params[2];
    const gcm_impl *impl;
    void *ctx = NULL; /* borrowed from a; non-NULL while a->lock is held */

    if (check_aead_args(a, nonce, aad, aad_len, pt, ct, n, tag, err) < 0) {
        goto error;
    }
    impl = a->impl;
    ctx = begin_message(a, 1, nonce, err);
    if (ctx == NULL) {
        goto error;
    }
    if (feed(impl, ctx, NULL, aad, aad_len) < 0) {
        ck_crypto_error(err, "AES-256-GCM additional data");
        goto error;
    }
    if (feed(impl, ctx, ct, pt, n) < 0 || finish(impl, ctx) < 0) {
        ck_crypto_error(err, "AES-256-GCM encryption");
        goto error;
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag,
                                                  CK_AEAD_TAG_LEN);
    params[1] = OSSL_PARAM_construct_end();
    if (impl->get_ctx_params(ctx, params) != 1 || !OSSL_PARAM_modified(&params[0])) {
        ck_crypto_error(err, "AES-256-GCM tag");
        goto error;
    }
    (void)pthread_mutex_unlock(&a->lock);
    return 0;
error:
    if (ctx != NULL) {
        (void)pthread_mutex_unlock(&a->lock);
    }
    return -1;
}

int ck_aead_open(ck_aead *a, const unsigned char nonce[CK_AEAD_NONCE_LEN],
                 const unsigned char *aad, size_t aad_len, const unsigned char *ct, size_t n,
                 const unsigned char tag[CK_AEAD_TAG_LEN], unsigned char *pt, ck_error *err)
{
    OSSL_PARAM params[2];
    const gcm_impl *impl;
    void *ctx = NULL; /* borrowed from a; non-NULL while a->lock is held */

    if (check_aead_args(a, nonce, aad, aad_len, ct, pt, n, tag, err) < 0) {
        goto error;
    }
    impl = a->impl;
    ctx = begin_message(a, 0, nonce, err);
    if (ctx == NULL) {
        goto error;
    }
    /* The expected tag must be in place before the final step compares it.
       The provider copies it; the cast only satisfies the void * member. */
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)tag,
                                                  CK_AEAD_TAG_LEN);
    params[1] = OSSL_PARAM_construct_end();
    if (impl->set_ctx_params(ctx, params) != 1) {
        ck_crypto_error(err, "AES-256-GCM tag");
        goto error;
    }
    if (feed(impl, ctx, NULL, aad, aad_len) < 0) {
        ck_crypto_error(err, "AES-256-GCM additional data");
        goto error;
    }
    if (feed(impl, ctx, pt, ct, n) < 0) {
        ck_crypto_error(err, "AES-256-GCM decryption");
        goto error;
    }
    /* For GCM decryption the final step fails only on a tag mismatch. The
       provider raises nothing for it, but drain the queue anyway so no
       stale entry can leak into a later call. */
    if (finish(impl, ctx) < 0) {
        ERR_clear_error();
        ck_error_set(err, CK_EAUTH, "authentication failed");
        goto error;
    }
    (void)pthread_mutex_unlock(&a->lock);
    return 0;
error:
    if (ctx != NULL) {
        (void)pthread_mutex_unlock(&a->lock);
    }
    /* Whatever was decrypted is unauthenticated: never hand it out. */
    ck_wipe(pt, n);
    return -1;
}
