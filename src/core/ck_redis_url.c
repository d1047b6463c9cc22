/*
 * ck_redis_url.c - ck_redis_config: defaults, URL parsing, copy and free.
 *
 * The URL grammar is the one redis-py accepts (see ck_redis.h). Parsing
 * works on (pointer, length) slices of the URL and copies each field out
 * once; nothing is written back into the caller's string. Error messages
 * name the part that is wrong, never its text: a URL can hold a password.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ck_crypto.h"
#include "ck_redis.h"
#include "ck_redis_sentinel.h"

void ck_redis_config_init(ck_redis_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 6379;
    cfg->check_hostname = 1;
    cfg->connect_timeout_ms = 5000;
    cfg->socket_timeout_ms = 5000;
    cfg->pool_timeout_ms = 5000;
    cfg->max_reply_bytes = CK_REDIS_DEFAULT_MAX_REPLY_BYTES;
    cfg->max_elements = CK_REDIS_DEFAULT_MAX_ELEMENTS;
    cfg->max_depth = CK_REDIS_DEFAULT_MAX_DEPTH;
    cfg->pool_size = 10;
}

static void free_secret(char **slot)
{
    if (*slot != NULL) {
        ck_wipe(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
}

int ck_redis_config_set(char **slot, const char *s, size_t n, ck_error *err)
{
    char *copy = NULL;

    if (s != NULL) {
        if (memchr(s, '\0', n) != NULL) {
            return ck_error_set(err, CK_EINVAL, "embedded NUL character");
        }
        copy = malloc(n + 1);
        if (copy == NULL) {
            return ck_error_set(err, CK_ENOMEM, "out of memory");
        }
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    /* Every string slot is wiped: cheap, and the password is one of them. */
    free_secret(slot);
    *slot = copy;
    return 0;
}

void ck_redis_config_free(ck_redis_config *cfg)
{
    free_secret(&cfg->host);
    free_secret(&cfg->unix_path);
    free_secret(&cfg->username);
    free_secret(&cfg->password);
    free_secret(&cfg->ca_file);
    free_secret(&cfg->cert_file);
    free_secret(&cfg->key_file);
    ck_redis_sentinel_cfg_free(cfg->sentinel);
    cfg->sentinel = NULL;
}

int ck_redis_config_copy(ck_redis_config *dst, const ck_redis_config *src, ck_error *err)
{
    char **dslots[] = {&dst->host,    &dst->unix_path, &dst->username, &dst->password,
                       &dst->ca_file, &dst->cert_file, &dst->key_file};
    char *const *sslots[] = {&src->host,    &src->unix_path, &src->username, &src->password,
                             &src->ca_file, &src->cert_file, &src->key_file};
    size_t i;

    *dst = *src;
    dst->sentinel = NULL;
    for (i = 0; i < sizeof(dslots) / sizeof(dslots[0]); i++) {
        *dslots[i] = NULL;
    }
    if (ck_redis_sentinel_cfg_copy(&dst->sentinel, src->sentinel, err) < 0) {
        return -1;
    }
    for (i = 0; i < sizeof(dslots) / sizeof(dslots[0]); i++) {
        const char *s = *sslots[i];
        if (s != NULL && ck_redis_config_set(dslots[i], s, strlen(s), err) < 0) {
            ck_redis_config_free(dst);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- parsing */

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

/* *slot = percent-decoded copy of s[0..n). */
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
                goto error;
            }
            tmp[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            tmp[o++] = s[i];
        }
    }
    rc = ck_redis_config_set(slot, tmp, o, err);
    if (rc < 0 && err != NULL && err->code == CK_EINVAL) {
        ck_error_set(err, CK_EINVAL, "the URL's %s decodes to a NUL character", what);
    }
error:
    ck_wipe(tmp, n + 1);
    free(tmp);
    return rc;
}

/* Non-negative decimal in s[0..n) no larger than max. */
static int parse_uint(const char *s, size_t n, long max, long *out)
{
    long v = 0;
    size_t i;

    if (n == 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
        if (v > max) {
            return -1;
        }
    }
    *out = v;
    return 0;
}

/* user:password (either part optional) from the text before '@'. */
static int parse_userinfo(ck_redis_config *cfg, const char *s, size_t n, ck_error *err)
{
    const char *colon = memchr(s, ':', n);

    if (colon == NULL) {
        return n == 0 ? 0 : set_decoded(&cfg->username, s, n, "user name", err);
    }
    if (colon > s && set_decoded(&cfg->username, s, (size_t)(colon - s), "user name", err) < 0) {
        return -1;
    }
    return set_decoded(&cfg->password, colon + 1, n - (size_t)(colon - s) - 1, "password", err);
}

