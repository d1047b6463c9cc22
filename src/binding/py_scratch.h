/*
 * py_scratch.h - the module's spare buffer for large values (binding layer).
 *
 * Encoding a 1 MiB value into a fresh ck_buf costs a 1 MiB malloc that
 * glibc hands back to the kernel when it is freed, so every call paid for
 * ~256 page faults per buffer (benchmarks/README.md, "Large values").
 * Instead the module keeps one heap block between calls: a call borrows it
 * into a local ck_buf (ck_scratch_take), may grow it, and returns it
 * (ck_scratch_give), wiped first when the buffer held plaintext (secret
 * mode). Blocks larger than CK_SCRATCH_KEEP_MAX are freed rather than kept,
 * so one huge value does not pin its size in memory for good.
 *
 * Both functions need the GIL, which guards the slot: a borrowed block is
 * the caller's alone (no other thread can reach it), so the work between
 * take and give may run without the GIL. A thread that finds the slot
 * empty (another call holds the block) simply starts with inline storage.
 */
#ifndef CK_PY_SCRATCH_H
#define CK_PY_SCRATCH_H

#include "ck_buf.h"
#include "module_state.h"

/* The largest block kept between calls (16 MiB). */
#define CK_SCRATCH_KEEP_MAX ((size_t)16 << 20)

/* b becomes an empty buffer in the given mode, on the spare block if any. */
static inline void ck_scratch_take(ck_state *st, ck_buf *b, int secret)
{
    unsigned char *p = st->scratch;
    size_t cap = st->scratch_cap;

    st->scratch = NULL;
    st->scratch_cap = 0;
    ck_buf_adopt(b, p, cap, secret);
}

/* Take b's heap block back as the spare (or free it), leaving b empty;
   a secret buffer's bytes are wiped either way. Like ck_buf_free, safe on
   any buffer, also one that never held the spare. */
static inline void ck_scratch_give(ck_state *st, ck_buf *b)
{
    size_t cap;
    unsigned char *p = ck_buf_detach(b, &cap);

    if (p == NULL) {
        return;
    }
    if (st->scratch == NULL && cap <= CK_SCRATCH_KEEP_MAX) {
        st->scratch = p;
        st->scratch_cap = cap;
        return;
    }
    free(p);
}

#endif /* CK_PY_SCRATCH_H */
