/*
 * py_redis.c - RedisClient: the Python type around a ck_redis_pool: its
 * constructor (URL, then explicit options over the URL's), repr, and the
 * translation of ck_error into BackendError. The methods, and how they
 * keep Python objects out of the GIL-free phase, are in py_redis_cmd.c.
 *
 * BackendError messages come from ck_redis/ck_sock, which never put keys,
 * values or credentials into them; error_type says what kind of failure it
 * was. The repr shows the target with the password masked.
 */
#include "py_redis.h"

#include <string.h>

#include "ck_redis_sentinel.h"
#include "py_store.h"

/* ------------------------------------------------------------------ errors */

static const char *error_type(ck_errcode code)
{
    switch (code) {
    case CK_ETIMEOUT:
        return "timeout";
    case CK_ECONN:
        return "connection";
    case CK_EDENIED:
        return "auth";
    case CK_ELIMIT:
        return "reply_too_large";
    case CK_ESERVER:
        return "server";
    default:
        return "protocol";
    }
}

PyObject *ck_redis_raise(ck_state *st, const ck_error *err)
{
    PyObject *msg = NULL, *exc = NULL, *type = NULL;

    if (err->code == CK_ENOMEM) {
        return PyErr_NoMemory();
    }
    if (err->code == CK_EINVAL) {
        PyErr_SetString(PyExc_ValueError, err->msg);
        return NULL;
    }
    msg = PyUnicode_DecodeUTF8(err->msg, (Py_ssize_t)strlen(err->msg), "replace");
    if (msg == NULL) {
        goto done;
    }
    exc = PyObject_CallOneArg(st->BackendError, msg);
    if (exc == NULL) {
        goto done;
    }
    type = PyUnicode_InternFromString(error_type(err->code));
    if (type == NULL || PyObject_SetAttrString(exc, "error_type", type) < 0) {
        goto done;
    }
    PyErr_SetObject(st->BackendError, exc);
done:
    Py_XDECREF(msg);
    Py_XDECREF(exc);
    Py_XDECREF(type);
    return NULL;
}

/* ------------------------------------------------------------- type slots */

/* seconds -> milliseconds, rounded up so 0.0001 s is not "no time". */
static int timeout_ms(double seconds, const char *name, int64_t *ms)
{
    uint64_t ns;

    if (ck_seconds_to_ns(seconds, name, &ns) < 0) {
        return -1;
    }
    *ms = (int64_t)((ns + 999999) / 1000000);
    return 0;
}

static int set_opt(ck_state *st, char **slot, const char *s)
{
    ck_error err;

    if (s != NULL && ck_redis_config_set(slot, s, strlen(s), &err) < 0) {
        ck_redis_raise(st, &err);
        return -1;
    }
    return 0;
}

/* The target as a URL without the password. */
static PyObject *masked_repr(const ck_redis_config *c)
{
    const char *user = c->username != NULL ? c->username : "";
    const char *at = c->password != NULL ? ":***@" : (c->username != NULL ? "@" : "");

    if (c->sentinel != NULL) {
        char where[256];
        ck_redis_sentinel_describe(c->sentinel, where, sizeof(where));
        return PyUnicode_FromFormat("<cachekit._core.RedisClient redis+sentinel://%s%s%s/%d "
                                    "pool_size=%zu>", user, at, where, c->db, c->pool_size);
    }
    if (c->unix_path != NULL) {
        return PyUnicode_FromFormat("<cachekit._core.RedisClient unix://%s%s%s?db=%d pool_size=%zu>",
                                    user, at, c->unix_path, c->db, c->pool_size);
    }
    return PyUnicode_FromFormat("<cachekit._core.RedisClient %s://%s%s%s%s%s:%d/%d pool_size=%zu>",
                                c->tls ? "rediss" : "redis", user, at,
                                strchr(c->host, ':') ? "[" : "", c->host,
                                strchr(c->host, ':') ? "]" : "", c->port, c->db, c->pool_size);
}

