/*
 * py_keyring.c - Keyring: master keys and data-key caches of @cache.secure
 * as a Python object (see ck_keyring.h): construction, lifetime, repr, the
 * seal/open methods, and the GIL hooks and error mapping the cached-call
 * object shares. Argument parsing is in py_keyring_args.c, the bridge to a
 * Python key provider in py_keyring_provider.c.
 *
 * Key material enters as a buffer, is copied into C memory and never comes
 * back out: no method returns a key, repr shows only the fingerprint, and
 * the type cannot be pickled. Dropping the object wipes every key.
 */
#include "py_keyring.h"
#include "py_scratch.h"

#include <string.h>

#include "py_codec.h"
#include "py_keyring_internal.h"
#include "py_store.h"

static void *gil_leave(void)
{
    return PyEval_SaveThread();
}

static void gil_enter(void *state)
{
    PyEval_RestoreThread((PyThreadState *)state);
}

const ck_unlock_hooks ck_gil_hooks = {CK_KEYRING_NOGIL_MIN, gil_leave, gil_enter};
const ck_unlock_hooks ck_gil_hooks_wait_only = {SIZE_MAX, gil_leave, gil_enter};

/* ---------------------------------------------------------------- errors */

void ck_raise_crypto_error(ck_state *st, const ck_error *err, int opening)
{
    if (err->code == CK_ENOMEM) {
        PyErr_NoMemory();
    } else if (err->code == CK_EAUTH) {
        PyErr_Format(st->DecryptionError, "decryption failed: %s", err->msg);
    } else if (err->code == CK_ESTALE) {
        PyErr_Format(st->StaleEntryError, "%s", err->msg);
    } else if (err->code == CK_ECRYPTO) {
        PyErr_Format(st->EncryptionError, "%s", err->msg);
    } else if (opening || err->code == CK_EFORMAT || err->code == CK_ECHECKSUM) {
        /* Anything else wrong with stored bytes is a malformed entry. */
        PyErr_Format(st->IntegrityError, "%s", err->msg);
    } else {
        PyErr_Format(st->EncryptionError, "%s", err->msg);
    }
}

/* ------------------------------------------------------------------- new */

