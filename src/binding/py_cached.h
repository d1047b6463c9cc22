/*
 * py_cached.h - the CachedFunction object, shared by the plain hot path
 * (py_cached.c) and the encrypted one (py_cached_secure.c).
 */
#ifndef CK_PY_CACHED_H
#define CK_PY_CACHED_H

#include "module_state.h"

#include <time.h>

#include "ck_buf.h"
#include "py_codec.h"
#include "py_keyring.h"
#include "py_keys.h"
#include "py_l2.h"
#include "py_store.h"

typedef struct ck_flight ck_flight;

/* py_cached_observe.c: what the cold paths record for metrics, logs and
   traces. Histograms of L2 round trips (always: a monotonic clock read on
   each side of a network call) and an optional observer called on misses
   and L2 operations. Nothing here is touched by an L1 hit. */
#define CK_LAT_BUCKETS 15 /* 14 bounds (ck_lat_bounds_ns) and +Inf */
enum { CK_LAT_L2_HIT = 0, CK_LAT_L2_MISS = 1, CK_LAT_L2_SET = 2, CK_LAT_KINDS = 3 };
typedef struct {
    uint64_t counts[CK_LAT_KINDS][CK_LAT_BUCKETS];
    uint64_t sum_ns[CK_LAT_KINDS];
    PyObject *observer;  /* callable(event: str, start_ns, end_ns) or NULL */
    PyObject *log_cache; /* the cachekit logger's level cache (dict), or NULL:
                            call the observer always */
    PyObject *debug_key; /* int 10 (logging.DEBUG), the log_cache key */
    PyObject *session_id; /* str for CacheInfo.session_id, or NULL */
} ck_cached_obs;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    ck_state *st;            /* the module state (borrowed: our type, which
                                every instance holds, holds the module) */
    PyObject *func;          /* the wrapped callable */
    ck_store_object *store;  /* the L1Store holding our entries */
    ck_l1_owner owner;       /* our share of the store */
    ck_key_spec spec;        /* owns pos_names, kwonly_names, defaults */
    uint64_t seed;           /* XXH3 seed from the function's identity */
    uint64_t ttl_ns;         /* 0: entries never expire */
    size_t max_value_size;   /* larger encoded results are not stored */
    PyObject *key_prefix;    /* str "namespace:module.qualname:" */
    PyObject *on_event;      /* callable(kind: str, exc) or None */
    PyObject *info_type;     /* CacheInfo named tuple class */
    PyObject *keyring;       /* ck_keyring_object under @cache.secure, else NULL */
    PyObject *tenant_extractor; /* callable(*args, **kwargs) -> str, or NULL */
    char fail_closed;        /* @cache.secure: a failed seal raises instead of being logged */
    char reference;          /* @cache.local: entries are the result objects
                                themselves, by identity, never encoded */
    char copy;               /* hits of mutable results return fresh copies */
    char bypass_kw;          /* the call keyword _bypass_cache is ours (the
                                function has no parameter of that name) */
    unsigned char *sign_key; /* signed plain L2 entries: the signing key (secure
                                heap, wiped when freed), or NULL */
    int64_t lease_ms;        /* stampede lease lifetime in ms; 0: no leases */
    double refresh_threshold; /* refresh_ttl_on_get: an L2 hit with less than this
                                 share of the TTL left renews it; 0: off */
    PyObject *instances;     /* dict: address -> tracker of each instance whose
                                entries are keyed by identity, or NULL */
    ck_l2_object *l2;        /* the second tier, or NULL: L1 only */
    ck_flight *flights;      /* misses being computed by some thread (GIL held) */
    ck_flight *spare_flight; /* a finished flight kept for the next miss, or NULL */
    PyObject *value_types;   /* dict "module:qualname" -> class: application
                                types trusted when decoding this function's
                                stored values (py_codec_app.c), or NULL */
    PyObject *ser_encode;    /* results stored by a Python serializer
                                (py_cached_serializer.c): encode, decode, */
    PyObject *ser_decode;    /* or both NULL: the C codec */
    unsigned char ser_id;    /* its serializer id (CK_SER_JSON / CK_SER_ARROW) */
    char ser_mutable;        /* 1 hits copy, 0 share, -1 sized by the codec walk */
    PyObject *async_miss;    /* async functions: callable(self, key, args, kwargs)
                                -> awaitable computing a miss, else NULL */
    /* Freshness (py_cached_swr.c, docs/freshness.md). With a refresher,
       ttl_ns is the whole life of an entry: fresh_ttl_ns fresh, then
       stale_ns stale (served while one refresh runs). */
    PyObject *refresher;     /* callable(cached, key, gen, args, kwargs) starting a
                                background refresh, or NULL: no freshness */
    uint64_t fresh_ttl_ns;
    uint64_t stale_ns;
    uint64_t retry_ns;       /* between refresh claims of one entry */
    double swr_ratio;        /* a refresh is due after this share of the TTL */
    uint64_t swr_gen;        /* _swr_complete: the generation the next put of */
    ck_hash128 swr_h;        /* the key hashing to swr_h must replace, 0: none */
    char swr_dropped;        /* out of ck_cached_put: that put was superseded */
    char swr_fill_stale;     /* out of ck_cached_put: the entry went in stale */
    PyObject *dict;          /* __dict__ (functools.update_wrapper writes here) */
    PyObject *weakreflist;
    /* Counters. Updated with the GIL held. */
    uint64_t hits;
    uint64_t misses;
    uint64_t key_errors;
    uint64_t store_errors;
    uint64_t decrypt_errors;
    uint64_t l2_hits;
    uint64_t l2_errors;        /* the backend failed; the call went on without it */
    uint64_t integrity_errors; /* a stored entry was corrupt or foreign: a miss */
    uint64_t stale_entries;    /* an encrypted entry past its expiry: a miss */
    uint64_t lease_waits;      /* misses answered by another process's computation */
    uint64_t stale_hits;       /* hits served past the logical expiry */
    uint64_t refreshes;        /* background refreshes started */
    uint64_t refresh_errors;   /* background refreshes whose function raised */
    uint64_t refresh_dropped;  /* refreshes whose entry was invalidated meanwhile */
    int64_t last_op_ns;      /* wall-clock time of the last call or
                                invalidation (coarse clock), 0: none yet */
    ck_cached_obs obs;       /* latencies and the observer (py_cached_observe.c) */
} ck_cached;

