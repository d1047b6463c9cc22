/*
 * ck_redis.h - a Redis client in pure C: configuration and URLs, bounded
 * replies, connections over ck_sock, a thread-safe connection pool.
 *
 *   ck_redis_url.c   ck_redis_config: defaults, URL parsing, freeing
 *   ck_redis_conn.c  one connection: handshake, pipelined request/replies,
 *                    reply bounds (hiredis 0.14 redisReader as the parser)
 *   ck_redis_pool.c  the pool (mutex + condvar, reconnect backoff) and the
 *                    operations that need more than one round trip
 *
 * The socket belongs to us (ck_sock), not to hiredis: hiredis only formats
 * commands (redisFormatCommandArgv) and parses replies (redisReader), so
 * every byte read is counted and every wait has a deadline.
 *
 * Replies are hiredis' redisReply structs, built by our own reader callbacks
 * (which enforce the bounds); free them with ck_redis_reply_free().
 *
 * Thread safety: a pool may be used from any number of threads at once;
 * a connection by one thread at a time. No function here touches Python.
 */
#ifndef CK_REDIS_H
#define CK_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "ck_buf.h"
#include "ck_error.h"

#define CK_REDIS_DEFAULT_MAX_REPLY_BYTES ((size_t)512 << 20)
#define CK_REDIS_DEFAULT_MAX_ELEMENTS ((size_t)1 << 20)
#define CK_REDIS_DEFAULT_MAX_DEPTH 4
#define CK_REDIS_BATCH 128 /* commands written before their replies are read */

/* ------------------------------------------------------------ configuration */

/* Sentinels and service of a redis+sentinel:// URL (ck_redis_sentinel.h). */
typedef struct ck_redis_sentinel_cfg ck_redis_sentinel_cfg;

typedef struct {
    char *host; /* NULL with unix_path set; IPv6 without brackets */
    int port;
    char *unix_path;
    int tls;            /* rediss:// */
    char *username;     /* ACL user, or NULL */
    char *password;     /* or NULL; wiped when freed */
    int db;
    char *ca_file;      /* TLS: NULL = system default paths */
    char *cert_file;    /* TLS client certificate, or NULL */
    char *key_file;
    int check_hostname; /* TLS: certificate must name host (default 1) */
    int64_t connect_timeout_ms;
    int64_t socket_timeout_ms; /* each reply, each write */
    int64_t pool_timeout_ms;   /* waiting for a free connection */
    size_t max_reply_bytes;    /* bytes read for one reply */
    size_t max_elements;       /* reply objects (arrays, strings...) in one reply */
    int max_depth;             /* array nesting in one reply */
    size_t pool_size;
    ck_redis_sentinel_cfg *sentinel; /* redis+sentinel://: owned, or NULL */
} ck_redis_config;

/* Defaults: localhost:6379, db 0, 5 s timeouts, 10 connections, the
   CK_REDIS_DEFAULT_* bounds, host names checked. */
void ck_redis_config_init(ck_redis_config *cfg);

/* Fill host/port/unix_path/tls/username/password/db from a URL:
     redis://[[user]:password@]host[:port][/db]   (host may be [IPv6])
     rediss://...                                  (TLS)
     unix://[[user]:password@]/path/to.sock[?db=N]
     redis+sentinel://...                          (ck_redis_sentinel.h)
   plus query parameters db, username, password on any of them. User and
   password are percent-decoded. Messages never quote the URL (it may
   carry a password). 0, or -1 with CK_EINVAL. */
int ck_redis_config_parse_url(ck_redis_config *cfg, const char *url, ck_error *err);

/* Replace *slot by a copy of s (NULL clears). A replaced password is wiped. */
int ck_redis_config_set(char **slot, const char *s, size_t n, ck_error *err);

/* Deep copy (for the pool); 0 or -1 with CK_ENOMEM. */
int ck_redis_config_copy(ck_redis_config *dst, const ck_redis_config *src, ck_error *err);

/* Free the strings (the password wiped first); cfg can be init'ed again. */
void ck_redis_config_free(ck_redis_config *cfg);

/* ----------------------------------------------------------------- requests */

/* Commands formatted into one buffer, sent as a pipeline. */
typedef struct {
    ck_buf out;    /* RESP bytes of every command, back to back */
    size_t *ends;  /* ends[i]: offset in out just past command i */
    size_t n, cap; /* commands, room in ends */
} ck_redis_req;

void ck_redis_req_init(ck_redis_req *req);
/* For commands carrying a password: the buffer is wiped on growth and free. */
void ck_redis_req_init_secret(ck_redis_req *req);
/* Append one command (copied). 0, or -1 with CK_ENOMEM/CK_EINVAL. */
int ck_redis_req_add(ck_redis_req *req, int argc, const char **argv, const size_t *argvlen,
                     ck_error *err);
