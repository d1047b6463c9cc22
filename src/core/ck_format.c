/*
 * ck_format.c - the versioned entry frame (see ck_format.h, docs/format.md).
 *
 * Owns the byte layout of a stored entry: writing the 24-byte header,
 * choosing between a plain and an LZ4-compressed payload, the XXH3 checksum,
 * and the defensive decoder. Pure C: no Python.h, so the binding may call
 * everything here with the GIL released.
 *
 * The decoder treats its input as hostile (it comes back from a shared
 * backend). It validates every header field and bounds every length before
 * it allocates, and only then decompresses and checks the checksum.
 */
#include "ck_format.h"

#include <lz4.h>
#include <xxhash.h>

#include "ck_bytes.h"

/* Bytes covered by the header hash that seeds the checksum: everything up to,
   not including, the checksum field itself. */
#define CK_ENTRY_HASHED_HEADER 16

/* ------------------------------------------------------------------------ */
/* Shared pieces                                                            */
/* ------------------------------------------------------------------------ */

static int serializer_known(uint8_t serializer)
{
    return serializer == CK_SER_MSGPACK || serializer == CK_SER_JSON ||
           serializer == CK_SER_ARROW;
}

/*
 * The checksum binds the plaintext to the header: the header bytes 0..15
 * (magic through stored length, as stored) are hashed first and that hash
 * seeds the plaintext hash. A flip in any header field therefore changes the
 * expected checksum even when the field itself still looks valid.
 */
