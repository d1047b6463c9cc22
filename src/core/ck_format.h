/*
 * ck_format.h - the versioned entry frame around every stored value (pure C).
 *
 * Layout (all integers little-endian; docs/format.md is the normative text):
 *
 *   off len field
 *   0   2   magic "CK" (0x43 0x4B)
 *   2   1   version, currently 1
 *   3   1   flags: bit0 COMPRESSED (LZ4 block), bit1 ENCRYPTED, others 0
 *   4   1   serializer: 1 msgpack, 2 json, 3 arrow (0 and others invalid)
 *   5   1   header length H: 24 for plain entries; encrypted entries carry
 *           a crypto block after byte 24 (key id, nonce, tag) and a larger H
 *   6   2   reserved, must be 0
 *   8   4   original length: plaintext bytes before compression
 *   12  4   stored length: payload bytes after the header (= total - H)
 *   16  8   checksum: XXH3-64 of the plaintext, seeded with XXH3-64 of
 *           header bytes 0..15, so a flip in any header field is caught too.
 *           Zero when ENCRYPTED (the AEAD tag authenticates instead, and a
 *           plaintext hash would let the backend confirm guessed values).
 *   H   ... payload: plaintext, or its LZ4 block compression
 */
#ifndef CK_FORMAT_H
#define CK_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "ck_buf.h"
#include "ck_error.h"

#define CK_ENTRY_MAGIC0 0x43
#define CK_ENTRY_MAGIC1 0x4B
#define CK_ENTRY_VERSION 1
#define CK_ENTRY_HEADER_LEN 24

#define CK_ENTRY_FLAG_COMPRESSED 0x01
#define CK_ENTRY_FLAG_ENCRYPTED 0x02
/* Encrypted entries only: the crypto block carries the entry's expiry time,
   bound by the AAD (ck_seal.h). */
#define CK_ENTRY_FLAG_EXPIRES 0x04
/* Plain entries only: header bytes 24..55 hold an HMAC-SHA256 signature
   (ck_sign.h), so header_len is 56. */
#define CK_ENTRY_FLAG_SIGNED 0x08
#define CK_ENTRY_SIG_LEN 32
#define CK_ENTRY_SIGNED_HEADER_LEN (CK_ENTRY_HEADER_LEN + CK_ENTRY_SIG_LEN)

enum { CK_SER_MSGPACK = 1, CK_SER_JSON = 2, CK_SER_ARROW = 3 };

/* Default compression threshold: smaller payloads are stored as they are. */
#define CK_ENTRY_DEFAULT_COMPRESS_MIN 1024
/* Default cap on the plaintext size a decoder accepts (100 MiB). */
#define CK_ENTRY_DEFAULT_MAX_SIZE ((size_t)100 << 20)
/* LZ4 cannot expand data by more than ~255x; a claim above is forged. */
#define CK_ENTRY_MAX_LZ4_RATIO 255

typedef struct {
    uint8_t version;
    uint8_t flags;
    uint8_t serializer;
    uint8_t header_len;
    uint32_t original_len;
    uint32_t stored_len;
    uint64_t checksum;
} ck_entry_header;

typedef struct {
    size_t max_size;  /* largest plaintext accepted, bytes */
    uint32_t max_ratio; /* largest original_len / stored_len for compressed payloads */
} ck_entry_limits;

/*
 * Frame plaintext[0..n) as a plain (unencrypted) entry, appended to out.
 * Compresses with LZ4 when n >= compress_min and the result is smaller.
 * Returns 0, or -1 with err (CK_ELIMIT when n > UINT32_MAX, CK_ENOMEM).
 */
int ck_entry_encode(const unsigned char *plaintext, size_t n, uint8_t serializer,
                    size_t compress_min, ck_buf *out, ck_error *err);

/* ck_entry_encode, with signed_entry set: flags SIGNED, header_len 56, and a
   zeroed signature slot at 24..55 for ck_entry_sign to fill. */
int ck_entry_encode_ex(const unsigned char *plaintext, size_t n, uint8_t serializer,
                       size_t compress_min, int signed_entry, ck_buf *out, ck_error *err);

/*
 * Parse and validate the fixed header of buf[0..n): magic, version, known
 * flags, serializer, header length, reserved bytes, stored length equal to
 * n - H, original length within limits (and within the LZ4 ratio when
 * compressed, equal to stored length when not). Does not touch the payload.
 */
int ck_entry_parse_header(const unsigned char *buf, size_t n, const ck_entry_limits *lim,
                          ck_entry_header *h, ck_error *err);

/*
 * Fully decode a plain entry: parse the header, decompress if needed, verify
 * the checksum. On success *plaintext points either into buf (uncompressed)
 * or into out (compressed; out is reset first), and *plaintext_len is set.
 * Encrypted entries are refused here (CK_EINVAL); the crypto layer opens them.
 */
int ck_entry_decode(const unsigned char *buf, size_t n, const ck_entry_limits *lim,
                    ck_entry_header *h, const unsigned char **plaintext, size_t *plaintext_len,
                    ck_buf *out, ck_error *err);

#endif /* CK_FORMAT_H */
