/*
 * py_cached_instances.c - entries of a method keyed by its instance's
 * identity live exactly as long as the instance.
 *
 * A method's `self` that is neither keyed by value nor by __cachekit_key__
 * is keyed by its address (py_keys.c). An address is only meaningful while
 * the object lives there, so the first miss on an instance registers a
 * tracker: an L1 group holding every entry of that instance, and a weak
 * reference to the instance whose callback (the tracker itself) drops the
 * group when the instance dies, before its address can be reused. The cache
 * therefore never keeps an instance alive and never serves a dead one's
 * entries to a newcomer at the same address.
 *
 * Trackers live in the function's `instances` dict (address -> tracker),
 * touched only with the GIL held. The hit path never looks at them: an
 * entry keyed by an address exists only while its tracker does.
 */
#include "py_cached.h"

typedef struct {
    PyObject_HEAD
    ck_cached *owner;  /* borrowed; NULL once detached */
    PyObject *weakref; /* to the instance, with this tracker as its callback */
    void *addr;        /* the instance's address: our key in owner->instances */
    ck_l1_group group; /* the instance's entries, guarded by the store lock */
} ck_tracker;

/* Drop the tracker's entries and stop watching its instance. Idempotent. */
static void tracker_detach(ck_tracker *t)
{
    ck_l1_entry *detached = NULL;
    ck_store_object *store;

    if (t->owner == NULL) {
        return;
    }
    store = t->owner->store;
    t->owner = NULL;
    if (store != NULL) {
        ck_l1_clear_group(store->store, &t->group, &detached);
        ck_store_release(store, detached);
    }
    Py_CLEAR(t->weakref);
}

/* The weak reference's callback: the instance is dying. */
static PyObject *tracker_call(ck_tracker *t, PyObject *args, PyObject *kwargs)
{
    ck_cached *owner = t->owner;
    PyObject *addr;

    (void)args;
    (void)kwargs;
    if (owner == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(t); /* the dict may hold the last reference */
    tracker_detach(t);
    addr = PyLong_FromVoidPtr(t->addr);
    if (addr == NULL || owner->instances == NULL ||
        PyDict_GetItemWithError(owner->instances, addr) != (PyObject *)t ||
        PyDict_DelItem(owner->instances, addr) < 0) {
        /* Only a MemoryError can get here; the tracker is already inert and
           is dropped with the function (or replaced by the next object at
           this address), so nothing is lost by not reporting it. */
        PyErr_Clear();
    }
    Py_XDECREF(addr);
    Py_DECREF(t);
    Py_RETURN_NONE;
}

static int tracker_traverse(ck_tracker *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->weakref);
    return 0;
}

static int tracker_clear(ck_tracker *t)
{
    tracker_detach(t);
    return 0;
}

static void tracker_dealloc(ck_tracker *t)
{
    PyTypeObject *tp = Py_TYPE(t);

    PyObject_GC_UnTrack(t);
    tracker_detach(t); /* the group must be empty before its memory goes */
    tp->tp_free(t);
    Py_DECREF(tp);
}

static PyType_Slot tracker_slots[] = {
    {Py_tp_call, tracker_call},
    {Py_tp_traverse, tracker_traverse},
    {Py_tp_clear, tracker_clear},
    {Py_tp_dealloc, tracker_dealloc},
    {0, NULL},
};

static PyType_Spec tracker_spec = {
    .name = "cachekit._core._InstanceTracker",
    .basicsize = sizeof(ck_tracker),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = tracker_slots,
};

/* A new tracker watching instance for self (a new reference), or NULL. */
static ck_tracker *tracker_new(ck_cached *self, PyObject *instance)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    ck_tracker *t = PyObject_GC_New(ck_tracker, st->InstanceTrackerType);

    if (t == NULL) {
        return NULL;
    }
    t->owner = NULL;
    t->weakref = NULL;
    t->addr = instance;
    ck_l1_group_init(&t->group);
    PyObject_GC_Track(t);
    t->weakref = PyWeakref_NewRef(instance, (PyObject *)t);
    if (t->weakref == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    t->owner = self;
    return t;
}

int ck_cached_instance_group(ck_cached *self, PyObject *instance, ck_l1_group **group)
{
    PyObject *addr = NULL;
    ck_tracker *t;         /* borrowed from the dict */
    ck_tracker *fresh = NULL;
    int rc = -1;

    if (self->instances == NULL && (self->instances = PyDict_New()) == NULL) {
        return -1;
    }
    addr = PyLong_FromVoidPtr(instance);
    if (addr == NULL) {
        goto error;
    }
    t = (ck_tracker *)PyDict_GetItemWithError(self->instances, addr);
    if (t == NULL && PyErr_Occurred()) {
        goto error;
    }
    /* A tracker left by a dead object at this address already had its
       entries dropped by its callback; replacing it is enough. */
    if (t == NULL || t->weakref == NULL || PyWeakref_GetObject(t->weakref) != instance) {
        fresh = tracker_new(self, instance);
        if (fresh == NULL || PyDict_SetItem(self->instances, addr, (PyObject *)fresh) < 0) {
            goto error;
        }
        t = fresh;
    }
    *group = &t->group;
    rc = 0;
error:
    if (rc < 0 && fresh != NULL) {
        tracker_detach(fresh);
    }
    Py_XDECREF(fresh); /* the dict holds it on success */
    Py_XDECREF(addr);
    return rc;
}

void ck_cached_forget_instances(ck_cached *self)
{
    PyObject *instances = self->instances, *k, *v;
    Py_ssize_t pos = 0;

    if (instances == NULL) {
        return;
    }
    self->instances = NULL;
    while (PyDict_Next(instances, &pos, &k, &v)) {
        tracker_detach((ck_tracker *)v);
    }
    Py_DECREF(instances);
}

int ck_cached_instances_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->InstanceTrackerType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &tracker_spec, NULL);
    return st->InstanceTrackerType == NULL ? -1 : 0;
}
