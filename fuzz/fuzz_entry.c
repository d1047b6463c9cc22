/*
 * fuzz_entry.c - libFuzzer target for the entry frame decoder (ck_format.c):
 * ck_entry_parse_header and ck_entry_decode, LZ4 decompression included.
 *
 * Input: the bytes of a stored entry, as a backend would hand them back.
 * Each input is decoded twice, under the default limits and under tight
 * ones (a small max_size and max_ratio), so the limit checks themselves are
 * exercised. A finding is any sanitizer report or a broken invariant below
 * (abort()); a refusal with an error code is the expected outcome.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ck_buf.h"
#include "ck_format.h"

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void decode_with(const uint8_t *data, size_t size, const ck_entry_limits *lim)
{
    ck_entry_header h, h2;
    ck_error err, err2;
    const unsigned char *pt = NULL;
    size_t pt_len = 0;
    ck_buf out;
    int hdr_rc, rc;

    memset(&err, 0, sizeof(err));
    memset(&err2, 0, sizeof(err2));
    hdr_rc = ck_entry_parse_header(data, size, lim, &h, &err);
    ck_buf_init(&out);
    rc = ck_entry_decode(data, size, lim, &h2, &pt, &pt_len, &out, &err2);
    if (hdr_rc < 0) {
        /* decode parses the header first: it must refuse as well. */
        check(rc < 0 && err.code != CK_OK && err2.code == err.code);
    } else {
        /* The header bounds everything the decoder later trusts. */
        check(h.original_len <= lim->max_size);
        check((size_t)h.header_len + h.stored_len == size);
        if (h.flags & CK_ENTRY_FLAG_COMPRESSED) {
            check(h.stored_len < h.original_len);
            check((uint64_t)h.original_len <= (uint64_t)h.stored_len * lim->max_ratio);
        } else {
            check(h.original_len == h.stored_len);
        }
    }
    if (rc == 0) {
        check(hdr_rc == 0);
        check(pt_len == h2.original_len);
        check(!(h2.flags & CK_ENTRY_FLAG_ENCRYPTED));
        if (h2.flags & CK_ENTRY_FLAG_COMPRESSED) {
            check(pt == out.data && out.len == pt_len);
        } else {
            check(pt == data + h2.header_len);
        }
        /* Touch every plaintext byte so ASan sees any out-of-bounds claim. */
        {
            volatile unsigned char sink = 0;
            size_t i;
            for (i = 0; i < pt_len; i++) {
                sink ^= pt[i];
            }
            (void)sink;
        }
    } else {
        check(err2.code != CK_OK);
        check(memchr(err2.msg, '\0', sizeof(err2.msg)) != NULL);
    }
    ck_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ck_entry_limits def = {CK_ENTRY_DEFAULT_MAX_SIZE, CK_ENTRY_MAX_LZ4_RATIO};
    const ck_entry_limits tight = {4096, 8};

    decode_with(data, size, &def);
    decode_with(data, size, &tight);
    return 0;
}