static PyObject *redis_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"url", "pool_size", "socket_timeout", "socket_connect_timeout",
                             "password", "username", "db", "ssl_ca_certs", "ssl_certfile",
                             "ssl_keyfile", "ssl_check_hostname", "max_reply_bytes", "pool_timeout", NULL};
    ck_state *st = ck_state_from_type(type);
    const char *url, *password = NULL, *username = NULL, *ca = NULL, *cert = NULL, *key = NULL;
    Py_ssize_t pool_size = 10, max_reply = (Py_ssize_t)CK_REDIS_DEFAULT_MAX_REPLY_BYTES;
    double sock_timeout = 5.0, conn_timeout = 5.0;
    PyObject *db = Py_None, *pool_timeout = Py_None;
    int check_hostname = 1;
    ck_redis_config cfg;
    ck_redis_object *self = NULL;
    ck_error err;

    ck_redis_config_init(&cfg);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$nddzzOzzzpnO:RedisClient", kwlist, &url,
                                     &pool_size, &sock_timeout, &conn_timeout, &password,
                                     &username, &db, &ca, &cert, &key, &check_hostname,
                                     &max_reply, &pool_timeout)) {
        goto error;
    }
    if (ck_redis_config_parse_url(&cfg, url, &err) < 0) {
        ck_redis_raise(st, &err);
        goto error;
    }
    /* Explicit arguments win over the URL's. */
    if (set_opt(st, &cfg.password, password) < 0 || set_opt(st, &cfg.username, username) < 0 ||
        set_opt(st, &cfg.ca_file, ca) < 0 || set_opt(st, &cfg.cert_file, cert) < 0 ||
        set_opt(st, &cfg.key_file, key) < 0) {
        goto error;
    }
    if (db != Py_None) {
        long v = PyBool_Check(db) ? -1 : PyLong_AsLong(db);
        if (v == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (v < 0 || v > (1 << 24)) {
            PyErr_SetString(PyExc_ValueError, "db must be an int >= 0 (or None)");
            goto error;
        }
        cfg.db = (int)v;
    }
    if (!cfg.tls && (ca != NULL || cert != NULL || key != NULL)) {
        PyErr_SetString(PyExc_ValueError, "ssl_* options need a rediss:// URL");
        goto error;
    }
    if (pool_size <= 0 || max_reply <= 0) {
        PyErr_SetString(PyExc_ValueError, "pool_size and max_reply_bytes must be positive");
        goto error;
    }
    if (timeout_ms(sock_timeout, "socket_timeout", &cfg.socket_timeout_ms) < 0 ||
        timeout_ms(conn_timeout, "socket_connect_timeout", &cfg.connect_timeout_ms) < 0) {
        goto error;
    }
    /* None: wait for a free connection as long as for a reply. */
    cfg.pool_timeout_ms = cfg.socket_timeout_ms;
    if (pool_timeout != Py_None) {
        double seconds = PyFloat_AsDouble(pool_timeout);
        if ((seconds == -1.0 && PyErr_Occurred()) ||
            timeout_ms(seconds, "pool_timeout", &cfg.pool_timeout_ms) < 0) {
            goto error;
        }
    }
    cfg.pool_size = (size_t)pool_size;
    cfg.max_reply_bytes = (size_t)max_reply;
    cfg.check_hostname = check_hostname;

    self = (ck_redis_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->repr = masked_repr(&cfg);
    if (self->repr == NULL) {
        goto error;
    }
    /* Loads the CA and client certificate files, opens no connection. */
    self->pool = ck_redis_pool_new(&cfg, &err);
    if (self->pool == NULL) {
        ck_redis_raise(st, &err);
        goto error;
    }
    ck_redis_config_free(&cfg);
    return (PyObject *)self;
error:
    ck_redis_config_free(&cfg);
    Py_XDECREF(self);
    return NULL;
}

static void redis_dealloc(ck_redis_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    /* Nobody else can hold the pool now: every call holds a reference. */
    ck_redis_pool_free(self->pool);
    Py_XDECREF(self->repr);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *redis_repr(ck_redis_object *self)
{
    return Py_NewRef(self->repr);
}

PyDoc_STRVAR(redis_doc,
             "RedisClient(url, *, pool_size=10, socket_timeout=5.0, socket_connect_timeout=5.0,\n"
             "            password=None, username=None, db=None, ssl_ca_certs=None,\n"
             "            ssl_certfile=None, ssl_keyfile=None, ssl_check_hostname=True,\n"
             "            max_reply_bytes=536870912, pool_timeout=None)\n--\n\n"
             "Thread-safe Redis client with a connection pool; the GIL is released\n"
             "during I/O. url: redis://[[user]:password@]host[:port][/db], rediss://\n"
             "(TLS, verified), unix:///path[?db=N], redis+sentinel://host:port[,...]/\n"
             "service[/db] (master discovered through Sentinel). Timeouts in seconds: socket_timeout\n"
             "bounds each reply and write, pool_timeout (default: socket_timeout) the\n"
             "wait for a free connection. Failures raise BackendError.");

static PyType_Slot redis_slots[] = {
    {Py_tp_new, redis_new},
    {Py_tp_dealloc, redis_dealloc},
    {Py_tp_repr, redis_repr},
    {Py_tp_methods, ck_redis_methods},
    {Py_tp_doc, (void *)redis_doc},
    {0, NULL},
};

static PyType_Spec redis_spec = {
    .name = "cachekit._core.RedisClient",
    .basicsize = sizeof(ck_redis_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = redis_slots,
};

int ck_redis_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->RedisClientType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &redis_spec, NULL);
    if (st->RedisClientType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->RedisClientType);
}
