/*
 * module_state.h - per-module state of cachekit._core.
 *
 * The module uses multi-phase initialisation: every Python object it needs
 * lives here, never in a static global, so sub-interpreters and module
 * reloads each get their own copy. Binding files (py_*.c) reach the state
 * through ck_state_from_module() or ck_state_from_type().
 */
#ifndef CK_MODULE_STATE_H
#define CK_MODULE_STATE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/*
 * One remembered key-mode decision for a type (py_codec_pack_key.c): how its
 * instances are keyed by value, with the pieces every call needs. Valid while
 * type->tp_version_tag equals `version` (CPython changes the tag whenever the
 * class or a base is modified). All references are strong.
 */
typedef struct {
    PyTypeObject *type; /* NULL: empty slot */
    unsigned int version;
    int kind;           /* CK_KEY_KIND_* in py_codec_pack_key.c */
    PyObject *name;     /* "module:qualname" of type */
    PyObject *fields;   /* frozen dataclass: tuple of field names, else NULL */
} ck_key_type_memo;

#define CK_KEY_TYPE_MEMO 32 /* entries: 16 sets of 2, chosen by type address */

typedef struct {
    /* Exceptions. UnsupportedTypeError derives from SerializationError and
       TypeError, so callers may catch either. IntegrityError (bad frame,
       checksum mismatch) derives from SerializationError. */
    PyObject *CachekitError;
    PyObject *SerializationError;
    PyObject *UnsupportedTypeError;
    PyObject *IntegrityError;
    PyObject *StaleEntryError; /* IntegrityError: an expired encrypted entry */
    /* EncryptionError derives from SerializationError; DecryptionError (a
       failed authentication: wrong key, tampering, truncation) from it. */
    PyObject *EncryptionError;
    PyObject *DecryptionError;
    /* BackendError: a cache backend (Redis) failed; its error_type
       attribute says how ("timeout", "connection", "auth", ...). */
    PyObject *BackendError;

    /* Heap types defined by this module. */
    PyTypeObject *L1StoreType;
    PyTypeObject *CachedFunctionType;
    PyTypeObject *KeyringType;
    PyTypeObject *InstanceTrackerType;
    PyTypeObject *BoundCachedMethodType;
    PyTypeObject *ReadyType;
    PyTypeObject *L2BackendType;
    PyTypeObject *RedisClientType;

    /* Types the codec recognises, imported once at module exec. */
    PyObject *DecimalType;  /* decimal.Decimal */
    PyObject *UUIDType;     /* uuid.UUID */
    PyObject *ZoneInfoType; /* zoneinfo.ZoneInfo */

    /* Application types (py_codec_app.c), installed by cachekit/app_types.py
       through _core._set_app_codec; NULL until then. app_encode(obj) ->
       (code, name, payload) or None; app_decode(code, cls, payload) -> obj;
       app_registry: the process-wide dict "module:qualname" -> class of
       trusted types (cachekit.register_type). */
    PyObject *app_encode;
    PyObject *app_decode;
    PyObject *app_registry;

    /* Data types (py_codec_data.c: numpy arrays and scalars, pandas and
       polars frames), installed by cachekit/_data.py through
       _core._set_data_codec; NULL until then. */
    PyObject *data_encode; /* obj -> (code, head list, buffer, mutable) or None */
    PyObject *data_decode; /* (code, head tuple, buffer) -> obj */
    PyObject *data_copy;   /* obj -> an unshared copy */

    /* Interned attribute names used on hot or warm paths. */
    PyObject *str_cachekit_key; /* "__cachekit_key__" */
    PyObject *str_bypass_cache; /* "_bypass_cache" (a call keyword) */
    PyObject *str_module;       /* "__module__" */
    PyObject *str_qualname;     /* "__qualname__" */
    PyObject *str_key;          /* "key" (ZoneInfo.key) */
    PyObject *str_int;          /* "int" (UUID.int) */
    PyObject *str_bytes;        /* "bytes" (UUID.bytes) */
    PyObject *str_value_;       /* "_value_" (Enum members) */

    /* Key-mode decisions per type (Enum, named tuple, frozen dataclass). */
    ck_key_type_memo key_types[CK_KEY_TYPE_MEMO];

    /* The spare heap block large values are encoded into (py_scratch.h);
       NULL while a call has borrowed it. Freed with the module. */
    unsigned char *scratch;
    size_t scratch_cap;
} ck_state;

static inline ck_state *ck_state_from_module(PyObject *module)
{
    return (ck_state *)PyModule_GetState(module);
}

static inline ck_state *ck_state_from_type(PyTypeObject *type)
{
    return (ck_state *)PyType_GetModuleState(type);
}

/* Each binding file registers its functions and types from module exec. */
int ck_codec_exec(PyObject *module);
int ck_format_exec(PyObject *module);
int ck_store_exec(PyObject *module);
int ck_cached_exec(PyObject *module);
int ck_cached_instances_exec(PyObject *module);
int ck_cached_bound_exec(PyObject *module);
int ck_cached_async_exec(PyObject *module);
int ck_l2_exec(PyObject *module);
int ck_redis_slots_exec(PyObject *module);
int ck_crypto_exec(PyObject *module);
int ck_seal_exec(PyObject *module);
int ck_keyring_exec(PyObject *module);
int ck_redis_exec(PyObject *module);
int ck_interop_exec(PyObject *module);
int ck_redis_track_exec(PyObject *module);

#endif /* CK_MODULE_STATE_H */
