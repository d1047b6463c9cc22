/*
 * ck_memcached.h - a memcached client over ck_sock (pure C, no Python):
 * the meta text protocol (mg/ms/md/mn, memcached 1.6+), a small pool of
 * connections per server, hard timeouts on connect and on each operation.
 *
 * Key names: memcached keys are at most 250 bytes of printable non-space
 * ASCII. A name (after key_prefix) that fits is used as it is; any other
 * becomes "#" + the 32 hex digits of its 128-bit XXH3, and its value is
 * stored framed with the full name (u32 length, name, value) so a hash
 * collision reads as a miss, never as another key's value.
 *
 * TTLs: memcached reads an exptime over 30 days as an absolute Unix time,
 * so longer TTLs are sent as now + ttl. Values over max_value are not sent
 * (the caller counts them); a reply larger than max_value is a protocol
 * error. Thread-safe: the pool hands each connection to one caller.
 */
#ifndef CK_MEMCACHED_H
#define CK_MEMCACHED_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ck_error.h"
#include "ck_sock.h"

#define CK_MC_MAX_SERVERS 16
#define CK_MC_KEY_MAX 250
#define CK_MC_THIRTY_DAYS 2592000

typedef struct {
    char *host;
    int port;
    ck_sock **idle; /* idle connections, at most pool_size */
    size_t n_idle;
} ck_mc_server;

typedef struct {
    ck_mc_server servers[CK_MC_MAX_SERVERS];
    size_t n_servers;
    size_t pool_size;
    int64_t connect_timeout_ms, timeout_ms;
    unsigned retries;  /* extra attempts after a connection failure */
    size_t max_value;  /* largest value sent or accepted */
    char *prefix;      /* key_prefix (owned) */
    size_t prefix_len;
    pthread_mutex_t lock; /* guards the idle lists */
    uint64_t too_large;   /* values not sent (atomic) */
} ck_mc_client;

/* hosts[i]:ports[i] for i < n. 0, or -1 (CK_EINVAL, CK_ENOMEM). */
int ck_mc_init(ck_mc_client *c, const char *const *hosts, const int *ports, size_t n,
               size_t pool_size, int64_t connect_timeout_ms, int64_t timeout_ms, unsigned retries,
               size_t max_value, const char *prefix, size_t prefix_len, ck_error *err);
void ck_mc_destroy(ck_mc_client *c);

/* Forget pooled connections (after fork: the parent's sockets). */
void ck_mc_drop_idle(ck_mc_client *c);

/* 1 hit (*value malloc'd, caller frees; *ttl_s seconds left, -1 none),
   0 miss, -1 error. */
int ck_mc_get(ck_mc_client *c, const char *name, size_t n, unsigned char **value, size_t *len,
              int64_t *ttl_s, ck_error *err);

/* ttl_ms <= 0: no expiry. 1 stored, 0 not stored (too large: counted; or
   the server refused it), -1 error. */
int ck_mc_set(ck_mc_client *c, const char *name, size_t n, const unsigned char *value,
              size_t len, int64_t ttl_ms, ck_error *err);

/* 1 removed, 0 absent, -1 error. */
int ck_mc_delete(ck_mc_client *c, const char *name, size_t n, ck_error *err);

/* Set a new TTL. 1 done, 0 absent, -1 error. */
int ck_mc_touch(ck_mc_client *c, const char *name, size_t n, int64_t ttl_ms, ck_error *err);

/* mn on every server. 0 all answered, -1 error. */
int ck_mc_ping(ck_mc_client *c, ck_error *err);

/* The exptime memcached is sent for ttl_ms at Unix time now_s (0: none). */
int64_t ck_mc_exptime(int64_t ttl_ms, int64_t now_s);

#endif /* CK_MEMCACHED_H */
