/*
 * fuzz_seal.c - libFuzzer target for encrypted entries: the sealed-entry
 * parser (ck_sealed_parse, ck_seal.c) and the keyring's open path
 * (ck_keyring_open: fingerprint lookup, unwrapping the data key carried in
 * the entry, AES-256-GCM open), with a fixed master key of 32 zero bytes,
 * the key the seed corpus is sealed under (fuzz/make_corpus.py).
 *
 * Input: the bytes of an entry given to open, for tenant "default" and an
 * empty cache key (the defaults of Keyring.seal_value). Forged entries
 * cannot pass the GCM tags, so every input is also sealed as a plaintext
 * and opened again, which drives the path past authentication and checks
 * the round trip. A finding is any sanitizer report, an open that succeeds
 * where ck_sealed_parse refused, or a round trip that does not give the
 * plaintext back (abort()).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/lsan_interface.h>

#include "ck_buf.h"
#include "ck_format.h"
#include "ck_keyring.h"
#include "ck_keyring_internal.h" /* sizeof(struct ck_keyring), see below */
#include "ck_seal.h"

static ck_keyring *kr;

static void free_keyring(void)
{
    __lsan_unregister_root_region(kr, sizeof(*kr));
    ck_keyring_free(kr);
}

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const unsigned char master[32] = {0};
    ck_keyring_limits lim;
    ck_error err;

    (void)argc;
    (void)argv;
    memset(&lim, 0, sizeof(lim));
    lim.dek_max_age_ns = (uint64_t)3600 * 1000000000;
    lim.dek_max_messages = CK_KEYRING_MAX_MESSAGES;
    lim.dek_max_bytes = (uint64_t)1 << 36;
    lim.read_max_age_ns = (uint64_t)3600 * 1000000000;
    lim.read_capacity = 1024;
    lim.tenant_capacity = 1024;
    lim.compress_min = 64; /* round trips of larger inputs go through LZ4 too */
    kr = ck_keyring_new(master, sizeof(master), &lim, &err);
    check(kr != NULL);
    /* The keyring lives in OpenSSL's secure heap, which LeakSanitizer does
       not scan: without this, every cache it points to would be reported
       as leaked (the data keys it caches between inputs included). */
    __lsan_register_root_region(kr, sizeof(*kr));
    atexit(free_keyring);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ck_span tenant = {(const unsigned char *)"default", 7};
    const ck_span no_key = {(const unsigned char *)"", 0};
    const ck_span other_key = {(const unsigned char *)"k", 1};
    ck_sealed s;
    ck_buf pt, entry;
    ck_error err;
    uint8_t ser = 0;
    int parsed, rc;

    /* 1. The bytes as a stored entry. */
    parsed = ck_sealed_parse(data, size, CK_ENTRY_DEFAULT_MAX_SIZE, &s, &err);
    if (parsed == 0) {
        check((size_t)s.h.header_len + s.ciphertext.n == size);
        check(s.wrapped.n >= 1 && s.wrapped.p + s.wrapped.n <= s.tag);
        check(s.header.n + CK_AEAD_TAG_LEN == s.h.header_len);
    }
    ck_buf_init_secret(&pt);
    rc = ck_keyring_open(kr, data, size, CK_ENTRY_DEFAULT_MAX_SIZE, tenant, no_key, NULL, &pt,
                         &ser, &err);
    if (rc == 0) {
        check(parsed == 0 && pt.len == s.plaintext_len);
        check(ser == s.h.serializer);
    } else {
        check(pt.len == 0 && err.code != CK_OK);
    }
    ck_buf_free(&pt);

    /* 2. The bytes as a plaintext: seal, open, compare; another cache key
       must not open it. */
    ck_buf_init(&entry);
    ck_buf_init_secret(&pt);
    if (ck_keyring_seal(kr, tenant, no_key, CK_SER_MSGPACK, data, size, NULL, &entry, &err) == 0) {
        check(ck_keyring_open(kr, entry.data, entry.len, CK_ENTRY_DEFAULT_MAX_SIZE, tenant, no_key,
                              NULL, &pt, &ser, &err) == 0);
        check(pt.len == size && (size == 0 || memcmp(pt.data, data, size) == 0));
        check(ser == CK_SER_MSGPACK);
        check(ck_keyring_open(kr, entry.data, entry.len, CK_ENTRY_DEFAULT_MAX_SIZE, tenant,
                              other_key, NULL, &pt, &ser, &err) < 0);
        check(err.code == CK_EAUTH && pt.len == 0);
    }
    ck_buf_free(&pt);
    ck_buf_free(&entry);
    return 0;
}
