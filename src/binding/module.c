/*
 * module.c - cachekit._core: module definition and multi-phase init.
 *
 * Owns the module state (module_state.h): exception classes, imported types
 * the codec recognises, interned strings. Each binding file adds its own
 * functions and types through its ck_*_exec hook, called from ck_exec below.
 */
#include "py_file.h"
#include "py_memcached.h"
#include "py_redis_cluster.h"
#include "module_state.h"

#include <datetime.h>

static int add_exception_dict(PyObject *module, PyObject **slot, const char *name,
                              PyObject *bases, const char *doc, PyObject *dict)
{
    char qualified[128];

    PyOS_snprintf(qualified, sizeof(qualified), "cachekit._core.%s", name);
    *slot = PyErr_NewExceptionWithDoc(qualified, doc, bases, dict);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, name, *slot);
}

static int add_exception(PyObject *module, PyObject **slot, const char *name, PyObject *bases,
                         const char *doc)
{
    return add_exception_dict(module, slot, name, bases, doc, NULL);
}

static int add_exceptions(PyObject *module, ck_state *st)
{
    PyObject *bases = NULL, *dict = NULL;
    int rc = -1;

    if (add_exception(module, &st->CachekitError, "CachekitError", PyExc_Exception,
                      "Base class of every error cachekit raises.") < 0) {
        goto error;
    }
    if (add_exception(module, &st->SerializationError, "SerializationError", st->CachekitError,
                      "A value could not be encoded or an entry could not be decoded.") < 0) {
        goto error;
    }
    if (add_exception(module, &st->IntegrityError, "IntegrityError", st->SerializationError,
                      "A stored entry is malformed, truncated or fails its checksum.") < 0) {
        goto error;
    }
    if (add_exception(module, &st->StaleEntryError, "StaleEntryError", st->IntegrityError,
                      "An encrypted entry past the expiry time it carries (a replayed or "
                      "TTL-stripped entry): refused whatever the store says.") < 0) {
        goto error;
    }
    if (add_exception(module, &st->EncryptionError, "EncryptionError", st->SerializationError,
                      "A value could not be encrypted, or an encrypted entry not opened.") < 0) {
        goto error;
    }
    if (add_exception(module, &st->DecryptionError, "DecryptionError", st->EncryptionError,
                      "Authentication failed: wrong key, tampered or truncated entry.") < 0) {
        goto error;
    }
    /* error_type defaults to None on the class; the binding sets it on
       each instance it raises. */
    dict = Py_BuildValue("{s:O}", "error_type", Py_None);
    if (dict == NULL) {
        goto error;
    }
    if (add_exception_dict(module, &st->BackendError, "BackendError", st->CachekitError,
                           "A cache backend failed. error_type: 'timeout', 'connection', "
                           "'auth', 'protocol', 'reply_too_large' or 'server'.",
                           dict) < 0) {
        goto error;
    }
    bases = PyTuple_Pack(2, st->SerializationError, PyExc_TypeError);
    if (bases == NULL) {
        goto error;
    }
    if (add_exception(module, &st->UnsupportedTypeError, "UnsupportedTypeError", bases,
                      "The codec cannot store a value of this type.") < 0) {
        goto error;
    }
    rc = 0;
error:
    Py_XDECREF(bases);
    Py_XDECREF(dict);
    return rc;
}

/* New reference to module.attr, or NULL with an exception set. */
static PyObject *import_attr(const char *module, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(module);
    PyObject *res;

    if (mod == NULL) {
        return NULL;
    }
    res = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return res;
}

static int intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