/* py_cached_flight.c: one computation per missing key across threads. */
enum { CK_FLIGHT_ALONE = 0, CK_FLIGHT_LEADER = 1, CK_FLIGHT_WAITED = 2 };
/* Before running the function for a miss. LEADER: *leader set, run it and
   call ck_flight_done(self, *leader) once the result is stored (or failed).
   WAITED: another thread ran it; look the key up again, and run it only if
   it is still missing. ALONE: run it (no flight: recursion, or no memory). */
int ck_flight_join(ck_cached *self, ck_hash128 h, const unsigned char *key, size_t n,
                   ck_flight **leader);
void ck_flight_done(ck_cached *self, ck_flight *f);
/* Free the spare flight (dealloc). */
void ck_flight_clear_spare(ck_cached *self);

/* Record that an operation happened now (CacheInfo.last_operation_at).
   Inline: every call does it. The coarse clock is a vDSO read of the last
   tick (a few ns), and a millisecond is precision enough here. */
static inline void ck_cached_touch(ck_cached *self)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    self->last_op_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The vectorcall of an async function (py_cached_async.c). */
PyObject *ck_cached_async_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames);

/* Report the current exception to on_event(kind, exc) and clear it.
   0: the call may go on uncached; -1: the error must propagate. */
int ck_cached_report_failure(ck_cached *self, const char *kind);

/*
 * How a call completes, for the async path (py_cached_async.c), which
 * cannot run the function inside the call: it looks up first
 * (lookup-only: a miss returns NULL with no exception and sets missed and
 * key), awaits the function itself, then stores the result by calling again
 * with result set (the key is rebuilt from the same arguments; nothing is
 * counted twice). Sync calls pass NULL.
 */
