/*
 * py_cached_swr.c - freshness of CachedFunction entries: stale-while-
 * revalidate and early refresh (docs/freshness.md).
 *
 * The store (ck_l1.c) keeps each entry's logical expiry and stale window
 * and hands out refresh claims: one caller per retry interval gets
 * CK_L1_REFRESH with the entry's generation. A fresh hit before the
 * refresh point never comes here. The claiming caller starts the refresh
 * through the Python refresher (cachekit/decorators/freshness.py: a
 * bounded thread pool for sync functions, a task on the running loop for
 * async ones), which runs the function and stores its result with
 * _swr_complete(gen, key, result, *args, **kwargs). That put replaces only
 * the entry of that generation, so a refresh that finishes after
 * invalidate_cache() / cache_clear(), or after a newer result was stored,
 * is dropped (counted), never resurrecting what was removed.
 *
 * Calls that can run user code: the refresher (it only schedules), and
 * whatever the storing call path runs (py_cached.c lists it).
 */
#include "py_cached.h"

#include <math.h>

/* ------------------------------------------------------------ creation */

int ck_cached_swr_init(ck_cached *self, PyObject *refresher, double stale, double ratio,
                       double retry)
{
    if (refresher == Py_None) {
        return 0;
    }
    if (!PyCallable_Check(refresher)) {
        PyErr_SetString(PyExc_TypeError, "refresher must be callable or None");
        return -1;
    }
    if (self->ttl_ns == 0) {
        PyErr_SetString(PyExc_ValueError, "freshness needs a ttl");
        return -1;
    }
    if (!(stale >= 0.0 && stale <= 1e9) || !(ratio > 0.0 && ratio <= 1.0) ||
        !(retry > 0.0 && retry <= 1e9)) {
        PyErr_SetString(PyExc_ValueError,
                        "stale_ttl must be >= 0, swr_ratio in (0, 1], swr_retry > 0");
        return -1;
    }
    self->refresher = Py_NewRef(refresher);
    self->fresh_ttl_ns = self->ttl_ns;
    self->stale_ns = (uint64_t)(stale * 1e9);
    self->retry_ns = (uint64_t)(retry * 1e9);
    self->swr_ratio = ratio;
    /* From here on ttl_ns is an entry's whole life: L2 writes, sealed
       expiries and L1 fills all use it. */
    self->ttl_ns += self->stale_ns;
    return 0;
}

/* ----------------------------------------------------------------- puts */

void ck_cached_swr_params(ck_cached *self, ck_hash128 h, uint64_t ttl_ns, ck_l1_swr *out)
{
    uint64_t stale = self->stale_ns < ttl_ns ? self->stale_ns : ttl_ns;
    uint64_t fresh = ttl_ns - stale;
    /* The refresh point is ratio * TTL after the value was computed. An
       entry filled from L2 with less than the full TTL left is that much
       older: its point comes as much sooner (now, if it has passed). */
    double lag = (1.0 - self->swr_ratio) * (double)self->fresh_ttl_ns;

    out->fresh_ns = fresh;
    out->stale_ns = stale;
    out->early_ns = (double)fresh > lag ? (uint64_t)((double)fresh - lag) : 0;
    out->retry_ns = self->retry_ns;
    out->expect_gen = 0;
    if (self->swr_gen != 0 && self->swr_h.lo == h.lo && self->swr_h.hi == h.hi) {
        out->expect_gen = self->swr_gen; /* once: this is the refresh's put */
        self->swr_gen = 0;
    }
}

/* ------------------------------------------------------------------ hits */

/* The call's arguments as a tuple and a dict (or None), for the refresher. */
static int pack_call(PyObject *const *args, size_t nargsf, PyObject *kwnames, PyObject **tuple,
                     PyObject **kwargs)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw, i;

    *kwargs = NULL;
    *tuple = PyTuple_New(nargs);
    if (*tuple == NULL) {
        return -1;
    }
    for (i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(*tuple, i, Py_NewRef(args[i]));
    }
    nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nkw == 0) {
        *kwargs = Py_NewRef(Py_None);
        return 0;
    }
    *kwargs = PyDict_New();
    if (*kwargs == NULL) {
        goto error;
    }
    for (i = 0; i < nkw; i++) {
        if (PyDict_SetItem(*kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            goto error;
        }
    }
    return 0;
error:
    Py_CLEAR(*tuple);
    Py_CLEAR(*kwargs);
    return -1;
}

