/*
 * ck_sign.h - signed plain entries (pure C).
 *
 * A plain entry's checksum catches accidents, not an attacker who can write
 * to the store: they can write any value with a valid checksum. A signed
 * entry (flag SIGNED, ck_format.h) carries in header bytes 24..55
 *
 *   HMAC-SHA256(sign_key, "CKSIG1" || entry[0:24] || be32(len(name)) || name
 *               || entry[56:])
 *
 * where name is the entry's name in the store (which binds function and
 * call) and sign_key is derived from the master key (ck_keyring_sign_key).
 * So a planted, altered or moved entry fails verification: a miss.
 */
#ifndef CK_SIGN_H
#define CK_SIGN_H

#include <stddef.h>

#include "ck_error.h"
#include "ck_format.h"
#include "ck_seal.h"

#define CK_SIGN_KEY_LEN 32
#define CK_SIGN_DOMAIN "CKSIG1"

/* Fill the signature slot of entry[0..n) (made by ck_entry_encode_ex with
   signed_entry set). 0, or -1 with err. */
int ck_entry_sign(unsigned char *entry, size_t n, const unsigned char key[CK_SIGN_KEY_LEN],
                  ck_span name, ck_error *err);

/* 0 when entry[0..n) is a signed entry whose signature verifies for name
   (constant-time comparison); CK_EAUTH when it is unsigned or does not
   verify, CK_EFORMAT when too short. Call before decoding the payload. */
int ck_entry_verify(const unsigned char *entry, size_t n, const unsigned char key[CK_SIGN_KEY_LEN],
                    ck_span name, ck_error *err);

#endif /* CK_SIGN_H */