static PyObject *keyring_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"master_key",       "previous_keys",   "provider",
                             "dek_max_age",      "dek_max_messages", "dek_max_bytes",
                             "read_max_age",     "read_capacity",   "tenant_capacity",
                             "compress_min",     NULL};
    ck_state *st = ck_state_from_type(type);
    Py_buffer master = {0}, prev = {0};
    PyObject *master_obj = Py_None, *previous = NULL, *seq = NULL, *provider = Py_None;
    double dek_max_age = 3600.0, read_max_age = 3600.0;
    unsigned long long max_messages = CK_KEYRING_MAX_MESSAGES, max_bytes = (1ULL << 36);
    PyObject *max_messages_obj = NULL, *max_bytes_obj = NULL;
    Py_ssize_t read_capacity = 1024, tenant_capacity = 1024, compress_min = 0, i;
    ck_keyring_object *self = NULL;
    ck_keyring_limits lim;
    ck_error err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO$OdOOdnnn:Keyring", kwlist, &master_obj,
                                     &previous, &provider, &dek_max_age, &max_messages_obj,
                                     &max_bytes_obj, &read_max_age, &read_capacity,
                                     &tenant_capacity, &compress_min)) {
        return NULL;
    }
    if (compress_min < 0) {
        PyErr_SetString(PyExc_ValueError, "compress_min must be >= 0 (0: never compress)");
        return NULL;
    }
    if ((master_obj == Py_None) == (provider == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "Keyring needs exactly one of master_key and provider");
        return NULL;
    }
    /* Checked here rather than with "K", which wraps silently: -1 would mean
       2**64-1 (no limit) and 2**64+1 would mean 1. */
    if (ck_py_keyring_parse_limit(max_messages_obj, "dek_max_messages", CK_KEYRING_MAX_MESSAGES,
                                  &max_messages) < 0 ||
        ck_py_keyring_parse_limit(max_bytes_obj, "dek_max_bytes", (unsigned long long)INT64_MAX,
                                  &max_bytes) < 0) {
        return NULL;
    }
    if (master_obj != Py_None && PyObject_GetBuffer(master_obj, &master, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (ck_seconds_to_ns(dek_max_age, "dek_max_age", &lim.dek_max_age_ns) < 0 ||
        ck_seconds_to_ns(read_max_age, "read_max_age", &lim.read_max_age_ns) < 0) {
        goto error;
    }
    if (max_messages == 0 || max_messages > CK_KEYRING_MAX_MESSAGES || max_bytes == 0 ||
        read_capacity <= 0 || tenant_capacity <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "dek_max_messages must be 1..2**32; dek_max_bytes, read_capacity and "
                        "tenant_capacity must be positive");
        goto error;
    }
    lim.dek_max_messages = max_messages;
    lim.dek_max_bytes = max_bytes;
    lim.read_capacity = (size_t)read_capacity;
    lim.tenant_capacity = (size_t)tenant_capacity;
    lim.compress_min = (size_t)compress_min;

    self = (ck_keyring_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    if (provider != Py_None) {
        if (ck_py_keyring_make_external(self, provider, &lim, &err) < 0) {
            Py_CLEAR(self);
            goto error;
        }
    } else {
        self->kr = ck_keyring_new(master.buf, (size_t)master.len, &lim, &err);
    }
    if (self->kr == NULL) {
        if (err.code == CK_EINVAL) {
            PyErr_Format(PyExc_ValueError, "%s", err.msg);
        } else {
            ck_raise_crypto_error(st, &err, 0);
        }
        Py_CLEAR(self);
        goto error;
    }
    if (previous != NULL && previous != Py_None) {
        seq = PySequence_Fast(previous, "previous_keys must be a sequence of bytes");
        if (seq == NULL) {
            Py_CLEAR(self);
            goto error;
        }
        for (i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            int rc;
            if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &prev, PyBUF_SIMPLE) < 0) {
                Py_CLEAR(self);
                goto error;
            }
            rc = ck_keyring_add_previous(self->kr, prev.buf, (size_t)prev.len, &err);
            PyBuffer_Release(&prev);
            if (rc < 0) {
                PyErr_Format(PyExc_ValueError, "previous key %zd: %s", i, err.msg);
                Py_CLEAR(self);
                goto error;
            }
            self->n_previous++;
        }
    }
error:
    Py_XDECREF(seq);
    PyBuffer_Release(&master);
    return (PyObject *)self;
}

static int keyring_traverse(ck_keyring_object *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->provider);
    return 0;
}

static int keyring_clear(ck_keyring_object *self)
{
    /* The keyring calls into the provider; it goes first. */
    ck_keyring_free(self->kr); /* wipes every key */
    self->kr = NULL;
    Py_CLEAR(self->provider);
    return 0;
}

