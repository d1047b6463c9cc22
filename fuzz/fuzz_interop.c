/*
 * fuzz_interop.c - libFuzzer target for the interop/v1 reader
 * (ck_interop.c): the strict one-document check run on every value read
 * from a backend, and the decryption of interop entries.
 *
 * Input: the bytes of a stored entry. It is checked as a plain value and
 * opened as an encrypted one (master key 32 bytes of 0x61, tenant
 * "default", a fixed key; forged inputs cannot pass the tag, so the input
 * is also sealed and opened again to drive the path past authentication).
 * A finding is any sanitizer report, a check that accepts a document it
 * then re-accepts differently when a byte is appended, or a round trip
 * that does not give the input back (abort()).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ck_buf.h"
#include "ck_interop.h"

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char master[32] = {
        0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61,
        0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61,
        0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61,
    };
    static const char key[] = "users:get_user:0000";
    unsigned char digest[CK_BLAKE2B_256_LEN];
    ck_buf sealed, opened, extended;
    ck_error err;
    int accepted;

    ck_buf_init(&sealed);
    ck_buf_init(&opened);
    ck_buf_init(&extended);

    accepted = ck_interop_check_document(data, size, &err) == 0;
    /* One document exactly: with a byte appended an accepted input has
       trailing bytes and must be refused. */
    if (accepted) {
        check(ck_buf_append(&extended, data, size) == 0 && ck_buf_append_byte(&extended, 0) == 0);
        check(ck_interop_check_document(extended.data, extended.len, &err) != 0);
    }
    ck_blake2b_256(data, size, digest);

    /* As an encrypted entry: must never authenticate under our key. */
    if (ck_interop_open(master, sizeof(master), "default", 7, key, sizeof(key) - 1, data, size,
                        &opened, &err) == 0) {
        abort();
    }
    check(err.code == CK_EAUTH || err.code == CK_EFORMAT);

    /* Seal and open the input: the plaintext comes back unchanged. */
    check(ck_interop_seal(master, sizeof(master), "default", 7, key, sizeof(key) - 1, data, size,
                          NULL, &sealed, &err) == 0);
    ck_buf_clear(&opened);
    check(ck_interop_open(master, sizeof(master), "default", 7, key, sizeof(key) - 1, sealed.data,
                          sealed.len, &opened, &err) == 0);
    check(opened.len == size && (size == 0 || memcmp(opened.data, data, size) == 0));

    ck_buf_free(&sealed);
    ck_buf_free(&opened);
    ck_buf_free(&extended);
    return 0;
}
