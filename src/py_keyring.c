/*
 * py_keyring.c - Keyring: master keys and data-key caches of @cache.secure
 * as a Python object (see ck_keyring.h).
 *
 * Key material enters as a buffer, is copied into C memory and never comes
 * back out: no method returns a key, repr shows only the fingerprint, and
 * the type cannot be pickled. Dropping the object wipes every key.
 */
#include "py_keyring.h"

#include <math.h>

#include "py_codec.h"

static void *gil_leave(void)
{
    return PyEval_SaveThread();
}

static void gil_enter(void *state)
{
    PyEval_RestoreThread((PyThreadState *)state);
}

const ck_unlock_hooks ck_gil_hooks = {CK_KEYRING_NOGIL_MIN, gil_leave, gil_enter};

void ck_raise_crypto_error(ck_state *st, const ck_error *err, int opening)
{
    if (err->code == CK_ENOMEM) {
        PyErr_NoMemory();
    } else if (err->code == CK_EAUTH) {
        PyErr_Format(st->DecryptionError, "decryption failed: %s", err->msg);
    } else if (opening || err->code == CK_EFORMAT || err->code == CK_ECHECKSUM) {
        /* Anything else wrong with stored bytes is a malformed entry. */
        PyErr_Format(st->IntegrityError, "%s", err->msg);
    } else {
        PyErr_Format(st->EncryptionError, "%s", err->msg);
    }
}

static int seconds_to_ns(double seconds, const char *name, uint64_t *ns)
{
    if (!(seconds > 0) || !isfinite(seconds) || seconds > 1.8e10) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive number of seconds", name);
        return -1;
    }
    *ns = (uint64_t)(seconds * 1e9);
    if (*ns == 0) {
        *ns = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------- new */

static PyObject *keyring_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"master_key",       "previous_keys",   "dek_max_age",
                             "dek_max_messages", "dek_max_bytes",   "read_max_age",
                             "read_capacity",    "tenant_capacity", NULL};
    ck_state *st = ck_state_from_type(type);
    Py_buffer master = {0}, prev = {0};
    PyObject *previous = NULL, *seq = NULL;
    double dek_max_age = 3600.0, read_max_age = 3600.0;
    unsigned long long max_messages = CK_KEYRING_MAX_MESSAGES, max_bytes = (1ULL << 36);
    Py_ssize_t read_capacity = 1024, tenant_capacity = 1024, i;
    ck_keyring_object *self = NULL;
    ck_keyring_limits lim;
    ck_error err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|O$dKKdnn:Keyring", kwlist, &master,
                                     &previous, &dek_max_age, &max_messages, &max_bytes,
                                     &read_max_age, &read_capacity, &tenant_capacity)) {
        return NULL;
    }
    if (seconds_to_ns(dek_max_age, "dek_max_age", &lim.dek_max_age_ns) < 0 ||
        seconds_to_ns(read_max_age, "read_max_age", &lim.read_max_age_ns) < 0) {
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

    self = (ck_keyring_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        goto error;
    }
    self->kr = ck_keyring_new(master.buf, (size_t)master.len, &lim, &err);
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

static void keyring_dealloc(ck_keyring_object *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    ck_keyring_free(self->kr); /* wipes every key */
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

static PyObject *keyring_seal(ck_keyring_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "tenant", "cache_key", "serializer", NULL};
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_buffer pt = {0}, key = {0};
    const char *tenant = "default";
    Py_ssize_t tenant_len = 7;
    int serializer = CK_SER_MSGPACK;
    PyObject *result = NULL;
    ck_span t, k;
    ck_buf out;
    ck_error err;

    ck_buf_init(&out);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|s#y*i:seal", kwlist, &pt, &tenant,
                                     &tenant_len, &key, &serializer)) {
        return NULL;
    }
    if (serializer < 1 || serializer > 3) {
        PyErr_SetString(PyExc_ValueError, "serializer must be 1 (msgpack), 2 (json) or 3 (arrow)");
        goto error;
    }
    t.p = (const unsigned char *)tenant;
    t.n = (size_t)tenant_len;
    k.p = key.buf;
    k.n = key.buf == NULL ? 0 : (size_t)key.len;
    /* GIL released for large values only when the input cannot change. */
    if (ck_keyring_seal(self->kr, t, k, (uint8_t)serializer, pt.buf, (size_t)pt.len,
                        pt.readonly ? &ck_gil_hooks : NULL, &out, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
error:
    ck_buf_free(&out);
    PyBuffer_Release(&pt);
    PyBuffer_Release(&key);
    return result;
}

PyDoc_STRVAR(open_doc, "open($self, entry, /, tenant='default', cache_key=b'', max_size=104857600)\n"
                       "--\n\nAuthenticate and decrypt an entry; return (serializer, plaintext).\n"
                       "DecryptionError when it does not authenticate for this tenant and key.");

static PyObject *keyring_open(ck_keyring_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "tenant", "cache_key", "max_size", NULL};
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_buffer entry = {0}, key = {0};
    const char *tenant = "default";
    Py_ssize_t tenant_len = 7, max_size = (Py_ssize_t)CK_ENTRY_DEFAULT_MAX_SIZE;
    PyObject *result = NULL;
    uint8_t serializer = 0;
    ck_span t, k;
    ck_buf pt;
    ck_error err;

    ck_buf_init(&pt);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|s#y*n:open", kwlist, &entry, &tenant,
                                     &tenant_len, &key, &max_size)) {
        return NULL;
    }
    if (max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "max_size must be >= 0");
        goto error;
    }
    t.p = (const unsigned char *)tenant;
    t.n = (size_t)tenant_len;
    k.p = key.buf;
    k.n = key.buf == NULL ? 0 : (size_t)key.len;
    if (ck_keyring_open(self->kr, entry.buf, (size_t)entry.len, (size_t)max_size, t, k,
                        entry.readonly ? &ck_gil_hooks : NULL, &pt, &serializer, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto error;
    }
    result = Py_BuildValue("(iy#)", serializer, (const char *)pt.data, (Py_ssize_t)pt.len);
error:
    ck_wipe(pt.data, pt.len);
    ck_buf_free(&pt);
    PyBuffer_Release(&entry);
    PyBuffer_Release(&key);
    return result;
}

