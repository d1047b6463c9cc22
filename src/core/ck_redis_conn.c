/*
 * ck_redis_conn.c - one Redis connection: requests, bounded replies, the
 * handshake (ck_redis.h).
 *
 * Parsing is hiredis 0.14's redisReader, fed by us from ck_sock. Its own
 * limits are not enough against a broken or hostile server, so:
 *
 *   bytes     conn->reply_bytes counts what was read for the reply being
 *             parsed; we never read past max_reply_bytes, and a reply not
 *             complete by then fails with CK_ELIMIT and breaks the
 *             connection (the rest of it is never read).
 *   objects   our reader callbacks (reply_fns) count every object of the
 *             reply and refuse the one past max_elements, before an array
 *             allocates its element vector (a "*1000000000" header costs
 *             nothing).
 *   depth     the callbacks refuse arrays nested deeper than max_depth
 *             (hiredis itself stops at 7).
 *   lengths   hiredis 0.14 computes a bulk string's end as pos + len + 2
 *             in a signed long: a huge length can wrap and pass its
 *             "whole item buffered" check. The string callback checks
 *             len against the bytes actually buffered before copying.
 *
 *   lines     the reader rescans an unfinished line (status, error, integer,
 *             array or bulk header) from its start on every call, so a
 *             never-ending line fed in chunks costs quadratic time. After
 *             each incomplete parse we look at the reader's position
 *             (line_runaway) and refuse a line past MAX_LINE bytes, or a
 *             bulk header with no CR in its first MAX_HEADER bytes.
 *
 * A callback that refuses returns NULL, which the reader reports as
 * "out of memory"; conn->refused says what really happened.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ck_crypto.h"
#include "ck_redis.h"
#include "ck_sock.h"

#define READ_CHUNK (64 * 1024)
#define MAX_LINE (64 * 1024) /* status, error, integer, array header */
#define MAX_HEADER 32        /* "$" and a long long in decimal, plus CR LF */

struct ck_redis_conn {
    ck_sock *sock;
    redisReader *reader;
    const ck_redis_config *cfg; /* the pool's, outlives the connection */
    size_t reply_bytes;         /* read so far for the reply being parsed */
    size_t reply_objects;       /* objects created for it */
    ck_errcode refused;         /* why a callback said no, else CK_OK */
    int broken;
    char *chunk;                /* READ_CHUNK bytes */
};

/* ---------------------------------------------------------------- requests */

static void req_init(ck_redis_req *req, int secret)
{
    if (secret) {
        ck_buf_init_secret(&req->out);
    } else {
        ck_buf_init(&req->out);
    }
    req->ends = NULL;
    req->n = req->cap = 0;
}

void ck_redis_req_init(ck_redis_req *req)
{
    req_init(req, 0);
}

void ck_redis_req_init_secret(ck_redis_req *req)
{
    req_init(req, 1);
}

int ck_redis_req_add(ck_redis_req *req, int argc, const char **argv, const size_t *argvlen,
                     ck_error *err)
{
    char *cmd = NULL;
    size_t total = 64;
    int len, rc = -1, i;

    if (req->n == req->cap) {
        size_t cap = req->cap == 0 ? 8 : req->cap * 2;
        size_t *ends = realloc(req->ends, cap * sizeof(*ends));
        if (ends == NULL) {
            return ck_error_set(err, CK_ENOMEM, "out of memory");
        }
        req->ends = ends;
        req->cap = cap;
    }
    /* hiredis 0.14 sums the command's length in an int without an
       overflow check (and returns it as one): past 2 GiB it would
       allocate too little and write past the end. Refuse those first;
       each argument adds at most 32 bytes of framing ($<len>\r\n...\r\n). */
    for (i = 0; i < argc; i++) {
        if (argvlen[i] > (size_t)INT_MAX - 64 || total > (size_t)INT_MAX - 64 - argvlen[i] - 32) {
            return ck_error_set(err, CK_EINVAL, "command larger than 2 GiB");
        }
        total += argvlen[i] + 32;
    }
    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    if (ck_buf_append(&req->out, cmd, (size_t)len) < 0) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto done;
    }
    req->ends[req->n++] = req->out.len;
    rc = 0;