static void keyring_dealloc(ck_keyring_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    (void)keyring_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *fingerprint_hex(ck_keyring_object *self, size_t which)
{
    unsigned char fp[CK_SEAL_FP_LEN];
    char hex[2 * CK_SEAL_FP_LEN];
    static const char digits[] = "0123456789abcdef";
    int i;

    ck_keyring_fp_at(self->kr, which, fp);
    for (i = 0; i < CK_SEAL_FP_LEN; i++) {
        hex[2 * i] = digits[fp[i] >> 4];
        hex[2 * i + 1] = digits[fp[i] & 0xf];
    }
    return PyUnicode_FromStringAndSize(hex, sizeof(hex));
}

static PyObject *keyring_repr(ck_keyring_object *self)
{
    PyObject *fp = fingerprint_hex(self, 0), *res;

    if (fp == NULL) {
        return NULL;
    }
    res = PyUnicode_FromFormat("<cachekit Keyring fingerprint=%U previous_keys=%zu>", fp,
                               self->n_previous);
    Py_DECREF(fp);
    return res;
}

/* -------------------------------------------------------------- methods */

PyDoc_STRVAR(seal_doc, "seal($self, plaintext, /, tenant='default', cache_key=b'', serializer=1)\n"
                       "--\n\nEncrypt serialized bytes into an entry bound to tenant and cache_key.");

PyDoc_STRVAR(seal_value_doc,
             "seal_value($self, value, /, tenant='default', cache_key=b'')\n--\n\n"
             "Serialize value with the msgpack codec and encrypt it: what @cache.secure\n"
             "stores. The serialized plaintext is wiped once sealed.");

/* seal() takes serialized bytes; seal_value() (encode) packs a value first. */
static PyObject *seal_impl(ck_keyring_object *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, int encode)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_buffer in = {0};
    PyObject *result = NULL;
    Py_ssize_t serializer = CK_SER_MSGPACK;
    const ck_unlock_hooks *hooks = &ck_gil_hooks;
    const unsigned char *pt;
    keyring_args a;
    size_t n;
    ck_buf packed, out;
    ck_error err;

    /* The encoded value, in clear: packed into the module's spare block
       (py_scratch.h), which is wiped when it is given back. */
    ck_scratch_take(st, &packed, 1);
    ck_buf_init(&out);
    if (ck_py_keyring_parse_args(encode ? "seal_value" : "seal", args, nargs, kwnames,
                                 encode ? NULL : "serializer", &serializer, &a) < 0) {
        goto error;
    }
    if (serializer < 1 || serializer > 3) {
        PyErr_SetString(PyExc_ValueError, "serializer must be 1 (msgpack), 2 (json) or 3 (arrow)");
        goto error;
    }
    if (encode) {
        if (ck_py_pack(st, a.slots[0], &packed, 0) < 0) {
            goto error;
        }
        pt = packed.data;
        n = packed.len;
    } else {
        if (PyObject_GetBuffer(a.slots[0], &in, PyBUF_SIMPLE) < 0) {
            goto error;
        }
        pt = in.buf;
        n = (size_t)in.len;
        /* The GIL is released around the cipher only when the input cannot change. */
        hooks = in.readonly ? &ck_gil_hooks : &ck_gil_hooks_wait_only;
    }
    /* The entry is sealed straight into the result: its header is at most
       255 bytes (header_len is one byte), the ciphertext as long as pt. */
    if (n > (size_t)PY_SSIZE_T_MAX - 255) {
        PyErr_SetString(PyExc_ValueError, "value too large to seal");
        goto error;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n + 255));
    if (result == NULL) {
        goto error;
    }
    ck_buf_init_fixed(&out, (unsigned char *)PyBytes_AS_STRING(result), n + 255);
    if (ck_keyring_seal(self->kr, a.tenant, a.cache_key, (uint8_t)serializer, pt, n, hooks, &out,
                        &err) < 0) {
        Py_CLEAR(result);
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    if (_PyBytes_Resize(&result, (Py_ssize_t)out.len) < 0) {
        goto error; /* result was released */
    }
error:
    ck_scratch_give(st, &packed); /* wipes */
    ck_buf_free(&out);
    PyBuffer_Release(&in);
    PyBuffer_Release(&a.key);
    return result;
}

static PyObject *keyring_seal(ck_keyring_object *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return seal_impl(self, args, nargs, kwnames, 0);
}