typedef struct {
    PyObject *result; /* borrowed: the result to store; NULL to look up */
    int with_l2;      /* look up L2 too (the async path's off-loop phase);
                         else a lookup stops after L1 */
    int missed;       /* out: lookup found nothing */
    int needs_l2;     /* out: an L1 miss that L2 may answer (ask again with
                         with_l2 set, off the event loop) */
    int bypassed;     /* out: the call could not be keyed and the function
                         was called uncached; the call returned its result */
    PyObject *key;    /* out, new reference: the key bytes of a miss (bytes) */
    PyObject *lease_token; /* out, new reference: a stampede lease this call
                              took (bytes), to release after storing */
} ck_call_mode;

#define CK_MODE_STORING(mode) ((mode) != NULL && (mode)->result != NULL)
#define CK_MODE_DEFERS_L2(mode) ((mode) != NULL && (mode)->result == NULL && !(mode)->with_l2)

/* Run the function on a miss, or as mode says (see ck_call_mode). */
PyObject *ck_cached_run(ck_cached *self, ck_call_mode *mode, PyObject *const *args,
                        size_t nargsf, PyObject *kwnames);
/* Run the function for a call that cannot be cached. */
PyObject *ck_cached_run_uncached(ck_cached *self, ck_call_mode *mode, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames);
/* After ck_cached_run returned NULL: 1 when it was a lookup-only miss
   (mode->key set to the key bytes, NULL with an exception on ENOMEM), 0
   when an exception is set. */
int ck_cached_missed(ck_call_mode *mode, const ck_buf *key);

/* The _bypass_cache=... call keyword: its index in kwnames, or -1. */
Py_ssize_t ck_cached_bypass_index(ck_cached *self, PyObject *kwnames);
/* Run the call without that keyword: uncached when it is true, as usual
   when false. */
PyObject *ck_cached_bypass(ck_cached *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames, Py_ssize_t at);

#define CK_BYPASS_CHECK(self, args, nargsf, kwnames)                                          \
    do {                                                                                     \
        if ((kwnames) != NULL) {                                                             \
            Py_ssize_t at_ = ck_cached_bypass_index((self), (kwnames));                      \
            if (at_ >= 0) {                                                                  \
                return ck_cached_bypass((self), (args), (nargsf), (kwnames), at_);          \
            }                                                                                \
        }                                                                                    \
    } while (0)

/* What a reference entry (@cache.local) is charged: the result's own size.
   0; 1 when it cannot be sized (reported, the result is returned uncached);
   -1 when the failure must propagate. */
int ck_cached_reference_charge(ck_cached *self, PyObject *result, size_t *charge);

/* Store a plain (not encrypted, not reference) result: the result itself
   when its graph is immutable, else a private deep copy flagged
   CK_ENTRY_MUTABLE; charged the graph's size. 0, or -1 to propagate. */
int ck_cached_put_value(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                        PyObject *identity, PyObject *result, const ck_pack_stats *stats,
                        uint64_t ttl_ns, ck_l1_entry **detached);

/* py_cached_l2.c: the second tier of plain @cache (see the file). */
/* 1 when this call's entries go to L2 (a backend, not keyed by identity,
   not @cache.local). */
int ck_cached_l2_configured(ck_cached *self, PyObject *identity);
/* Append the L2 name of key bytes to name. 0, or -1 (MemoryError). */
int ck_cached_l2_name(ck_cached *self, const ck_buf *key, ck_buf *name);
/* After an L1 miss. 1: *result (new reference) came from L2 and L1 holds it;
   0: not there (or L2 failed, reported); -1: a failure must propagate. */
