/*
 * ck_keyring.h - master keys, per-tenant key encryption keys and data keys
 * for @cache.secure (pure C). The security argument is in docs/security.md.
 *
 * Hierarchy (local key provider):
 *   master key M (>= 32 bytes; one current, up to 8 previous, decrypt-only)
 *   fingerprint(M) = HKDF-SHA256(M, salt "cachekit/v1/fingerprint", info "")[0..8)
 *   KEK(M, tenant) = HKDF-SHA256(M, salt "cachekit/v1/kek", info tenant)
 *   DEK            = 32 random bytes, wrapped under KEK(M, tenant) with
 *                    AES-256-GCM (random nonce, AAD "CKWRAP1" || be16 len || tenant)
 *   wrapped DEK    = wrap nonce (12) || ciphertext (32) || tag (16)
 *
 * Writing: each tenant has one current DEK at a time, made fresh in this
 * process, with nonce = prefix || be64 counter: a 32-bit prefix drawn from
 * the CSPRNG for each DEK instance and a 64-bit message counter from 0. A DEK retires after max_messages, max_bytes or max_age, and in
 * a forked child (which never continues its parent's counter). DEKs
 * unwrapped for reading live in a separate cache and are never used to
 * encrypt. Concurrent misses for one DEK, on either side, fetch it once
 * (singleflight); a failed fetch is not cached; reset() bumps an epoch so a
 * fetch already in flight cannot refill the caches it cleared.
 *
 * Thread safety: all entry points may be called concurrently. Locks are
 * never held while calling anything outside the keyring's own files
 * (ck_keyring*.c) and ck_crypto/ck_l1.
 */
#ifndef CK_KEYRING_H
#define CK_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "ck_buf.h"
#include "ck_error.h"
#include "ck_seal.h"

#define CK_KEYRING_MIN_MASTER 32
#define CK_KEYRING_MAX_MASTER 128
#define CK_KEYRING_MAX_PREVIOUS 8
#define CK_KEYRING_MAX_MESSAGES ((uint64_t)1 << 32)
#define CK_KEYRING_WRAPPED_LEN (CK_AEAD_NONCE_LEN + CK_AEAD_KEY_LEN + CK_AEAD_TAG_LEN)
#define CK_KEYRING_MAX_TENANT 1024
#define CK_KEYRING_L1_KEY_LEN CK_MAC_LEN

/*
 * Hooks the binding uses to release the GIL. The keyring calls leave/enter
 * (a) around the AES-GCM pass of values of at least `threshold` bytes, with
 * only the data key's own mutex held, and (b) around every wait for a data
 * key another thread is fetching, with no lock held at all, so a provider
 * written in Python can finish its fetch. NULL hooks: a pure C caller.
 */
typedef struct {
    size_t threshold;
    void *(*leave)(void);
    void (*enter)(void *state);
} ck_unlock_hooks;

/*
 * An external key provider (AWS KMS, or any KeyProvider in Python). It makes
 * and unwraps data keys; the keyring caches them and does everything else.
 * Both callbacks run with no keyring lock held (they may block or release
 * the GIL) and must fill err on failure.
 */
typedef struct {
    uint8_t id; /* written into entries; not CK_PROVIDER_LOCAL */
    void *ctx;
    /* A fresh 32-byte data key in dek and its wrapped form in
       wrapped[0..*wrapped_len) (capacity CK_SEAL_MAX_WRAPPED on entry). */
    int (*generate)(void *ctx, ck_span tenant, unsigned char dek[CK_AEAD_KEY_LEN],
                    unsigned char *wrapped, size_t *wrapped_len, ck_error *err);
    /* Unwrap a data key the provider made for tenant. */
    int (*unwrap)(void *ctx, ck_span tenant, ck_span wrapped, unsigned char dek[CK_AEAD_KEY_LEN],
                  ck_error *err);
} ck_key_provider;

typedef struct ck_keyring ck_keyring;

typedef struct {
    uint64_t dek_max_age_ns;   /* a write DEK retires after this long */
    uint64_t dek_max_messages; /* ... or after sealing this many values (<= 2^32) */
    uint64_t dek_max_bytes;    /* ... or this many plaintext bytes */
    uint64_t read_max_age_ns;  /* unwrapped read DEKs are dropped after this long */
    size_t read_capacity;      /* most read DEKs kept (LRU) */
    size_t tenant_capacity;    /* most tenants whose KEK and write DEK are kept (LRU) */
    size_t compress_min;       /* seal: LZ4 plaintexts of at least this many bytes first
                                  when that shrinks them; 0: never (docs/security.md) */
} ck_keyring_limits;

typedef struct {
    uint64_t deks_created;   /* write DEKs generated */
    uint64_t deks_unwrapped; /* read DEKs unwrapped */
    uint64_t kek_derivations;
    uint64_t fork_resets;
    uint64_t messages;       /* values sealed under the current tenant DEKs */
    size_t tenants;
    size_t read_keys;
} ck_keyring_stats;

/* A keyring with master key M. NULL with err (CK_EINVAL for a bad key). */
ck_keyring *ck_keyring_new(const unsigned char *master, size_t len, const ck_keyring_limits *lim,
                           ck_error *err);
