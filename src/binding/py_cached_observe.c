/*
 * py_cached_observe.c - what a CachedFunction records for metrics, logs
 * and traces, on its cold paths only.
 *
 * - Latency histograms of L2 round trips: each ck_l2_get (split by whether
 *   it found the entry) and each ck_l2_set, in fixed buckets. A network
 *   round trip costs tens of microseconds at least; two monotonic clock
 *   reads (vDSO, ~20 ns each) and a bucket scan are noise beside it. The
 *   Prometheus collector (cachekit/prometheus.py) reads them at scrape time.
 * - An optional observer, callable(event, start_ns, end_ns), told about
 *   misses ("miss": from the decision to run the function to the stored
 *   result) and L2 operations ("l2_hit", "l2_miss", "l2_error", "l2_set",
 *   "l2_set_error"). cachekit/observe.py turns them into DEBUG log records
 *   and OpenTelemetry spans. Whether to call it is decided per event from
 *   the cachekit logger's own level cache (logging.Logger._cache: a dict
 *   the logging module clears on every setLevel/disable), so with DEBUG off
 *   an event costs a dict lookup, not a Python call.
 *
 * The L1 hit path calls nothing here. The observer is called with the GIL
 * held and never while the store mutex is held; it can re-enter user code
 * (log handlers, span processors), so it runs only where the call has
 * already finished with the store. An exception it raises is discarded:
 * observation never changes a call's outcome.
 */
#include "py_cached.h"

#include <time.h>

/* Upper bounds of the buckets, in ns (the last bucket is +Inf). Seconds in
   Python: 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1
   0.25 0.5 1 2.5. */
static const uint64_t lat_bounds_ns[CK_LAT_BUCKETS - 1] = {
    100000u,    250000u,    500000u,     1000000u,    2500000u,
    5000000u,   10000000u,  25000000u,   50000000u,   100000000u,
    250000000u, 500000000u, 1000000000u, 2500000000u,
};

uint64_t ck_cached_now_ns(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lat_record(ck_cached *self, int kind, uint64_t ns)
{
    int i = 0;

    while (i < CK_LAT_BUCKETS - 1 && ns > lat_bounds_ns[i]) {
        i++;
    }
    self->obs.counts[kind][i]++;
    self->obs.sum_ns[kind] += ns;
}

int ck_cached_observing(ck_cached *self)
{
    PyObject *enabled;

    if (self->obs.observer == NULL) {
        return 0;
    }
    if (self->obs.log_cache == NULL) {
        return 1; /* tracing: the observer decides */
    }
    /* Borrowed; NULL (not cached yet) means ask the observer, whose
       isEnabledFor fills the cache. Never raises for an int key. */
    enabled = PyDict_GetItem(self->obs.log_cache, self->obs.debug_key);
    return enabled != Py_False;
}

void ck_cached_observe(ck_cached *self, const char *event, uint64_t start_ns)
{
    PyObject *exc_type, *exc_value, *exc_tb, *res;
    uint64_t end_ns;

    if (start_ns == 0 || self->obs.observer == NULL) {
        return;
    }
    end_ns = ck_cached_now_ns();
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    res = PyObject_CallFunction(self->obs.observer, "sKK", event, (unsigned long long)start_ns,
                                (unsigned long long)end_ns);
    if (res == NULL) {
        PyErr_Clear(); /* observation never changes a call's outcome */
    }
    Py_XDECREF(res);
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

int ck_cached_l2_get_timed(ck_cached *self, const ck_buf *name, PyObject **entry,
                           int64_t *pttl_ms)
{
    uint64_t start = ck_cached_now_ns(), elapsed;
    int rc;

    rc = ck_l2_get(self->l2, (const char *)name->data, name->len, entry, pttl_ms);
    elapsed = ck_cached_now_ns() - start;
    lat_record(self, rc > 0 ? CK_LAT_L2_HIT : CK_LAT_L2_MISS, elapsed);
    if (ck_cached_observing(self)) {
        ck_cached_observe(self, rc > 0 ? "l2_hit" : rc == 0 ? "l2_miss" : "l2_error", start);
    }
    return rc;
}

void ck_cached_l2_set_timed_done(ck_cached *self, uint64_t start, int rc)
{
    lat_record(self, CK_LAT_L2_SET, ck_cached_now_ns() - start);
    if (ck_cached_observing(self)) {
        ck_cached_observe(self, rc < 0 ? "l2_set_error" : "l2_set", start);
    }
}

double ck_cached_l2_avg_ms(ck_cached *self)
{
    uint64_t n = 0, ns;
    int i;

    for (i = 0; i < CK_LAT_BUCKETS; i++) {
        n += self->obs.counts[CK_LAT_L2_HIT][i] + self->obs.counts[CK_LAT_L2_MISS][i];
    }
    if (n == 0) {
        return 0.0;
    }
    ns = self->obs.sum_ns[CK_LAT_L2_HIT] + self->obs.sum_ns[CK_LAT_L2_MISS];
    return (double)ns / (double)n / 1e6;
}

int ck_cached_obs_traverse(ck_cached *self, visitproc visit, void *arg)
{
    Py_VISIT(self->obs.observer);
    Py_VISIT(self->obs.log_cache);
    return 0;
}

void ck_cached_obs_clear(ck_cached *self)
{
    Py_CLEAR(self->obs.observer);
    Py_CLEAR(self->obs.log_cache);
    Py_CLEAR(self->obs.debug_key);
    Py_CLEAR(self->obs.session_id);
}

/* --------------------------------------------------------------- methods */

const char ck_cached_set_observer_doc[] =
    "_set_observer($self, observer, log_cache, session_id, /)\n--\n\n"
    "Call observer(event, start_ns, end_ns) on misses and L2 operations\n"
    "(None: never). With log_cache (a logger's level cache dict), only while\n"
    "it does not map logging.DEBUG to False; with None, always. session_id:\n"
    "the str cache_info() reports (or None).";

PyObject *ck_cached_set_observer(ck_cached *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *observer, *log_cache, *session_id, *debug_key = NULL;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "_set_observer takes observer, log_cache and session_id");
        return NULL;
    }
    observer = args[0];
    log_cache = args[1];
    session_id = args[2];
    if (session_id != Py_None && !PyUnicode_Check(session_id)) {
        PyErr_SetString(PyExc_TypeError, "session_id must be a str or None");
        return NULL;
    }
    if (observer != Py_None && !PyCallable_Check(observer)) {
        PyErr_SetString(PyExc_TypeError, "observer must be callable or None");
        return NULL;
    }
    if (log_cache != Py_None && !PyDict_Check(log_cache)) {
        PyErr_SetString(PyExc_TypeError, "log_cache must be a dict or None");
        return NULL;
    }
    if ((debug_key = PyLong_FromLong(10)) == NULL) {
        return NULL;
    }
    Py_XSETREF(self->obs.debug_key, debug_key);
    Py_XSETREF(self->obs.log_cache, log_cache == Py_None ? NULL : Py_NewRef(log_cache));
    Py_XSETREF(self->obs.observer, observer == Py_None ? NULL : Py_NewRef(observer));
    Py_XSETREF(self->obs.session_id, session_id == Py_None ? NULL : Py_NewRef(session_id));
    Py_RETURN_NONE;
}

