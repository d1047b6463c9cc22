/*
 * ck_interop.h - the cross-SDK interop/v1 format of the cachekit-io/protocol
 * specification (spec/interop-mode.md, spec/encryption.md), pure C.
 *
 * Keys are "{namespace}:{operation}:{args_hash}", args_hash being the
 * lowercase hex BLAKE2b-256 of the canonical MessagePack encoding of the
 * flat argument array. Values are one plain MessagePack document; encrypted
 * values are nonce(12) || AES-256-GCM ciphertext || tag(16) under a key
 * HKDF-SHA256-derived from the master key and tenant, with AAD v0x03 over
 * (tenant, cache key, "msgpack", "False"). docs/interop.md has the details
 * and the decisions where the spec leaves room.
 */
#ifndef CK_INTEROP_H
#define CK_INTEROP_H

#include <stddef.h>
#include <stdint.h>

#include "ck_buf.h"
#include "ck_error.h"

#define CK_BLAKE2B_256_LEN 32
#define CK_INTEROP_SEGMENT_MAX 64
#define CK_INTEROP_TENANT_MAX 1024
#define CK_INTEROP_MAX_DEPTH 64
#define CK_INTEROP_OVERHEAD (12 + 16) /* nonce + tag */

/* Unkeyed BLAKE2b with a 32-byte digest (RFC 7693), one shot. */
void ck_blake2b_256(const unsigned char *data, size_t n, unsigned char out[CK_BLAKE2B_256_LEN]);

/* 1 if s[0..n) full-string matches ^[a-z0-9][a-z0-9._-]{0,63}$, else 0. */
int ck_interop_segment_ok(const char *s, size_t n);

/* Canonical (shortest-form) MessagePack writers. 0, or -1 on ENOMEM. */
int ck_mp_put_nil(ck_buf *b);
int ck_mp_put_bool(ck_buf *b, int v);
int ck_mp_put_uint(ck_buf *b, uint64_t v);
int ck_mp_put_int(ck_buf *b, int64_t v); /* non-negative values use the unsigned family */
int ck_mp_put_f64(ck_buf *b, double v);
int ck_mp_put_str(ck_buf *b, const char *p, size_t n);
int ck_mp_put_bin(ck_buf *b, const unsigned char *p, size_t n);
int ck_mp_put_array(ck_buf *b, size_t n);
int ck_mp_put_map(ck_buf *b, size_t n);

/*
 * Interop number canonicalization of the argument profile: an integral f in
 * [-2^63, 2^64) is written as the shortest int, anything else as float64.
 * -1 with CK_EINVAL for NaN and the infinities.
 */
int ck_mp_put_number(ck_buf *b, double f, ck_error *err);

/* Append "{ns}:{op}:{hex blake2b-256 of canonical}" (segments not checked). */
int ck_interop_key(ck_buf *out, const char *ns, size_t ns_len, const char *op, size_t op_len,
                   const unsigned char *canonical, size_t canonical_len);

/*
 * Check that data[0..n) is exactly one well-formed MessagePack document
 * with no extension types, no reserved 0xc1 byte, lengths within the
 * input, and nesting at most CK_INTEROP_MAX_DEPTH. 0, or -1 with
 * CK_EFORMAT / CK_ELIMIT.
 */
int ck_interop_check_document(const unsigned char *data, size_t n, ck_error *err);

/* AAD v0x03 with format "msgpack" and compressed "False" (4 components). */
int ck_interop_aad(ck_buf *out, const char *tenant, size_t tenant_len, const char *key,
                   size_t key_len);

/*
 * HKDF-SHA256(master, salt = "cachekit_v1_" u8(10) "encryption" u16be(len)
 * tenant, info = "encryption") -> out[0..32). Tenant 1..1024 bytes.
 */
int ck_interop_derive_key(const unsigned char *master, size_t master_len, const char *tenant,
                          size_t tenant_len, unsigned char out[32], ck_error *err);

/* SHA-256("key_fingerprint_v1" || key)[0..16). */
int ck_interop_fingerprint(const unsigned char key[32], unsigned char out[16], ck_error *err);

/*
 * Encrypt pt under the derived key of (master, tenant) with a random nonce;
 * appends nonce || ciphertext || tag to out.
 */
int ck_interop_seal(const unsigned char *master, size_t master_len, const char *tenant,
                    size_t tenant_len, const char *key, size_t key_len, const unsigned char *pt,
                    size_t n, const unsigned char *nonce_or_null, ck_buf *out, ck_error *err);

/*
 * Decrypt blob (nonce || ct || tag) into out (a secret buffer is advised).
 * CK_EFORMAT when too short, CK_EAUTH on a wrong key / tampered entry.
 */
int ck_interop_open(const unsigned char *master, size_t master_len, const char *tenant,
                    size_t tenant_len, const char *key, size_t key_len,
                    const unsigned char *blob, size_t n, ck_buf *out, ck_error *err);

#endif /* CK_INTEROP_H */