int ck_cached_l2_lookup(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                        const ck_buf *name, PyObject **result, ck_l1_entry **detached);
/* Stampede leases across processes (lease_ms > 0, Redis backends). Before
   running the function for a miss: take the lease (*held), or, when another
   process holds it, poll L2 with lookup(ctx, result) (1 found, 0 not yet,
   -1 propagate) until its value appears or the lease's time is up. Returns
   1 with *result when it appeared, 0 to run the function, -1 to
   propagate. After storing, ck_cached_l2_lease_release(held). With a mode
   (the async path) a lease taken goes to mode->lease_token instead of
   *held, for the caller to release after its own store. */
typedef int (*ck_l2_lookup_fn)(void *ctx, PyObject **result);
int ck_cached_l2_lease(ck_cached *self, ck_call_mode *mode, const ck_buf *name,
                       ck_l2_lookup_fn lookup, void *ctx, PyObject **result,
                       char token[CK_L2_TOKEN_LEN], int *held);
void ck_cached_l2_lease_release(ck_cached *self, const ck_buf *name, const char *token, int held);

/* py_cached_observe.c. 1 when the observer wants events now: it is set
   and either traces always or the cachekit logger has DEBUG enabled (read
   from the logger's own level cache: a dict lookup, no Python call). */
int ck_cached_observing(ck_cached *self);
/* A monotonic time in ns. */
uint64_t ck_cached_now_ns(void);
/* Tell the observer event (a static string) happened from start to now;
   keeps any exception that is set. No-op when start is 0. */
void ck_cached_observe(ck_cached *self, const char *event, uint64_t start_ns);
/* ck_l2_get timed into the L2 histograms and observed. */
int ck_cached_l2_get_timed(ck_cached *self, const ck_buf *name, PyObject **entry,
                           int64_t *pttl_ms);