/* host, [v6], host:port, [v6]:port. */
static int parse_hostport(ck_redis_config *cfg, const char *s, size_t n, ck_error *err)
{
    const char *host = s, *port = NULL;
    size_t hlen = n, plen = 0;
    long v;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL) {
            return ck_error_set(err, CK_EINVAL, "unterminated [IPv6 address] in the URL");
        }
        host = s + 1;
        hlen = (size_t)(close - s) - 1;
        if ((size_t)(close - s) + 1 < n) {
            if (close[1] != ':') {
                return ck_error_set(err, CK_EINVAL, "unexpected text after ] in the URL");
            }
            port = close + 2;
            plen = n - (size_t)(port - s);
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
            plen = n - hlen - 1;
        }
    }
    if (hlen == 0) {
        return ck_error_set(err, CK_EINVAL, "the URL has no host");
    }
    if (port != NULL) {
        if (parse_uint(port, plen, 65535, &v) < 0 || v == 0) {
            return ck_error_set(err, CK_EINVAL, "the URL's port must be 1-65535");
        }
        cfg->port = (int)v;
    }
    return ck_redis_config_set(&cfg->host, host, hlen, err);
}

static int parse_db(ck_redis_config *cfg, const char *s, size_t n, ck_error *err)
{
    long v;

    if (parse_uint(s, n, 1 << 24, &v) < 0) {
        return ck_error_set(err, CK_EINVAL, "the URL's database must be a number");
    }
    cfg->db = (int)v;
    return 0;
}

/* a=b&c=d: db, username, password; other names are refused (a typo such
   as ?passwd= must not silently connect without a password). */
static int parse_query(ck_redis_config *cfg, const char *s, size_t n, ck_error *err)
{
    while (n > 0) {
        const char *amp = memchr(s, '&', n);
        size_t len = amp != NULL ? (size_t)(amp - s) : n;
        const char *eq = memchr(s, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - s) : len;
        const char *val = eq != NULL ? eq + 1 : s + len;
        size_t vlen = eq != NULL ? len - klen - 1 : 0;
        int rc;

        if (klen == 2 && memcmp(s, "db", 2) == 0) {
            rc = parse_db(cfg, val, vlen, err);
        } else if (klen == 8 && memcmp(s, "username", 8) == 0) {
            rc = set_decoded(&cfg->username, val, vlen, "user name", err);
        } else if (klen == 8 && memcmp(s, "password", 8) == 0) {
            rc = set_decoded(&cfg->password, val, vlen, "password", err);
        } else if (len == 0) {
            rc = 0;
        } else {
            rc = ck_error_set(err, CK_EINVAL, "unknown URL query parameter (known: db, username, "
                                              "password)");
        }
        if (rc < 0) {
            return -1;
        }
        if (amp == NULL) {
            break;
        }
        n -= len + 1;
        s = amp + 1;
    }
    return 0;
}

int ck_redis_config_parse_url(ck_redis_config *cfg, const char *url, ck_error *err)
{
    size_t n = strlen(url);
    const char *s, *end, *query, *at, *slash;
    int is_unix = 0;

    if (strncmp(url, "redis+sentinel://", 17) == 0) {
        return ck_redis_sentinel_parse_url(cfg, url, err);
    }
    if (strncmp(url, "redis://", 8) == 0) {
        s = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        s = url + 9;
        cfg->tls = 1;
    } else if (strncmp(url, "unix://", 7) == 0) {
        s = url + 7;
        is_unix = 1;
    } else {
        return ck_error_set(err, CK_EINVAL, "the URL must start with redis://, rediss://, "
                                            "unix:// or redis+sentinel://");
    }
    ck_redis_sentinel_cfg_free(cfg->sentinel); /* a plain URL names one server */
    cfg->sentinel = NULL;
    end = url + n;
    query = memchr(s, '?', (size_t)(end - s));
    if (query != NULL) {
        end = query;
    }
    /* The authority ends at the first '/'; userinfo ends at the last '@'
       before it (a password may contain '@' only percent-encoded, but be
       lenient about it as redis-py is). */
    slash = memchr(s, '/', (size_t)(end - s));
    {
        const char *auth_end = slash != NULL ? slash : end;
        const char *p;
        at = NULL;
        for (p = s; p < auth_end; p++) {
            if (*p == '@') {
                at = p;
            }
        }
        if (at != NULL) {
            if (parse_userinfo(cfg, s, (size_t)(at - s), err) < 0) {
                return -1;
            }
            s = at + 1;
        }
        if (is_unix) {
            if (s != auth_end) {
                return ck_error_set(err, CK_EINVAL, "unix:// URLs take a path, not a host");
            }
            if (slash == NULL || end - slash < 2) {
                return ck_error_set(err, CK_EINVAL, "the unix:// URL has no socket path");
            }
            if (set_decoded(&cfg->unix_path, slash, (size_t)(end - slash), "path", err) < 0) {
                return -1;
            }
            free_secret(&cfg->host);
        } else {
            if (parse_hostport(cfg, s, (size_t)(auth_end - s), err) < 0) {
                return -1;
            }
            free_secret(&cfg->unix_path);
            /* "/db" or "/" or nothing. */
            if (slash != NULL && end - slash > 1 &&
                parse_db(cfg, slash + 1, (size_t)(end - slash) - 1, err) < 0) {
                return -1;
            }
        }
    }
    if (query != NULL && parse_query(cfg, query + 1, (size_t)(url + n - query) - 1, err) < 0) {
        return -1;
    }
    return 0;
}
