/*
 * ck_sign.c - signatures of plain entries (ck_sign.h), HMAC-SHA256 through
 * OpenSSL's EVP_MAC so a FIPS configuration gets its provider's HMAC.
 */
#include "ck_sign.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "ck_bytes.h"
#include "ck_crypto.h"

static int compute(const unsigned char *entry, size_t n, const unsigned char key[CK_SIGN_KEY_LEN],
                   ck_span name, unsigned char out[CK_ENTRY_SIG_LEN], ck_error *err)
{
    char digest[] = "SHA256";
    unsigned char len_be[4];
    OSSL_PARAM params[2];
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    size_t outl = 0;
    int rc = -1;

    if (n < CK_ENTRY_SIGNED_HEADER_LEN || name.n > UINT32_MAX) {
        return ck_error_set(err, CK_EFORMAT, "entry too short to carry a signature");
    }
    put_be32(len_be, (uint32_t)name.n);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = mac == NULL ? NULL : EVP_MAC_CTX_new(mac);
    if (ctx == NULL || EVP_MAC_init(ctx, key, CK_SIGN_KEY_LEN, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)CK_SIGN_DOMAIN, sizeof(CK_SIGN_DOMAIN) - 1) !=
            1 ||
        EVP_MAC_update(ctx, entry, CK_ENTRY_HEADER_LEN) != 1 ||
        EVP_MAC_update(ctx, len_be, sizeof(len_be)) != 1 ||
        EVP_MAC_update(ctx, name.p, name.n) != 1 ||
        EVP_MAC_update(ctx, entry + CK_ENTRY_SIGNED_HEADER_LEN, n - CK_ENTRY_SIGNED_HEADER_LEN) !=
            1 ||
        EVP_MAC_final(ctx, out, &outl, CK_ENTRY_SIG_LEN) != 1 || outl != CK_ENTRY_SIG_LEN) {
        ck_crypto_error(err, "HMAC-SHA256 (entry signature)");
        goto error;
    }
    rc = 0;
error:
    EVP_MAC_CTX_free(ctx); /* cleanses the key pads */
    EVP_MAC_free(mac);
    return rc;
}

int ck_entry_sign(unsigned char *entry, size_t n, const unsigned char key[CK_SIGN_KEY_LEN],
                  ck_span name, ck_error *err)
{
    return compute(entry, n, key, name, entry + CK_ENTRY_HEADER_LEN, err);
}

int ck_entry_verify(const unsigned char *entry, size_t n, const unsigned char key[CK_SIGN_KEY_LEN],
                    ck_span name, ck_error *err)
{
    unsigned char expect[CK_ENTRY_SIG_LEN];
    int rc;

    if (n < CK_ENTRY_HEADER_LEN || !(entry[3] & CK_ENTRY_FLAG_SIGNED) ||
        (entry[3] & CK_ENTRY_FLAG_ENCRYPTED)) {
        return ck_error_set(err, CK_EAUTH, "entry is not signed");
    }
    rc = compute(entry, n, key, name, expect, err);
    if (rc == 0 && CRYPTO_memcmp(expect, entry + CK_ENTRY_HEADER_LEN, CK_ENTRY_SIG_LEN) != 0) {
        rc = ck_error_set(err, CK_EAUTH, "entry signature does not verify");
    }
    ck_wipe(expect, sizeof(expect));
    return rc;
}
