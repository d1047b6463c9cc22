/*
 * py_redis_cluster.c - RedisClusterClient: the Python type around a
 * ck_redis_cluster: its constructor (a cluster URL or a redis:// URL to
 * any node, more seed nodes, the RedisClient options), repr and dealloc.
 * The methods are in py_redis_cluster_cmd.c.
 *
 * BackendError messages come from ck_redis*, which never put keys, values
 * or credentials in them. The repr shows the seeds with the password
 * masked.
 */
#include "py_redis_cluster.h"

#include <stdlib.h>
#include <string.h>

#include "py_redis.h"
#include "py_store.h"

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

/* More seeds from a sequence of "host:port" str; *seeds grown. */
static int add_nodes(ck_state *st, PyObject *nodes, ck_cluster_seed **seeds, size_t *n)
{
    PyObject *seq = PySequence_Fast(nodes, "nodes must be a sequence of 'host:port' strings");
    Py_ssize_t i, m;
    ck_cluster_seed *grown;
    int rc = -1;

    if (seq == NULL) {
        return -1;
    }
    m = PySequence_Fast_GET_SIZE(seq);
    if (m > 64) {
        PyErr_SetString(PyExc_ValueError, "at most 64 seed nodes");
        goto done;
    }
    grown = realloc(*seeds, (*n + (size_t)m + 1) * sizeof(**seeds));
    if (grown == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    *seeds = grown;
    for (i = 0; i < m; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i); /* borrowed */
        Py_ssize_t len;
        const char *s;
        ck_error err;

        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "nodes must be 'host:port' strings");
            goto done;
        }
        s = PyUnicode_AsUTF8AndSize(item, &len);
        if (s == NULL) {
            goto done;
        }
        if (ck_cluster_parse_endpoint(s, (size_t)len, &grown[*n], &err) < 0) {
            ck_redis_raise(st, &err);
            goto done;
        }
        (*n)++;
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

static PyObject *masked_repr(const ck_redis_config *c, const ck_cluster_seed *seeds, size_t n)
{
    const char *user = c->username != NULL ? c->username : "";
    const char *at = c->password != NULL ? ":***@" : (c->username != NULL ? "@" : "");
    PyObject *list = PyUnicode_FromString(""), *res = NULL;
    size_t i;

    for (i = 0; i < n && list != NULL; i++) {
        int v6 = strchr(seeds[i].host, ':') != NULL;
        PyObject *one = PyUnicode_FromFormat("%s%s%s%s:%d", i > 0 ? "," : "", v6 ? "[" : "",
                                             seeds[i].host, v6 ? "]" : "", seeds[i].port);
        PyObject *joined = one == NULL ? NULL : PyUnicode_Concat(list, one);
        Py_XDECREF(one);
        Py_SETREF(list, joined);
    }
    if (list != NULL) {
        res = PyUnicode_FromFormat("<cachekit._core.RedisClusterClient %s://%s%s%U pool_size=%zu>",
                                   c->tls ? "rediss+cluster" : "redis+cluster", user, at, list,
                                   c->pool_size);
    }
    Py_XDECREF(list);
    return res;
}