static PyObject *keyring_seal_value(ck_keyring_object *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
{
    return seal_impl(self, args, nargs, kwnames, 1);
}

PyObject *ck_keyring_open_to_value(ck_state *st, ck_keyring *kr, const unsigned char *entry,
                                   size_t n, size_t max_size, ck_span tenant, ck_span cache_key,
                                   const ck_unlock_hooks *hooks, PyObject *types)
{
    PyObject *value = NULL;
    uint8_t serializer = 0;
    ck_error err;
    ck_buf pt;

    ck_scratch_take(st, &pt, 1); /* the plaintext; wiped when given back */
    if (ck_keyring_open(kr, entry, n, max_size, tenant, cache_key, hooks, &pt, &serializer,
                        &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto done;
    }
    if (serializer != CK_SER_MSGPACK) {
        PyErr_Format(st->IntegrityError, "entry uses serializer %u, not msgpack", serializer);
        goto done;
    }
    value = ck_py_unpack_types(st, pt.data, pt.len, types);
done:
    ck_scratch_give(st, &pt); /* wipes */
    return value;
}

PyDoc_STRVAR(open_doc, "open($self, entry, /, tenant='default', cache_key=b'', max_size=104857600)\n"
                       "--\n\nAuthenticate and decrypt an entry; return (serializer, plaintext).\n"
                       "DecryptionError when it does not authenticate for this tenant and key.");

PyDoc_STRVAR(open_value_doc,
             "open_value($self, entry, /, tenant='default', cache_key=b'', max_size=104857600)\n"
             "--\n\nAuthenticate, decrypt and decode an entry written by seal_value.");

/* open() and open_value(): the same arguments; decode picks the result. */
static PyObject *open_impl(ck_keyring_object *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, int decode)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_buffer entry = {0};
    Py_ssize_t max_size = (Py_ssize_t)CK_ENTRY_DEFAULT_MAX_SIZE;
    PyObject *result = NULL;
    uint8_t serializer = 0;
    const ck_unlock_hooks *hooks;
    keyring_args a;
    ck_buf pt;
    ck_error err;

    ck_scratch_take(st, &pt, 1); /* the plaintext; wiped when given back */
    if (ck_py_keyring_parse_args(decode ? "open_value" : "open", args, nargs, kwnames,
                                 "max_size", &max_size, &a) < 0) {
        goto error;
    }
    if (max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "max_size must be >= 0");
        goto error;
    }
    if (PyObject_GetBuffer(a.slots[0], &entry, PyBUF_SIMPLE) < 0) {
        goto error;
    }
    /* The GIL is released around the cipher only when the input cannot change. */
    hooks = entry.readonly ? &ck_gil_hooks : &ck_gil_hooks_wait_only;
    if (decode) {
        result = ck_keyring_open_to_value(st, self->kr, entry.buf, (size_t)entry.len,
                                          (size_t)max_size, a.tenant, a.cache_key, hooks, NULL);
        goto error;
    }
    if (ck_keyring_open(self->kr, entry.buf, (size_t)entry.len, (size_t)max_size, a.tenant,
                        a.cache_key, hooks, &pt, &serializer, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto error;
    }
    result = Py_BuildValue("(iy#)", serializer, (const char *)pt.data, (Py_ssize_t)pt.len);
error:
    ck_scratch_give(st, &pt); /* wipes */
    PyBuffer_Release(&entry);
    PyBuffer_Release(&a.key);
    return result;
}

static PyObject *keyring_open(ck_keyring_object *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return open_impl(self, args, nargs, kwnames, 0);
}

static PyObject *keyring_open_value(ck_keyring_object *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
{
    return open_impl(self, args, nargs, kwnames, 1);
}

PyDoc_STRVAR(stats_doc, "stats($self, /)\n--\n\nCounters of the key caches (no key material).");

static PyObject *keyring_stats(ck_keyring_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_keyring_stats s;

    ck_keyring_get_stats(self->kr, &s);
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:n,s:n}", "deks_created",
                         (unsigned long long)s.deks_created, "deks_unwrapped",
                         (unsigned long long)s.deks_unwrapped, "kek_derivations",
                         (unsigned long long)s.kek_derivations, "fork_resets",
                         (unsigned long long)s.fork_resets, "messages",
                         (unsigned long long)s.messages, "tenants", (Py_ssize_t)s.tenants,
                         "read_keys", (Py_ssize_t)s.read_keys);
}

PyDoc_STRVAR(reset_doc, "reset($self, /)\n--\n\nWipe every cached KEK and data key; the next\n"
                        "write generates fresh data keys.");