PyDoc_STRVAR(seal_value_doc,
             "seal_value($self, value, /, tenant='default', cache_key=b'')\n--\n\n"
             "Serialize value with the msgpack codec and encrypt it: what @cache.secure\n"
             "stores. The serialized plaintext is wiped once sealed.");

static PyObject *keyring_seal_value(ck_keyring_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "tenant", "cache_key", NULL};
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    PyObject *value, *result = NULL;
    Py_buffer key = {0};
    const char *tenant = "default";
    Py_ssize_t tenant_len = 7;
    ck_span t, k;
    ck_buf pt, out;
    ck_error err;

    ck_buf_init(&pt);
    ck_buf_init(&out);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|s#y*:seal_value", kwlist, &value, &tenant,
                                     &tenant_len, &key)) {
        return NULL;
    }
    if (ck_py_pack(st, value, &pt, 0) < 0) {
        goto error;
    }
    t.p = (const unsigned char *)tenant;
    t.n = (size_t)tenant_len;
    k.p = key.buf;
    k.n = key.buf == NULL ? 0 : (size_t)key.len;
    if (ck_keyring_seal(self->kr, t, k, CK_SER_MSGPACK, pt.data, pt.len, &ck_gil_hooks, &out,
                        &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
error:
    ck_wipe(pt.data, pt.len);
    ck_buf_free(&pt);
    ck_buf_free(&out);
    PyBuffer_Release(&key);
    return result;
}

PyDoc_STRVAR(open_value_doc,
             "open_value($self, entry, /, tenant='default', cache_key=b'', max_size=104857600)\n"
             "--\n\nAuthenticate, decrypt and decode an entry written by seal_value.");

static PyObject *keyring_open_value(ck_keyring_object *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "tenant", "cache_key", "max_size", NULL};
    ck_state *st = ck_state_from_type(Py_TYPE(self));
    Py_buffer entry = {0}, key = {0};
    const char *tenant = "default";
    Py_ssize_t tenant_len = 7, max_size = (Py_ssize_t)CK_ENTRY_DEFAULT_MAX_SIZE;
    PyObject *result = NULL;
    uint8_t serializer = 0;
    ck_span t, k;
    ck_buf pt;
    ck_error err;

    ck_buf_init(&pt);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|s#y*n:open_value", kwlist, &entry,
                                     &tenant, &tenant_len, &key, &max_size)) {
        return NULL;
    }
    if (max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "max_size must be >= 0");
        goto error;
    }
    t.p = (const unsigned char *)tenant;
    t.n = (size_t)tenant_len;
    k.p = key.buf;
    k.n = key.buf == NULL ? 0 : (size_t)key.len;
    if (ck_keyring_open(self->kr, entry.buf, (size_t)entry.len, (size_t)max_size, t, k,
                        entry.readonly ? &ck_gil_hooks : NULL, &pt, &serializer, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto error;
    }
    if (serializer != CK_SER_MSGPACK) {
        PyErr_Format(st->IntegrityError, "entry uses serializer %u, not msgpack", serializer);
        goto error;
    }
    result = ck_py_unpack(st, pt.data, pt.len);
error:
    ck_wipe(pt.data, pt.len);
    ck_buf_free(&pt);
    PyBuffer_Release(&entry);
    PyBuffer_Release(&key);
    return result;
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
    if (seconds_to_ns(seconds, "seconds", &ns) < 0) {
        return NULL;
    }
    ck_keyring_advance_clock(self->kr, ns);
    Py_RETURN_NONE;
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
    {"seal", (PyCFunction)(void (*)(void))keyring_seal, METH_VARARGS | METH_KEYWORDS, seal_doc},
    {"open", (PyCFunction)(void (*)(void))keyring_open, METH_VARARGS | METH_KEYWORDS, open_doc},
    {"seal_value", (PyCFunction)(void (*)(void))keyring_seal_value, METH_VARARGS | METH_KEYWORDS,
     seal_value_doc},
    {"open_value", (PyCFunction)(void (*)(void))keyring_open_value, METH_VARARGS | METH_KEYWORDS,
     open_value_doc},
    {"stats", (PyCFunction)keyring_stats, METH_NOARGS, stats_doc},
    {"reset", (PyCFunction)keyring_reset, METH_NOARGS, reset_doc},
    {"_advance_clock", (PyCFunction)keyring_advance, METH_O, advance_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef keyring_getset[] = {
    {"fingerprint", (getter)keyring_fingerprint, NULL,
     "Hex fingerprint of the current master key (one-way; safe to log).", NULL},
    {"previous_fingerprints", (getter)keyring_previous_fingerprints, NULL,
     "Fingerprints of the previous (decrypt-only) master keys.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(keyring_doc,
             "Keyring(master_key, previous_keys=(), *, dek_max_age=3600.0,\n"
             "        dek_max_messages=2**32, dek_max_bytes=2**36, read_max_age=3600.0,\n"
             "        read_capacity=1024, tenant_capacity=1024)\n--\n\n"
             "Master keys (raw bytes, >= 32) and the data-key caches of @cache.secure.");

static PyType_Slot keyring_slots[] = {
    {Py_tp_new, keyring_new},
    {Py_tp_dealloc, keyring_dealloc},
    {Py_tp_repr, keyring_repr},
    {Py_tp_methods, keyring_methods},
    {Py_tp_getset, keyring_getset},
    {Py_tp_doc, (void *)keyring_doc},
    {0, NULL},
};

static PyType_Spec keyring_spec = {
    .name = "cachekit._core.Keyring",
    .basicsize = sizeof(ck_keyring_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
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
