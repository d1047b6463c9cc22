/*
 * ck_seal.c - writing and opening encrypted entries (layout in ck_seal.h,
 * normative text in docs/format.md, "Encrypted entries").
 *
 * Opening is ordered so no plaintext is used before it is authenticated:
 * parse and bound the header and crypto block, build the AAD, decrypt into
 * the caller's buffer, verify the tag (ck_aead_open wipes the buffer on a
 * mismatch), and only then hand the plaintext to the codec.
 */
#include "ck_seal.h"

#include <string.h>

#include <lz4.h>

#include "ck_bytes.h"
#include "ck_crypto.h"

/* 1 local, 2 AWS KMS, 3..255 other providers; 0 is never written. */
static int provider_known(uint8_t provider)
{
    return provider != 0;
}

/* AAD = domain || header part || be16 tenant length || tenant
         || be32 cache key length || cache key. */
static int build_aad(ck_span header, ck_span tenant, ck_span cache_key, ck_buf *aad,
                     ck_error *err)
{
    unsigned char len16[2], len32[4];

    if (tenant.n > UINT16_MAX || cache_key.n > UINT32_MAX) {
        return ck_error_set(err, CK_ELIMIT, "tenant or cache key too long for the AAD");
    }
    put_be16(len16, (uint16_t)tenant.n);
    put_be32(len32, (uint32_t)cache_key.n);
    if (ck_buf_append(aad, CK_SEAL_AAD_DOMAIN, sizeof(CK_SEAL_AAD_DOMAIN) - 1) < 0 ||
        ck_buf_append(aad, header.p, header.n) < 0 || ck_buf_append(aad, len16, 2) < 0 ||
        ck_buf_append(aad, tenant.p, tenant.n) < 0 || ck_buf_append(aad, len32, 4) < 0 ||
        ck_buf_append(aad, cache_key.p, cache_key.n) < 0) {
        return ck_error_set(err, CK_ENOMEM, "out of memory building the AAD");
    }
    return 0;
}

int ck_seal(ck_aead *dek, const ck_seal_params *p, uint8_t serializer, const unsigned char *pt,
            size_t n, ck_span tenant, ck_span cache_key, ck_buf *out, ck_error *err)
{
    size_t start = out->len, hlen, body_n = n;
    const unsigned char *body = pt;
    unsigned char *e;
    ck_buf aad, z;
    ck_span header;
    int rc = -1, compressed = 0;

    ck_buf_init_secret(&aad); /* holds the tenant and cache key (call arguments) */
    ck_buf_init_secret(&z);   /* the compressed plaintext: as secret as the plaintext */
    if (!provider_known(p->provider)) {
        ck_error_set(err, CK_EINVAL, "unknown key provider %u", p->provider);
        goto error;
    }
    if (p->wrapped.n == 0 || p->wrapped.n > CK_SEAL_MAX_WRAPPED) {
        ck_error_set(err, CK_EINVAL, "wrapped data key of %zu bytes (1..%d allowed)",
                     p->wrapped.n, CK_SEAL_MAX_WRAPPED);
        goto error;
    }
    if (serializer != CK_SER_MSGPACK && serializer != CK_SER_JSON && serializer != CK_SER_ARROW) {
        ck_error_set(err, CK_EINVAL, "serializer %u is not 1, 2 or 3", serializer);
        goto error;
    }
    hlen = CK_ENTRY_HEADER_LEN + CK_SEAL_BLOCK_FIXED + p->wrapped.n +
           (p->expires_at_ms != 0 ? CK_SEAL_EXPIRES_LEN : 0);
    if (n > UINT32_MAX || n > SIZE_MAX - hlen) {
        ck_error_set(err, CK_ELIMIT, "plaintext of %zu bytes exceeds the 4 GiB entry limit", n);
        goto error;
    }
    /* Opt-in compression (docs/security.md, "Compression before
       encryption"): the plaintext's LZ4 block when it is strictly smaller,
       as for plain entries (capacity n - 1 makes LZ4 give up early). */
    if (p->compress_min != 0 && n >= p->compress_min && n >= 2 && n <= LZ4_MAX_INPUT_SIZE) {
        int clen;

        if (ck_buf_reserve(&z, n - 1) < 0) {
            ck_error_set(err, CK_ENOMEM, "out of memory compressing %zu bytes", n);
            goto error;
        }
        clen = LZ4_compress_default((const char *)pt, (char *)z.data, (int)n, (int)(n - 1));
        if (clen > 0) {
            z.len = (size_t)clen;
            body = z.data;
            body_n = (size_t)clen;
            compressed = 1;
        }
    }
    if (ck_buf_reserve(out, hlen + body_n) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory sealing %zu bytes", n);
        goto error;
    }
    e = out->data + start;
    e[0] = CK_ENTRY_MAGIC0;
    e[1] = CK_ENTRY_MAGIC1;
    e[2] = CK_ENTRY_VERSION;
    e[3] = CK_ENTRY_FLAG_ENCRYPTED | (p->expires_at_ms != 0 ? CK_ENTRY_FLAG_EXPIRES : 0) |
           (compressed ? CK_ENTRY_FLAG_COMPRESSED : 0);
    e[4] = serializer;
    e[5] = (unsigned char)hlen;
    put_le16(e + 6, 0);
    put_le32(e + 8, (uint32_t)n);
    put_le32(e + 12, (uint32_t)body_n);
    put_le64(e + 16, 0);
    memcpy(e + 24, p->key_fp, CK_SEAL_FP_LEN);
    e[32] = p->provider;
    e[33] = (unsigned char)p->wrapped.n;
    memcpy(e + 34, p->nonce, CK_AEAD_NONCE_LEN);
    memcpy(e + 46, p->wrapped.p, p->wrapped.n);
    if (p->expires_at_ms != 0) {
        put_be64(e + 46 + p->wrapped.n, p->expires_at_ms);
    }

    header.p = e;
    header.n = hlen - CK_AEAD_TAG_LEN;
    if (build_aad(header, tenant, cache_key, &aad, err) < 0) {
        goto error;
    }
    /* The tag goes to its slot at the end of the header. */
    if (ck_aead_seal(dek, p->nonce, aad.data, aad.len, body, body_n, e + hlen,
                     e + hlen - CK_AEAD_TAG_LEN, err) < 0) {
        goto error;
    }
    out->len = start + hlen + body_n;
    rc = 0;
error:
    ck_buf_free(&aad);
    ck_buf_free(&z); /* wipes */
    return rc;
}

