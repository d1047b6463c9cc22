/*
 * ck_sock.c - stream sockets with deadlines: TCP, unix, TLS (ck_sock.h).
 *
 * Every descriptor is non-blocking from birth (SOCK_NONBLOCK). An operation
 * first tries the system call and, when it would block, waits in poll() for
 * what is left of its deadline; the deadline is absolute (monotonic clock),
 * so retries after EINTR or partial transfers never extend it.
 *
 * TLS runs on the same descriptor: SSL_read/SSL_write report WANT_READ or
 * WANT_WRITE and we poll for that direction (a TLS read can need a write
 * during renegotiation or key update, and the reverse). The OpenSSL error
 * queue is per thread; every path that can leave entries in it drains it
 * (tls_fail), so a later, unrelated OpenSSL call never sees a stale error.
 */
#define _GNU_SOURCE /* SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_NOSIGNAL */
#include "ck_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct ck_tls_ctx {
    SSL_CTX *ctx;
};

struct ck_sock {
    int fd;
    SSL *ssl;          /* NULL: plain text */
    int maybe_pending; /* the last read filled its buffer: more may be waiting */
};

int64_t ck_now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ errors */

/* Fill err from the OpenSSL error queue (or `what` alone), drain the queue. */
static int tls_fail(ck_error *err, ck_errcode code, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[120];

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
        ck_error_set(err, code, "%s: %s", what, reason);
    } else {
        ck_error_set(err, code, "%s", what);
    }
    ERR_clear_error();
    return -1;
}

static int errno_fail(ck_error *err, const char *what, int e)
{
    return ck_error_set(err, CK_ECONN, "%s: %s", what, strerror(e));
}

/* Wait until fd is ready for `events` or the deadline passes. 0 ready,
   -1 with err set (CK_ETIMEOUT, or CK_ECONN for a poll failure). */
static int wait_fd(int fd, short events, int64_t deadline_ns, const char *what, ck_error *err)
{
    struct pollfd p;
    int rc;

    for (;;) {
        int64_t left = deadline_ns - ck_now_ns();
        int ms;

        if (left <= 0) {
            return ck_error_set(err, CK_ETIMEOUT, "timed out %s", what);
        }
        /* Round up so a 0.3 ms remainder waits instead of spinning. */
        ms = left / 1000000 >= 0x7fffffff ? 0x7fffffff : (int)((left + 999999) / 1000000);
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        rc = poll(&p, 1, ms);
        if (rc > 0) {
            /* POLLERR/POLLHUP: let the next system call report the cause. */
            return 0;
        }
        if (rc < 0 && errno != EINTR) {
            return errno_fail(err, "poll failed", errno);
        }
    }
}

/* --------------------------------------------------------------- TLS setup */

ck_tls_ctx *ck_tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                           ck_error *err)
{
    ck_tls_ctx *t = NULL;

    ERR_clear_error();
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        goto error;
    }
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL) {
        tls_fail(err, CK_ECONN, "cannot create a TLS context");
        goto error;
    }
    if (SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1) {
        tls_fail(err, CK_ECONN, "cannot require TLS 1.2");
        goto error;
    }
    /* Verification is not optional: an unverified TLS connection to a cache
       would hand every cached value to whoever answers. */
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
            tls_fail(err, CK_ECONN, "cannot load the CA certificates (ssl_ca_certs)");
            goto error;
        }
    } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        tls_fail(err, CK_ECONN, "cannot load the system CA certificates");
        goto error;
    }
    if ((cert_file == NULL) != (key_file == NULL)) {
        ck_error_set(err, CK_EINVAL, "ssl_certfile and ssl_keyfile must be given together");
        goto error;
    }
    if (cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
            tls_fail(err, CK_ECONN, "cannot load the client certificate (ssl_certfile)");
            goto error;
        }
        if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
            tls_fail(err, CK_ECONN, "cannot load the client key (ssl_keyfile)");
            goto error;
        }
        if (SSL_CTX_check_private_key(t->ctx) != 1) {
            tls_fail(err, CK_ECONN, "the client key does not match the client certificate");
            goto error;
        }
    }
    /* Writes may complete partially: write_all loops over what is left. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    return t;
error:
    ck_tls_ctx_free(t);
    return NULL;
}

void ck_tls_ctx_free(ck_tls_ctx *t)
{
    if (t != NULL) {
        SSL_CTX_free(t->ctx);
        free(t);
    }
}

/* Name the server we expect: SNI and host-name checks for DNS names, an IP
   check for address literals (SNI must not carry an address, RFC 6066). */
static int tls_expect_host(SSL *ssl, const char *host, int check_hostname, ck_error *err)
{
    unsigned char addr[sizeof(struct in6_addr)];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

    if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
        return tls_fail(err, CK_ECONN, "cannot set the TLS server name");
    }
    if (!check_hostname) {
        return 0;
    }
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
            return tls_fail(err, CK_ECONN, "cannot set the expected server address");
        }
    } else if (SSL_set1_host(ssl, host) != 1) {
        return tls_fail(err, CK_ECONN, "cannot set the expected server name");
    }
    return 0;
}