done:
    if (req->out.secret) {
        ck_wipe(cmd, (size_t)len);
    }
    redisFreeCommand(cmd);
    return rc;
}

void ck_redis_req_free(ck_redis_req *req)
{
    ck_buf_free(&req->out);
    free(req->ends);
    req->ends = NULL;
    req->n = req->cap = 0;
}

/* ---------------------------------------------------- bounded reply objects */

void ck_redis_reply_free(redisReply *r)
{
    size_t i;

    if (r == NULL) {
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->element != NULL) {
        /* Recursion depth is bounded by max_depth. */
        for (i = 0; i < r->elements; i++) {
            ck_redis_reply_free(r->element[i]);
        }
        free(r->element);
    }
    free(r->str);
    free(r);
}

static ck_redis_conn *task_conn(const redisReadTask *t)
{
    while (t->parent != NULL) {
        t = t->parent;
    }
    return t->privdata;
}

/* Count one more object against the bound; depth = number of ancestors. */
static redisReply *new_object(const redisReadTask *t, int type, size_t extra_objects)
{
    ck_redis_conn *c = task_conn(t);
    const redisReadTask *p;
    redisReply *r;
    int depth = 0;

    for (p = t->parent; p != NULL; p = p->parent) {
        depth++;
    }
    if (type == REDIS_REPLY_ARRAY && depth >= c->cfg->max_depth) {
        c->refused = CK_EPROTO;
        return NULL;
    }
    if (extra_objects >= c->cfg->max_elements - c->reply_objects) {
        c->refused = CK_ELIMIT;
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        c->refused = CK_ENOMEM;
        return NULL;
    }
    c->reply_objects += 1;
    r->type = type;
    return r;
}

/* Hook r into its parent array, as hiredis' own callbacks do. */
static void *attach(const redisReadTask *t, redisReply *r)
{
    if (t->parent != NULL) {
        redisReply *parent = t->parent->obj;
        parent->element[t->idx] = r;
    }
    return r;
}

static void *create_string(const redisReadTask *t, char *s, size_t len)
{
    ck_redis_conn *c = task_conn(t);
    redisReply *r;

    /* A real item lies inside the reader's buffer (see the file comment). */
    if (len > c->reader->len) {
        c->refused = CK_EPROTO;
        return NULL;
    }
    r = new_object(t, t->type, 0);
    if (r == NULL) {
        return NULL;
    }
    r->str = malloc(len + 1);
    if (r->str == NULL) {
        c->refused = CK_ENOMEM;
        free(r);
        return NULL;
    }
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return attach(t, r);
}

static void *create_array(const redisReadTask *t, int elements)
{
    ck_redis_conn *c = task_conn(t);
    redisReply *r;

    /* hiredis passes the count as int: a count past INT_MAX arrives
       truncated, possibly negative. Refuse those; the rest are checked
       against the object bound before anything is allocated. */
    if (elements < 0) {
        c->refused = CK_EPROTO;
        return NULL;
    }
    r = new_object(t, REDIS_REPLY_ARRAY, (size_t)elements);
    if (r == NULL) {
        return NULL;
    }
    if (elements > 0) {
        r->element = calloc((size_t)elements, sizeof(redisReply *));
        if (r->element == NULL) {
            c->refused = CK_ENOMEM;
            free(r);
            return NULL;
        }
    }
    r->elements = (size_t)elements;
    return attach(t, r);
}

static void *create_integer(const redisReadTask *t, long long value)
{
    redisReply *r = new_object(t, REDIS_REPLY_INTEGER, 0);

    if (r == NULL) {
        return NULL;
    }
    r->integer = value;
    return attach(t, r);
}

static void *create_nil(const redisReadTask *t)
{
    redisReply *r = new_object(t, REDIS_REPLY_NIL, 0);

    return r == NULL ? NULL : attach(t, r);
}

static void free_object(void *r)
{
    ck_redis_reply_free(r);
}

/* Not const: hiredis 0.14 takes a non-const pointer. Never written. */
static redisReplyObjectFunctions reply_fns = {create_string, create_array, create_integer,
                                              create_nil, free_object};

/* ------------------------------------------------------------------ replies */

