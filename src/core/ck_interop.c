/*
 * ck_interop.c - interop/v1 (cachekit-io/protocol spec/interop-mode.md):
 * canonical MessagePack writers, the key, the strict document check a
 * reader runs before decoding a foreign value, and the encryption of
 * spec/encryption.md (HKDF salt/info, AAD v0x03, nonce || ct || tag).
 * No Python here; the object walk is in src/binding/py_interop.c.
 */
#include "ck_interop.h"

#include <math.h>
#include <string.h>

#include "ck_crypto.h"

/* ------------------------------------------------------------------------ */
/* Segments                                                                 */
/* ------------------------------------------------------------------------ */

static int seg_char(unsigned char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        return 1;
    }
    return !first && (c == '.' || c == '_' || c == '-');
}

int ck_interop_segment_ok(const char *s, size_t n)
{
    if (s == NULL || n == 0 || n > CK_INTEROP_SEGMENT_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!seg_char((unsigned char)s[i], i == 0)) {
            return 0; /* also refuses NUL and a trailing newline */
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Canonical MessagePack writers                                            */
/* ------------------------------------------------------------------------ */

static int put_be(ck_buf *b, unsigned char marker, uint64_t v, int width)
{
    unsigned char tmp[9];
    tmp[0] = marker;
    for (int i = 0; i < width; i++) {
        tmp[1 + i] = (unsigned char)(v >> (8 * (width - 1 - i)));
    }
    return ck_buf_append(b, tmp, (size_t)width + 1);
}

int ck_mp_put_nil(ck_buf *b)
{
    return ck_buf_append_byte(b, 0xc0);
}

int ck_mp_put_bool(ck_buf *b, int v)
{
    return ck_buf_append_byte(b, v ? 0xc3 : 0xc2);
}

int ck_mp_put_uint(ck_buf *b, uint64_t v)
{
    if (v <= 0x7f) {
        return ck_buf_append_byte(b, (unsigned char)v);
    }
    if (v <= 0xff) {
        return put_be(b, 0xcc, v, 1);
    }
    if (v <= 0xffff) {
        return put_be(b, 0xcd, v, 2);
    }
    if (v <= 0xffffffffULL) {
        return put_be(b, 0xce, v, 4);
    }
    return put_be(b, 0xcf, v, 8);
}

int ck_mp_put_int(ck_buf *b, int64_t v)
{
    if (v >= 0) {
        return ck_mp_put_uint(b, (uint64_t)v);
    }
    if (v >= -32) {
        return ck_buf_append_byte(b, (unsigned char)(0xe0 | (v + 32)));
    }
    if (v >= INT8_MIN) {
        return put_be(b, 0xd0, (uint64_t)v, 1);
    }
    if (v >= INT16_MIN) {
        return put_be(b, 0xd1, (uint64_t)v, 2);
    }
    if (v >= INT32_MIN) {
        return put_be(b, 0xd2, (uint64_t)v, 4);
    }
    return put_be(b, 0xd3, (uint64_t)v, 8);
}

int ck_mp_put_f64(ck_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return put_be(b, 0xcb, bits, 8);
}

int ck_mp_put_number(ck_buf *b, double f, ck_error *err)
{
    if (isnan(f) || isinf(f)) {
        return ck_error_set(err, CK_EINVAL, "NaN and Infinity are not interop numbers");
    }
    /* Both bounds are powers of two, exact in binary64. */
    if (f == floor(f) && f >= -9223372036854775808.0 && f < 18446744073709551616.0) {
        if (f < 0) {
            return ck_mp_put_int(b, (int64_t)f);
        }
        return ck_mp_put_uint(b, (uint64_t)f); /* -0.0 lands here as 0 */
    }
    return ck_mp_put_f64(b, f);
}

static int put_len(ck_buf *b, size_t n, unsigned char fix, size_t fix_max, unsigned char m8,
                   unsigned char m16, unsigned char m32)
{
    if (n <= fix_max) {
        return ck_buf_append_byte(b, (unsigned char)(fix | n));
    }
    if (m8 != 0 && n <= 0xff) {
        return put_be(b, m8, n, 1);
    }
    if (n <= 0xffff) {
        return put_be(b, m16, n, 2);
    }
    if ((uint64_t)n > 0xffffffffULL) {
        return -1;
    }
    return put_be(b, m32, n, 4);
}

int ck_mp_put_str(ck_buf *b, const char *p, size_t n)
{
    if (put_len(b, n, 0xa0, 31, 0xd9, 0xda, 0xdb) < 0) {
        return -1;
    }
    return n == 0 ? 0 : ck_buf_append(b, p, n);
}

int ck_mp_put_bin(ck_buf *b, const unsigned char *p, size_t n)
{
    /* bin has no fix form: fix_max 0 would make an empty bin a fixstr. */
    if (n <= 0xff) {
        if (put_be(b, 0xc4, n, 1) < 0) {
            return -1;
        }
    } else if (put_len(b, n, 0, 0, 0, 0xc5, 0xc6) < 0) {
        return -1;
    }
    return n == 0 ? 0 : ck_buf_append(b, p, n);
}

int ck_mp_put_array(ck_buf *b, size_t n)
{
    return put_len(b, n, 0x90, 15, 0, 0xdc, 0xdd);
}

int ck_mp_put_map(ck_buf *b, size_t n)
{
    return put_len(b, n, 0x80, 15, 0, 0xde, 0xdf);
}

int ck_interop_key(ck_buf *out, const char *ns, size_t ns_len, const char *op, size_t op_len,
                   const unsigned char *canonical, size_t canonical_len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[CK_BLAKE2B_256_LEN];
    char text[2 * CK_BLAKE2B_256_LEN];

    ck_blake2b_256(canonical, canonical_len, digest);
    for (int i = 0; i < CK_BLAKE2B_256_LEN; i++) {
        text[2 * i] = hex[digest[i] >> 4];
        text[2 * i + 1] = hex[digest[i] & 15];
    }
    if (ck_buf_append(out, ns, ns_len) < 0 || ck_buf_append_byte(out, ':') < 0 ||
        ck_buf_append(out, op, op_len) < 0 || ck_buf_append_byte(out, ':') < 0 ||
        ck_buf_append(out, text, sizeof(text)) < 0) {
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Strict document check (reader side)                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *p;
    size_t left;
    ck_error *err;
} mp_cursor;

static int take_be(mp_cursor *c, int width, uint64_t *v)
{
    if (c->left < (size_t)width) {
        return ck_error_set(c->err, CK_EFORMAT, "truncated MessagePack document");
    }
    *v = 0;
    for (int i = 0; i < width; i++) {
        *v = (*v << 8) | c->p[i];
    }
    c->p += width;
    c->left -= (size_t)width;
    return 0;
}

static int skip_bytes(mp_cursor *c, uint64_t n)
{
    if (n > c->left) {
        return ck_error_set(c->err, CK_EFORMAT, "MessagePack length beyond the input");
    }
    c->p += n;
    c->left -= (size_t)n;
    return 0;
}

static int check_value(mp_cursor *c, int depth);

static int check_items(mp_cursor *c, uint64_t count, int depth)
{
    /* Every item takes at least one byte: a count past the input is a lie. */
    if (count > c->left) {
        return ck_error_set(c->err, CK_EFORMAT, "MessagePack element count beyond the input");
    }
    if (depth >= CK_INTEROP_MAX_DEPTH) {
        return ck_error_set(c->err, CK_ELIMIT, "MessagePack document nested too deeply");
    }
    for (uint64_t i = 0; i < count; i++) {
        if (check_value(c, depth + 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static int check_value(mp_cursor *c, int depth)
{
    unsigned char m;
    uint64_t n = 0;

    if (c->left == 0) {
        return ck_error_set(c->err, CK_EFORMAT, "truncated MessagePack document");
    }
    m = *c->p++;
    c->left--;
    if (m <= 0x7f || m >= 0xe0 || m == 0xc0 || m == 0xc2 || m == 0xc3) {
        return 0;
    }
    if ((m & 0xe0) == 0xa0) {
        return skip_bytes(c, m & 0x1f);
    }
    if ((m & 0xf0) == 0x90) {
        return check_items(c, m & 0x0f, depth);
    }
    if ((m & 0xf0) == 0x80) {
        return check_items(c, 2ULL * (m & 0x0f), depth);
    }
    switch (m) {
    case 0xcc: case 0xd0: return skip_bytes(c, 1);
    case 0xcd: case 0xd1: return skip_bytes(c, 2);
    case 0xce: case 0xd2: case 0xca: return skip_bytes(c, 4);
    case 0xcf: case 0xd3: case 0xcb: return skip_bytes(c, 8);
    case 0xc4: case 0xd9:
        return take_be(c, 1, &n) < 0 ? -1 : skip_bytes(c, n);
    case 0xc5: case 0xda:
        return take_be(c, 2, &n) < 0 ? -1 : skip_bytes(c, n);
    case 0xc6: case 0xdb:
        return take_be(c, 4, &n) < 0 ? -1 : skip_bytes(c, n);
    case 0xdc:
        return take_be(c, 2, &n) < 0 ? -1 : check_items(c, n, depth);
    case 0xdd:
        return take_be(c, 4, &n) < 0 ? -1 : check_items(c, n, depth);
    case 0xde:
        return take_be(c, 2, &n) < 0 ? -1 : check_items(c, 2 * n, depth);
    case 0xdf:
        return take_be(c, 4, &n) < 0 ? -1 : check_items(c, 2 * n, depth);
    default:
        /* 0xc1 (never used) and the ext family 0xc7-0xc9, 0xd4-0xd8. */
        return ck_error_set(c->err, CK_EFORMAT,
                            "not an interop value: reserved byte or extension type 0x%02x", m);
    }
}

int ck_interop_check_document(const unsigned char *data, size_t n, ck_error *err)
{
    mp_cursor c = {data, n, err};

    if (data == NULL || n == 0) {
        return ck_error_set(err, CK_EFORMAT, "empty interop value");
    }
    if (check_value(&c, 0) < 0) {
        return -1;
    }
    if (c.left != 0) {
        if (n >= 2 && data[0] == 0x43 && data[1] == 0x4b) {
            return ck_error_set(err, CK_EFORMAT,
                                "Python-SDK-internal auto-mode entry (CK frame), not an interop value");
        }
        return ck_error_set(err, CK_EFORMAT, "trailing bytes after the MessagePack document");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Encryption (spec/encryption.md)                                          */
/* ------------------------------------------------------------------------ */

static int put_component(ck_buf *b, const void *p, size_t n)
{
    if ((uint64_t)n > 0xffffffffULL || put_be(b, (unsigned char)(n >> 24), n & 0xffffff, 3) < 0) {
        return -1;
    }
    return n == 0 ? 0 : ck_buf_append(b, p, n);
}

int ck_interop_aad(ck_buf *out, const char *tenant, size_t tenant_len, const char *key,
                   size_t key_len)
{
    if (ck_buf_append_byte(out, 0x03) < 0 || put_component(out, tenant, tenant_len) < 0 ||
        put_component(out, key, key_len) < 0 || put_component(out, "msgpack", 7) < 0 ||
        put_component(out, "False", 5) < 0) {
        return -1;
    }
    return 0;
}

#define DOMAIN "encryption"
/* Byte strings of the spec, not C strings (no terminator is copied). */
static const unsigned char salt_prefix[12] = {'c', 'a', 'c', 'h', 'e', 'k',
                                              'i', 't', '_', 'v', '1', '_'};
static const unsigned char fp_prefix[18] = {'k', 'e', 'y', '_', 'f', 'i', 'n', 'g', 'e',
                                            'r', 'p', 'r', 'i', 'n', 't', '_', 'v', '1'};

int ck_interop_derive_key(const unsigned char *master, size_t master_len, const char *tenant,
                          size_t tenant_len, unsigned char out[32], ck_error *err)
{
    unsigned char salt[sizeof(salt_prefix) + 1 + sizeof(DOMAIN) - 1 + 2 + CK_INTEROP_TENANT_MAX];
    size_t at = 0;

    if (tenant_len == 0 || tenant_len > CK_INTEROP_TENANT_MAX) {
        return ck_error_set(err, CK_EINVAL, "interop tenant id must be 1 to %d bytes",
                            CK_INTEROP_TENANT_MAX);
    }
    if (master_len < 16) {
        return ck_error_set(err, CK_EINVAL, "interop master key must be at least 16 bytes");
    }
    memcpy(salt, salt_prefix, sizeof(salt_prefix));
    at = sizeof(salt_prefix);
    salt[at++] = (unsigned char)(sizeof(DOMAIN) - 1);
    memcpy(salt + at, DOMAIN, sizeof(DOMAIN) - 1);
    at += sizeof(DOMAIN) - 1;
    salt[at++] = (unsigned char)(tenant_len >> 8);
    salt[at++] = (unsigned char)tenant_len;
    memcpy(salt + at, tenant, tenant_len);
    at += tenant_len;
    return ck_hkdf_sha256(master, master_len, salt, at, (const unsigned char *)DOMAIN,
                          sizeof(DOMAIN) - 1, out, 32, err);
}

int ck_interop_fingerprint(const unsigned char key[32], unsigned char out[16], ck_error *err)
{
    unsigned char msg[sizeof(fp_prefix) + 32], digest[32];
    int rc;

    memcpy(msg, fp_prefix, sizeof(fp_prefix));
    memcpy(msg + sizeof(fp_prefix), key, 32);
    rc = ck_sha256(msg, sizeof(msg), digest, err);
    if (rc == 0) {
        memcpy(out, digest, 16);
    }
    ck_wipe(msg, sizeof(msg));
    return rc;
}

int ck_interop_seal(const unsigned char *master, size_t master_len, const char *tenant,
                    size_t tenant_len, const char *key, size_t key_len, const unsigned char *pt,
                    size_t n, const unsigned char *nonce_or_null, ck_buf *out, ck_error *err)
{
    unsigned char dk[32];
    unsigned char *dst;
    ck_aead *aead = NULL;
    ck_buf aad;
    int rc = -1;

    ck_buf_init(&aad);
    if (ck_interop_derive_key(master, master_len, tenant, tenant_len, dk, err) < 0) {
        goto error;
    }
    if (ck_interop_aad(&aad, tenant, tenant_len, key, key_len) < 0 ||
        ck_buf_reserve(out, n + CK_INTEROP_OVERHEAD) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    aead = ck_aead_new(dk, err);
    if (aead == NULL) {
        goto error;
    }
    dst = out->data + out->len;
    if (nonce_or_null != NULL) {
        memcpy(dst, nonce_or_null, CK_AEAD_NONCE_LEN);
    } else if (ck_random_bytes(dst, CK_AEAD_NONCE_LEN, err) < 0) {
        goto error;
    }
    if (ck_aead_seal(aead, dst, aad.data, aad.len, pt, n, dst + CK_AEAD_NONCE_LEN,
                     dst + CK_AEAD_NONCE_LEN + n, err) < 0) {
        goto error;
    }
    out->len += n + CK_INTEROP_OVERHEAD;
    rc = 0;
error:
    ck_aead_free(aead);
    ck_wipe(dk, sizeof(dk));
    ck_buf_free(&aad);
    return rc;
}

int ck_interop_open(const unsigned char *master, size_t master_len, const char *tenant,
                    size_t tenant_len, const char *key, size_t key_len,
                    const unsigned char *blob, size_t n, ck_buf *out, ck_error *err)
{
    unsigned char dk[32];
    ck_aead *aead = NULL;
    ck_buf aad;
    size_t ct_len;
    int rc = -1;

    ck_buf_init(&aad);
    if (n < CK_INTEROP_OVERHEAD) {
        return ck_error_set(err, CK_EFORMAT, "interop ciphertext shorter than nonce and tag");
    }
    ct_len = n - CK_INTEROP_OVERHEAD;
    if (ck_interop_derive_key(master, master_len, tenant, tenant_len, dk, err) < 0) {
        goto error;
    }
    if (ck_interop_aad(&aad, tenant, tenant_len, key, key_len) < 0 ||
        ck_buf_reserve(out, ct_len + 1) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    aead = ck_aead_new(dk, err);
    if (aead == NULL) {
        goto error;
    }
    if (ck_aead_open(aead, blob, aad.data, aad.len, blob + CK_AEAD_NONCE_LEN, ct_len,
                     blob + n - CK_AEAD_TAG_LEN, out->data + out->len, err) < 0) {
        goto error;
    }
    out->len += ct_len;
    rc = 0;
error:
    ck_aead_free(aead);
    ck_wipe(dk, sizeof(dk));
    ck_buf_free(&aad);
    return rc;
}