static int tls_handshake(ck_sock *s, const ck_sock_opts *o, ck_error *err)
{
    ERR_clear_error();
    s->ssl = SSL_new(o->tls->ctx);
    if (s->ssl == NULL) {
        return tls_fail(err, CK_ECONN, "cannot create a TLS session");
    }
    if (SSL_set_fd(s->ssl, s->fd) != 1) {
        return tls_fail(err, CK_ECONN, "cannot attach TLS to the socket");
    }
    if (o->host != NULL && tls_expect_host(s->ssl, o->host, o->check_hostname, err) < 0) {
        return -1;
    }
    for (;;) {
        int rc = SSL_connect(s->ssl);
        int e;

        if (rc == 1) {
            return 0;
        }
        e = SSL_get_error(s->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (wait_fd(s->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, o->deadline_ns,
                        "during the TLS handshake", err) < 0) {
                return -1;
            }
            continue;
        }
        if (SSL_get_verify_result(s->ssl) != X509_V_OK) {
            ERR_clear_error();
            return ck_error_set(err, CK_ECONN, "certificate verify failed: %s",
                                X509_verify_cert_error_string(SSL_get_verify_result(s->ssl)));
        }
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            return errno != 0 ? errno_fail(err, "TLS handshake failed", errno)
                              : ck_error_set(err, CK_ECONN, "TLS handshake failed: connection "
                                                            "closed by the server");
        }
        return tls_fail(err, CK_ECONN, "TLS handshake failed");
    }
}

/* ---------------------------------------------------------------- connect */

/* Start a non-blocking connect and wait for it. fd on success, -1 with err. */
static int connect_addr(int family, const struct sockaddr *sa, socklen_t len, int64_t deadline_ns,
                        ck_error *err)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int soerr = 0;
    socklen_t soerr_len = sizeof(soerr);

    if (fd < 0) {
        errno_fail(err, "cannot create a socket", errno);
        return -1;
    }
    if (connect(fd, sa, len) == 0) {
        return fd;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        /* A unix socket whose listen queue is full answers EAGAIN at once. */
        errno_fail(err, "connect failed", errno);
        goto error;
    }
    if (wait_fd(fd, POLLOUT, deadline_ns, "connecting", err) < 0) {
        goto error;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) < 0) {
        errno_fail(err, "connect failed", errno);
        goto error;
    }
    if (soerr != 0) {
        errno_fail(err, "connect failed", soerr);
        goto error;
    }
    return fd;
error:
    close(fd);
    return -1;
}

static int connect_unix(const char *path, int64_t deadline_ns, ck_error *err)
{
    struct sockaddr_un sun;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        ck_error_set(err, CK_EINVAL, "unix socket path longer than %zu bytes",
                     sizeof(sun.sun_path) - 1);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    return connect_addr(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun), deadline_ns, err);
}

static int connect_tcp(const char *host, int port, int64_t deadline_ns, ck_error *err)
{
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[16];
    int fd = -1, rc, one = 1;

    if (port <= 0 || port > 65535) {
        ck_error_set(err, CK_EINVAL, "port %d out of range", port);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portstr, sizeof(portstr), "%d", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        ck_error_set(err, CK_ECONN, "cannot resolve the host name: %s",
                     rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    /* Each address in turn, all within the one deadline; err keeps the
       last failure, which is what the caller reports. */
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = connect_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline_ns, err);
        if (fd < 0 && err != NULL && err->code == CK_ETIMEOUT) {
            break;
        }
    }
    freeaddrinfo(res);
    /* Small commands must not wait for Nagle's algorithm to batch them. */
    if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        errno_fail(err, "cannot set TCP_NODELAY", errno);
        close(fd);
        return -1;
    }
    return fd;
}

ck_sock *ck_sock_connect(const ck_sock_opts *o, ck_error *err)
{
    ck_sock *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        ck_error_set(err, CK_ENOMEM, "out of memory");
        return NULL;
    }
    s->fd = -1;
    if (o->unix_path != NULL) {
        s->fd = connect_unix(o->unix_path, o->deadline_ns, err);
    } else if (o->host == NULL) {
        ck_error_set(err, CK_EINVAL, "no host or unix socket path");
    } else {
        s->fd = connect_tcp(o->host, o->port, o->deadline_ns, err);
    }
    if (s->fd < 0) {
        goto error;
    }
    if (o->tls != NULL && tls_handshake(s, o, err) < 0) {
        goto error;
    }
    return s;
error:
    ck_sock_close(s);
    return NULL;
}

/* -------------------------------------------------------------------- I/O */