static int fail_broken(ck_redis_conn *c)
{
    c->broken = 1;
    return -1;
}

/* 1 if the reader is stuck in a line no server of ours sends: all bytes
   past r->pos belong to the item being parsed (its type byte consumed),
   which for line items is one unfinished line (see the file comment).
   Reads hiredis 0.14's public reader fields; never writes them. */
static int line_runaway(const redisReader *r)
{
    size_t pending = r->len - r->pos;
    int type;

    if (r->ridx < 0) {
        return 0;
    }
    type = r->rstack[r->ridx].type;
    if (type == REDIS_REPLY_STRING) {
        return pending > MAX_HEADER && memchr(r->buf + r->pos, '\r', MAX_HEADER) == NULL;
    }
    return (type == REDIS_REPLY_STATUS || type == REDIS_REPLY_ERROR ||
            type == REDIS_REPLY_INTEGER || type == REDIS_REPLY_ARRAY) &&
           pending > MAX_LINE;
}

/* Read and parse one reply; *out is never NULL on success. */
static int read_reply(ck_redis_conn *c, redisReply **out, ck_error *err)
{
    int64_t deadline = ck_deadline_ms(c->cfg->socket_timeout_ms);

    c->reply_objects = 0;
    c->refused = CK_OK;
    for (;;) {
        void *reply = NULL;
        size_t room;
        ssize_t got;

        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            switch (c->refused) {
            case CK_ELIMIT:
                ck_error_set(err, CK_ELIMIT, "reply has more than %zu elements (max_elements)",
                             c->cfg->max_elements);
                break;
            case CK_ENOMEM:
                ck_error_set(err, CK_ENOMEM, "out of memory reading a reply");
                break;
            case CK_EPROTO:
                ck_error_set(err, CK_EPROTO, "malformed reply or arrays nested deeper than %d",
                             c->cfg->max_depth);
                break;
            default:
                ck_error_set(err, CK_EPROTO, "protocol error: %.100s", c->reader->errstr);
                break;
            }
            return fail_broken(c);
        }
        if (reply != NULL) {
            /* What is left in the buffer already belongs to the next reply. */
            c->reply_bytes = c->reader->len - c->reader->pos;
            *out = reply;
            return 0;
        }
        if (line_runaway(c->reader)) {
            ck_error_set(err, CK_EPROTO, "protocol error: reply line longer than %d bytes",
                         MAX_LINE);
            return fail_broken(c);
        }
        /* Never read a byte past the bound: a hostile length costs us at
           most max_reply_bytes, and the rest stays in the kernel until
           the connection is closed. */
        room = c->cfg->max_reply_bytes - c->reply_bytes;
        if (c->reply_bytes >= c->cfg->max_reply_bytes) {
            ck_error_set(err, CK_ELIMIT, "reply larger than %zu bytes (max_reply_bytes)",
                         c->cfg->max_reply_bytes);
            return fail_broken(c);
        }
        got = ck_sock_read(c->sock, c->chunk, room < READ_CHUNK ? room : READ_CHUNK, deadline,
                           err);
        if (got < 0) {
            return fail_broken(c);
        }
        c->reply_bytes += (size_t)got;
        if (redisReaderFeed(c->reader, c->chunk, (size_t)got) != REDIS_OK) {
            ck_error_set(err, CK_ENOMEM, "out of memory reading a reply");
            return fail_broken(c);
        }
    }
}

/* A server error reply as a ck_error: its first word only (ERR, WRONGTYPE,
   NOAUTH...), because the rest can quote the command's arguments. */
static int server_error(const redisReply *r, ck_error *err)
{
    size_t n = 0;
    ck_errcode code = CK_ESERVER;

    while (n < r->len && n < 32 && r->str[n] != ' ' &&
           ((r->str[n] >= 'A' && r->str[n] <= 'Z') || r->str[n] == '_' ||
            (r->str[n] >= '0' && r->str[n] <= '9'))) {
        n++;
    }
    if ((n == 6 && memcmp(r->str, "NOAUTH", 6) == 0) ||
        (n == 9 && memcmp(r->str, "WRONGPASS", 9) == 0) ||
        (n == 6 && memcmp(r->str, "NOPERM", 6) == 0)) {
        code = CK_EDENIED;
    }
    return ck_error_set(err, code, "server replied with an error: %.*s", (int)n,
                        n > 0 ? r->str : "(no code)");
}