static PyObject *keyring_reset(ck_keyring_object *self, PyObject *Py_UNUSED(ignored))
{
    ck_keyring_reset(self->kr);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(advance_doc, "_advance_clock($self, seconds, /)\n--\n\n"
                          "Tests only: move the clock that ages data keys forward.");

static PyObject *keyring_advance(ck_keyring_object *self, PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    uint64_t ns;

    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (ck_seconds_to_ns(seconds, "seconds", &ns) < 0) {
        return NULL;
    }
    ck_keyring_advance_clock(self->kr, ns);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(l1_key_doc, "_l1_key($self, key, /)\n--\n\n"
                         "Tests only: the L1 key @cache.secure stores for these key bytes.");

static PyObject *keyring_l1_key(ck_keyring_object *self, PyObject *arg)
{
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    unsigned char mac[CK_KEYRING_L1_KEY_LEN];
    PyObject *result = NULL;
    Py_buffer key = {0};
    ck_error err;

    if (PyObject_GetBuffer(arg, &key, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (ck_keyring_l1_key(self->kr, key.buf, (size_t)key.len, mac, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    result = PyBytes_FromStringAndSize((const char *)mac, sizeof(mac));
error:
    PyBuffer_Release(&key);
    return result;
}

static PyObject *keyring_fingerprint(ck_keyring_object *self, void *Py_UNUSED(closure))
{
    return fingerprint_hex(self, 0);
}

static PyObject *keyring_previous_fingerprints(ck_keyring_object *self,
                                               void *Py_UNUSED(closure))
{
    size_t i, n = ck_keyring_master_count(self->kr);
    PyObject *res = PyTuple_New((Py_ssize_t)(n - 1));

    for (i = 1; res != NULL && i < n; i++) {
        PyObject *fp = fingerprint_hex(self, i);
        if (fp == NULL) {
            Py_CLEAR(res);
            break;
        }
        PyTuple_SET_ITEM(res, (Py_ssize_t)(i - 1), fp);
    }
    return res;
}

static PyMethodDef keyring_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))keyring_seal, METH_FASTCALL | METH_KEYWORDS, seal_doc},
    {"open", (PyCFunction)(void (*)(void))keyring_open, METH_FASTCALL | METH_KEYWORDS, open_doc},
    {"seal_value", (PyCFunction)(void (*)(void))keyring_seal_value, METH_FASTCALL | METH_KEYWORDS,
     seal_value_doc},
    {"open_value", (PyCFunction)(void (*)(void))keyring_open_value, METH_FASTCALL | METH_KEYWORDS,
     open_value_doc},
    {"stats", (PyCFunction)keyring_stats, METH_NOARGS, stats_doc},
    {"reset", (PyCFunction)keyring_reset, METH_NOARGS, reset_doc},
    {"_advance_clock", (PyCFunction)keyring_advance, METH_O, advance_doc},
    {"_l1_key", (PyCFunction)keyring_l1_key, METH_O, l1_key_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *keyring_has_master_key(ck_keyring_object *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(ck_keyring_has_master(self->kr));
}

static PyGetSetDef keyring_getset[] = {
    {"has_master_key", (getter)keyring_has_master_key, NULL,
     "True when the keys come from a master key (so shared L2 entries can be named by a MAC "
     "derived from it); False with an external key provider.",
     NULL},
    {"fingerprint", (getter)keyring_fingerprint, NULL,
     "Hex fingerprint of the current master key (one-way; safe to log).", NULL},
    {"previous_fingerprints", (getter)keyring_previous_fingerprints, NULL,
     "Fingerprints of the previous (decrypt-only) master keys.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(keyring_doc,
             "Keyring(master_key=None, previous_keys=(), *, provider=None, dek_max_age=3600.0,\n"
             "        dek_max_messages=2**32, dek_max_bytes=2**36, read_max_age=3600.0,\n"
             "        read_capacity=1024, tenant_capacity=1024, compress_min=0)\n--\n\n"
             "Master keys (raw bytes, >= 32) or an external key provider, and the\n"
             "data-key caches of @cache.secure. compress_min > 0 compresses (LZ4)\n"
             "plaintexts of at least that many bytes before encrypting them, when that\n"
             "makes them smaller: off by default, see docs/security.md.");

static PyType_Slot keyring_slots[] = {
    {Py_tp_new, keyring_new},
    {Py_tp_dealloc, keyring_dealloc},
    {Py_tp_traverse, keyring_traverse},
    {Py_tp_clear, keyring_clear},
    {Py_tp_repr, keyring_repr},
    {Py_tp_methods, keyring_methods},
    {Py_tp_getset, keyring_getset},
    {Py_tp_doc, (void *)keyring_doc},
    {0, NULL},
};

static PyType_Spec keyring_spec = {
    .name = "cachekit._core.Keyring",
    .basicsize = sizeof(ck_keyring_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = keyring_slots,
};

int ck_keyring_exec(PyObject *module)
{
    ck_state *st = ck_state_from_module(module);

    st->KeyringType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &keyring_spec, NULL);
    if (st->KeyringType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->KeyringType);
}
