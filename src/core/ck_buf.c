/*
 * ck_buf.c - growth policy of ck_buf (see ck_buf.h).
 */
#include "ck_buf.h"

#include <stdlib.h>

#include "ck_crypto.h"

static void reset(ck_buf *b)
{
    b->data = b->inline_;
    b->len = 0;
    b->cap = sizeof(b->inline_);
}

void ck_buf_init_secret(ck_buf *b)
{
    reset(b);
    b->secret = 1;
}

void ck_buf_free_slow(ck_buf *b)
{
    if (b->secret) {
        /* [0, len) is all that was written (ck_buf.h); the inline array
           was wiped when data moved to the heap. */
        ck_wipe(b->data, b->len);
    }
    if (b->data != b->inline_) {
        free(b->data);
    }
    reset(b);
}

void ck_buf_clear(ck_buf *b)
{
    if (b->secret) {
        ck_wipe(b->data, b->len);
    }
    b->len = 0;
}

int ck_buf_grow(ck_buf *b, size_t extra)
{
    size_t need, cap;
    unsigned char *p;

    if (extra > SIZE_MAX - b->len) {
        return -1;
    }
    need = b->len + extra;
    cap = b->cap;
    while (cap < need) {
        /* Double until large, then grow by half: fewer copies for 1 MB values
           without reserving twice their size. */
        size_t step = cap < ((size_t)1 << 20) ? cap : cap / 2;
        if (cap > SIZE_MAX - step) {
            cap = need;
            break;
        }
        cap += step;
    }
    if (b->data == b->inline_ || b->secret) {
        /* Secret buffers always take this path: the old storage is wiped
           here, never handed to realloc. */
        p = malloc(cap);
        if (p == NULL) {
            return -1;
        }
        memcpy(p, b->data, b->len);
        if (b->secret) {
            ck_wipe(b->data, b->len);
        }
        if (b->data != b->inline_) {
            free(b->data);
        }
    } else {
        p = realloc(b->data, cap);
        if (p == NULL) {
            return -1;
        }
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int ck_buf_msgpack_write(void *data, const char *buf, size_t len)
{
    return ck_buf_append((ck_buf *)data, buf, len);
}