/* keep: error replies stay in their slots and the call succeeds (cluster
   routing reads MOVED/ASK/TRYAGAIN from them). */
static int conn_run(ck_redis_conn *c, const ck_redis_req *req, redisReply **replies, int keep,
                    ck_error *err)
{
    size_t i, start = 0, first_error = req->n;

    memset(replies, 0, req->n * sizeof(*replies));
    if (c->broken) {
        return ck_error_set(err, CK_ECONN, "connection is broken");
    }
    /* Batches of CK_REDIS_BATCH: the server's replies to one batch wait in
       its output buffer, not in a growing pile on both sides. */
    for (i = 0; i < req->n; i += CK_REDIS_BATCH) {
        size_t last = i + CK_REDIS_BATCH < req->n ? i + CK_REDIS_BATCH : req->n;
        size_t end = req->ends[last - 1], j;

        if (ck_sock_write_all(c->sock, req->out.data + start, end - start,
                              ck_deadline_ms(c->cfg->socket_timeout_ms), err) < 0) {
            fail_broken(c);
            goto error;
        }
        start = end;
        for (j = i; j < last; j++) {
            if (read_reply(c, &replies[j], err) < 0) {
                goto error;
            }
            if (replies[j]->type == REDIS_REPLY_ERROR && first_error == req->n) {
                first_error = j;
            }
        }
    }
    if (first_error < req->n && !keep) {
        server_error(replies[first_error], err);
        goto error;
    }
    return 0;
error:
    for (i = 0; i < req->n; i++) {
        ck_redis_reply_free(replies[i]);
        replies[i] = NULL;
    }
    return -1;
}

int ck_redis_conn_run(ck_redis_conn *c, const ck_redis_req *req, redisReply **replies,
                      ck_error *err)
{
    return conn_run(c, req, replies, 0, err);
}

int ck_redis_conn_run_keep(ck_redis_conn *c, const ck_redis_req *req, redisReply **replies,
                           ck_error *err)
{
    return conn_run(c, req, replies, 1, err);
}

int ck_redis_error_code(const redisReply *r, ck_error *err)
{
    return server_error(r, err);
}

/* --------------------------------------------------------------- lifecycle */

/* One handshake command; an error reply is reported as `code`. */
static int handshake_cmd(ck_redis_conn *c, int argc, const char **argv, const size_t *argvlen,
                         int secret, ck_errcode code, const char *what, ck_error *err)
{
    ck_redis_req req;
    redisReply *reply = NULL;
    int rc = -1;

    if (secret) {
        ck_redis_req_init_secret(&req);
    } else {
        ck_redis_req_init(&req);
    }
    if (ck_redis_req_add(&req, argc, argv, argvlen, err) < 0) {
        goto done;
    }
    if (ck_redis_conn_run(c, &req, &reply, err) < 0) {
        if (err != NULL && (err->code == CK_ESERVER || err->code == CK_EDENIED)) {
            /* "server replied with an error: CODE" -> "<what> (CODE)" */
            const char *colon = strrchr(err->msg, ':');
            char detail[40];
            snprintf(detail, sizeof(detail), "%s", colon != NULL ? colon + 2 : "?");
            ck_error_set(err, code, "%s (%s)", what, detail);
        }
        goto done;
    }
    rc = 0;
done:
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    return rc;
}

/* AUTH [user] password, then SELECT db: one round trip each, so a failure
   is attributed to the right one (a refused AUTH answers WRONGPASS, or ERR
   when the server has no password set: both are the credentials). */
