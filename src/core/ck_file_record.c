/*
 * ck_file_record.c - the file store's record format (ck_file.h): encode,
 * and a defensive decode that bounds every length by the buffer before
 * using it and verifies the checksum before anything is returned. I/O-free,
 * so the fuzz harness (fuzz/fuzz_file_record.c) drives it directly.
 */
#include "ck_file.h"

#include <string.h>

#include <xxhash.h>

static const unsigned char magic[4] = {'C', 'K', 'F', '1'};

#define OFF_VERSION 4
#define OFF_CREATED 8
#define OFF_EXPIRES 16
#define OFF_NAMELEN 24
#define OFF_RESERVED 28
#define OFF_VALUELEN 32
#define OFF_HASH 40
#define OFF_CHECKSUM 56

static void put64(unsigned char *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put32(unsigned char *p, uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

void ck_file_key_hash(const char *name, size_t n, unsigned char hash[16])
{
    XXH128_hash_t h = XXH3_128bits(name, n);
    put64(hash, h.low64);
    put64(hash + 8, h.high64);
}

void ck_file_hash_hex(const unsigned char hash[16], char hex[CK_FILE_NAME_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    int i;
    for (i = 0; i < 16; i++) {
        hex[2 * i] = digits[hash[i] >> 4];
        hex[2 * i + 1] = digits[hash[i] & 15];
    }
    hex[CK_FILE_NAME_HEX] = '\0';
}

size_t ck_file_record_size(size_t name_len, size_t value_len)
{
    if (name_len > UINT32_MAX || value_len > SIZE_MAX - CK_FILE_HEADER - name_len) {
        return 0;
    }
    return CK_FILE_HEADER + name_len + value_len;
}

/* Checksum of header[0, 56) + the bytes after the header: the header's
   hash seeds the body's, as ck_format.c chains its checksum. */
static uint64_t record_checksum(const unsigned char *rec, size_t body_len)
{
    XXH64_hash_t seed = XXH3_64bits(rec, OFF_CHECKSUM);
    return (uint64_t)XXH3_64bits_withSeed(rec + CK_FILE_HEADER, body_len, seed);
}

void ck_file_record_encode(unsigned char *out, const unsigned char hash[16], uint64_t created_ms,
                           uint64_t expires_ms, const char *name, size_t name_len,
                           const unsigned char *value, size_t value_len)
{
    memset(out, 0, CK_FILE_HEADER);
    memcpy(out, magic, 4);
    out[OFF_VERSION] = 1;
    put64(out + OFF_CREATED, created_ms);
    put64(out + OFF_EXPIRES, expires_ms);
    put32(out + OFF_NAMELEN, (uint32_t)name_len);
    put64(out + OFF_VALUELEN, (uint64_t)value_len);
    memcpy(out + OFF_HASH, hash, 16);
    if (name_len > 0) {
        memcpy(out + CK_FILE_HEADER, name, name_len);
    }
    if (value_len > 0) {
        memcpy(out + CK_FILE_HEADER + name_len, value, value_len);
    }
    put64(out + OFF_CHECKSUM, record_checksum(out, name_len + value_len));
}

int ck_file_record_decode(const unsigned char *buf, size_t len, const unsigned char *hash,
                          ck_file_record *rec, ck_error *err)
{
    uint64_t name_len, value_len;

    if (len < CK_FILE_HEADER) {
        return ck_error_set(err, CK_EFORMAT, "file record truncated");
    }
    if (memcmp(buf, magic, 4) != 0 || buf[OFF_VERSION] != 1 || buf[5] != 0 || buf[6] != 0 ||
        buf[7] != 0 || get32(buf + OFF_RESERVED) != 0) {
        return ck_error_set(err, CK_EFORMAT, "not a cachekit file record");
    }
    name_len = get32(buf + OFF_NAMELEN);
    value_len = get64(buf + OFF_VALUELEN);
    /* Bound before adding: len - header is what the lengths must fill exactly. */
    if (name_len > len - CK_FILE_HEADER || value_len != len - CK_FILE_HEADER - name_len) {
        return ck_error_set(err, CK_EFORMAT, "file record length mismatch");
    }
    if (hash != NULL && memcmp(buf + OFF_HASH, hash, 16) != 0) {
        return ck_error_set(err, CK_EFORMAT, "file record belongs to another key");
    }
    if (record_checksum(buf, len - CK_FILE_HEADER) != get64(buf + OFF_CHECKSUM)) {
        return ck_error_set(err, CK_ECHECKSUM, "file record checksum mismatch");
    }
    rec->created_ms = get64(buf + OFF_CREATED);
    rec->expires_ms = get64(buf + OFF_EXPIRES);
    rec->name = buf + CK_FILE_HEADER;
    rec->name_len = (size_t)name_len;
    rec->value = buf + CK_FILE_HEADER + name_len;
    rec->value_len = (size_t)value_len;
    return 0;
}
