/*
 * ck_crypto.h - AES-256-GCM (ck_aead.c), a keyed PRF under a random key
 * (ck_mac.c), HKDF-SHA256, randomness and key memory (ck_crypto.c), all on
 * OpenSSL 3 (pure C, no Python).
 *
 * A ck_aead holds one 256-bit key with its key schedule set up once, so
 * sealing a small value costs one IV set-up and one pass, not a key
 * expansion. Nonces are 96 bits and tags 128 bits, nothing else. The key
 * copy and the OpenSSL contexts are wiped when the ck_aead is freed.
 *
 * Thread safety: a ck_aead may be used from several threads; its contexts
 * are guarded by a mutex held only during one seal/open.
 */
#ifndef CK_CRYPTO_H
#define CK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "ck_error.h"

#define CK_AEAD_KEY_LEN 32
#define CK_AEAD_NONCE_LEN 12
#define CK_AEAD_TAG_LEN 16

typedef struct ck_aead ck_aead;

/* New AES-256-GCM context for key[0..32). NULL with err on failure. */
ck_aead *ck_aead_new(const unsigned char key[CK_AEAD_KEY_LEN], ck_error *err);
/* Wipe and free (NULL is fine). */
void ck_aead_free(ck_aead *a);

/*
 * Fetch AES-256-GCM again with OpenSSL's current default properties; if
 * that selects another provider than the implementation in use (say FIPS
 * properties were enabled since), new ck_aead objects use the new one from
 * now on (existing ones keep theirs). -1 with err when no loaded provider
 * satisfies the properties: the caller refuses to go on. force (tests)
 * re-resolves even when the provider is the same.
 */
int ck_aead_recheck(int force, ck_error *err);
/* Name of the provider new ck_aead objects use, or NULL before first use. */
const char *ck_aead_provider_name(void);

/*
 * Encrypt pt[0..n) under nonce with additional data aad[0..aad_len) into
 * ct[0..n) (ct may equal pt) and write the 16-byte tag. 0, or -1 with err.
 */
int ck_aead_seal(ck_aead *a, const unsigned char nonce[CK_AEAD_NONCE_LEN],
                 const unsigned char *aad, size_t aad_len, const unsigned char *pt, size_t n,
                 unsigned char *ct, unsigned char tag[CK_AEAD_TAG_LEN], ck_error *err);

/*
 * Decrypt ct[0..n) into pt[0..n) (pt may equal ct) and verify the tag.
 * On a tag mismatch returns -1 with err->code CK_EAUTH and wipes pt: no
 * unauthenticated plaintext is ever left for the caller.
 */
int ck_aead_open(ck_aead *a, const unsigned char nonce[CK_AEAD_NONCE_LEN],
                 const unsigned char *aad, size_t aad_len, const unsigned char *ct, size_t n,
                 const unsigned char tag[CK_AEAD_TAG_LEN], unsigned char *pt, ck_error *err);

/*
 * A keyed PRF under a random key of its own (ck_mac.c), for keying lookups
 * by a MAC of secret bytes: SipHash-2-4 with 128-bit output (ck_siphash.c,
 * checked against OpenSSL's at key setup), or under FIPS properties
 * HMAC-SHA256 truncated to 128 bits (OpenSSL's EVP_MAC). Thread-safe:
 * SipHash reads an immutable key and takes no lock; HMAC holds a mutex for
 * one MAC. An owner with pthread_atfork handlers holds that mutex across
 * fork() with ck_mac_lock_for_fork / ck_mac_unlock_after_fork (parent and
 * child alike).
 */
#define CK_MAC_LEN 16

/* SipHash-2-4-128 of msg[0..n) under the key words (k0, k1) = the 16-byte
   key read as two little-endian 64-bit words. */
void ck_siphash128(const uint64_t key[2], const unsigned char *msg, size_t n,
                   unsigned char out[16]);

typedef struct ck_mac ck_mac;

ck_mac *ck_mac_new_random(ck_error *err);
void ck_mac_free(ck_mac *m); /* NULL is fine */
/* "SipHash-2-4-128" or "HMAC-SHA256-128": which function m computes. */
const char *ck_mac_name(const ck_mac *m);
int ck_mac_compute(ck_mac *m, const unsigned char *msg, size_t n, unsigned char out[CK_MAC_LEN],
                   ck_error *err);
void ck_mac_lock_for_fork(ck_mac *m);
void ck_mac_unlock_after_fork(ck_mac *m);

/* RFC 5869 HKDF with SHA-256: out[0..out_len), out_len <= 255 * 32. */
int ck_hkdf_sha256(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt,
                   size_t salt_len, const unsigned char *info, size_t info_len, unsigned char *out,
                   size_t out_len, ck_error *err);

/* Cryptographically secure random bytes (OpenSSL's DRBG). */
/* SHA-256 of data[0..n) (OpenSSL, default properties). 0, or -1 with err. */
int ck_sha256(const unsigned char *data, size_t n, unsigned char out[32], ck_error *err);

int ck_random_bytes(unsigned char *out, size_t n, ck_error *err);

/*
 * Record an OpenSSL failure in err (CK_ECRYPTO) as "<what>: <reason>" and
 * drain the thread's OpenSSL error queue. Returns -1.
 */
int ck_crypto_error(ck_error *err, const char *what);

/* Wipe memory in a way the compiler cannot elide (memset + a barrier). */
void ck_wipe(void *p, size_t n);

/*
 * Zeroed memory for key material, from OpenSSL's secure heap: pages
 * excluded from core dumps (MADV_DONTDUMP) and locked in RAM where
 * RLIMIT_MEMLOCK allows. cachekit sets the heap up on first use unless the
 * process already did. When it is full, ordinary memory is used instead.
 * ck_secure_free wipes and frees either kind (NULL is fine).
 */
void *ck_secure_zalloc(size_t n);
void ck_secure_free(void *p, size_t n);
/* Bytes of the secure heap in use, or -1 when the process has none. */
long ck_secure_used(void);

#endif /* CK_CRYPTO_H */
