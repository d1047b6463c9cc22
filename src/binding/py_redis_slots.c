/*
 * py_redis_slots.c - test entry points for the cluster routing primitives
 * (src/core/ck_redis_slots.c), module-private (underscore names):
 *
 *   _cluster_key_slot(key: bytes | str) -> int
 *   _cluster_parse_redirect(msg: bytes) -> (kind, slot, host, port) | None
 *       kind "MOVED" or "ASK"; ValueError for a malformed redirect
 *   _cluster_parse_slots(resp: bytes) -> [(start, end, host, port), ...]
 *       resp is one RESP reply as a server sends it to CLUSTER SLOTS;
 *       ValueError when it is incomplete or refused
 *
 * Pure CPU work on caller-held buffers: the GIL stays held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <hiredis/hiredis.h>
#include <stdlib.h>

#include "ck_redis_slots.h"
#include "module_state.h"

static int key_bytes(PyObject *key, const char **p, Py_ssize_t *n)
{
    if (PyBytes_Check(key)) {
        *p = PyBytes_AS_STRING(key);
        *n = PyBytes_GET_SIZE(key);
        return 0;
    }
    if (PyUnicode_Check(key)) {
        *p = PyUnicode_AsUTF8AndSize(key, n);
        return *p == NULL ? -1 : 0;
    }
    PyErr_SetString(PyExc_TypeError, "key must be bytes or str");
    return -1;
}

static PyObject *py_cluster_key_slot(PyObject *module, PyObject *key)
{
    const char *p;
    Py_ssize_t n;

    (void)module;
    if (key_bytes(key, &p, &n) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLong(ck_cluster_key_slot(p, (size_t)n));
}

static PyObject *py_cluster_parse_redirect(PyObject *module, PyObject *msg)
{
    ck_redirect rd;
    ck_error err = {CK_OK, ""};
    int rc;

    (void)module;
    if (!PyBytes_Check(msg)) {
        PyErr_SetString(PyExc_TypeError, "msg must be bytes");
        return NULL;
    }
    rc = ck_cluster_parse_redirect(PyBytes_AS_STRING(msg), (size_t)PyBytes_GET_SIZE(msg), &rd,
                                   &err);
    if (rc < 0) {
        PyErr_SetString(PyExc_ValueError, err.msg);
        return NULL;
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(sIsi)", rd.kind == CK_REDIRECT_MOVED ? "MOVED" : "ASK", rd.slot,
                         rd.host, rd.port);
}

static PyObject *py_cluster_parse_slots(PyObject *module, PyObject *resp)
{
    redisReader *rd = NULL;
    void *reply = NULL;
    ck_slot_range *ranges = NULL;
    size_t count = 0, i;
    ck_error err = {CK_OK, ""};
    PyObject *list = NULL;

    (void)module;
    if (!PyBytes_Check(resp)) {
        PyErr_SetString(PyExc_TypeError, "resp must be bytes");
        return NULL;
    }
    rd = redisReaderCreate();
    if (rd == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if (redisReaderFeed(rd, PyBytes_AS_STRING(resp), (size_t)PyBytes_GET_SIZE(resp)) != REDIS_OK ||
        redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL) {
        PyErr_SetString(PyExc_ValueError, "not one complete RESP reply");
        goto error;
    }
    if (ck_cluster_parse_slots(reply, &ranges, &count, &err) < 0) {
        PyErr_SetString(PyExc_ValueError, err.msg);
        goto error;
    }
    list = PyList_New((Py_ssize_t)count);
    if (list == NULL) {
        goto error;
    }
    for (i = 0; i < count; i++) {
        PyObject *t = Py_BuildValue("(IIsi)", ranges[i].start, ranges[i].end, ranges[i].host,
                                    ranges[i].port);
        if (t == NULL) {
            Py_CLEAR(list);
            goto error;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t); /* steals t */
    }
error:
    free(ranges);
    if (reply != NULL) {
        freeReplyObject(reply);
    }
    if (rd != NULL) {
        redisReaderFree(rd);
    }
    return list;
}

static PyMethodDef slots_methods[] = {
    {"_cluster_key_slot", py_cluster_key_slot, METH_O,
     "The Redis Cluster slot (0..16383) of a key, {hash tag} aware."},
    {"_cluster_parse_redirect", py_cluster_parse_redirect, METH_O,
     "Parse a MOVED/ASK error text: (kind, slot, host, port) or None."},
    {"_cluster_parse_slots", py_cluster_parse_slots, METH_O,
     "Parse one RESP CLUSTER SLOTS reply: [(start, end, host, port), ...]."},
    {NULL, NULL, 0, NULL},
};

int ck_redis_slots_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, slots_methods);
}
