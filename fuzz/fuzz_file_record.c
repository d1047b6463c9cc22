/*
 * fuzz_file_record.c - libFuzzer target for the file store's record
 * decoder (src/core/ck_file_record.c), which reads files any process (or
 * a disk fault) may have written.
 *
 * The input is decoded as a whole file, with and without an expected key
 * hash. A finding is a sanitizer report, or a decoded record that does not
 * re-encode to exactly the input bytes (abort()): the decoder must accept
 * only records the encoder could have written.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ck_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_file_record rec;
    ck_error err;
    unsigned char hash[16], *again;

    if (ck_file_record_decode(data, size, NULL, &rec, &err) < 0) {
        return 0;
    }
    if (rec.name < data + CK_FILE_HEADER || rec.value + rec.value_len != data + size) {
        abort();
    }
    memcpy(hash, data + 40, 16);
    if (ck_file_record_decode(data, size, hash, &rec, &err) < 0) {
        abort(); /* its own hash must match */
    }
    hash[0] ^= 1;
    if (ck_file_record_decode(data, size, hash, &rec, &err) == 0) {
        abort(); /* and another must not */
    }
    hash[0] ^= 1;
    again = malloc(size);
    if (again == NULL) {
        return 0;
    }
    ck_file_record_encode(again, hash, rec.created_ms, rec.expires_ms, (const char *)rec.name,
                          rec.name_len, rec.value, rec.value_len);
    if (memcmp(again, data, size) != 0) {
        abort();
    }
    free(again);
    return 0;
}