int ck_sealed_parse(const unsigned char *buf, size_t n, size_t max_size, ck_sealed *s,
                    ck_error *err)
{
    ck_entry_limits lim = {max_size, CK_ENTRY_MAX_LZ4_RATIO};
    size_t w, extra;

    if (ck_entry_parse_header(buf, n, &lim, &s->h, err) < 0) {
        return -1;
    }
    if ((s->h.flags & ~(CK_ENTRY_FLAG_COMPRESSED | CK_ENTRY_FLAG_EXPIRES)) !=
        CK_ENTRY_FLAG_ENCRYPTED) {
        return ck_error_set(err, CK_EFORMAT, "not an encrypted entry (flags 0x%02x)", s->h.flags);
    }
    extra = (s->h.flags & CK_ENTRY_FLAG_EXPIRES) ? CK_SEAL_EXPIRES_LEN : 0;
    if (s->h.header_len < CK_ENTRY_HEADER_LEN + CK_SEAL_BLOCK_FIXED + extra + 1) {
        return ck_error_set(err, CK_EFORMAT, "encrypted header_len %u too short",
                            s->h.header_len);
    }
    w = buf[33];
    if (w == 0 ||
        (size_t)s->h.header_len != CK_ENTRY_HEADER_LEN + CK_SEAL_BLOCK_FIXED + w + extra) {
        return ck_error_set(err, CK_EFORMAT, "wrapped key length %zu does not match header_len %u",
                            w, s->h.header_len);
    }
    /* With COMPRESSED, ck_entry_parse_header bounded original_len (below
       max_size, max_ratio x stored_len, LZ4's limit) and required
       stored_len < original_len. */
    if (!(s->h.flags & CK_ENTRY_FLAG_COMPRESSED) && s->h.original_len != s->h.stored_len) {
        return ck_error_set(err, CK_EFORMAT, "encrypted entry lengths differ");
    }
    s->provider = buf[32];
    if (!provider_known(s->provider)) {
        return ck_error_set(err, CK_EFORMAT, "unknown key provider %u", s->provider);
    }
    memcpy(s->key_fp, buf + 24, CK_SEAL_FP_LEN);
    s->nonce = buf + 34;
    s->wrapped.p = buf + 46;
    s->wrapped.n = w;
    s->expires_at_ms = extra ? get_be64(buf + 46 + w) : 0;
    if (extra && s->expires_at_ms == 0) {
        return ck_error_set(err, CK_EFORMAT, "EXPIRES flag with expiry 0");
    }
    s->tag = buf + s->h.header_len - CK_AEAD_TAG_LEN;
    s->header.p = buf;
    s->header.n = s->h.header_len - CK_AEAD_TAG_LEN;
    s->ciphertext.p = buf + s->h.header_len;
    s->ciphertext.n = s->h.stored_len;
    s->plaintext_len = s->h.original_len;
    return 0;
}

