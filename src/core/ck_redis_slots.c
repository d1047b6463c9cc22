/*
 * ck_redis_slots.c - CRC16 key slots, MOVED/ASK parsing and the
 * CLUSTER SLOTS parser (ck_redis_slots.h).
 */
#include <stdlib.h>
#include <string.h>

#include "ck_redis_slots.h"

uint16_t ck_crc16(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint16_t crc = 0;
    size_t i;
    int b;

    for (i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint16_t)p[i] << 8);
        for (b = 0; b < 8; b++) {
            crc = (crc & 0x8000) != 0 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

unsigned ck_cluster_key_slot(const void *key, size_t n)
{
    const char *k = key;
    const char *open = n > 0 ? memchr(k, '{', n) : NULL;

    if (open != NULL) {
        size_t from = (size_t)(open - k) + 1;
        const char *close = memchr(k + from, '}', n - from);
        if (close != NULL && close > k + from) {
            return ck_crc16(k + from, (size_t)(close - (k + from))) & (CK_CLUSTER_SLOTS - 1);
        }
    }
    return ck_crc16(k, n) & (CK_CLUSTER_SLOTS - 1);
}

/* A decimal number in s[0..n): digits only, at most 10 of them, <= max. */
static int parse_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    size_t i;

    if (n == 0 || n > 10) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

static int set_host(char *dst, const char *s, size_t n)
{
    if (n > CK_CLUSTER_MAX_HOST || memchr(s, '\0', n) != NULL) {
        return -1;
    }
    if (n == 1 && s[0] == '?') {
        n = 0; /* Redis 7: endpoint unknown, use the node we asked */
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int ck_cluster_parse_redirect(const char *s, size_t n, ck_redirect *out, ck_error *err)
{
    const char *sp, *colon, *ep;
    size_t skip;
    unsigned long slot, port;

    /* The first word decides: "MOVED"/"ASK" alone or before a space. */
    if (n >= 5 && memcmp(s, "MOVED", 5) == 0 && (n == 5 || s[5] == ' ')) {
        out->kind = CK_REDIRECT_MOVED;
        skip = n == 5 ? 5 : 6;
    } else if (n >= 3 && memcmp(s, "ASK", 3) == 0 && (n == 3 || s[3] == ' ')) {
        out->kind = CK_REDIRECT_ASK;
        skip = n == 3 ? 3 : 4;
    } else {
        return 0;
    }
    s += skip;
    n -= skip;
    sp = memchr(s, ' ', n);
    if (sp == NULL || parse_uint(s, (size_t)(sp - s), CK_CLUSTER_SLOTS - 1, &slot) < 0) {
        return ck_error_set(err, CK_EPROTO, "cluster redirect: bad slot");
    }
    ep = sp + 1;
    n -= (size_t)(ep - s);
    while (n > 0 && (ep[n - 1] == '\r' || ep[n - 1] == '\n' || ep[n - 1] == ' ')) {
        n--;
    }
    colon = NULL;
    for (skip = n; skip > 0; skip--) { /* the last ':' (IPv6 hosts hold colons) */
        if (ep[skip - 1] == ':') {
            colon = ep + skip - 1;
            break;
        }
    }
    if (colon == NULL ||
        parse_uint(colon + 1, n - (size_t)(colon + 1 - ep), 65535, &port) < 0 || port == 0) {
        return ck_error_set(err, CK_EPROTO, "cluster redirect: bad endpoint");
    }
    skip = (size_t)(colon - ep);
    if (skip >= 2 && ep[0] == '[' && ep[skip - 1] == ']') {
        ep++;
        skip -= 2;
    }
    if (memchr(ep, ' ', skip) != NULL || set_host(out->host, ep, skip) < 0) {
        return ck_error_set(err, CK_EPROTO, "cluster redirect: bad host");
    }
    out->slot = (unsigned)slot;
    out->port = (int)port;
    return 1;
}

static int reply_uint(const redisReply *r, unsigned long max, unsigned long *out)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0 ||
        (unsigned long long)r->integer > max) {
        return -1;
    }
    *out = (unsigned long)r->integer;
    return 0;
}

int ck_cluster_parse_slots(const redisReply *r, ck_slot_range **ranges, size_t *count,
                           ck_error *err)
{
    unsigned char *seen = NULL;
    ck_slot_range *out = NULL;
    size_t i, s;

    *ranges = NULL;
    *count = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements > CK_CLUSTER_MAX_RANGES) {
        return ck_error_set(err, CK_EPROTO, "CLUSTER SLOTS: not an array of ranges");
    }
    seen = calloc(CK_CLUSTER_SLOTS, 1);
    out = calloc(r->elements > 0 ? r->elements : 1, sizeof(*out));
    if (seen == NULL || out == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    for (i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i], *node;
        unsigned long start, end, port;

        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            reply_uint(e->element[0], CK_CLUSTER_SLOTS - 1, &start) < 0 ||
            reply_uint(e->element[1], CK_CLUSTER_SLOTS - 1, &end) < 0 || start > end) {
            ck_error_set(err, CK_EPROTO, "CLUSTER SLOTS: bad slot range");
            goto error;
        }
        node = e->element[2];
        if (node == NULL || node->type != REDIS_REPLY_ARRAY || node->elements < 2 ||
            reply_uint(node->element[1], 65535, &port) < 0 || port == 0) {
            ck_error_set(err, CK_EPROTO, "CLUSTER SLOTS: bad master node");
            goto error;
        }
        if (node->element[0] == NULL || node->element[0]->type == REDIS_REPLY_NIL) {
            out[i].host[0] = '\0';
        } else if (node->element[0]->type != REDIS_REPLY_STRING ||
                   set_host(out[i].host, node->element[0]->str, node->element[0]->len) < 0) {
            ck_error_set(err, CK_EPROTO, "CLUSTER SLOTS: bad master host");
            goto error;
        }
        for (s = start; s <= end; s++) {
            if (seen[s]) {
                ck_error_set(err, CK_EPROTO, "CLUSTER SLOTS: overlapping ranges");
                goto error;
            }
            seen[s] = 1;
        }
        out[i].start = (unsigned)start;
        out[i].end = (unsigned)end;
        out[i].port = (int)port;
    }
    free(seen);
    *ranges = out;
    *count = r->elements;
    return 0;

error:
    free(seen);
    free(out);
    return -1;
}
