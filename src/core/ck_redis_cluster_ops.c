/*
 * ck_redis_cluster_ops.c - seed URLs, and the operations that concern every
 * master rather than one slot: clearing a prefix, PING (ck_redis_cluster.h).
 */
#include "ck_redis_cluster.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEEDS 64

/* ------------------------------------------------------------------ URLs */

int ck_cluster_parse_endpoint(const char *s, size_t n, ck_cluster_seed *seed, ck_error *err)
{
    ck_redis_config cfg;
    ck_buf url;
    int rc = -1;

    /* Only host[:port]: no credentials, path or query per seed. */
    if (n == 0 || memchr(s, '@', n) != NULL || memchr(s, '/', n) != NULL ||
        memchr(s, '?', n) != NULL || memchr(s, '\0', n) != NULL) {
        return ck_error_set(err, CK_EINVAL, "a cluster node must be host:port or [v6]:port");
    }
    ck_redis_config_init(&cfg);
    ck_buf_init(&url);
    if (ck_buf_append(&url, "redis://", 8) < 0 || ck_buf_append(&url, s, n) < 0 ||
        ck_buf_append_byte(&url, 0) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    if (ck_redis_config_parse_url(&cfg, (const char *)url.data, err) < 0) {
        goto done;
    }
    if (strlen(cfg.host) > CK_CLUSTER_MAX_HOST) {
        ck_error_set(err, CK_EINVAL, "a cluster node's host is longer than %d bytes",
                     CK_CLUSTER_MAX_HOST);
        goto done;
    }
    snprintf(seed->host, sizeof(seed->host), "%s", cfg.host);
    seed->port = cfg.port;
    rc = 0;
done:
    ck_buf_free(&url);
    ck_redis_config_free(&cfg);
    return rc;
}

int ck_cluster_parse_url(ck_redis_config *cfg, const char *url, ck_cluster_seed **seeds,
                         size_t *nseeds, ck_error *err)
{
    const char *rest, *base, *end, *p, *at = NULL, *hosts, *auth_end, *comma;
    size_t count = 1, i;
    ck_cluster_seed *out = NULL;
    ck_buf buf;
    int rc = -1;

    *seeds = NULL;
    *nseeds = 0;
    if (strncmp(url, "redis+cluster://", 16) == 0) {
        rest = url + 16;
        base = "redis://";
    } else if (strncmp(url, "rediss+cluster://", 17) == 0) {
        rest = url + 17;
        base = "rediss://";
    } else if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0) {
        rest = strchr(url, '/') + 2;
        base = NULL;
    } else {
        return ck_error_set(err, CK_EINVAL, "a cluster URL starts with redis+cluster://, "
                                            "rediss+cluster://, redis:// or rediss://");
    }
    end = rest + strlen(rest);
    p = memchr(rest, '?', (size_t)(end - rest));
    end = p != NULL ? p : end;
    p = memchr(rest, '/', (size_t)(end - rest));
    auth_end = p != NULL ? p : end;
    for (p = rest; p < auth_end; p++) {
        if (*p == '@') {
            at = p;
        }
    }
    hosts = at != NULL ? at + 1 : rest;
    for (p = hosts; p < auth_end; p++) {
        count += *p == ',';
    }
    if (count > MAX_SEEDS) {
        return ck_error_set(err, CK_EINVAL, "a cluster URL names more than %d nodes", MAX_SEEDS);
    }
    out = calloc(count, sizeof(*out));
    if (out == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    comma = memchr(hosts, ',', (size_t)(auth_end - hosts));
    if (comma == NULL) {
        comma = auth_end;
    }
    /* The URL with the first node only, for the common parser: it may hold
       a password, so the copy is wiped. */
    ck_buf_init_secret(&buf);
    if ((base != NULL ? ck_buf_append(&buf, base, strlen(base)) : ck_buf_append(&buf, url, (size_t)(rest - url))) < 0 ||
        ck_buf_append(&buf, rest, (size_t)(comma - rest)) < 0 ||
        ck_buf_append(&buf, auth_end, strlen(auth_end)) < 0 || ck_buf_append_byte(&buf, 0) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    if (ck_redis_config_parse_url(cfg, (const char *)buf.data, err) < 0) {
        goto done;
    }
    if (cfg->db != 0) {
        ck_error_set(err, CK_EINVAL, "a Redis Cluster has database 0 only: drop /N or ?db=N");
        goto done;
    }
    if (strlen(cfg->host) > CK_CLUSTER_MAX_HOST) {
        ck_error_set(err, CK_EINVAL, "a cluster node's host is longer than %d bytes",
                     CK_CLUSTER_MAX_HOST);
        goto done;
    }
    snprintf(out[0].host, sizeof(out[0].host), "%s", cfg->host);
    out[0].port = cfg->port;
    for (i = 1; i < count; i++) {
        const char *s = comma + 1;

        comma = memchr(s, ',', (size_t)(auth_end - s));
        if (comma == NULL) {
            comma = auth_end;
        }
        if (ck_cluster_parse_endpoint(s, (size_t)(comma - s), &out[i], err) < 0) {
            goto done;
        }
    }
    *seeds = out;
    *nseeds = count;
    out = NULL;
    rc = 0;
done:
    ck_buf_free(&buf);
    free(out);
    return rc;
}

/* ------------------------------------------------------ every master */

/* The masters, malloc'd (caller frees). NULL with err. */
static ck_cluster_seed *masters(ck_redis_cluster *c, size_t *n, ck_error *err)
{
    ck_cluster_seed *eps = malloc(CK_CLUSTER_MAX_NODES * sizeof(*eps));

    if (eps == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    if (ck_redis_cluster_masters(c, eps, CK_CLUSTER_MAX_NODES, n, err) < 0) {
        free(eps);
        return NULL;
    }
    return eps;
}

/* prefix with SCAN MATCH's glob metacharacters escaped, then '*'. */
static char *match_pattern(const char *prefix, size_t n, size_t *len)
{
    char *pat = malloc(2 * n + 2);
    size_t i, o = 0;

    if (pat == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (prefix[i] != '\0' && strchr("*?[]\\", prefix[i]) != NULL) {
            pat[o++] = '\\';
        }
        pat[o++] = prefix[i];
    }
    pat[o++] = '*';
    pat[o] = '\0';
    *len = o;
    return pat;
}

/* One UNLINK per key of a SCAN page, each routed by its own slot (the keys
   of one node span many slots: a multi-key UNLINK would be CROSSSLOT). */
static int unlink_page(ck_redis_cluster *c, const redisReply *keys, long long *unlinked,
                       ck_error *err)
{
    ck_redis_req req;
    unsigned *slots = NULL;
    redisReply **replies = NULL;
    size_t i;
    int rc = -1;

    if (keys->elements == 0) {
        return 0;
    }
    ck_redis_req_init(&req);
    slots = malloc(keys->elements * sizeof(*slots));
    replies = calloc(keys->elements, sizeof(*replies));
    if (slots == NULL || replies == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    for (i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        const char *argv[2] = {"UNLINK", NULL};
        size_t lens[2] = {6, 0};

        if (k->type != REDIS_REPLY_STRING) {
            ck_error_set(err, CK_EPROTO, "unexpected reply to SCAN");
            goto done;
        }
        argv[1] = k->str;
        lens[1] = k->len;
        slots[i] = ck_cluster_key_slot(k->str, k->len);
        if (ck_redis_req_add(&req, 2, argv, lens, err) < 0) {
            goto done;
        }
    }
    if (ck_redis_cluster_run(c, &req, slots, replies, err) < 0) {
        goto done;
    }
    for (i = 0; i < keys->elements; i++) {
        if (replies[i]->type == REDIS_REPLY_INTEGER) {
            *unlinked += replies[i]->integer;
        }
    }
    rc = 0;
done:
    if (replies != NULL) {
        for (i = 0; i < keys->elements; i++) {
            ck_redis_reply_free(replies[i]);
        }
    }
    free(replies);
    free(slots);
    ck_redis_req_free(&req);
    return rc;
}

/* SCAN one master and unlink what matches. */
static int clear_on(ck_redis_cluster *c, ck_redis_pool *pool, const char *pat, size_t patlen,
                    const char *countstr, long long *unlinked, ck_error *err)
{
    char cursor[32] = "0";
    redisReply *r = NULL;
    int rc = -1;

    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT", countstr};
        size_t lens[6] = {4, strlen(cursor), 5, patlen, 5, strlen(countstr)};
        ck_redis_req req;
        int ran;

        ck_redis_req_init(&req);
        ran = ck_redis_req_add(&req, 6, argv, lens, err) == 0 &&
              ck_redis_pool_run(pool, &req, &r, err) == 0;
        ck_redis_req_free(&req);
        if (!ran) {
            goto done;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
            r->element[0]->len >= sizeof(cursor) || r->element[1]->type != REDIS_REPLY_ARRAY) {
            ck_error_set(err, CK_EPROTO, "unexpected reply to SCAN");
            goto done;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        if (unlink_page(c, r->element[1], unlinked, err) < 0) {
            goto done;
        }
        ck_redis_reply_free(r);
        r = NULL;
    } while (strcmp(cursor, "0") != 0);
    rc = 0;
done:
    ck_redis_reply_free(r);
    return rc;
}

int ck_redis_cluster_clear_prefix(ck_redis_cluster *c, const char *prefix, size_t n,
                                  size_t count, long long *unlinked, ck_error *err)
{
    char countstr[24];
    size_t patlen = 0, nm = 0, i;
    char *pat = NULL;
    ck_cluster_seed *eps = NULL;
    ck_error first;
    int failed = 0;

    *unlinked = 0;
    snprintf(countstr, sizeof(countstr), "%zu", count == 0 ? (size_t)100 : count);
    pat = match_pattern(prefix, n, &patlen);
    if (pat == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    eps = masters(c, &nm, err);
    if (eps == NULL) {
        free(pat);
        return -1;
    }
    for (i = 0; i < nm; i++) {
        ck_redis_pool *pool = ck_redis_cluster_pool_of(c, &eps[i]);
        ck_error e;

        if (pool == NULL ||
            clear_on(c, pool, pat, patlen, countstr, unlinked, &e) < 0) {
            if (pool == NULL) {
                ck_error_set(&e, CK_ECONN, "cluster: a master has no pool");
            }
            if (!failed) {
                first = e;
                failed = 1;
            }
        }
    }
    free(eps);
    free(pat);
    if (failed) {
        if (err != NULL) {
            *err = first;
        }
        return -1;
    }
    return 0;
}

int ck_redis_cluster_ping(ck_redis_cluster *c, ck_error *err)
{
    size_t nm = 0, i;
    ck_cluster_seed *eps = masters(c, &nm, err);
    int rc = 0;

    if (eps == NULL) {
        return -1;
    }
    for (i = 0; i < nm && rc == 0; i++) {
        ck_redis_pool *pool = ck_redis_cluster_pool_of(c, &eps[i]);

        rc = pool != NULL ? ck_redis_pool_ping(pool, err)
                          : ck_error_set(err, CK_ECONN, "cluster: a master has no pool");
    }
    free(eps);
    return rc;
}
