/*
 * ck_l1_walk.c - operations over the whole L1 store rather than one key:
 * statistics, the garbage collector's traversal, copying every key (tests)
 * and holding the lock across fork(). Layout in ck_l1_internal.h.
 */
#include "ck_l1.h"

#include "ck_bytes.h"
#include "ck_l1_internal.h"

void ck_l1_get_stats(ck_l1 *s, ck_l1_stats *out)
{
    lock_take(&s->lock);
    out->count = s->count;
    out->bytes = s->bytes;
    out->max_entries = s->max_entries == SIZE_MAX ? 0 : s->max_entries;
    out->max_bytes = s->max_bytes == SIZE_MAX ? 0 : s->max_bytes;
    out->evictions = s->evictions;
    out->expirations = s->expirations;
    lock_give(&s->lock);
}

int ck_l1_visit(ck_l1 *s, int (*visit)(void *value, void *arg), void *arg)
{
    ck_l1_link *link;
    int rc = 0;

    lock_take(&s->lock);
    for (link = s->lru.next; link != &s->lru && rc == 0; link = link->next) {
        rc = visit(entry_of(link)->value, arg);
    }
    lock_give(&s->lock);
    return rc;
}

int ck_l1_copy_keys(ck_l1 *s, ck_buf *out)
{
    ck_l1_link *link;
    unsigned char len32[4];
    int rc = 0;

    lock_take(&s->lock);
    for (link = s->lru.next; link != &s->lru && rc == 0; link = link->next) {
        ck_l1_entry *e = entry_of(link);

        if (e->key_len > UINT32_MAX) {
            rc = -1;
            break;
        }
        put_le32(len32, (uint32_t)e->key_len);
        if (ck_buf_append(out, len32, 4) < 0 || ck_buf_append(out, e->key, e->key_len) < 0) {
            rc = -1;
        }
    }
    lock_give(&s->lock);
    return rc;
}

void ck_l1_lock_for_fork(ck_l1 *s)
{
    lock_take(&s->lock);
}

void ck_l1_unlock_after_fork(ck_l1 *s)
{
    lock_give(&s->lock);
}
