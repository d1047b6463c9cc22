/*
 * ck_memcached.c - the memcached client (ck_memcached.h): key names, the
 * connection pool, and one request/reply round trip of the meta protocol.
 *
 * Replies are read into a buffer bounded by the header line limit plus
 * max_value: a peer that sends more, an unknown reply or a malformed length
 * is a protocol error and the connection is closed, never reused. Any error
 * closes the connection; one taken from the pool that turns out dead (the
 * server restarted) is retried on a fresh connection up to `retries` times.
 */
#define _GNU_SOURCE
#include "ck_memcached.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#define MC_LINE_MAX 512

/* ------------------------------------------------------------ setup */

int ck_mc_init(ck_mc_client *c, const char *const *hosts, const int *ports, size_t n,
               size_t pool_size, int64_t connect_timeout_ms, int64_t timeout_ms, unsigned retries,
               size_t max_value, const char *prefix, size_t prefix_len, ck_error *err)
{
    size_t i;

    memset(c, 0, sizeof(*c));
    if (n == 0 || n > CK_MC_MAX_SERVERS || pool_size == 0 || prefix_len > 64) {
        return ck_error_set(err, CK_EINVAL, "memcached: 1..%d servers, pool_size >= 1, "
                            "key_prefix at most 64 bytes", CK_MC_MAX_SERVERS);
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        return ck_error_set(err, CK_ENOMEM, "cannot create a mutex");
    }
    c->pool_size = pool_size;
    c->connect_timeout_ms = connect_timeout_ms;
    c->timeout_ms = timeout_ms;
    c->retries = retries;
    c->max_value = max_value;
    c->prefix = malloc(prefix_len + 1);
    if (c->prefix == NULL) {
        goto nomem;
    }
    memcpy(c->prefix, prefix, prefix_len);
    c->prefix[prefix_len] = '\0';
    c->prefix_len = prefix_len;
    for (i = 0; i < n; i++) {
        c->servers[i].host = strdup(hosts[i]);
        c->servers[i].port = ports[i];
        c->servers[i].idle = calloc(pool_size, sizeof(ck_sock *));
        c->n_servers = i + 1;
        if (c->servers[i].host == NULL || c->servers[i].idle == NULL) {
            goto nomem;
        }
    }
    return 0;
nomem:
    ck_mc_destroy(c);
    return ck_error_set(err, CK_ENOMEM, "out of memory");
}

void ck_mc_drop_idle(ck_mc_client *c)
{
    size_t i, j;

    for (i = 0; i < c->n_servers; i++) {
        if (c->servers[i].idle == NULL) {
            continue; /* ck_mc_init failed part way */
        }
        for (j = 0; j < c->servers[i].n_idle; j++) {
            ck_sock_close(c->servers[i].idle[j]);
        }
        c->servers[i].n_idle = 0;
    }
}

void ck_mc_destroy(ck_mc_client *c)
{
    size_t i;

    ck_mc_drop_idle(c);
    for (i = 0; i < c->n_servers; i++) {
        free(c->servers[i].host);
        free(c->servers[i].idle);
    }
    c->n_servers = 0;
    free(c->prefix);
    c->prefix = NULL;
    (void)pthread_mutex_destroy(&c->lock);
}

int64_t ck_mc_exptime(int64_t ttl_ms, int64_t now_s)
{
    int64_t s;

    if (ttl_ms <= 0) {
        return 0;
    }
    s = (ttl_ms + 999) / 1000;
    return s > CK_MC_THIRTY_DAYS ? now_s + s : s;
}

/* ------------------------------------------------------------ key names */

typedef struct {
    char key[CK_MC_KEY_MAX + 1];
    size_t len;
    int hashed; /* 1: the value carries the full name */
} mc_key;

static void make_key(const ck_mc_client *c, const char *name, size_t n, mc_key *k)
{
    size_t i;
    int safe = c->prefix_len + n <= CK_MC_KEY_MAX && n > 0 && name[0] != '#';

    for (i = 0; safe && i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        safe = ch > 32 && ch < 127;
    }
    memcpy(k->key, c->prefix, c->prefix_len);
    if (safe) {
        memcpy(k->key + c->prefix_len, name, n);
        k->len = c->prefix_len + n;
        k->hashed = 0;
    } else {
        XXH128_hash_t h = XXH3_128bits(name, n);
        k->len = c->prefix_len + (size_t)snprintf(k->key + c->prefix_len,
                                                  sizeof(k->key) - c->prefix_len, "#%016llx%016llx",
                                                  (unsigned long long)h.high64,
                                                  (unsigned long long)h.low64);
        k->hashed = 1;
    }
    k->key[k->len] = '\0';
}