/*
 * A keyring whose data keys come from an external provider. key_id names
 * the provider's wrapping key; its fingerprint (HKDF-SHA256(key_id, salt
 * "cachekit/v1/provider-fingerprint", info = provider id)[0..8)) goes into
 * entries, which only this provider then opens.
 */
ck_keyring *ck_keyring_new_external(const ck_key_provider *provider, ck_span key_id,
                                    const ck_keyring_limits *lim, ck_error *err);
/* Add a previous (decrypt-only) master key (local provider only). */
int ck_keyring_add_previous(ck_keyring *kr, const unsigned char *master, size_t len,
                            ck_error *err);
/* Wipe every key and free. */
void ck_keyring_free(ck_keyring *kr);

/* Fingerprint of a master key (see the hierarchy above). */
int ck_keyring_fingerprint(const unsigned char *master, size_t len,
                           unsigned char fp[CK_SEAL_FP_LEN], ck_error *err);
void ck_keyring_current_fp(const ck_keyring *kr, unsigned char fp[CK_SEAL_FP_LEN]);
/* Number of master keys (current + previous) and the fingerprint of the
   i-th (0 is the current one). */
size_t ck_keyring_master_count(const ck_keyring *kr);
void ck_keyring_fp_at(const ck_keyring *kr, size_t i, unsigned char fp[CK_SEAL_FP_LEN]);

/* Seal serialized plaintext for (tenant, cache_key); appends the entry to out. */
int ck_keyring_seal(ck_keyring *kr, ck_span tenant, ck_span cache_key, uint8_t serializer,
                    const unsigned char *pt, size_t n, const ck_unlock_hooks *hooks, ck_buf *out,
                    ck_error *err);

/* ck_keyring_seal of an entry that readers refuse after expires_at_ms (unix
   time in ms, bound by the AAD; 0: never). */
int ck_keyring_seal_until(ck_keyring *kr, ck_span tenant, ck_span cache_key, uint8_t serializer,
                          const unsigned char *pt, size_t n, uint64_t expires_at_ms,
                          const ck_unlock_hooks *hooks, ck_buf *out, ck_error *err);

/* Wall-clock time in unix milliseconds: the time base of entry expiry. */
uint64_t ck_keyring_now_ms(void);

/*
 * Open an entry for (tenant, cache_key): the plaintext goes to pt (reset
 * first), its serializer to *serializer. CK_EAUTH when the entry does not
 * authenticate or names a master key this keyring does not hold; CK_EFORMAT
 * when it is malformed; CK_ESTALE when it authenticates but its expiry time
 * has passed (checked after the tag, so a forged expiry is CK_EAUTH). pt
 * holds nothing unauthenticated or stale on failure.
 */
int ck_keyring_open(ck_keyring *kr, const unsigned char *entry, size_t n, size_t max_size,
                    ck_span tenant, ck_span cache_key, const ck_unlock_hooks *hooks, ck_buf *pt,
                    uint8_t *serializer, ck_error *err);

/*
 * The name of an entry in a shared backend (Redis) for key bytes under
 * tenant: HMAC-SHA256 under HKDF-SHA256(current master key, salt
 * "cachekit/v1/l2-name", info tenant), 32 bytes. The same in every process
 * holding the master key, and reveals nothing about the arguments to anyone
 * without it (low-entropy arguments cannot be found by hashing guesses).
 * Keyrings with an external provider hold no master key: CK_EINVAL.
 */
#define CK_KEYRING_L2_NAME_LEN 32
/* The key that signs plain entries (ck_sign.h): HKDF-SHA256 of the current
   master key with salt "cachekit/v1/sign" and no info. Local master keys
   only (CK_EINVAL otherwise). The caller wipes out. */
int ck_keyring_sign_key(ck_keyring *kr, unsigned char out[32], ck_error *err);

/* 1 when the keys come from local master keys, 0 with an external provider. */
int ck_keyring_has_master(const ck_keyring *kr);
int ck_keyring_l2_name(ck_keyring *kr, ck_span tenant, const unsigned char *key, size_t n,
                       unsigned char out[CK_KEYRING_L2_NAME_LEN], ck_error *err);

/*
 * The L1 key of @cache.secure entries: a 128-bit keyed PRF (ck_mac.c:
 * SipHash-2-4, or HMAC-SHA256 under FIPS) of the call's key bytes under a
 * random key this keyring made at creation (and keeps until it is
 * freed; reset() leaves it, so cached entries stay reachable). The store
 * then holds no argument or tenant bytes, and no hash of them an attacker
 * could test guesses against. 0, or -1 with err.
 */
int ck_keyring_l1_key(ck_keyring *kr, const unsigned char *key, size_t n,
                      unsigned char out[CK_KEYRING_L1_KEY_LEN], ck_error *err);

/* Drop (and wipe) every cached KEK and DEK; the next seal makes new DEKs. */
void ck_keyring_reset(ck_keyring *kr);

void ck_keyring_get_stats(ck_keyring *kr, ck_keyring_stats *out);

/* Tests: move the keyring's clock (for DEK ages) forward. */
void ck_keyring_advance_clock(ck_keyring *kr, uint64_t ns);

#endif /* CK_KEYRING_H */