static uint64_t entry_checksum(const unsigned char *header, const unsigned char *plaintext,
                               size_t n)
{
    XXH64_hash_t seed = XXH3_64bits(header, CK_ENTRY_HASHED_HEADER);

    return (uint64_t)XXH3_64bits_withSeed(plaintext, n, seed);
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

int ck_entry_encode(const unsigned char *plaintext, size_t n, uint8_t serializer,
                    size_t compress_min, ck_buf *out, ck_error *err)
{
    return ck_entry_encode_ex(plaintext, n, serializer, compress_min, 0, out, err);
}

int ck_entry_encode_ex(const unsigned char *plaintext, size_t n, uint8_t serializer,
                       size_t compress_min, int signed_entry, ck_buf *out, ck_error *err)
{
    static const unsigned char empty[1] = {0};
    size_t start = out->len;
    size_t stored_len = n;
    size_t hlen = signed_entry ? CK_ENTRY_SIGNED_HEADER_LEN : CK_ENTRY_HEADER_LEN;
    uint8_t flags = signed_entry ? CK_ENTRY_FLAG_SIGNED : 0;
    unsigned char *header;
    unsigned char *payload;

    if (!serializer_known(serializer)) {
        return ck_error_set(err, CK_EINVAL, "serializer %u is not 1, 2 or 3", serializer);
    }
    /* The length fields are 32-bit; the second test only matters where
       size_t is 32-bit and H + n could wrap. */
    if (n > UINT32_MAX || n > SIZE_MAX - hlen) {
        return ck_error_set(err, CK_ELIMIT, "plaintext of %zu bytes exceeds the 4 GiB entry limit",
                            n);
    }
    if (plaintext == NULL) {
        /* Callers may pass (NULL, 0); keep the hash and copy pointers valid. */
        plaintext = empty;
    }
    /* Room for a plain payload is enough: a compressed one is only kept when
       it is strictly smaller, so we never reserve LZ4_compressBound(n). */
    if (ck_buf_reserve(out, hlen + n) < 0) {
        return ck_error_set(err, CK_ENOMEM, "out of memory framing %zu bytes", n);
    }
    header = out->data + start;
    payload = header + hlen;

    /* n >= 2 so that the capacity n - 1 below is at least 1; one byte never
       compresses anyway. LZ4 takes int sizes and refuses more than
       LZ4_MAX_INPUT_SIZE, so larger inputs are stored plain. */
    if (n >= compress_min && n >= 2 && n <= LZ4_MAX_INPUT_SIZE) {
        /* Capacity n - 1 makes LZ4 give up (return 0) as soon as the output
           would not be strictly smaller, which is exactly our rule for
           storing plain; it also means the plain-sized reservation above is
           always large enough. */
        int clen = LZ4_compress_default((const char *)plaintext, (char *)payload, (int)n,
                                        (int)(n - 1));
        if (clen > 0) {
            stored_len = (size_t)clen;
            flags |= CK_ENTRY_FLAG_COMPRESSED;
        }
    }
    if (!(flags & CK_ENTRY_FLAG_COMPRESSED) && n > 0) {
        /* Also overwrites whatever a failed compression attempt left here. */
        memcpy(payload, plaintext, n);
    }

    header[0] = CK_ENTRY_MAGIC0;
    header[1] = CK_ENTRY_MAGIC1;
    header[2] = CK_ENTRY_VERSION;
    header[3] = flags;
    header[4] = serializer;
    header[5] = (unsigned char)hlen;
    put_le16(header + 6, 0);
    put_le32(header + 8, (uint32_t)n);
    put_le32(header + 12, (uint32_t)stored_len);
    put_le64(header + 16, entry_checksum(header, plaintext, n));
    if (signed_entry) {
        /* The signature's slot; ck_entry_sign fills it. */
        memset(header + CK_ENTRY_HEADER_LEN, 0, CK_ENTRY_SIG_LEN);
    }

    out->len = start + hlen + stored_len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

int ck_entry_parse_header(const unsigned char *buf, size_t n, const ck_entry_limits *lim,
                          ck_entry_header *h, ck_error *err)
{
    uint8_t version, flags, serializer, header_len;
    uint32_t original_len, stored_len;
    uint64_t checksum;

    /* Order matters: each test only reads bytes the earlier tests proved are
       present, and no length is trusted until it has been bounded. */
    if (n < CK_ENTRY_HEADER_LEN) {
        return ck_error_set(err, CK_EFORMAT, "entry truncated: %zu bytes, header needs %d", n,
                            CK_ENTRY_HEADER_LEN);
    }
    if (buf[0] != CK_ENTRY_MAGIC0 || buf[1] != CK_ENTRY_MAGIC1) {
        return ck_error_set(err, CK_EFORMAT, "bad magic: not a cachekit entry");
    }
    version = buf[2];
    if (version != CK_ENTRY_VERSION) {
        return ck_error_set(err, CK_EFORMAT, "unsupported version %u", version);
    }
    flags = buf[3];
    if ((flags & ~(CK_ENTRY_FLAG_COMPRESSED | CK_ENTRY_FLAG_ENCRYPTED | CK_ENTRY_FLAG_EXPIRES |
                   CK_ENTRY_FLAG_SIGNED)) ||
        ((flags & CK_ENTRY_FLAG_EXPIRES) && !(flags & CK_ENTRY_FLAG_ENCRYPTED)) ||
        ((flags & CK_ENTRY_FLAG_SIGNED) && (flags & CK_ENTRY_FLAG_ENCRYPTED))) {
        return ck_error_set(err, CK_EFORMAT, "unknown flags 0x%02x", flags);
    }
    serializer = buf[4];
    if (!serializer_known(serializer)) {
        return ck_error_set(err, CK_EFORMAT, "unknown serializer %u", serializer);
    }
    /* Only encrypted entries carry a crypto block after byte 24. */
    header_len = buf[5];
    if ((flags & CK_ENTRY_FLAG_ENCRYPTED) ? header_len < CK_ENTRY_HEADER_LEN
        : (flags & CK_ENTRY_FLAG_SIGNED)  ? header_len != CK_ENTRY_SIGNED_HEADER_LEN
                                          : header_len != CK_ENTRY_HEADER_LEN) {
        return ck_error_set(err, CK_EFORMAT, "bad header_len %u", header_len);
    }
    if (get_le16(buf + 6) != 0) {
        return ck_error_set(err, CK_EFORMAT, "reserved bytes are not zero");
    }
    if (n < header_len) {
        return ck_error_set(err, CK_EFORMAT, "entry truncated: %zu bytes, header_len %u", n,
                            header_len);
    }
    original_len = get_le32(buf + 8);
    stored_len = get_le32(buf + 12);
    checksum = get_le64(buf + 16);
    /* Catches truncation and trailing garbage alike. */
    if ((uint64_t)stored_len != (uint64_t)(n - header_len)) {
        return ck_error_set(err, CK_EFORMAT, "stored_len %u but %zu payload bytes", stored_len,
                            n - header_len);
    }
    /* A plaintext hash next to ciphertext would let whoever reads the backend
       confirm a guessed value; the AEAD tag authenticates instead. */
    if ((flags & CK_ENTRY_FLAG_ENCRYPTED) && checksum != 0) {
        return ck_error_set(err, CK_EFORMAT, "checksum must be 0 in an encrypted entry");
    }
    if (original_len > lim->max_size) {
        return ck_error_set(err, CK_ELIMIT, "original_len %u exceeds max_size %zu", original_len,
                            lim->max_size);
    }
    if (flags & CK_ENTRY_FLAG_COMPRESSED) {
        /* Writers compress only when it makes the payload strictly smaller,
           and LZ4 expands at most ~255x: anything else is forged, and
           refusing it here keeps a 30-byte entry from making us allocate
           gigabytes. Both bounds also keep the LZ4 int sizes in range. */
        if (original_len == 0 || stored_len >= original_len ||
            original_len > LZ4_MAX_INPUT_SIZE) {
            return ck_error_set(err, CK_EFORMAT,
                                "original_len %u implausible for %u compressed bytes",
                                original_len, stored_len);
        }
        if ((uint64_t)original_len > (uint64_t)stored_len * lim->max_ratio) {
            return ck_error_set(err, CK_ELIMIT,
                                "original_len %u exceeds max_ratio %u x stored_len %u",
                                original_len, lim->max_ratio, stored_len);
        }
    } else if (original_len != stored_len) {
        return ck_error_set(err, CK_EFORMAT,
                            "original_len %u differs from stored_len %u in a plain payload",
                            original_len, stored_len);
    }

    h->version = version;
    h->flags = flags;
    h->serializer = serializer;
    h->header_len = header_len;
    h->original_len = original_len;
    h->stored_len = stored_len;
    h->checksum = checksum;
    return 0;
}

int ck_entry_decode(const unsigned char *buf, size_t n, const ck_entry_limits *lim,
                    ck_entry_header *h, const unsigned char **plaintext, size_t *plaintext_len,
                    ck_buf *out, ck_error *err)
{
    const unsigned char *payload;
    const unsigned char *pt;

    out->len = 0;
    if (ck_entry_parse_header(buf, n, lim, h, err) < 0) {
        return -1;
    }
    if (h->flags & CK_ENTRY_FLAG_ENCRYPTED) {
        return ck_error_set(err, CK_EINVAL, "encrypted entry: needs a key");
    }
    payload = buf + h->header_len;

    if (h->flags & CK_ENTRY_FLAG_COMPRESSED) {
        int got;

        /* original_len is bounded by max_size and max_ratio at this point. */
        if (ck_buf_reserve(out, h->original_len) < 0) {
            return ck_error_set(err, CK_ENOMEM, "out of memory decompressing %u bytes",
                                h->original_len);
        }
        /* parse_header proved stored_len < original_len <= LZ4_MAX_INPUT_SIZE,
           so both casts to int are exact. The _safe decoder never reads or
           writes outside the given bounds, whatever the input. */
        got = LZ4_decompress_safe((const char *)payload, (char *)out->data,
                                  (int)h->stored_len, (int)h->original_len);
        if (got < 0) {
            return ck_error_set(err, CK_EFORMAT, "corrupt LZ4 payload");
        }
        if ((uint32_t)got != h->original_len) {
            return ck_error_set(err, CK_EFORMAT,
                                "payload decompressed to %d bytes, original_len %u", got,
                                h->original_len);
        }
        out->len = (size_t)got;
        pt = out->data;
    } else {
        /* No copy: the caller keeps buf alive while it uses the plaintext. */
        pt = payload;
    }

    if (entry_checksum(buf, pt, h->original_len) != h->checksum) {
        out->len = 0;
        return ck_error_set(err, CK_ECHECKSUM, "checksum mismatch");
    }
    *plaintext = pt;
    *plaintext_len = h->original_len;
    return 0;
}
