/*
 * ck_redis_sentinel.c - redis+sentinel:// URLs and the sentinel part of a
 * ck_redis_config: parse, copy, free, describe (ck_redis_sentinel.h).
 *
 * The URL is taken apart into the sentinel list, the service name and the
 * sentinel_* query parameters; what is left (user info, database, the other
 * query parameters) is the master's, and is handed to the ordinary
 * redis:// parser as a rebuilt URL, so both schemes share one grammar for
 * credentials and options. The rebuilt URL can hold the password: it is
 * wiped before it is freed. Messages never quote the URL.
 */
#include <stdlib.h>
#include <string.h>

#include "ck_crypto.h"
#include "ck_redis_sentinel.h"

#define SCHEME "redis+sentinel://"
#define PLACEHOLDER "sentinel-master" /* host of the rebuilt URL, replaced */

static void free_str(char **s)
{
    if (*s != NULL) {
        ck_wipe(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void ck_redis_sentinel_cfg_free(ck_redis_sentinel_cfg *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    free_str(&s->service);
    for (i = 0; i < CK_SENTINEL_MAX; i++) {
        free_str(&s->hosts[i]);
    }
    free_str(&s->username);
    free_str(&s->password);
    free(s);
}

int ck_redis_sentinel_cfg_copy(ck_redis_sentinel_cfg **dst, const ck_redis_sentinel_cfg *src,
                               ck_error *err)
{
    ck_redis_sentinel_cfg *d;
    size_t i;

    *dst = NULL;
    if (src == NULL) {
        return 0;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    d->n = src->n;
    memcpy(d->ports, src->ports, sizeof(d->ports));
    if ((src->service != NULL &&
         ck_redis_config_set(&d->service, src->service, strlen(src->service), err) < 0) ||
        (src->username != NULL &&
         ck_redis_config_set(&d->username, src->username, strlen(src->username), err) < 0) ||
        (src->password != NULL &&
         ck_redis_config_set(&d->password, src->password, strlen(src->password), err) < 0)) {
        goto error;
    }
    for (i = 0; i < src->n; i++) {
        if (ck_redis_config_set(&d->hosts[i], src->hosts[i], strlen(src->hosts[i]), err) < 0) {
            goto error;
        }
    }
    *dst = d;
    return 0;
error:
    ck_redis_sentinel_cfg_free(d);
    return -1;
}

void ck_redis_sentinel_describe(const ck_redis_sentinel_cfg *s, char *buf, size_t n)
{
    size_t i, o = 0;

    if (n == 0) {
        return;
    }
    buf[0] = '\0';
    for (i = 0; i < s->n && o < n; i++) {
        int v6 = strchr(s->hosts[i], ':') != NULL;
        int w = snprintf(buf + o, n - o, "%s%s%s%s:%d", i > 0 ? "," : "", v6 ? "[" : "",
                         s->hosts[i], v6 ? "]" : "", s->ports[i]);
        if (w < 0) {
            return;
        }
        o += (size_t)w;
    }
    if (o < n) {
        (void)snprintf(buf + o, n - o, "/%s", s->service);
    }
}

/* ---------------------------------------------------------------- parsing */

static int buf_add(ck_buf *b, const void *p, size_t n, ck_error *err)
{
    if (ck_buf_append(b, p, n) < 0) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* *slot = percent-decoded copy of s[0..n), non-empty. */
static int set_decoded(char **slot, const char *s, size_t n, const char *what, ck_error *err)
{
    char *tmp = malloc(n + 1);
    size_t i, o = 0;
    int rc = -1;

    if (tmp == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                ck_error_set(err, CK_EINVAL, "invalid percent escape in the URL's %s", what);
                goto done;
            }
            tmp[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            tmp[o++] = s[i];
        }
    }
    if (o == 0) {
        ck_error_set(err, CK_EINVAL, "the URL's %s is empty", what);
        goto done;
    }
    rc = ck_redis_config_set(slot, tmp, o, err);
    if (rc < 0 && err != NULL && err->code == CK_EINVAL) {
        ck_error_set(err, CK_EINVAL, "the URL's %s decodes to a NUL character", what);
    }
done:
    ck_wipe(tmp, n + 1);
    free(tmp);
    return rc;
}

/* One "host", "host:port", "[v6]" or "[v6]:port" of the sentinel list. */
static int parse_sentinel(ck_redis_sentinel_cfg *s, const char *p, size_t n, ck_error *err)
{
    const char *host = p, *port = NULL;
    size_t hlen = n, plen = 0, i;
    long v = 0;

    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL) {
            return ck_error_set(err, CK_EINVAL, "unterminated [IPv6 address] in the sentinel "
                                                "list");
        }
        host = p + 1;
        hlen = (size_t)(close - p) - 1;
        if ((size_t)(close - p) + 1 < n) {
            if (close[1] != ':') {
                return ck_error_set(err, CK_EINVAL, "unexpected text after ] in the sentinel "
                                                    "list");
            }
            port = close + 2;
            plen = n - (size_t)(port - p);
        }
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon != NULL) {
            hlen = (size_t)(colon - p);
            port = colon + 1;
            plen = n - hlen - 1;
        }
    }
    if (hlen == 0 || hlen > 255) {
        return ck_error_set(err, CK_EINVAL, "a sentinel in the URL has no host (or one over "
                                            "255 bytes)");
    }
    if (s->n == CK_SENTINEL_MAX) {
        return ck_error_set(err, CK_EINVAL, "the URL names more than %d sentinels",
                            CK_SENTINEL_MAX);
    }
    if (port != NULL) {
        for (i = 0; i < plen && v <= 65535; i++) {
            if (port[i] < '0' || port[i] > '9') {
                v = -1;
                break;
            }
            v = v * 10 + (port[i] - '0');
        }
        if (plen == 0 || v <= 0 || v > 65535) {
            return ck_error_set(err, CK_EINVAL, "a sentinel's port must be 1-65535");
        }
    } else {
        v = CK_SENTINEL_DEFAULT_PORT;
    }
    if (ck_redis_config_set(&s->hosts[s->n], host, hlen, err) < 0) {
        return -1;
    }
    s->ports[s->n++] = (int)v;
    return 0;
}

/* Split the query: sentinel_* into s, the rest appended to `rest`. */
static int parse_query(ck_redis_sentinel_cfg *s, const char *q, size_t n, ck_buf *rest,
                       ck_error *err)
{
    while (n > 0) {
        const char *amp = memchr(q, '&', n);
        size_t len = amp != NULL ? (size_t)(amp - q) : n;
        int rc = 0;

        if (len > 18 && memcmp(q, "sentinel_password=", 18) == 0) {
            rc = set_decoded(&s->password, q + 18, len - 18, "sentinel_password", err);
        } else if (len > 18 && memcmp(q, "sentinel_username=", 18) == 0) {
            rc = set_decoded(&s->username, q + 18, len - 18, "sentinel_username", err);
        } else if (len > 0) {
            if ((rest->len > 0 && buf_add(rest, "&", 1, err) < 0) ||
                buf_add(rest, q, len, err) < 0) {
                return -1;
            }
        }
        if (rc < 0) {
            return -1;
        }
        if (amp == NULL) {
            break;
        }
        n -= len + 1;
        q = amp + 1;
    }
    return 0;
}

int ck_redis_sentinel_parse_url(ck_redis_config *cfg, const char *url, ck_error *err)
{
    const char *s, *end, *query, *slash, *at = NULL, *p, *db = NULL;
    ck_redis_sentinel_cfg *sc = NULL;
    ck_buf rebuilt, rest;
    size_t dblen = 0;
    int rc = -1;

    ck_buf_init_secret(&rebuilt);
    ck_buf_init_secret(&rest);
    if (strncmp(url, SCHEME, sizeof(SCHEME) - 1) != 0) {
        return ck_error_set(err, CK_EINVAL, "a Sentinel URL starts with redis+sentinel://");
    }
    sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    s = url + sizeof(SCHEME) - 1;
    end = url + strlen(url);
    query = memchr(s, '?', (size_t)(end - s));
    if (query != NULL) {
        if (parse_query(sc, query + 1, (size_t)(end - query) - 1, &rest, err) < 0) {
            goto done;
        }
        end = query;
    }
    slash = memchr(s, '/', (size_t)(end - s));
    if (slash == NULL) {
        ck_error_set(err, CK_EINVAL, "the Sentinel URL has no service name (redis+sentinel://"
                                     "host:port/service_name)");
        goto done;
    }
    for (p = s; p < slash; p++) {
        if (*p == '@') {
            at = p;
        }
    }
    /* The sentinel list: comma-separated, after the user info. */
    for (p = at != NULL ? at + 1 : s; p <= slash;) {
        const char *comma = memchr(p, ',', (size_t)(slash - p));
        const char *item_end = comma != NULL ? comma : slash;

        if (parse_sentinel(sc, p, (size_t)(item_end - p), err) < 0) {
            goto done;
        }
        p = item_end + 1;
    }
    /* "/service" or "/service/db". */
    {
        const char *svc = slash + 1;
        const char *svc_end = memchr(svc, '/', (size_t)(end - svc));

        if (svc_end == NULL) {
            svc_end = end;
        } else {
            db = svc_end + 1;
            dblen = (size_t)(end - db);
        }
        if (set_decoded(&sc->service, svc, (size_t)(svc_end - svc), "service name", err) < 0) {
            goto done;
        }
    }
    /* The master's part, as a redis:// URL for the ordinary parser. */
    if (buf_add(&rebuilt, "redis://", 8, err) < 0 ||
        (at != NULL && buf_add(&rebuilt, s, (size_t)(at - s) + 1, err) < 0) ||
        buf_add(&rebuilt, PLACEHOLDER, sizeof(PLACEHOLDER) - 1, err) < 0 ||
        (db != NULL && (buf_add(&rebuilt, "/", 1, err) < 0 ||
                        buf_add(&rebuilt, db, dblen, err) < 0)) ||
        (rest.len > 0 && (buf_add(&rebuilt, "?", 1, err) < 0 ||
                          buf_add(&rebuilt, (const char *)rest.data, rest.len, err) < 0)) ||
        buf_add(&rebuilt, "", 1, err) < 0) {
        goto done;
    }
    if (ck_redis_config_parse_url(cfg, (const char *)rebuilt.data, err) < 0) {
        goto done;
    }
    if (cfg->tls) {
        ck_error_set(err, CK_EINVAL, "TLS through Sentinel is not supported");
        goto done;
    }
    if (sc->n == 0 || sc->hosts[0] == NULL) {
        ck_error_set(err, CK_EINVAL, "a redis+sentinel:// URL must name at least one sentinel");
        goto done;
    }
    if (ck_redis_config_set(&cfg->host, sc->hosts[0], strlen(sc->hosts[0]), err) < 0) {
        goto done;
    }
    cfg->port = sc->ports[0];
    ck_redis_sentinel_cfg_free(cfg->sentinel);
    cfg->sentinel = sc;
    sc = NULL;
    rc = 0;
done:
    ck_redis_sentinel_cfg_free(sc);
    ck_buf_free(&rebuilt);
    ck_buf_free(&rest);
    return rc;
}