/* Report a failed SSL_read_ex/SSL_write_ex, or wait for the direction it
   needs. 0: retry the call; -1: err set. */
static int tls_io_wait(ck_sock *s, int rc, int64_t deadline_ns, const char *what, ck_error *err)
{
    int e = SSL_get_error(s->ssl, rc);

    switch (e) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(s->fd, POLLIN, deadline_ns, what, err);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(s->fd, POLLOUT, deadline_ns, what, err);
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return ck_error_set(err, CK_ECONN, "connection closed by the server");
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            ERR_clear_error();
            return errno != 0 ? errno_fail(err, "connection lost", errno)
                              : ck_error_set(err, CK_ECONN, "connection closed by the server");
        }
        return tls_fail(err, CK_ECONN, "TLS error");
    default:
        return tls_fail(err, CK_ECONN, "TLS error");
    }
}

int ck_sock_write_all(ck_sock *s, const void *buf, size_t n, int64_t deadline_ns, ck_error *err)
{
    const char *p = buf;

    while (n > 0) {
        if (s->ssl != NULL) {
            size_t done = 0;
            int rc;

            ERR_clear_error();
            errno = 0;
            rc = SSL_write_ex(s->ssl, p, n, &done);
            if (rc == 1) {
                p += done;
                n -= done;
            } else if (tls_io_wait(s, rc, deadline_ns, "writing", err) < 0) {
                return -1;
            }
            continue;
        }
        /* MSG_NOSIGNAL: a closed peer is an EPIPE error, not a SIGPIPE. */
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(s->fd, POLLOUT, deadline_ns, "writing", err) < 0) {
                return -1;
            }
        } else if (w < 0 && errno != EINTR) {
            return errno_fail(err, "connection lost while writing", errno);
        }
    }
    return 0;
}

ssize_t ck_sock_read(ck_sock *s, void *buf, size_t n, int64_t deadline_ns, ck_error *err)
{
    /* A request's reply is rarely there the moment the request is written:
       poll first then, and read first only when the last read suggests more
       bytes are already queued (saves a failed system call either way). */
    if (s->ssl == NULL && !s->maybe_pending &&
        wait_fd(s->fd, POLLIN, deadline_ns, "reading", err) < 0) {
        return -1;
    }
    for (;;) {
        if (s->ssl != NULL) {
            size_t done = 0;
            int rc;

            ERR_clear_error();
            errno = 0;
            rc = SSL_read_ex(s->ssl, buf, n, &done);
            if (rc == 1) {
                return (ssize_t)done;
            }
            if (tls_io_wait(s, rc, deadline_ns, "reading", err) < 0) {
                return -1;
            }
            continue;
        }
        ssize_t r = recv(s->fd, buf, n, 0);
        if (r > 0) {
            s->maybe_pending = (size_t)r == n;
            return r;
        }
        if (r == 0) {
            return ck_error_set(err, CK_ECONN, "connection closed by the server");
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->maybe_pending = 0;
            if (wait_fd(s->fd, POLLIN, deadline_ns, "reading", err) < 0) {
                return -1;
            }
        } else if (errno != EINTR) {
            return errno_fail(err, "connection lost while reading", errno);
        }
    }
}

int ck_sock_is_stale(ck_sock *s)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN, .revents = 0};
    char c;
    size_t got = 0;
    int rc;

    if (poll(&p, 1, 0) == 0) {
        return 0; /* nothing to read, no hang-up: the normal case */
    }
    if (s->ssl == NULL || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
        return 1;
    }
    /* TLS: readable may only mean post-handshake records (TLS 1.3 session
       tickets). Let OpenSSL consume them; application bytes or a close
       make the connection stale. */
    ERR_clear_error();
    rc = SSL_peek_ex(s->ssl, &c, 1, &got);
    if (rc == 1) {
        return 1;
    }
    rc = SSL_get_error(s->ssl, rc);
    ERR_clear_error();
    return rc != SSL_ERROR_WANT_READ && rc != SSL_ERROR_WANT_WRITE;
}

void ck_sock_close(ck_sock *s)
{
    if (s == NULL) {
        return;
    }
    if (s->ssl != NULL) {
        /* No SSL_shutdown: it could block on a dead peer, and the Redis
           protocol does not rely on close_notify to end a message. */
        SSL_free(s->ssl);
        ERR_clear_error();
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    free(s);
}

/* Wait up to timeout_ms for the socket to become readable (or for TLS
   bytes already decrypted). 1 readable, 0 timed out, -1 poll failed.
   Never reads, never marks anything broken. */
int ck_sock_wait_readable(ck_sock *s, int timeout_ms)
{
    struct pollfd pfd;
    int rc;

    if (s->ssl != NULL && SSL_pending(s->ssl) > 0) {
        return 1;
    }
    pfd.fd = s->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    do {
        rc = poll(&pfd, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        return -1;
    }
    return rc > 0;
}
