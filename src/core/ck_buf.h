/*
 * ck_buf.h - a growable byte buffer with inline storage.
 *
 * Small outputs (cache keys, small values) stay in the inline array, so the
 * hot path does not call malloc. A ck_buf must not be copied by value once
 * used: `data` may point into the struct itself.
 *
 * Secret mode (ck_buf_init_secret), for buffers that hold plaintext, call
 * arguments or key material: growth never uses realloc (which can leave
 * the old block's bytes in freed heap memory) but allocates anew, copies,
 * wipes the old storage and frees it; ck_buf_free wipes data[0..len).
 * Invariant for secret buffers: len never goes down without the dropped
 * bytes being wiped (ck_buf_clear does both), so [0, len) is everything
 * ever written. Wiping len rather than cap bytes keeps a small key's free
 * from costing a 256-byte wipe on every cache hit.
 */
#ifndef CK_BUF_H
#define CK_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CK_BUF_INLINE 256

typedef struct {
    unsigned char *data; /* inline_ or heap memory */
    size_t len;
    size_t cap;
    int secret; /* wipe on growth and on free; kept by ck_buf_free */
    int fixed;  /* data is the caller's memory: never grown, never freed */
    unsigned char inline_[CK_BUF_INLINE];
} ck_buf;

/* Inline: every cache hit sets up and drops a key buffer. */
static inline void ck_buf_init(ck_buf *b)
{
    b->data = b->inline_;
    b->len = 0;
    b->cap = sizeof(b->inline_);
    b->secret = 0;
    b->fixed = 0;
}

void ck_buf_init_secret(ck_buf *b);

/*
 * Buffer ownership, for large values (a 1 MiB value must not cost a fresh
 * 1 MiB block, and its page faults, on every call):
 *
 * ck_buf_init_fixed: write into the caller's memory p[0..cap) (the storage
 * of a bytes object being built, say). Growth past cap fails (-1) and
 * ck_buf_free never frees p; the caller sizes cap for the worst case.
 *
 * ck_buf_adopt: make a malloc'd block p[0..cap) (or NULL: none) the
 * storage of an empty buffer, which then owns it as if it had grown into
 * it. secret selects the mode (ck_buf_init_secret).
 *
 * ck_buf_detach: hand the buffer's heap block back (NULL when it is inline
 * or fixed) with its capacity in *cap, wiping [0, len) first in secret
 * mode, and reset the buffer to empty inline storage.
 */
void ck_buf_init_fixed(ck_buf *b, unsigned char *p, size_t cap);
void ck_buf_adopt(ck_buf *b, unsigned char *p, size_t cap, int secret);
unsigned char *ck_buf_detach(ck_buf *b, size_t *cap);
/* The out-of-line part of ck_buf_free: wiping, heap storage. */
void ck_buf_free_slow(ck_buf *b);

/* Release heap memory (if any) and reset to empty, keeping the mode; a
   secret buffer is wiped first. Safe to call twice. A plain buffer that
   stayed inline only resets its length. */
static inline void ck_buf_free(ck_buf *b)
{
    if ((b->data == b->inline_ || b->fixed) && !b->secret) {
        b->len = 0;
        return;
    }
    ck_buf_free_slow(b);
}
/* len = 0, wiping the dropped bytes of a secret buffer; keeps the storage. */
void ck_buf_clear(ck_buf *b);
/* Ensure room for `extra` more bytes. 0, or -1 on overflow/out of memory. */
int ck_buf_grow(ck_buf *b, size_t extra);

static inline int ck_buf_reserve(ck_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return 0;
    }
    return ck_buf_grow(b, extra);
}

static inline int ck_buf_append(ck_buf *b, const void *p, size_t n)
{
    if (ck_buf_reserve(b, n) < 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    return 0;
}

static inline int ck_buf_append_byte(ck_buf *b, unsigned char c)
{
    if (ck_buf_reserve(b, 1) < 0) {
        return -1;
    }
    b->data[b->len++] = c;
    return 0;
}

/* msgpack-c packer write callback: `data` is a ck_buf*. */
int ck_buf_msgpack_write(void *data, const char *buf, size_t len);

#endif /* CK_BUF_H */
