/*
 * fuzz_redis_reply.c - libFuzzer target for the Redis reply reader
 * (ck_redis_conn.c: read_reply over hiredis' redisReader, with our bounds
 * on bytes, objects, depth, bulk lengths and line lengths).
 *
 * read_reply is only reachable through a connection, so the harness plays
 * the server over a unix socket: for each input it opens a connection with
 * ck_redis_conn_new (no password, db 0: no handshake), accepts it, writes
 * the input as the server's whole answer and shuts its side for writing
 * (the reader then sees EOF, never a timeout), and runs a pipeline of three
 * PINGs, so up to three replies are parsed from one stream and leftovers
 * carry over between them. Every input runs twice: under the default
 * bounds and under tight ones (max_reply_bytes 512, max_elements 16,
 * max_depth 2), so each refusal path is reached.
 *
 * A finding is any sanitizer report, or a successful run whose replies
 * break the bounds or hiredis' reply invariants (abort()). Errors (protocol,
 * limits, a server error reply, the connection closing) are expected.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ck_redis.h"

#define NCMD 3
#define MAX_INPUT (64 * 1024) /* well inside a unix socket's buffer */

static int listen_fd = -1;
static char sock_path[108];
static char sock_dir[64];

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void cleanup(void)
{
    if (listen_fd >= 0) {
        close(listen_fd);
    }
    unlink(sock_path);
    rmdir(sock_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_un sa;

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    snprintf(sock_dir, sizeof(sock_dir), "/tmp/ckfuzz.XXXXXX");
    check(mkdtemp(sock_dir) != NULL);
    snprintf(sock_path, sizeof(sock_path), "%s/redis.sock", sock_dir);
    listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    check(listen_fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    check(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    check(listen(listen_fd, 16) == 0);
    atexit(cleanup);
    return 0;
}

/* Walk a reply: returns the number of objects, checks depth and strings. */
static size_t walk(const redisReply *r, int depth, const ck_redis_config *cfg)
{
    size_t n = 1, i;

    check(r != NULL);
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        check(r->str != NULL && r->str[r->len] == '\0');
        break;
    case REDIS_REPLY_ARRAY:
        check(depth < cfg->max_depth);
        check(r->elements == 0 || r->element != NULL);
        for (i = 0; i < r->elements; i++) {
            n += walk(r->element[i], depth + 1, cfg);
        }
        break;
    case REDIS_REPLY_INTEGER:
    case REDIS_REPLY_NIL:
        break;
    default:
        abort();
    }
    return n;
}

static void run_one(const uint8_t *data, size_t size, const ck_redis_config *cfg)
{
    static const char *argv[1] = {"PING"};
    static const size_t argvlen[1] = {4};
    redisReply *replies[NCMD];
    ck_redis_conn *c;
    ck_redis_req req;
    ck_error err;
    int srv, rc, i;
    size_t off = 0;

    c = ck_redis_conn_new(cfg, NULL, &err);
    check(c != NULL);
    srv = accept(listen_fd, NULL, NULL);
    check(srv >= 0);
    while (off < size) {
        ssize_t w = write(srv, data + off, size - off);
        check(w > 0 || (w < 0 && errno == EINTR));
        if (w > 0) {
            off += (size_t)w;
        }
    }
    check(shutdown(srv, SHUT_WR) == 0);

    ck_redis_req_init(&req);
    for (i = 0; i < NCMD; i++) {
        check(ck_redis_req_add(&req, 1, argv, argvlen, &err) == 0);
    }
    rc = ck_redis_conn_run(c, &req, replies, &err);
    if (rc == 0) {
        for (i = 0; i < NCMD; i++) {
            check(walk(replies[i], 0, cfg) <= cfg->max_elements);
            check(replies[i]->type != REDIS_REPLY_ERROR);
            ck_redis_reply_free(replies[i]);
        }
        check(!ck_redis_conn_broken(c));
    } else {
        for (i = 0; i < NCMD; i++) {
            check(replies[i] == NULL);
        }
        check(err.code != CK_OK);
        check(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
    }
    ck_redis_req_free(&req);
    ck_redis_conn_free(c);
    close(srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_redis_config cfg;

    if (size > MAX_INPUT) {
        return 0;
    }
    ck_redis_config_init(&cfg);
    check(ck_redis_config_set(&cfg.unix_path, sock_path, strlen(sock_path), NULL) == 0);
    cfg.connect_timeout_ms = 2000;
    cfg.socket_timeout_ms = 2000;
    run_one(data, size, &cfg);

    cfg.max_reply_bytes = 512;
    cfg.max_elements = 16;
    cfg.max_depth = 2;
    run_one(data, size, &cfg);
    ck_redis_config_free(&cfg);
    return 0;
}