static ck_mc_server *server_for(ck_mc_client *c, const mc_key *k)
{
    return &c->servers[c->n_servers == 1 ? 0 : XXH3_64bits(k->key, k->len) % c->n_servers];
}

/* ------------------------------------------------------------ the pool */

static ck_sock *conn_take(ck_mc_client *c, ck_mc_server *srv, int fresh, int *pooled,
                          ck_error *err)
{
    ck_sock *s = NULL;
    ck_sock_opts opts;

    *pooled = 0;
    if (!fresh) {
        (void)pthread_mutex_lock(&c->lock);
        while (srv->n_idle > 0 && s == NULL) {
            s = srv->idle[--srv->n_idle];
            if (ck_sock_is_stale(s)) {
                ck_sock_close(s);
                s = NULL;
            }
        }
        (void)pthread_mutex_unlock(&c->lock);
        if (s != NULL) {
            *pooled = 1;
            return s;
        }
    }
    memset(&opts, 0, sizeof(opts));
    opts.host = srv->host;
    opts.port = srv->port;
    opts.deadline_ns = ck_deadline_ms(c->connect_timeout_ms);
    return ck_sock_connect(&opts, err);
}

static void conn_give(ck_mc_client *c, ck_mc_server *srv, ck_sock *s)
{
    (void)pthread_mutex_lock(&c->lock);
    if (srv->n_idle < c->pool_size) {
        srv->idle[srv->n_idle++] = s;
        s = NULL;
    }
    (void)pthread_mutex_unlock(&c->lock);
    ck_sock_close(s); /* the pool was full */
}

/* ------------------------------------------------------------ a round trip */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    size_t line;       /* length of the header line, without CRLF */
    size_t data_len;   /* VA replies: the value's length */
} mc_reply;

