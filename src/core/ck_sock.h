/*
 * ck_sock.h - a blocking-looking stream socket with hard timeouts.
 *
 * TCP (IPv4/IPv6, TCP_NODELAY) or a unix socket path, optionally wrapped in
 * TLS (OpenSSL 3). The descriptor is always non-blocking; every operation
 * waits with poll() up to an absolute deadline on the monotonic clock, so a
 * silent peer costs at most the caller's timeout, never forever.
 *
 * Pure C: no Python. Not thread-safe per socket (one user at a time; the
 * Redis pool guarantees that). Errors: CK_ETIMEOUT, CK_ECONN (refused,
 * reset, closed, TLS handshake or certificate failure), CK_EINVAL,
 * CK_ENOMEM, with a message that names the peer at most by address.
 */
#ifndef CK_SOCK_H
#define CK_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ck_error.h"

typedef struct ck_sock ck_sock;
typedef struct ck_tls_ctx ck_tls_ctx; /* wraps an SSL_CTX */

/* Monotonic clock in nanoseconds. */
int64_t ck_now_ns(void);

/* Deadline `ms` milliseconds from now (ms <= 0: already passed). */
static inline int64_t ck_deadline_ms(int64_t ms)
{
    return ck_now_ns() + ms * 1000000;
}

/*
 * TLS client configuration, shared by every connection of a pool (an
 * SSL_CTX is safe to use from several threads once set up). Verification
 * of the server's chain is always on: against ca_file if given, else the
 * system's default paths. cert_file/key_file (optional, PEM) give a client
 * certificate. NULL with err set on failure.
 */
ck_tls_ctx *ck_tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                           ck_error *err);
void ck_tls_ctx_free(ck_tls_ctx *ctx);

typedef struct {
    const char *host;      /* TCP: name or address literal (no brackets) */
    int port;
    const char *unix_path; /* non-NULL: connect to this unix socket instead */
    int64_t deadline_ns;   /* connect + TLS handshake must finish by then */
    ck_tls_ctx *tls;       /* NULL: plain text */
    int check_hostname;    /* TLS: the certificate must name `host` */
} ck_sock_opts;

/* Connect (trying each address getaddrinfo returns). NULL with err set.
   getaddrinfo itself cannot be given a timeout; address literals and
   /etc/hosts names resolve without a network round trip. */
ck_sock *ck_sock_connect(const ck_sock_opts *opts, ck_error *err);

/* Write all n bytes by the deadline. 0, or -1 with err set. */
int ck_sock_write_all(ck_sock *s, const void *buf, size_t n, int64_t deadline_ns, ck_error *err);

/* Read between 1 and n bytes by the deadline. Returns the count, or -1 with
   err set (an orderly close by the peer is CK_ECONN). */
ssize_t ck_sock_read(ck_sock *s, void *buf, size_t n, int64_t deadline_ns, ck_error *err);

/* 1 if an idle socket is no longer usable: the peer closed it, reset it, or
   sent bytes nobody asked for (so the stream is out of step). Never blocks. */
int ck_sock_is_stale(ck_sock *s);

/* Close and free (NULL is fine). A TLS socket is closed without waiting for
   the peer's close_notify. */
void ck_sock_close(ck_sock *s);

/* 1 when readable within timeout_ms, 0 on timeout, -1 when poll failed. */
int ck_sock_wait_readable(ck_sock *s, int timeout_ms);

#endif /* CK_SOCK_H */