void ck_redis_req_free(ck_redis_req *req);

void ck_redis_reply_free(redisReply *r);

/* -------------------------------------------------------------- connection */

typedef struct ck_redis_conn ck_redis_conn;
typedef struct ck_tls_ctx ck_tls_ctx;

/* Connect, authenticate and select the database. NULL with err set:
   CK_EDENIED when the server refuses the credentials. */
ck_redis_conn *ck_redis_conn_new(const ck_redis_config *cfg, ck_tls_ctx *tls, ck_error *err);
/* The same, to host:port instead of cfg's address (a discovered master). */
ck_redis_conn *ck_redis_conn_new_at(const ck_redis_config *cfg, const char *host, int port,
                                    ck_tls_ctx *tls, ck_error *err);

/*
 * Send req and read one reply per command into replies[0..req->n). On
 * success every slot is filled (error replies included; see below).
 * On -1 every slot is NULL and err says why. An error reply from the
 * server fails the call with CK_ESERVER (CK_EDENIED for NOAUTH/WRONGPASS/
 * NOPERM) after all replies were read, so the connection stays usable;
 * its message names the server's error code only (the rest of a Redis
 * error can quote arguments). Any other failure leaves the connection
 * broken (ck_redis_conn_broken).
 */
int ck_redis_conn_run(ck_redis_conn *c, const ck_redis_req *req, redisReply **replies,
                      ck_error *err);

/* As ck_redis_conn_run, but error replies stay in their slots and do not
   fail the call (cluster routing reads MOVED/ASK from them). Callers must
   not put an error reply's text in a message (it can quote arguments). */
int ck_redis_conn_run_keep(ck_redis_conn *c, const ck_redis_req *req, redisReply **replies,
                           ck_error *err);

/* err = the CK_ESERVER/CK_EDENIED error ck_redis_conn_run reports for the
   error reply r (its code word only). Returns -1. */
int ck_redis_error_code(const redisReply *r, ck_error *err);

/* For a subscribed connection (ck_redis_track): send without reading, read
   one reply (pushed messages included), and wait for bytes without
   failing on timeout (1 readable or buffered, 0 timed out, -1 broken). */
int ck_redis_conn_send(ck_redis_conn *c, const ck_redis_req *req, ck_error *err);
int ck_redis_conn_read(ck_redis_conn *c, redisReply **out, ck_error *err);
int ck_redis_conn_wait(ck_redis_conn *c, int timeout_ms);

int ck_redis_conn_broken(const ck_redis_conn *c);
/* Broken, or idle but closed/reset by the server. Never blocks. */
int ck_redis_conn_stale(ck_redis_conn *c);
void ck_redis_conn_free(ck_redis_conn *c);

/* -------------------------------------------------------------------- pool */

typedef struct ck_redis_pool ck_redis_pool;

/* Copies cfg; opens no connection yet (the first command does). */
ck_redis_pool *ck_redis_pool_new(const ck_redis_config *cfg, ck_error *err);

/* Close idle connections and refuse new work; connections in use are
   closed when they come back. Safe to call more than once. */
void ck_redis_pool_close(ck_redis_pool *p);

/* Close and free. No other thread may be using the pool. */
void ck_redis_pool_free(ck_redis_pool *p);

/* ck_redis_conn_run on a pooled connection (acquire waits up to
   pool_timeout_ms; a down server fails at once during the backoff). */
int ck_redis_pool_run(ck_redis_pool *p, const ck_redis_req *req, redisReply **replies,
                      ck_error *err);

/* A connection for the caller's own exchange (the cluster client writes
   to several nodes before reading): acquire as ck_redis_pool_run does,
   and give it back with release (a broken one is closed). */
ck_redis_conn *ck_redis_pool_acquire(ck_redis_pool *p, ck_error *err);
void ck_redis_pool_release(ck_redis_pool *p, ck_redis_conn *c);

/* ck_redis_conn_run_keep on a pooled connection. */
int ck_redis_pool_run_keep(ck_redis_pool *p, const ck_redis_req *req, redisReply **replies,
                           ck_error *err);

/* PING. 0 when the server answered PONG, else -1 with err set. */
int ck_redis_pool_ping(ck_redis_pool *p, ck_error *err);

/* UNLINK every key starting with prefix (SCAN MATCH <escaped prefix>*
   COUNT count, never KEYS). *unlinked: keys removed. Keys written while it
   runs may survive; SCAN may return a key twice (UNLINK counts it once). */
int ck_redis_pool_clear_prefix(ck_redis_pool *p, const char *prefix, size_t n, size_t count,
                               long long *unlinked, ck_error *err);

#endif /* CK_REDIS_H */