/* AADs up to this size are built on the stack when opening (the common
   case: an L1 hit), sparing a heap allocation and its wipe; larger ones go
   to a secret ck_buf. Either way the bytes are wiped afterwards. */
#define CK_SEAL_STACK_AAD 512

/* Decrypt and authenticate the ciphertext into pt[0..s->ciphertext.n). */
static int open_raw(ck_aead *dek, const ck_sealed *s, ck_span tenant, ck_span cache_key,
                    unsigned char *pt, ck_error *err)
{
    unsigned char stack[CK_SEAL_STACK_AAD];
    size_t d = sizeof(CK_SEAL_AAD_DOMAIN) - 1, need;
    ck_buf aad;
    int rc = -1;

    ck_buf_init_secret(&aad);
    need = d + s->header.n + 2 + tenant.n + 4 + cache_key.n;
    if (need <= sizeof(stack) && tenant.n <= UINT16_MAX) {
        unsigned char *q = stack;

        /* memcpy only non-empty spans: an empty tenant or key may be NULL. */
        memcpy(q, CK_SEAL_AAD_DOMAIN, d);
        q += d;
        if (s->header.n > 0) {
            memcpy(q, s->header.p, s->header.n);
        }
        q += s->header.n;
        put_be16(q, (uint16_t)tenant.n);
        if (tenant.n > 0) {
            memcpy(q + 2, tenant.p, tenant.n);
        }
        q += 2 + tenant.n;
        put_be32(q, (uint32_t)cache_key.n);
        if (cache_key.n > 0) {
            memcpy(q + 4, cache_key.p, cache_key.n);
        }
        rc = ck_aead_open(dek, s->nonce, stack, need, s->ciphertext.p, s->ciphertext.n, s->tag,
                          pt, err);
        ck_wipe(stack, need); /* the tenant and cache key: call arguments */
        goto error;
    }
    if (build_aad(s->header, tenant, cache_key, &aad, err) < 0) {
        goto error;
    }
    rc = ck_aead_open(dek, s->nonce, aad.data, aad.len, s->ciphertext.p, s->ciphertext.n, s->tag,
                      pt, err);
error:
    ck_buf_free(&aad);
    return rc;
}

int ck_sealed_open(ck_aead *dek, const ck_sealed *s, ck_span tenant, ck_span cache_key,
                   unsigned char *pt, ck_error *err)
{
    ck_buf z;
    int got, rc = -1;

    if (!(s->h.flags & CK_ENTRY_FLAG_COMPRESSED)) {
        return open_raw(dek, s, tenant, cache_key, pt, err);
    }
    /* Authenticate first, into a scratch buffer; only an authentic LZ4
       block is decoded (the _safe decoder, bounded by plaintext_len, which
       the header checks bounded by max_size and max_ratio). */
    ck_buf_init_secret(&z);
    if (ck_buf_reserve(&z, s->ciphertext.n) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory for %zu bytes", s->ciphertext.n);
        goto done;
    }
    if (open_raw(dek, s, tenant, cache_key, z.data, err) < 0) {
        goto done;
    }
    z.len = s->ciphertext.n;
    got = LZ4_decompress_safe((const char *)z.data, (char *)pt, (int)s->ciphertext.n,
                              (int)s->plaintext_len);
    if (got < 0 || (size_t)got != s->plaintext_len) {
        ck_wipe(pt, s->plaintext_len);
        ck_error_set(err, CK_EFORMAT, "authentic entry with a corrupt LZ4 payload");
        goto done;
    }
    rc = 0;
done:
    ck_buf_free(&z); /* wipes */
    return rc;
}
