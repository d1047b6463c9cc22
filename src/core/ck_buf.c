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
    b->fixed = 0;
}

void ck_buf_init_fixed(ck_buf *b, unsigned char *p, size_t cap)
{
    b->data = p;
    b->len = 0;
    b->cap = cap;
    b->secret = 0;
    b->fixed = 1;
}

void ck_buf_adopt(ck_buf *b, unsigned char *p, size_t cap, int secret)
{
    reset(b);
    b->secret = secret;
    b->fixed = 0;
    if (p != NULL && cap > sizeof(b->inline_)) {
        b->data = p;
        b->cap = cap;
    } else {
        free(p);
    }
}

unsigned char *ck_buf_detach(ck_buf *b, size_t *cap)
{
    unsigned char *p = NULL;

    *cap = 0;
    if (b->secret) {
        ck_wipe(b->data, b->len);
    }
    if (b->data != b->inline_ && !b->fixed) {
        p = b->data;
        *cap = b->cap;
    }
    b->fixed = 0;
    reset(b);
    return p;
}

void ck_buf_free_slow(ck_buf *b)
{
    if (b->secret) {
        /* [0, len) is all that was written (ck_buf.h); the inline array
           was wiped when data moved to the heap. */
        ck_wipe(b->data, b->len);
    }
    if (b->data != b->inline_ && !b->fixed) {
        free(b->data);
    }
    /* A fixed buffer stays on the caller's memory, emptied. */
    if (!b->fixed) {
        reset(b);
    } else {
        b->len = 0;
    }
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

    if (b->fixed || extra > SIZE_MAX - b->len) {
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