static int reply_grow(mc_reply *r, size_t need, ck_error *err)
{
    unsigned char *p;
    size_t cap = r->cap ? r->cap : 1024;

    while (cap < need) {
        cap *= 2;
    }
    if (cap == r->cap) {
        return 0;
    }
    p = realloc(r->p, cap);
    if (p == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    r->p = p;
    r->cap = cap;
    return 0;
}

static int read_more(ck_sock *s, mc_reply *r, size_t want, int64_t deadline, ck_error *err)
{
    while (r->len < want) {
        ssize_t got;
        if (reply_grow(r, want, err) < 0) {
            return -1;
        }
        got = ck_sock_read(s, r->p + r->len, r->cap - r->len, deadline, err);
        if (got < 0) {
            return -1;
        }
        r->len += (size_t)got;
    }
    return 0;
}

/* Read one reply: the header line, and a VA reply's data block. */
static int read_reply(ck_mc_client *c, ck_sock *s, mc_reply *r, int64_t deadline, ck_error *err)
{
    unsigned char *eol = NULL;
    size_t total;

    while (eol == NULL) {
        if (r->len > MC_LINE_MAX) {
            return ck_error_set(err, CK_EPROTO, "memcached: reply line too long");
        }
        if (read_more(s, r, r->len + 1, deadline, err) < 0) {
            return -1;
        }
        eol = r->p != NULL && r->len >= 2 ? memmem(r->p, r->len, "\r\n", 2) : NULL;
    }
    r->line = (size_t)(eol - r->p);
    total = r->line + 2;
    if (r->line >= 3 && memcmp(r->p, "VA ", 3) == 0) {
        size_t i, dl = 0, digits = 0;
        for (i = 3; i < r->line && r->p[i] >= '0' && r->p[i] <= '9' && digits < 20; i++, digits++) {
            dl = dl * 10 + (size_t)(r->p[i] - '0');
        }
        if (digits == 0 || digits >= 20 || (i < r->line && r->p[i] != ' ')) {
            return ck_error_set(err, CK_EPROTO, "memcached: malformed VA reply");
        }
        if (dl > c->max_value + 4 + CK_MC_KEY_MAX + 2048) {
            return ck_error_set(err, CK_ELIMIT, "memcached: value larger than max_value");
        }
        r->data_len = dl;
        total += dl + 2;
        if (read_more(s, r, total, deadline, err) < 0) {
            return -1;
        }
        if (memcmp(r->p + total - 2, "\r\n", 2) != 0) {
            return ck_error_set(err, CK_EPROTO, "memcached: value block not terminated");
        }
    }
    if (r->len != total) {
        return ck_error_set(err, CK_EPROTO, "memcached: unexpected bytes after the reply");
    }
    return 0;
}

/* Send req (n bytes, optionally followed by data + CRLF) and read the reply. */
static int roundtrip(ck_mc_client *c, const mc_key *k, const char *req, size_t n,
                     const unsigned char *data1, size_t len1, const unsigned char *data2,
                     size_t len2, mc_reply *r, ck_error *err)
{
    ck_mc_server *srv = server_for(c, k);
    unsigned attempt;

    for (attempt = 0;; attempt++) {
        int pooled = 0, rc = 0;
        int64_t deadline;
        ck_sock *s = conn_take(c, srv, attempt > 0, &pooled, err);
        if (s == NULL) {
            return -1;
        }
        deadline = ck_deadline_ms(c->timeout_ms);
        r->len = 0;
        rc = ck_sock_write_all(s, req, n, deadline, err);
        if (rc == 0 && (data1 != NULL || data2 != NULL)) {
            rc = (len1 > 0 ? ck_sock_write_all(s, data1, len1, deadline, err) : 0) < 0 ||
                 (len2 > 0 ? ck_sock_write_all(s, data2, len2, deadline, err) : 0) < 0 ||
                 ck_sock_write_all(s, "\r\n", 2, deadline, err) < 0 ? -1 : 0;
        }
        if (rc == 0) {
            rc = read_reply(c, s, r, deadline, err);
        }
        if (rc == 0) {
            conn_give(c, srv, s);
            return 0;
        }
        ck_sock_close(s);
        /* A pooled connection the server dropped: try a fresh one. */
        if (!(pooled && err->code == CK_ECONN && attempt < c->retries)) {
            return -1;
        }
    }
}

static int line_is(const mc_reply *r, const char *word)
{
    size_t n = strlen(word);
    return r->line >= n && memcmp(r->p, word, n) == 0 && (r->line == n || r->p[n] == ' ');
}

static int unexpected(const mc_reply *r, ck_error *err)
{
    if (r->line >= 12 && memcmp(r->p, "SERVER_ERROR", 12) == 0) {
        return ck_error_set(err, CK_ESERVER, "memcached: server error");
    }
    return ck_error_set(err, CK_EPROTO, "memcached: unexpected reply");
}

/* ------------------------------------------------------------ operations */

int ck_mc_get(ck_mc_client *c, const char *name, size_t n, unsigned char **value, size_t *len,
              int64_t *ttl_s, ck_error *err)
{
    mc_reply r = {0};
    mc_key k;
    char req[CK_MC_KEY_MAX + 32];
    int reqlen, rc = -1;
    size_t i, off = 0;

    *value = NULL;
    *ttl_s = -1;
    make_key(c, name, n, &k);
    reqlen = snprintf(req, sizeof(req), "mg %s v t\r\n", k.key);
    if (roundtrip(c, &k, req, (size_t)reqlen, NULL, 0, NULL, 0, &r, err) < 0) {
        goto done;
    }
    if (line_is(&r, "EN")) {
        rc = 0;
        goto done;
    }
    if (!line_is(&r, "VA")) {
        unexpected(&r, err);
        goto done;
    }
    for (i = 3; i + 1 < r.line; i++) { /* the t flag: " t<secs>" or " t-1" */
        if (r.p[i] == ' ' && r.p[i + 1] == 't') {
            *ttl_s = strtoll((const char *)r.p + i + 2, NULL, 10);
        }
    }
    if (k.hashed) { /* u32 name length, the name, then the value */
        const unsigned char *d = r.p + r.line + 2;
        uint32_t nl;
        if (r.data_len < 4) {
            rc = 0;
            goto done;
        }
        nl = (uint32_t)d[0] | ((uint32_t)d[1] << 8) | ((uint32_t)d[2] << 16) | ((uint32_t)d[3] << 24);
        if (nl != n || r.data_len - 4 < nl || memcmp(d + 4, name, n) != 0) {
            rc = 0; /* another name with the same hash: a miss */
            goto done;
        }
        off = 4 + n;
    }
    *len = r.data_len - off;
    *value = malloc(*len > 0 ? *len : 1);
    if (*value == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(*value, r.p + r.line + 2 + off, *len);
    rc = 1;
done:
    free(r.p);
    return rc;
}

int ck_mc_set(ck_mc_client *c, const char *name, size_t n, const unsigned char *value,
              size_t len, int64_t ttl_ms, ck_error *err)
{
    mc_reply r = {0};
    mc_key k;
    unsigned char frame[4 + CK_MC_KEY_MAX];
    unsigned char *hdr = NULL;
    char req[CK_MC_KEY_MAX + 64];
    size_t hdr_len = 0;
    int reqlen, rc = -1;

    if (len > c->max_value) {
        __atomic_add_fetch(&c->too_large, 1, __ATOMIC_RELAXED);
        return 0;
    }
    make_key(c, name, n, &k);
    if (k.hashed) {
        hdr = n <= CK_MC_KEY_MAX ? frame : malloc(4 + n);
        if (hdr == NULL) {
            return ck_error_set(err, CK_ENOMEM, "out of memory");
        }
        hdr[0] = (unsigned char)n;
        hdr[1] = (unsigned char)(n >> 8);
        hdr[2] = (unsigned char)(n >> 16);
        hdr[3] = (unsigned char)(n >> 24);
        memcpy(hdr + 4, name, n);
        hdr_len = 4 + n;
    }
    reqlen = snprintf(req, sizeof(req), "ms %s %zu T%lld\r\n", k.key, hdr_len + len,
                      (long long)ck_mc_exptime(ttl_ms, (int64_t)time(NULL)));
    if (roundtrip(c, &k, req, (size_t)reqlen, hdr_len ? hdr : (const unsigned char *)"", hdr_len,
                  value, len, &r, err) < 0) {
        goto done;
    }
    if (line_is(&r, "HD")) {
        rc = 1;
    } else if (line_is(&r, "NS")) {
        rc = 0;
    } else if (r.line >= 12 && memcmp(r.p, "SERVER_ERROR", 12) == 0 &&
               memmem(r.p, r.line, "too large", 9) != NULL) {
        __atomic_add_fetch(&c->too_large, 1, __ATOMIC_RELAXED);
        rc = 0; /* over the server's item size limit: counted, skipped */
    } else {
        unexpected(&r, err);
    }
done:
    if (hdr != NULL && hdr != frame) {
        free(hdr);
    }
    free(r.p);
    return rc;
}

/* A command with no value either way: cmd then " T<exptime>" if ttl_ms >= 0.
   1 on reply `yes`, 0 on `no`, -1 otherwise. */
static int simple(ck_mc_client *c, const char *name, size_t n, const char *cmd, int64_t ttl_ms,
                  const char *yes, const char *no, ck_error *err)
{
    mc_reply r = {0};
    mc_key k;
    char req[CK_MC_KEY_MAX + 64];
    int reqlen, rc = -1;

    make_key(c, name, n, &k);
    if (ttl_ms >= 0) {
        reqlen = snprintf(req, sizeof(req), "%s %s T%lld\r\n", cmd, k.key,
                          (long long)ck_mc_exptime(ttl_ms, (int64_t)time(NULL)));
    } else {
        reqlen = snprintf(req, sizeof(req), "%s %s\r\n", cmd, k.key);
    }
    if (roundtrip(c, &k, req, (size_t)reqlen, NULL, 0, NULL, 0, &r, err) == 0) {
        rc = line_is(&r, yes) ? 1 : line_is(&r, no) ? 0 : unexpected(&r, err);
    }
    free(r.p);
    return rc;
}

int ck_mc_delete(ck_mc_client *c, const char *name, size_t n, ck_error *err)
{
    return simple(c, name, n, "md", -1, "HD", "NF", err);
}

int ck_mc_touch(ck_mc_client *c, const char *name, size_t n, int64_t ttl_ms, ck_error *err)
{
    return simple(c, name, n, "mg", ttl_ms > 0 ? ttl_ms : 0, "HD", "EN", err);
}

int ck_mc_ping(ck_mc_client *c, ck_error *err)
{
    size_t i;

    for (i = 0; i < c->n_servers; i++) {
        ck_mc_server *srv = &c->servers[i];
        mc_reply r = {0};
        int pooled, rc;
        int64_t deadline;
        ck_sock *s = conn_take(c, srv, 0, &pooled, err);

        if (s == NULL) {
            return -1;
        }
        deadline = ck_deadline_ms(c->timeout_ms);
        rc = ck_sock_write_all(s, "mn\r\n", 4, deadline, err);
        if (rc == 0) {
            rc = read_reply(c, s, &r, deadline, err);
        }
        if (rc == 0 && !line_is(&r, "MN")) {
            rc = unexpected(&r, err);
        }
        if (rc == 0) {
            conn_give(c, srv, s);
        } else {
            ck_sock_close(s);
        }
        free(r.p);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}
