/*
 * ck_error.h - how the pure C core reports failure.
 *
 * Core functions (prefix ck_) never touch PyObject. They return 0 on success
 * and -1 on failure, filling a ck_error with a code and a short message that
 * never contains key material or user data. Only the binding layer (py_*.c)
 * turns a ck_error into a Python exception.
 */
#ifndef CK_ERROR_H
#define CK_ERROR_H

#include <stdarg.h>
#include <stdio.h>

typedef enum {
    CK_OK = 0,
    CK_ENOMEM,    /* allocation failed */
    CK_EINVAL,    /* caller passed an invalid argument */
    CK_EFORMAT,   /* malformed or truncated input */
    CK_ECHECKSUM, /* integrity check failed */
    CK_ELIMIT,    /* input exceeds a configured bound */
    CK_EAUTH,     /* AEAD authentication failed: wrong key, tampered or truncated */
    CK_ECRYPTO,   /* the crypto library reported an error */
    CK_ESTALE,    /* an authentic entry past the expiry time it carries */
    /* Network backends (ck_sock.c, ck_redis.c). */
    CK_ETIMEOUT,  /* an operation did not finish within its timeout */
    CK_ECONN,     /* could not connect, connection lost, or TLS failure */
    CK_EPROTO,    /* the peer broke the protocol */
    CK_EDENIED,   /* the server refused our credentials (AUTH) or demands them */
    CK_ESERVER,   /* the server answered a command with an error reply */
} ck_errcode;

typedef struct {
    ck_errcode code;
    char msg[160];
} ck_error;

static inline int ck_error_set(ck_error *err, ck_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill err (if not NULL) and return -1 so callers can write `return ck_error_set(...)`. */
static inline int ck_error_set(ck_error *err, ck_errcode code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif /* CK_ERROR_H */
