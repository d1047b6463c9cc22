/*
 * py_l2_cluster.c - the L2 fast path for a RedisBackend on a Redis Cluster
 * (py_l2.h): the L2Backend drives the C cluster client directly, so an L2
 * hit runs no Python code. A GET is pipelined with a PTTL (same key, same
 * slot, one node, one round trip); the GIL is released for each routed
 * run. Name and data pointers stay valid: the caller holds their objects.
 */
#include "py_l2.h"
#include "py_redis_cluster.h"

/* Route and run req (every command on name's slot) without the GIL. */
static int run(PyObject *c, const ck_redis_req *req, unsigned slot, redisReply **replies)
{
    ck_redis_cluster *cl = ((ck_cluster_object *)c)->cl;
    unsigned slots[2] = {slot, slot};
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_run(cl, req, slots, replies, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(ck_state_from_type(Py_TYPE(c)), &err);
    }
    return rc;
}

static int unexpected(PyObject *c, const char *what)
{
    ck_error err;

    ck_error_set(&err, CK_EPROTO, "unexpected reply to %s", what);
    ck_redis_raise(ck_state_from_type(Py_TYPE(c)), &err);
    return -1;
}

static int add(PyObject *c, ck_redis_req *req, int argc, const char **argv, const size_t *lens)
{
    ck_error err;

    if (ck_redis_req_add(req, argc, argv, lens, &err) < 0) {
        ck_redis_raise(ck_state_from_type(Py_TYPE(c)), &err);
        return -1;
    }
    return 0;
}

/* One command on name; its reply must be of type want. */
static int one(PyObject *c, const char *name, size_t n, int argc, const char **argv,
               const size_t *lens, int want, long long *integer)
{
    redisReply *reply = NULL;
    ck_redis_req req;
    int rc = -1;

    ck_redis_req_init(&req);
    if (add(c, &req, argc, argv, lens) < 0 ||
        run(c, &req, ck_cluster_key_slot(name, n), &reply) < 0) {
        goto done;
    }
    if (reply->type != want) {
        unexpected(c, argv[0]);
        goto done;
    }
    if (integer != NULL) {
        *integer = reply->integer;
    }
    rc = 0;
done:
    ck_redis_reply_free(reply);
    ck_redis_req_free(&req);
    return rc;
}

static int cl_get(PyObject *c, const char *name, size_t n, PyObject **entry, int64_t *pttl_ms)
{
    const char *argv[2] = {"GET", name};
    size_t lens[2] = {3, n};
    redisReply *replies[2] = {NULL, NULL};
    ck_redis_req req;
    int rc = -1;

    ck_redis_req_init(&req);
    if (add(c, &req, 2, argv, lens) < 0) {
        goto done;
    }
    argv[0] = "PTTL";
    lens[0] = 4;
    if (add(c, &req, 2, argv, lens) < 0 ||
        run(c, &req, ck_cluster_key_slot(name, n), replies) < 0) {
        goto done;
    }
    if (replies[0]->type == REDIS_REPLY_NIL) {
        rc = 0;
        goto done;
    }
    if (replies[0]->type != REDIS_REPLY_STRING || replies[1]->type != REDIS_REPLY_INTEGER) {
        unexpected(c, "GET");
        goto done;
    }
    *entry = PyBytes_FromStringAndSize(replies[0]->str, (Py_ssize_t)replies[0]->len);
    if (*entry == NULL) {
        goto done;
    }
    *pttl_ms = replies[1]->integer > 0 ? (int64_t)replies[1]->integer : -1;
    rc = 1;
done:
    ck_redis_reply_free(replies[0]);
    ck_redis_reply_free(replies[1]);
    ck_redis_req_free(&req);
    return rc;
}

static int cl_set(PyObject *c, const char *name, size_t n, const unsigned char *data, size_t len,
                  int64_t ttl_ms)
{
    char ms[24];
    const char *argv[5] = {"SET", name, (const char *)data, "PX", ms};
    size_t lens[5] = {3, n, len, 2, 0};

    lens[4] = (size_t)snprintf(ms, sizeof(ms), "%lld", (long long)ttl_ms);
    return one(c, name, n, ttl_ms > 0 ? 5 : 3, argv, lens, REDIS_REPLY_STATUS, NULL);
}

static int cl_delete(PyObject *c, const char *name, size_t n, int *removed)
{
    const char *argv[2] = {"UNLINK", name};
    size_t lens[2] = {6, n};
    long long count = 0;

    if (one(c, name, n, 2, argv, lens, REDIS_REPLY_INTEGER, &count) < 0) {
        return -1;
    }
    *removed = count > 0;
    return 0;
}

static int cl_expire(PyObject *c, const char *name, size_t n, int64_t ttl_ms)
{
    char ms[24];
    const char *argv[3] = {"PEXPIRE", name, ms};
    size_t lens[3] = {7, n, 0};

    lens[2] = (size_t)snprintf(ms, sizeof(ms), "%lld", (long long)ttl_ms);
    return one(c, name, n, 3, argv, lens, REDIS_REPLY_INTEGER, NULL);
}

static int cl_clear(PyObject *c, const char *prefix, size_t n)
{
    ck_redis_cluster *cl = ((ck_cluster_object *)c)->cl;
    long long unlinked = 0;
    ck_error err;
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = ck_redis_cluster_clear_prefix(cl, prefix, n, 1000, &unlinked, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        ck_redis_raise(ck_state_from_type(Py_TYPE(c)), &err);
    }
    return rc;
}

static const ck_l2_ops cluster_ops = {cl_get, cl_set, cl_delete, cl_expire, cl_clear};

const ck_l2_ops *ck_l2_cluster_ops_for(PyObject *client)
{
    return ck_cluster_check(client) ? &cluster_ops : NULL;
}