/* After a ck_l2_set begun at start with result rc: timed and observed. */
void ck_cached_l2_set_timed_done(ck_cached *self, uint64_t start, int rc);
/* The mean of the L2 get round trips in ms, 0.0 before the first. */
double ck_cached_l2_avg_ms(ck_cached *self);
int ck_cached_obs_traverse(ck_cached *self, visitproc visit, void *arg);
void ck_cached_obs_clear(ck_cached *self);
/* The methods _set_observer(observer, log_cache) and _latencies(). */
PyObject *ck_cached_set_observer(ck_cached *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *ck_cached_latencies(ck_cached *self, PyObject *ignored);
extern const char ck_cached_set_observer_doc[];
extern const char ck_cached_latencies_doc[];

/* Take the signing key of plain L2 entries from keyring. 0, or -1. */
int ck_cached_set_signer(ck_cached *self, ck_keyring_object *keyring);

/* Frame the encoded result and write it to L2. 0, or -1 to propagate. */
int ck_cached_l2_store(ck_cached *self, const ck_buf *name, const ck_buf *packed);
/* Write stored bytes (a sealed entry) to L2 for the function's TTL. */
int ck_cached_l2_put(ck_cached *self, const ck_buf *name, const unsigned char *data, size_t len);
/* refresh_ttl_on_get: after an L2 hit with pttl_ms left, give the entry a
   full TTL again when less than the threshold's share of it was left. */
int ck_cached_l2_refresh(ck_cached *self, const ck_buf *name, int64_t pttl_ms);
/* L1's TTL for an entry L2 holds for pttl_ms more (-1: none or unknown). */
uint64_t ck_cached_l2_fill_ttl(ck_cached *self, int64_t pttl_ms);
/* Count and report the L2 failure set as an exception (a backend_error):
   0 to go on without L2, -1 when it must propagate. */
int ck_cached_l2_report(ck_cached *self);
/* Drop the L2 entry of a name / every L2 entry of the function. 0, or -1. */
int ck_cached_l2_invalidate(ck_cached *self, const ck_buf *name, int *removed);
int ck_cached_l2_clear(ck_cached *self);

/* py_cached_serializer.c: results stored by a Python serializer. */
/* Take the serializer tuple (id, encode, decode, mutable) or None. 0 or -1. */
int ck_cached_ser_parse(ck_cached *self, PyObject *spec);
/* The serializer id this function's entries carry (CK_SER_MSGPACK by default). */
unsigned char ck_cached_ser_id(const ck_cached *self);
/* encode(result) appended to buf, bounded like ck_cached_encode_result;
   0, or -1 with the failure reported as a store_error (*fatal as there). */
int ck_cached_ser_encode(ck_cached *self, ck_state *st, PyObject *result, ck_buf *buf,
                         int *fatal);
/* decode(payload): a new reference, or NULL with an exception. */
PyObject *ck_cached_ser_decode(ck_cached *self, const unsigned char *payload, size_t n);
/* Store the decoded value in L1, sized and flagged as the serializer says. */
int ck_cached_ser_put(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                      PyObject *identity, PyObject *value, size_t payload_len, uint64_t ttl_ns,
                      ck_l1_entry **detached);
/* A miss's result: encode, fill L1 with its decoding, write L2 under name
   (NULL: no L2). 0, or -1 when a failure must propagate. */
int ck_cached_ser_store(ck_cached *self, ck_state *st, ck_hash128 h, const ck_buf *key,
                        PyObject *identity, PyObject *result, const ck_buf *name,
                        ck_l1_entry **detached);
/* Under @cache.secure: authenticate, decrypt and decode a sealed entry
   with the function's serializer (a foreign serializer id is an
   IntegrityError). New reference, or NULL with an exception. */
PyObject *ck_cached_secure_open(ck_cached *self, ck_state *st, const unsigned char *entry,
                                size_t n, ck_span tenant, ck_span aad_key);
/* Frame payload with serializer id ser and write it to L2 (as ck_cached_l2_store). */
int ck_cached_l2_store_as(ck_cached *self, const ck_buf *name, const ck_buf *packed,
                          unsigned char ser);

/* Drop every entry of the function from its (possibly shared) store. */
void ck_cached_drop_entries(ck_cached *self);

/* py_cached_swr.c: freshness. After an L1 hit whose flags carry
   CK_L1_STALE or CK_L1_REFRESH: count it, and start the claimed refresh of
   the call (key: the L1 key bytes). 0, or -1 when a failure must propagate
   (the hit's result is then dropped by the caller). */
int ck_cached_swr_hit(ck_cached *self, uint32_t flags, uint64_t gen, const unsigned char *key,
                      size_t key_len, PyObject *const *args, size_t nargsf, PyObject *kwnames);
/* The freshness of an entry put now that lives ttl_ns more in all. */
void ck_cached_swr_params(ck_cached *self, ck_hash128 h, uint64_t ttl_ns, ck_l1_swr *out);
/* Parse the freshness arguments of CachedFunction(). 0, or -1 (ValueError). */
int ck_cached_swr_init(ck_cached *self, PyObject *refresher, double stale, double ratio,
                       double retry);
/* The methods _swr_complete and _swr_failed (see py_cached_swr.c). */
PyObject *ck_cached_swr_complete(ck_cached *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames);
PyObject *ck_cached_swr_failed(ck_cached *self, PyObject *unused);
extern const char ck_cached_swr_complete_doc[], ck_cached_swr_failed_doc[];
/* Add the freshness counters to a cache_stats() dict. 0, or -1. */
int ck_cached_swr_stats(ck_cached *self, PyObject *d);

/* The method table of CachedFunction (py_cached_methods.c). */
extern PyMethodDef ck_cached_methods[];

/* Store value under key, in the instance's group when the key holds an
   instance's identity. 0, or -1 when a failure must propagate. */
int ck_cached_put(ck_cached *self, ck_hash128 h, const unsigned char *key, size_t key_len,
                  PyObject *identity, PyObject *value, size_t charge, uint32_t flags,
                  uint64_t ttl_ns, ck_l1_entry **detached);

/* A call of either path (plain or secure) with a mode. */
PyObject *ck_cached_call_mode(ck_cached *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames, ck_call_mode *mode);

/* 1 when the store cannot hold any entry: how CACHEKIT_L1_ENABLED=false
   disables L1 (cachekit/store.py), so a result is neither encoded nor
   reported as too large. */
int ck_cached_store_disabled(ck_cached *self);

/* Encode result into buf for storing, with its statistics (the object
   graph's size, whether it holds anything mutable). Encoding stops as soon
   as the output passes max_value_size or the L1 byte bound. 0, or -1 with
   the failure reported as a store_error (*fatal set when it must propagate
   instead). */
int ck_cached_encode_result(ck_cached *self, ck_state *st, PyObject *result, ck_buf *buf,
                            ck_pack_stats *stats, int *fatal);

/* L1 entry flag (ck_l1 user flags): the entry is a private deep copy of a
   result holding mutable containers; every hit returns a copy of it. */
#define CK_ENTRY_MUTABLE 0x00010000u

/* The @cache.secure call path (py_cached_secure.c), chosen at creation. */
PyObject *ck_cached_secure_vectorcall(ck_cached *self, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames);
PyObject *ck_cached_secure_call(ck_cached *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames, ck_call_mode *mode);

/* Methods shared with bound methods (py_cached_bound.c). */
PyObject *ck_cached_invalidate(ck_cached *self, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames);
PyObject *ck_cached_ainvalidate(ck_cached *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames);
PyObject *ck_cached_cache_key(ck_cached *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames);
PyObject *ck_bound_new(ck_state *st, ck_cached *func, PyObject *self);

/* py_cached_async.c: the awaitable of callable(*args) run in a thread
   (cachekit.decorators.async_path.off_loop); steals callable. */
PyObject *ck_cached_off_loop(ck_cached *self, PyObject *callable, PyObject *const *args,
                             size_t nargsf, PyObject *kwnames);

/* py_cached_async.c: an awaitable that completes at once with value. */
PyObject *ck_ready_new(ck_state *st, PyObject *value);

/* Under @cache.secure with a tenant extractor: run it for this call, append
   the tenant to the key bytes and return it (new reference, a str) in
   *tenant. Without an extractor *tenant is NULL. 0, or -1 with an error. */
int ck_cached_tenant(ck_cached *self, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                     ck_buf *key, PyObject **tenant);

/* py_cached_instances.c: the L1 group of a method's entries keyed by the
   identity of instance (registering it on first use, so they are dropped
   when it dies). *group stays valid while the instance lives. 0 or -1. */
int ck_cached_instance_group(ck_cached *self, PyObject *instance, ck_l1_group **group);

/* Stop tracking every instance, dropping their entries (function teardown). */
void ck_cached_forget_instances(ck_cached *self);

/* Under @cache.secure: append the L2 name of key bytes under tenant to name
   (key prefix + 32 hex digits of the keyring's keyed name MAC). 0, or -1. */
int ck_cached_secure_l2_name(ck_cached *self, ck_span tenant, const ck_buf *key, ck_buf *name);

/* Under @cache.secure: the L1 key for key bytes (args and tenant), the
   keyring's MAC of them (ck_keyring_l1_key). 0, or -1 with an exception. */
int ck_cached_secure_l1_key(ck_cached *self, ck_state *st, const unsigned char *key, size_t n,
                            unsigned char out[CK_KEYRING_L1_KEY_LEN]);

/* The L1 hash of an entry key. Under @cache.secure the key is already a
   MAC (ck_cached_secure_l1_key): uniformly random to anyone without the
   MAC key, so its own first 16 bytes, mixed with the function's seed, are
   the hash, and XXH3 over it would add nothing but ~140 instructions. The
   store still compares the full MAC. */
static inline ck_hash128 ck_cached_hash(const ck_cached *self, const unsigned char *key,
                                        size_t n)
{
    if (self->keyring != NULL && n == CK_KEYRING_L1_KEY_LEN) {
        ck_hash128 h;
        memcpy(&h.lo, key, sizeof(h.lo));
        memcpy(&h.hi, key + sizeof(h.lo), sizeof(h.hi));
        h.lo ^= self->seed;
        return h;
    }
    return ck_key_hash(key, n, self->seed);
}

#endif /* CK_PY_CACHED_H */