const char ck_cached_latencies_doc[] =
    "_latencies($self, /)\n--\n\n"
    "L2 round-trip histograms: a dict with 'bounds' (bucket upper bounds in\n"
    "seconds; a last +Inf bucket follows) and, for 'l2_hit', 'l2_miss' and\n"
    "'l2_set', a tuple (counts per bucket, not cumulative; sum in seconds).";

PyObject *ck_cached_latencies(ck_cached *self, PyObject *Py_UNUSED(ignored))
{
    static const char *const kinds[CK_LAT_KINDS] = {"l2_hit", "l2_miss", "l2_set"};
    PyObject *res = NULL, *bounds = NULL, *counts = NULL, *item = NULL;
    int i, k;

    if ((res = PyDict_New()) == NULL || (bounds = PyTuple_New(CK_LAT_BUCKETS - 1)) == NULL) {
        goto error;
    }
    for (i = 0; i < CK_LAT_BUCKETS - 1; i++) {
        PyObject *b = PyFloat_FromDouble((double)lat_bounds_ns[i] / 1e9);
        if (b == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(bounds, i, b);
    }
    if (PyDict_SetItemString(res, "bounds", bounds) < 0) {
        goto error;
    }
    for (k = 0; k < CK_LAT_KINDS; k++) {
        if ((counts = PyTuple_New(CK_LAT_BUCKETS)) == NULL) {
            goto error;
        }
        for (i = 0; i < CK_LAT_BUCKETS; i++) {
            PyObject *c = PyLong_FromUnsignedLongLong(self->obs.counts[k][i]);
            if (c == NULL) {
                goto error;
            }
            PyTuple_SET_ITEM(counts, i, c);
        }
        item = Py_BuildValue("(Od)", counts, (double)self->obs.sum_ns[k] / 1e9);
        Py_CLEAR(counts);
        if (item == NULL || PyDict_SetItemString(res, kinds[k], item) < 0) {
            goto error;
        }
        Py_CLEAR(item);
    }
    Py_DECREF(bounds);
    return res;
error:
    Py_XDECREF(item);
    Py_XDECREF(counts);
    Py_XDECREF(bounds);
    Py_XDECREF(res);
    return NULL;
}