static PyObject *cluster_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"url", "nodes", "pool_size", "socket_timeout",
                             "socket_connect_timeout", "password", "username", "ssl_ca_certs",
                             "ssl_certfile", "ssl_keyfile", "ssl_check_hostname",
                             "max_reply_bytes", "pool_timeout", "max_redirects", NULL};
    ck_state *st = ck_state_from_type(type);
    const char *url, *password = NULL, *username = NULL, *ca = NULL, *cert = NULL, *key = NULL;
    Py_ssize_t pool_size = 10, max_reply = (Py_ssize_t)CK_REDIS_DEFAULT_MAX_REPLY_BYTES;
    double sock_timeout = 5.0, conn_timeout = 5.0;
    PyObject *nodes = Py_None, *pool_timeout = Py_None;
    int check_hostname = 1, max_redirects = CK_CLUSTER_DEFAULT_REDIRECTS;
    ck_cluster_seed *seeds = NULL;
    size_t nseeds = 0;
    ck_redis_config cfg;
    ck_cluster_object *self = NULL;
    ck_error err;

    ck_redis_config_init(&cfg);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$OnddzzzzzpnOi:RedisClusterClient",
                                     kwlist, &url, &nodes, &pool_size, &sock_timeout,
                                     &conn_timeout, &password, &username, &ca, &cert, &key,
                                     &check_hostname, &max_reply, &pool_timeout,
                                     &max_redirects)) {
        goto error;
    }
    if (ck_cluster_parse_url(&cfg, url, &seeds, &nseeds, &err) < 0) {
        ck_redis_raise(st, &err);
        goto error;
    }
    if (nodes != Py_None && add_nodes(st, nodes, &seeds, &nseeds) < 0) {
        goto error;
    }
    if (set_opt(st, &cfg.password, password) < 0 || set_opt(st, &cfg.username, username) < 0 ||
        set_opt(st, &cfg.ca_file, ca) < 0 || set_opt(st, &cfg.cert_file, cert) < 0 ||
        set_opt(st, &cfg.key_file, key) < 0) {
        goto error;
    }
    if (!cfg.tls && (ca != NULL || cert != NULL || key != NULL)) {
        PyErr_SetString(PyExc_ValueError, "ssl_* options need a rediss+cluster:// URL");
        goto error;
    }
    if (pool_size <= 0 || max_reply <= 0) {
        PyErr_SetString(PyExc_ValueError, "pool_size and max_reply_bytes must be positive");
        goto error;
    }
    if (max_redirects < 1 || max_redirects > 100) {
        PyErr_SetString(PyExc_ValueError, "max_redirects must be 1 to 100");
        goto error;
    }
    if (timeout_ms(sock_timeout, "socket_timeout", &cfg.socket_timeout_ms) < 0 ||
        timeout_ms(conn_timeout, "socket_connect_timeout", &cfg.connect_timeout_ms) < 0) {
        goto error;
    }
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

    self = (ck_cluster_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->repr = masked_repr(&cfg, seeds, nseeds);
    if (self->repr == NULL) {
        goto error;
    }
    self->cl = ck_redis_cluster_new(&cfg, seeds, nseeds, max_redirects, &err);
    if (self->cl == NULL) {
        ck_redis_raise(st, &err);
        goto error;
    }
    free(seeds);
    ck_redis_config_free(&cfg);
    return (PyObject *)self;
error:
    free(seeds);
    ck_redis_config_free(&cfg);
    Py_XDECREF(self);
    return NULL;
}

static void cluster_dealloc(ck_cluster_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    ck_redis_cluster_free(self->cl);
    Py_XDECREF(self->repr);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *cluster_repr(ck_cluster_object *self)
{
    return Py_NewRef(self->repr);
}

int ck_cluster_check(PyObject *o)
{
    return PyType_GetSlot(Py_TYPE(o), Py_tp_dealloc) == (void *)cluster_dealloc;
}

PyDoc_STRVAR(cluster_doc,
             "RedisClusterClient(url, *, nodes=None, pool_size=10, socket_timeout=5.0,\n"
             "                   socket_connect_timeout=5.0, password=None, username=None,\n"
             "                   ssl_ca_certs=None, ssl_certfile=None, ssl_keyfile=None,\n"
             "                   ssl_check_hostname=True, max_reply_bytes=536870912,\n"
             "                   pool_timeout=None, max_redirects=5)\n--\n\n"
             "Thread-safe Redis Cluster client: url is redis+cluster://[[user]:password@]\n"
             "host:port[,host:port...] (rediss+cluster:// for TLS) or redis:// to any node;\n"
             "nodes: more 'host:port' seeds. The slot map comes from CLUSTER SLOTS at the\n"
             "first command; commands are routed by key slot, one pool of pool_size\n"
             "connections per node, following MOVED and ASK up to max_redirects times.\n"
             "A server without cluster support is used as one node. The GIL is released\n"
             "during I/O; failures raise BackendError.");

static PyType_Slot cluster_slots[] = {
    {Py_tp_new, cluster_new},
    {Py_tp_dealloc, cluster_dealloc},
    {Py_tp_repr, cluster_repr},
    {Py_tp_methods, ck_cluster_methods},
    {Py_tp_doc, (void *)cluster_doc},
    {0, NULL},
};

static PyType_Spec cluster_spec = {
    .name = "cachekit._core.RedisClusterClient",
    .basicsize = sizeof(ck_cluster_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = cluster_slots,
};

int ck_redis_cluster_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &cluster_spec, NULL);
    int rc;

    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddType(module, (PyTypeObject *)type);
    Py_DECREF(type);
    return rc;
}
