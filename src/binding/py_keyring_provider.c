/*
 * py_keyring_provider.c - the bridge from a Python key provider (AWS KMS,
 * or any KeyProvider) to the ck_key_provider callbacks of ck_keyring: the
 * calls into generate_data_key and decrypt_data_key, the copy (and wipe)
 * of the keys they return, and their exceptions turned into ck_error.
 *
 * The callbacks run with the GIL held and no keyring lock (ck_keyring.h).
 */
#include "py_keyring_internal.h"

#include <string.h>

/* ------------------------------------------------- external key providers */

/* Turn the current Python exception from a provider into err and clear it.
   A provider saying the wrapped key is invalid (KMS InvalidCiphertext) is an
   authentication failure; anything else is a provider failure. */
static void provider_error(ck_error *err, const char *method)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL, *text = NULL;
    const char *name, *msg = "";

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    name = type != NULL ? ((PyTypeObject *)type)->tp_name : "error";
    if (value != NULL && (text = PyObject_Str(value)) != NULL) {
        msg = PyUnicode_AsUTF8(text);
        if (msg == NULL) {
            PyErr_Clear();
            msg = "";
        }
    } else {
        PyErr_Clear();
    }
    ck_error_set(err, strstr(name, "InvalidCiphertext") != NULL ? CK_EAUTH : CK_ECRYPTO,
                 "key provider %s failed: %s: %.80s", method, name, msg);
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* {"cachekit:tenant": tenant}: the encryption context a provider binds. */
static PyObject *provider_context(ck_span tenant)
{
    PyObject *t = PyUnicode_DecodeUTF8((const char *)tenant.p, (Py_ssize_t)tenant.n, "strict");
    PyObject *ctx = NULL;

    if (t != NULL) {
        ctx = Py_BuildValue("{s:O}", "cachekit:tenant", t);
        Py_DECREF(t);
    }
    return ctx;
}

/* Copy a provider's 32-byte plaintext key out of obj, wiping obj if it is
   writable (a bytearray); immutable bytes cannot be wiped (docs/security.md). */
static int take_key(PyObject *obj, unsigned char dek[CK_AEAD_KEY_LEN], ck_error *err)
{
    Py_buffer b = {0};
    int rc = -1;

    if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return ck_error_set(err, CK_ECRYPTO, "key provider returned a key that is not bytes");
    }
    if (b.len != CK_AEAD_KEY_LEN) {
        ck_error_set(err, CK_ECRYPTO, "key provider returned a %zd-byte key, not 32", b.len);
        goto error;
    }
    memcpy(dek, b.buf, CK_AEAD_KEY_LEN);
    if (!b.readonly) {
        ck_wipe(b.buf, (size_t)b.len);
    }
    rc = 0;
error:
    PyBuffer_Release(&b);
    return rc;
}

static int py_generate(void *ctx, ck_span tenant, unsigned char dek[CK_AEAD_KEY_LEN],
                       unsigned char *wrapped, size_t *wrapped_len, ck_error *err)
{
    PyObject *context = NULL, *res = NULL;
    Py_buffer w = {0};
    int rc = -1;

    context = provider_context(tenant);
    if (context == NULL) {
        provider_error(err, "generate_data_key");
        goto error;
    }
    res = PyObject_CallMethod((PyObject *)ctx, "generate_data_key", "O", context);
    if (res == NULL) {
        provider_error(err, "generate_data_key");
        goto error;
    }
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        ck_error_set(err, CK_ECRYPTO, "generate_data_key must return (plaintext, wrapped)");
        goto error;
    }
    if (take_key(PyTuple_GET_ITEM(res, 0), dek, err) < 0) {
        goto error;
    }
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(res, 1), &w, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        ck_error_set(err, CK_ECRYPTO, "key provider returned a wrapped key that is not bytes");
        goto error;
    }
    if (w.len == 0 || (size_t)w.len > *wrapped_len) {
        ck_error_set(err, CK_ELIMIT, "wrapped data key of %zd bytes (1..%zu fit an entry)", w.len,
                     *wrapped_len);
        goto error;
    }
    memcpy(wrapped, w.buf, (size_t)w.len);
    *wrapped_len = (size_t)w.len;
    rc = 0;
error:
    if (rc < 0) {
        ck_wipe(dek, CK_AEAD_KEY_LEN);
    }
    PyBuffer_Release(&w);
    Py_XDECREF(res);
    Py_XDECREF(context);
    return rc;
}

static int py_unwrap(void *ctx, ck_span tenant, ck_span wrapped, unsigned char dek[CK_AEAD_KEY_LEN],
                     ck_error *err)
{
    PyObject *context = NULL, *blob = NULL, *res = NULL;
    int rc = -1;

    context = provider_context(tenant);
    blob = PyBytes_FromStringAndSize((const char *)wrapped.p, (Py_ssize_t)wrapped.n);
    if (context == NULL || blob == NULL) {
        provider_error(err, "decrypt_data_key");
        goto error;
    }
    res = PyObject_CallMethod((PyObject *)ctx, "decrypt_data_key", "OO", blob, context);
    if (res == NULL) {
        provider_error(err, "decrypt_data_key");
        goto error;
    }
    rc = take_key(res, dek, err);
error:
    Py_XDECREF(res);
    Py_XDECREF(blob);
    Py_XDECREF(context);
    return rc;
}

/* ------------------------------------------------------------ the bridge */

/* Build self->kr around a Python provider: provider_id (2..255), key_id
   (str), generate_data_key(context), decrypt_data_key(wrapped, context).
   Returns 0 (self->kr may still be NULL with err set), or -1 with a Python
   exception. */
int ck_py_keyring_make_external(ck_keyring_object *self, PyObject *provider,
                                const ck_keyring_limits *lim, ck_error *err)
{
    PyObject *id_obj = NULL, *key_id = NULL;
    const char *key_id_utf8;
    Py_ssize_t key_id_len;
    ck_key_provider p;
    long id;
    int rc = -1;

    id_obj = PyObject_GetAttrString(provider, "provider_id");
    key_id = PyObject_GetAttrString(provider, "key_id");
    if (id_obj == NULL || key_id == NULL) {
        goto error;
    }
    id = PyLong_AsLong(id_obj);
    if (id == -1 && PyErr_Occurred()) {
        goto error;
    }
    if (id < 2 || id > 255 || !PyUnicode_Check(key_id)) {
        PyErr_SetString(PyExc_ValueError,
                        "a key provider needs provider_id in 2..255 and a str key_id");
        goto error;
    }
    key_id_utf8 = PyUnicode_AsUTF8AndSize(key_id, &key_id_len);
    if (key_id_utf8 == NULL) {
        goto error;
    }
    p.id = (uint8_t)id;
    p.ctx = provider;
    p.generate = py_generate;
    p.unwrap = py_unwrap;
    self->provider = Py_NewRef(provider);
    self->kr = ck_keyring_new_external(
        &p, (ck_span){(const unsigned char *)key_id_utf8, (size_t)key_id_len}, lim, err);
    rc = 0;
error:
    Py_XDECREF(id_obj);
    Py_XDECREF(key_id);
    return rc;
}
