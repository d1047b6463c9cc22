/*
 * ck_redis_slots.h - Redis Cluster routing primitives in pure C: the
 * CRC16 key slot (with {hash tag}), MOVED/ASK error parsing and the
 * CLUSTER SLOTS reply parser. All three read bytes a server (possibly a
 * hostile one) sent, so every length and number is bounded and checked.
 *
 * These are the building blocks of cluster routing; the routing client
 * itself (a pool per node, redirects) is not built yet (docs/cluster.md).
 */
#ifndef CK_REDIS_SLOTS_H
#define CK_REDIS_SLOTS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "ck_error.h"

#define CK_CLUSTER_SLOTS 16384
#define CK_CLUSTER_MAX_HOST 255     /* a longer endpoint is refused */
#define CK_CLUSTER_MAX_RANGES 16384 /* slot ranges in one CLUSTER SLOTS reply */

/* CRC16-CCITT (XMODEM: poly 0x1021, init 0), the Redis Cluster key hash.
   ck_crc16("123456789", 9) == 0x31C3. */
uint16_t ck_crc16(const void *data, size_t n);

/* The cluster slot of a key: CRC16 of the key, or of the bytes between the
   first '{' and the first '}' after it when that span is not empty. */
unsigned ck_cluster_key_slot(const void *key, size_t n);

typedef enum { CK_REDIRECT_MOVED = 1, CK_REDIRECT_ASK = 2 } ck_redirect_kind;

typedef struct {
    ck_redirect_kind kind;
    unsigned slot;
    int port;
    char host[CK_CLUSTER_MAX_HOST + 1]; /* "" = the node that answered */
} ck_redirect;

/* Parse an error reply's text ("MOVED 3999 127.0.0.1:6381", "ASK 1 [::1]:7000"
   or "ASK 1 ::1:7000"). Returns 1 and fills out for a well-formed redirect,
   0 when the error is not a redirect, -1 (CK_EPROTO) when it starts with
   MOVED/ASK but is malformed (bad slot, port, over-long host). */
int ck_cluster_parse_redirect(const char *s, size_t n, ck_redirect *out, ck_error *err);

typedef struct {
    unsigned start, end; /* inclusive, end < CK_CLUSTER_SLOTS */
    int port;
    char host[CK_CLUSTER_MAX_HOST + 1]; /* master's endpoint; "" = seed's host */
} ck_slot_range;

/* Parse a CLUSTER SLOTS reply into *ranges (malloc'd, caller frees; *count
   entries): per range its master (first node). Refuses (CK_EPROTO) a reply
   that is not an array of [start, end, [host, port, ...], ...] with
   start <= end < 16384, a port in 1..65535 and a host of at most 255 bytes
   ("?" and NULL hosts read as ""); overlapping ranges are refused too. */
int ck_cluster_parse_slots(const redisReply *r, ck_slot_range **ranges, size_t *count,
                           ck_error *err);

#endif