static int handshake(ck_redis_conn *c, ck_error *err)
{
    const ck_redis_config *cfg = c->cfg;
    char dbstr[16];

    if (cfg->password != NULL) {
        const char *argv[3] = {"AUTH", cfg->password, NULL};
        size_t argvlen[3] = {4, strlen(cfg->password), 0};
        int argc = 2;

        if (cfg->username != NULL) {
            argv[1] = cfg->username;
            argvlen[1] = strlen(cfg->username);
            argv[2] = cfg->password;
            argvlen[2] = strlen(cfg->password);
            argc = 3;
        }
        if (handshake_cmd(c, argc, argv, argvlen, 1, CK_EDENIED, "authentication failed",
                          err) < 0) {
            return -1;
        }
    }
    if (cfg->db != 0) {
        const char *argv[2] = {"SELECT", dbstr};
        size_t argvlen[2] = {6, 0};

        argvlen[1] = (size_t)snprintf(dbstr, sizeof(dbstr), "%d", cfg->db);
        /* SELECT answers NOAUTH when a password is needed and none was given. */
        if (handshake_cmd(c, 2, argv, argvlen, 0, CK_ESERVER, "cannot select the database",
                          err) < 0) {
            if (err != NULL && strstr(err->msg, "(NOAUTH)") != NULL) {
                err->code = CK_EDENIED;
            }
            return -1;
        }
    }
    return 0;
}

ck_redis_conn *ck_redis_conn_new(const ck_redis_config *cfg, ck_tls_ctx *tls, ck_error *err)
{
    return ck_redis_conn_new_at(cfg, cfg->host, cfg->port, tls, err);
}

ck_redis_conn *ck_redis_conn_new_at(const ck_redis_config *cfg, const char *host, int port,
                                    ck_tls_ctx *tls, ck_error *err)
{
    ck_redis_conn *c = calloc(1, sizeof(*c));
    ck_sock_opts opts;

    if (c == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->chunk = malloc(READ_CHUNK);
    c->reader = redisReaderCreateWithFunctions(&reply_fns);
    if (c->chunk == NULL || c->reader == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    /* hiredis frees an idle buffer above maxbuf; a large value's buffer
       is then not kept for the connection's lifetime. */
    c->reader->maxbuf = 64 * 1024;
    /* Not redisReaderSetPrivdata: in hiredis 0.14 that macro casts the
       pointer to int, which clang rightly refuses. */
    c->reader->privdata = c;
    memset(&opts, 0, sizeof(opts));
    opts.host = host;
    opts.port = port;
    opts.unix_path = cfg->unix_path;
    opts.deadline_ns = ck_deadline_ms(cfg->connect_timeout_ms);
    opts.tls = tls;
    opts.check_hostname = cfg->check_hostname;
    c->sock = ck_sock_connect(&opts, err);
    if (c->sock == NULL || handshake(c, err) < 0) {
        goto error;
    }
    return c;
error:
    ck_redis_conn_free(c);
    return NULL;
}

int ck_redis_conn_broken(const ck_redis_conn *c)
{
    return c->broken;
}

int ck_redis_conn_stale(ck_redis_conn *c)
{
    return c->broken || ck_sock_is_stale(c->sock);
}

void ck_redis_conn_free(ck_redis_conn *c)
{
    if (c == NULL) {
        return;
    }
    ck_sock_close(c->sock);
    if (c->reader != NULL) {
        redisReaderFree(c->reader);
    }
    free(c->chunk);
    free(c);
}

/* ------------------------------------------------------ subscribed use */

int ck_redis_conn_send(ck_redis_conn *c, const ck_redis_req *req, ck_error *err)
{
    if (c->broken) {
        return ck_error_set(err, CK_ECONN, "connection is broken");
    }
    if (req->n == 0) {
        return 0;
    }
    if (ck_sock_write_all(c->sock, req->out.data, req->ends[req->n - 1],
                          ck_deadline_ms(c->cfg->socket_timeout_ms), err) < 0) {
        return fail_broken(c);
    }
    return 0;
}

int ck_redis_conn_read(ck_redis_conn *c, redisReply **out, ck_error *err)
{
    *out = NULL;
    if (c->broken) {
        return ck_error_set(err, CK_ECONN, "connection is broken");
    }
    return read_reply(c, out, err);
}

int ck_redis_conn_wait(ck_redis_conn *c, int timeout_ms)
{
    int rc;

    if (c->broken) {
        return -1;
    }
    if (c->reader->pos < c->reader->len) {
        return 1;
    }
    rc = ck_sock_wait_readable(c->sock, timeout_ms);
    if (rc < 0) {
        fail_broken(c);
    }
    return rc;
}
