/*
 * ck_seal.h - encrypted entries: the crypto block and AAD (pure C).
 *
 * An encrypted entry is the 24-byte entry header (ck_format.h) with flags
 * exactly ENCRYPTED, checksum 0, original length == stored length (v1 never
 * compresses before encrypting: the length of a compressed secret leaks
 * information about its content), followed by the crypto block:
 *
 *   off     len  field
 *   24      8    key fingerprint: which master key wraps the data key
 *   32      1    key provider: 1 local (master key), 2 AWS KMS, 3..255 others
 *   33      1    w: length of the wrapped data key (1..CK_SEAL_MAX_WRAPPED)
 *   34      12   nonce
 *   46      w    wrapped data key (provider-specific bytes)
 *   46+w    8    expires_at: unix time in ms, big-endian; only with the
 *                EXPIRES flag (flags = ENCRYPTED | EXPIRES), else absent
 *   +0      16   AES-256-GCM tag
 *   H=62+w(+8)   ciphertext (stored length bytes)
 *
 * AAD = "CKAAD1" || header[0 .. H-16) || be16(len tenant) || tenant
 *       || be32(len cache key) || cache key
 * so the tag binds the format version, every header field, the data key,
 * the tenant and the full cache key: an entry moved to another key or
 * tenant, or with any header byte changed, fails authentication.
 */
#ifndef CK_SEAL_H
#define CK_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "ck_buf.h"
#include "ck_crypto.h"
#include "ck_error.h"
#include "ck_format.h"

#define CK_SEAL_FP_LEN 8
#define CK_SEAL_BLOCK_FIXED (CK_SEAL_FP_LEN + 1 + 1 + CK_AEAD_NONCE_LEN + CK_AEAD_TAG_LEN)
#define CK_SEAL_EXPIRES_LEN 8
/* Room for the expiry field too, so any data key fits either form. */
#define CK_SEAL_MAX_WRAPPED (255 - CK_ENTRY_HEADER_LEN - CK_SEAL_BLOCK_FIXED - CK_SEAL_EXPIRES_LEN)
#define CK_SEAL_AAD_DOMAIN "CKAAD1"

enum { CK_PROVIDER_LOCAL = 1, CK_PROVIDER_AWS_KMS = 2 };

typedef struct {
    const unsigned char *p;
    size_t n;
} ck_span;

/* What a writer supplies about the data key. */
typedef struct {
    unsigned char key_fp[CK_SEAL_FP_LEN];
    uint8_t provider;
    ck_span wrapped;
    unsigned char nonce[CK_AEAD_NONCE_LEN];
    uint64_t expires_at_ms; /* unix ms after which readers refuse it; 0: never */
    size_t compress_min;    /* LZ4 before encrypting plaintexts of at least this many
                               bytes when that makes them smaller; 0: never (the default) */
} ck_seal_params;

/* A parsed encrypted entry; pointers into the caller's buffer. */
typedef struct {
    ck_entry_header h;
    unsigned char key_fp[CK_SEAL_FP_LEN];
    uint8_t provider;
    ck_span wrapped;
    const unsigned char *nonce;
    const unsigned char *tag;
    uint64_t expires_at_ms; /* 0 without the EXPIRES flag */
    ck_span header;     /* bytes 0 .. H-16: the header part of the AAD */
    ck_span ciphertext;
    size_t plaintext_len; /* original_len: ciphertext.n, or more when COMPRESSED */
} ck_sealed;

/*
 * Encrypt plaintext pt[0..n) (already serialized) with dek and append the
 * encrypted entry to out. Returns 0, or -1 with err (CK_EINVAL for a bad
 * provider, serializer or wrapped-key length, CK_ELIMIT, CK_ENOMEM,
 * CK_ECRYPTO).
 */
int ck_seal(ck_aead *dek, const ck_seal_params *p, uint8_t serializer, const unsigned char *pt,
            size_t n, ck_span tenant, ck_span cache_key, ck_buf *out, ck_error *err);

/* Validate the header and crypto block of buf[0..n) without decrypting. */
int ck_sealed_parse(const unsigned char *buf, size_t n, size_t max_size, ck_sealed *s,
                    ck_error *err);

/*
 * Decrypt a parsed entry into pt[0..s->plaintext_len) and verify the tag
 * against tenant and cache_key; a COMPRESSED entry is decompressed (only
 * once authenticated) to exactly plaintext_len bytes. CK_EAUTH on any
 * mismatch, CK_EFORMAT for an authentic but undecodable LZ4 block; pt is
 * wiped then.
 */
int ck_sealed_open(ck_aead *dek, const ck_sealed *s, ck_span tenant, ck_span cache_key,
                   unsigned char *pt, ck_error *err);

#endif /* CK_SEAL_H */
