/*
 * py_store.h - the L1Store Python type (binding of ck_l1), shared with the
 * cached-call object, which keeps its entries in an L1Store.
 */
#ifndef CK_PY_STORE_H
#define CK_PY_STORE_H

#include "ck_l1.h"
#include "module_state.h"

typedef struct {
    PyObject_HEAD
    ck_l1 *store;
    /* Owner of the entries put through the store's own Python methods
       (get/put/remove); each cached function is an owner of its own. */
    ck_l1_owner direct;
    PyObject *weakreflist;
} ck_store_object;

/* Release a detached list: drops value references, may run user code.
   Call without any store lock held (always the case in the binding). */
static inline void ck_store_release(ck_store_object *so, ck_l1_entry *detached)
{
    if (detached != NULL) {
        ck_l1_release(so->store, detached);
    }
}

/* A positive, finite duration in seconds (below 1.8e10) as nanoseconds
   (at least 1). 0, or -1 with ValueError naming `name`. */
int ck_seconds_to_ns(double seconds, const char *name, uint64_t *ns);

/* Parse a TTL in seconds: None -> 0 (no expiry); a positive finite number ->
   nanoseconds. Returns 0, or -1 with ValueError/TypeError set. */
int ck_parse_ttl(PyObject *obj, uint64_t *ttl_ns);

#endif /* CK_PY_STORE_H */
