/*
 * fuzz_redis_slots.c - libFuzzer target for the cluster routing parsers
 * (src/core/ck_redis_slots.c), which read bytes a server sent:
 *
 *   - the whole input as an error text for ck_cluster_parse_redirect
 *     (MOVED/ASK);
 *   - the input as a RESP stream (hiredis' redisReader) whose replies go
 *     to ck_cluster_parse_slots (CLUSTER SLOTS);
 *   - the input as a key for ck_cluster_key_slot.
 *
 * hiredis' stock reader allocates an array as soon as it reads the count,
 * so "*277777777" alone asks for 2 GB. The client never uses the stock
 * reader (ck_redis_conn.c bounds every count before it is allocated, and
 * fuzz_redis_reply covers that); here the stock callbacks are wrapped with
 * a budget of declared elements per input, enough for any CLUSTER SLOTS
 * reply a fuzzer can spell in 64 KiB, so the target stays on the parser.
 *
 * A finding is any sanitizer report, or a success that breaks the promised
 * bounds (abort()): slot < 16384, 1 <= port <= 65535, a NUL-terminated host
 * of at most 255 bytes, ranges ordered start <= end and not overlapping.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ck_redis_slots.h"

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void check_host(const char *h)
{
    check(memchr(h, '\0', CK_CLUSTER_MAX_HOST + 1) != NULL);
}

static void check_slots(const redisReply *r)
{
    ck_slot_range *ranges = NULL;
    size_t count = 0, i, s;
    ck_error err;
    static unsigned char seen[CK_CLUSTER_SLOTS];

    if (ck_cluster_parse_slots(r, &ranges, &count, &err) < 0) {
        check(ranges == NULL && count == 0);
        return;
    }
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < count; i++) {
        check(ranges[i].start <= ranges[i].end && ranges[i].end < CK_CLUSTER_SLOTS);
        check(ranges[i].port >= 1 && ranges[i].port <= 65535);
        check_host(ranges[i].host);
        for (s = ranges[i].start; s <= ranges[i].end; s++) {
            check(!seen[s]);
            seen[s] = 1;
        }
    }
    free(ranges);
}

#define ELEMENT_BUDGET (1 << 16)

static redisReplyObjectFunctions bounded_fn;
static void *(*stock_create_array)(const redisReadTask *, int);
static long elements_left;

static void *bounded_create_array(const redisReadTask *t, int elements)
{
    if (elements < 0 || elements > elements_left) {
        return NULL; /* the reader reports out of memory: a refused reply */
    }
    elements_left -= elements;
    return stock_create_array(t, elements);
}

static redisReader *bounded_reader(void)
{
    redisReader *reader = redisReaderCreate();

    check(reader != NULL);
    if (stock_create_array == NULL) {
        bounded_fn = *reader->fn;
        stock_create_array = bounded_fn.createArray;
        bounded_fn.createArray = bounded_create_array;
    }
    reader->fn = &bounded_fn;
    elements_left = ELEMENT_BUDGET;
    return reader;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_redirect rd;
    ck_error err;
    redisReader *reader;
    void *reply;
    int rc, n;

    check(ck_cluster_key_slot(data, size) < CK_CLUSTER_SLOTS);
    rc = ck_cluster_parse_redirect((const char *)data, size, &rd, &err);
    check(rc >= -1 && rc <= 1);
    if (rc == 1) {
        check(rd.kind == CK_REDIRECT_MOVED || rd.kind == CK_REDIRECT_ASK);
        check(rd.slot < CK_CLUSTER_SLOTS && rd.port >= 1 && rd.port <= 65535);
        check_host(rd.host);
    }
    if (size > 64 * 1024) {
        return 0;
    }
    reader = bounded_reader();
    if (redisReaderFeed(reader, (const char *)data, size) == REDIS_OK) {
        for (n = 0; n < 4; n++) {
            reply = NULL;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == NULL) {
                break;
            }
            check_slots(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(reader);
    return 0;
}