int ck_cached_swr_hit(ck_cached *self, uint32_t flags, uint64_t gen, const unsigned char *key,
                      size_t key_len, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *kb = NULL, *g = NULL, *tuple = NULL, *kwargs = NULL, *res = NULL;
    int rc = 0;

    if (flags & CK_L1_STALE) {
        self->stale_hits++;
    }
    if (!(flags & CK_L1_REFRESH) || self->refresher == NULL) {
        return 0;
    }
    kb = PyBytes_FromStringAndSize((const char *)key, (Py_ssize_t)key_len);
    g = kb == NULL ? NULL : PyLong_FromUnsignedLongLong(gen);
    if (g == NULL || pack_call(args, nargsf, kwnames, &tuple, &kwargs) < 0) {
        goto error;
    }
    res = PyObject_CallFunctionObjArgs(self->refresher, (PyObject *)self, kb, g, tuple, kwargs,
                                       NULL);
    if (res == NULL) {
        goto error;
    }
    if (PyObject_IsTrue(res) == 1) {
        self->refreshes++;
    }
    goto done;
error:
    /* Not started: the stale value is still served, and the next claim
       (a retry interval later) tries again. */
    self->refresh_errors++;
    rc = ck_cached_report_failure(self, "refresh_error");
done:
    Py_XDECREF(res);
    Py_XDECREF(kwargs);
    Py_XDECREF(tuple);
    Py_XDECREF(g);
    Py_XDECREF(kb);
    return rc;
}

/* --------------------------------------------------------------- methods */

const char ck_cached_swr_complete_doc[] =
    "_swr_complete($self, gen, key, result, /, *args, **kwargs)\n--\n\n"
    "Background refresh only: store result as the value of f(*args, **kwargs)\n"
    "if the entry of L1 key bytes key still has generation gen (it was not\n"
    "invalidated or replaced since the refresh was claimed). Returns True if\n"
    "it was stored.";

PyObject *ck_cached_swr_complete(ck_cached *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    ck_call_mode mode = {.result = NULL};
    unsigned long long gen;
    PyObject *res;
    int dropped;

    if (nargs < 3 || !PyLong_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_swr_complete needs gen, key and result");
        return NULL;
    }
    gen = PyLong_AsUnsignedLongLong(args[0]);
    if (gen == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    self->swr_gen = gen == 0 ? 1 : gen; /* 0 would mean "no condition" */
    self->swr_h = ck_cached_hash(self, (const unsigned char *)PyBytes_AS_STRING(args[1]),
                                 (size_t)PyBytes_GET_SIZE(args[1]));
    self->swr_dropped = 0;
    mode.result = args[2];
    res = ck_cached_call_mode(self, args + 3, (size_t)(nargs - 3), kwnames, &mode);
    dropped = self->swr_dropped || self->swr_gen != 0;
    self->swr_gen = 0;
    self->swr_dropped = 0;
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    return PyBool_FromLong(!dropped);
}

const char ck_cached_swr_failed_doc[] =
    "_swr_failed($self, /)\n--\n\n"
    "Background refresh only: count a refresh whose function raised.";

PyObject *ck_cached_swr_failed(ck_cached *self, PyObject *Py_UNUSED(unused))
{
    self->refresh_errors++;
    Py_RETURN_NONE;
}

int ck_cached_swr_stats(ck_cached *self, PyObject *d)
{
    const struct {
        const char *name;
        uint64_t v;
    } c[] = {{"stale_hits", self->stale_hits},
             {"refreshes", self->refreshes},
             {"refresh_errors", self->refresh_errors},
             {"refresh_dropped", self->refresh_dropped}};
    size_t i;

    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(c[i].v);
        int rc = v == NULL ? -1 : PyDict_SetItemString(d, c[i].name, v);
        Py_XDECREF(v);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}