static int ck_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return -1;
    }
    if (add_exceptions(module, st) < 0) {
        return -1;
    }
    st->DecimalType = import_attr("decimal", "Decimal");
    if (st->DecimalType == NULL) {
        return -1;
    }
    st->UUIDType = import_attr("uuid", "UUID");
    if (st->UUIDType == NULL) {
        return -1;
    }
    st->ZoneInfoType = import_attr("zoneinfo", "ZoneInfo");
    if (st->ZoneInfoType == NULL) {
        return -1;
    }
    if (intern(&st->str_cachekit_key, "__cachekit_key__") < 0 ||
        intern(&st->str_bypass_cache, "_bypass_cache") < 0 ||
        intern(&st->str_module, "__module__") < 0 ||
        intern(&st->str_qualname, "__qualname__") < 0 || intern(&st->str_key, "key") < 0 ||
        intern(&st->str_int, "int") < 0 || intern(&st->str_bytes, "bytes") < 0 ||
        intern(&st->str_value_, "_value_") < 0) {
        return -1;
    }
    if (ck_codec_exec(module) < 0 || ck_format_exec(module) < 0 || ck_store_exec(module) < 0 ||
        ck_cached_exec(module) < 0 || ck_cached_instances_exec(module) < 0 ||
        ck_cached_bound_exec(module) < 0 || ck_cached_async_exec(module) < 0 || ck_crypto_exec(module) < 0 ||
        ck_seal_exec(module) < 0 || ck_keyring_exec(module) < 0 || ck_redis_exec(module) < 0 ||
        ck_redis_track_exec(module) < 0 ||
        ck_l2_exec(module) < 0 || ck_interop_exec(module) < 0 ||
        ck_redis_slots_exec(module) < 0 ||
        ck_file_exec(module) < 0 || ck_memcached_exec(module) < 0 ||
        ck_redis_cluster_exec(module) < 0) {
        return -1;
    }
    return 0;
}

#define VISIT_ALL(X)                                                                           \
    X(CachekitError) X(SerializationError) X(UnsupportedTypeError) X(IntegrityError)           \
    X(EncryptionError) X(DecryptionError) X(BackendError) X(StaleEntryError)                                      \
    X(L1StoreType) X(CachedFunctionType) X(KeyringType) X(InstanceTrackerType)               \
    X(BoundCachedMethodType) X(ReadyType) X(RedisClientType) X(L2BackendType)                 \
    X(DecimalType) X(UUIDType) X(ZoneInfoType) X(app_encode) X(app_decode) X(app_registry)        \
    X(data_encode) X(data_decode) X(data_copy)                                                 \
    X(str_cachekit_key) X(str_bypass_cache) X(str_module) X(str_qualname) X(str_key) X(str_int)  \
    X(str_bytes)                                                                               \
    X(str_value_)

static int ck_traverse(PyObject *module, visitproc visit, void *arg)
{
    ck_state *st = ck_state_from_module(module);
    int i;
#define VISIT(name) Py_VISIT(st->name);
    VISIT_ALL(VISIT)
#undef VISIT
    for (i = 0; i < CK_KEY_TYPE_MEMO; i++) {
        Py_VISIT(st->key_types[i].type);
        Py_VISIT(st->key_types[i].name);
        Py_VISIT(st->key_types[i].fields);
    }
    return 0;
}

static int ck_clear(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);
    int i;
#define CLEAR(name) Py_CLEAR(st->name);
    VISIT_ALL(CLEAR)
#undef CLEAR
    for (i = 0; i < CK_KEY_TYPE_MEMO; i++) {
        Py_CLEAR(st->key_types[i].type);
        Py_CLEAR(st->key_types[i].name);
        Py_CLEAR(st->key_types[i].fields);
    }
    return 0;
}

static void ck_free(void *module)
{
    ck_state *st = ck_state_from_module((PyObject *)module);

    (void)ck_clear((PyObject *)module);
    if (st != NULL) {
        free(st->scratch); /* py_scratch.h: spare block, wiped when given back */
        st->scratch = NULL;
        st->scratch_cap = 0;
    }
}

static PyModuleDef_Slot ck_slots[] = {
    {Py_mod_exec, ck_exec},
    {0, NULL},
};

static struct PyModuleDef ck_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cachekit._core",
    .m_doc = "cachekit's C core: codec, entry format, L1 store and the cached-call hot path.",
    .m_size = sizeof(ck_state),
    .m_slots = ck_slots,
    .m_traverse = ck_traverse,
    .m_clear = ck_clear,
    .m_free = ck_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&ck_module);
}
