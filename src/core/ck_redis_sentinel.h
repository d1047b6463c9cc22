/*
 * ck_redis_sentinel.h - Redis Sentinel: redis+sentinel:// URLs, master
 * discovery, the ROLE check, and the pool's view of the current master.
 *
 *   ck_redis_sentinel.c      URL parsing, config copy/free, description
 *   ck_redis_sentinel_io.c   discovery (SENTINEL GET-MASTER-ADDR-BY-NAME on
 *                            each sentinel in turn), ROLE, connecting a pool
 *                            connection to the discovered master
 *
 * How a pool follows a failover (see docs/sentinel.md): the address of the
 * master is cached in the pool with an epoch that grows each time a
 * discovery finds a different address. Every pooled connection remembers
 * the epoch it was opened at; one from an older epoch is closed instead of
 * reused. A connection failure or a READONLY reply makes the pool forget
 * the cached address, so the next connection asks the sentinels again, and
 * the command is retried once on a fresh connection. A new connection is
 * used only after ROLE says "master".
 *
 * Following a switch: no +switch-master subscription thread. Sentinel does
 * close the clients of a demoted master (CLIENT KILL TYPE normal), but only
 * when it reconfigures it as a replica, which after SENTINEL FAILOVER comes
 * about 10 s later; until then the old master still says "master" and
 * takes writes. So the pool re-asks the sentinels itself, at most every
 * CK_SENTINEL_CHECK_MS, on the thread of the call that finds the check due
 * (one sentinel round trip, without the GIL); a changed address moves the
 * epoch and retires every connection to the old one.
 *
 * No function here touches Python.
 */
#ifndef CK_REDIS_SENTINEL_H
#define CK_REDIS_SENTINEL_H

#include <pthread.h>
#include <stdint.h>

#include "ck_redis.h"

#define CK_SENTINEL_DEFAULT_PORT 26379
#define CK_SENTINEL_MAX 16 /* sentinels in one URL */
#define CK_SENTINEL_CHECK_MS 1000 /* re-ask the sentinels this often */

/* The sentinels and the service; hangs off ck_redis_config.sentinel. */
struct ck_redis_sentinel_cfg {
    char *service;            /* the name in `sentinel monitor <name> ...` */
    size_t n;                 /* sentinels, 1..CK_SENTINEL_MAX */
    char *hosts[CK_SENTINEL_MAX]; /* IPv6 without brackets */
    int ports[CK_SENTINEL_MAX];
    char *username, *password; /* for the sentinels (sentinel_username /
                                  sentinel_password), or NULL; wiped */
};

/*
 * redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
 *     [?db=N&username=U&password=P&sentinel_username=U&sentinel_password=P]
 * user/password (and username/password/db) are the master's; the
 * sentinel_* parameters authenticate to the sentinels (none: no AUTH
 * there). Ports default to 26379. Fills cfg->sentinel, and cfg->host/port
 * with the first sentinel (never connected to as a data node). 0, or -1
 * with CK_EINVAL naming the part that is wrong, never quoting it.
 */
int ck_redis_sentinel_parse_url(ck_redis_config *cfg, const char *url, ck_error *err);

int ck_redis_sentinel_cfg_copy(ck_redis_sentinel_cfg **dst, const ck_redis_sentinel_cfg *src,
                               ck_error *err);
void ck_redis_sentinel_cfg_free(ck_redis_sentinel_cfg *s);

/* "h1:p1,h2:p2/service" (no credentials), truncated to fit. */
void ck_redis_sentinel_describe(const ck_redis_sentinel_cfg *s, char *buf, size_t n);

/*
 * Ask each sentinel in turn for the master of the service; the first that
 * names one wins. The whole search is bounded by cfg's connect timeout plus
 * its socket timeout; replies are bounded small. *host is malloc'ed.
 * 0, or -1: CK_ECONN (no sentinel reachable or none knows the service),
 * CK_EDENIED (a sentinel refused our credentials and none answered), ...
 */
int ck_redis_sentinel_discover(const ck_redis_config *cfg, char **host, int *port,
                               ck_error *err);

/* ROLE on c: 0 when it says master, else -1 (CK_ECONN "not a master"). */
int ck_redis_sentinel_check_role(ck_redis_conn *c, ck_error *err);

/* The pool's cached master, guarded by the pool's lock (which the pool's
   fork handlers hold across fork). */
typedef struct {
    char *host;     /* last discovered master, or NULL */
    int port;
    int valid;      /* 0: ask the sentinels before the next connect */
    uint64_t epoch; /* grows when a discovery finds a different address */
    int64_t check_at_ns; /* next periodic re-ask (ck_now_ns clock) */
} ck_redis_sentinel_state;

/* Called by acquire with the lock held: when the periodic check of a
   known address is due,
   unlock, ask the sentinels, record what they say, lock again. A failed
   check changes nothing (the current master may be fine). */
void ck_redis_sentinel_maybe_recheck(const ck_redis_config *cfg, pthread_mutex_t *lock,
                                     ck_redis_sentinel_state *st);

/* A connection to the current master (ROLE checked) for a pool with
   cfg->sentinel set; *epoch: the epoch of its address. Rediscovers once
   when the cached address fails. NULL with err set. */
ck_redis_conn *ck_redis_sentinel_connect(const ck_redis_config *cfg, ck_tls_ctx *tls,
                                         pthread_mutex_t *lock, ck_redis_sentinel_state *st,
                                         uint64_t *epoch, ck_error *err);

/* The address of `epoch` failed: ask the sentinels at the next connect. */
void ck_redis_sentinel_forget(pthread_mutex_t *lock, ck_redis_sentinel_state *st,
                              uint64_t epoch);

/* Failures that mean "maybe not the master any more". */
int ck_redis_sentinel_should_rediscover(const ck_error *err, int conn_broken);

void ck_redis_sentinel_state_free(ck_redis_sentinel_state *st);

#endif /* CK_REDIS_SENTINEL_H */
