/*
 * ck_redis_track.h - the invalidation listener of one Redis server
 * (server-assisted client-side caching, RESP2 redirect mode).
 *
 * One connection per server, owned by a C thread that never touches
 * Python: CLIENT ID, then CLIENT TRACKING on REDIRECT <its own id> BCAST
 * PREFIX <p>..., then SUBSCRIBE __redis__:invalidate. In BCAST mode the
 * server reports every write to a key under a prefix, whoever read it, so
 * the pool's reading connections need no tracking of their own.
 *
 * The callback gets each invalidated key name; key NULL means "forget
 * everything that came from this server": a FLUSHALL/FLUSHDB (null
 * message), and every time the connection is (re)established or lost,
 * because what happened while it was down is unknown. Reconnects back off
 * from 50 ms to 5 s. The callback runs on the tracker's thread.
 *
 * Per server address, so a cluster can run one per master.
 */
#ifndef CK_REDIS_TRACK_H
#define CK_REDIS_TRACK_H

#include <stddef.h>
#include <stdint.h>

#include "ck_error.h"
#include "ck_redis.h"

typedef void (*ck_redis_track_fn)(void *ctx, const char *key, size_t n);

typedef struct ck_redis_track ck_redis_track;

/* Copies cfg and the prefixes (n_prefixes 0: every key) and starts the
   thread. NULL with err set (CK_ENOMEM, CK_EINVAL). */
ck_redis_track *ck_redis_track_new(const ck_redis_config *cfg, const char *const *prefixes,
                                   const size_t *prefix_lens, size_t n_prefixes,
                                   ck_redis_track_fn fn, void *ctx, ck_error *err);

/* The subscribed connection's client id (0 while disconnected) and the
   number of times it was established. */
long long ck_redis_track_id(ck_redis_track *t, uint64_t *connects);

/* Stop the thread (waits for it: at most one poll interval plus a
   callback) and free. */
void ck_redis_track_free(ck_redis_track *t);

#endif /* CK_REDIS_TRACK_H */
