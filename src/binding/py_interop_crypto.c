/*
 * py_interop_crypto.c - the encryption of interop/v1 entries for Python:
 * AAD v0x03, seal and open with the protocol's HKDF-derived key
 * (src/core/ck_interop.c), and the key fingerprint of spec/encryption.md.
 * Master keys arrive as bytes; derived keys never leave C and are wiped.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ck_crypto.h"
#include "ck_interop.h"

int ck_interop_crypto_exec(PyObject *module);

static PyObject *buf_to_bytes(ck_buf *b)
{
    return PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->len);
}

static int raise_ck(const ck_error *err)
{
    PyErr_SetString(err->code == CK_ENOMEM ? PyExc_MemoryError : PyExc_ValueError, err->msg);
    return -1;
}

PyDoc_STRVAR(seal_doc,
             "interop_seal($module, master_key, tenant_id, cache_key, plaintext, nonce=None, /)\n"
             "--\n\nnonce || AES-256-GCM(plaintext) || tag under the interop key of the tenant.");

static PyObject *py_seal(PyObject *module, PyObject *args)
{
    Py_buffer mk = {0}, pt = {0}, nonce = {0};
    const char *tenant, *key;
    Py_ssize_t tenant_n, key_n;
    PyObject *nonce_obj = Py_None, *r = NULL;
    ck_buf out;
    ck_error err;

    (void)module;
    ck_buf_init(&out);
    if (!PyArg_ParseTuple(args, "y*s#s#y*|O:interop_seal", &mk, &tenant, &tenant_n, &key, &key_n,
                          &pt, &nonce_obj)) {
        return NULL;
    }
    if (nonce_obj != Py_None) {
        if (PyObject_GetBuffer(nonce_obj, &nonce, PyBUF_SIMPLE) < 0) {
            goto error;
        }
        if (nonce.len != CK_AEAD_NONCE_LEN) {
            PyErr_SetString(PyExc_ValueError, "nonce must be 12 bytes");
            goto error;
        }
    }
    if (ck_interop_seal(mk.buf, (size_t)mk.len, tenant, (size_t)tenant_n, key, (size_t)key_n,
                        pt.buf, (size_t)pt.len, nonce.buf, &out, &err) < 0) {
        raise_ck(&err);
        goto error;
    }
    r = buf_to_bytes(&out);
error:
    ck_buf_free(&out);
    PyBuffer_Release(&mk);
    PyBuffer_Release(&pt);
    PyBuffer_Release(&nonce);
    return r;
}

PyDoc_STRVAR(open_doc,
             "interop_open($module, master_keys, tenant_id, cache_key, blob, /)\n--\n\n"
             "Plaintext of an interop ciphertext, trying each master key in order\n"
             "(keyring rule); ValueError if none authenticates it.");

static PyObject *py_open(PyObject *module, PyObject *args)
{
    Py_buffer blob = {0};
    const char *tenant, *key;
    Py_ssize_t tenant_n, key_n;
    PyObject *keys = NULL, *seq = NULL, *r = NULL;
    ck_buf out;
    ck_error err = {CK_EINVAL, "no master key"};

    (void)module;
    ck_buf_init_secret(&out);
    if (!PyArg_ParseTuple(args, "Os#s#y*:interop_open", &keys, &tenant, &tenant_n, &key, &key_n,
                          &blob)) {
        return NULL;
    }
    seq = PySequence_Fast(keys, "master_keys must be a sequence of bytes");
    if (seq == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *k = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(k)) {
            PyErr_SetString(PyExc_TypeError, "master_keys must hold bytes");
            goto error;
        }
        out.len = 0;
        if (ck_interop_open((const unsigned char *)PyBytes_AS_STRING(k),
                            (size_t)PyBytes_GET_SIZE(k), tenant, (size_t)tenant_n, key,
                            (size_t)key_n, blob.buf, (size_t)blob.len, &out, &err) == 0) {
            r = buf_to_bytes(&out);
            goto error;
        }
        if (err.code != CK_EAUTH) {
            break; /* malformed entry or bad tenant: no other key can help */
        }
    }
    raise_ck(&err);
error:
    Py_XDECREF(seq);
    ck_buf_free(&out);
    PyBuffer_Release(&blob);
    return r;
}

PyDoc_STRVAR(fp_doc, "interop_key_fingerprint($module, master_key, tenant_id, /)\n--\n\n"
                     "SHA-256(\"key_fingerprint_v1\" || derived key)[:16].");

static PyObject *py_fingerprint(PyObject *module, PyObject *args)
{
    Py_buffer mk = {0};
    const char *tenant;
    Py_ssize_t tenant_n;
    unsigned char dk[32], fp[16];
    ck_error err;
    PyObject *r = NULL;

    (void)module;
    if (!PyArg_ParseTuple(args, "y*s#:interop_key_fingerprint", &mk, &tenant, &tenant_n)) {
        return NULL;
    }
    if (ck_interop_derive_key(mk.buf, (size_t)mk.len, tenant, (size_t)tenant_n, dk, &err) < 0 ||
        ck_interop_fingerprint(dk, fp, &err) < 0) {
        raise_ck(&err);
    } else {
        r = PyBytes_FromStringAndSize((const char *)fp, sizeof(fp));
    }
    ck_wipe(dk, sizeof(dk));
    PyBuffer_Release(&mk);
    return r;
}

PyDoc_STRVAR(aad_doc, "interop_aad($module, tenant_id, cache_key, /)\n--\n\n"
                      "AAD v0x03 of an interop entry (format msgpack, compressed False).");

static PyObject *py_aad(PyObject *module, PyObject *args)
{
    const char *tenant, *key;
    Py_ssize_t tenant_n, key_n;
    PyObject *r = NULL;
    ck_buf b;

    (void)module;
    if (!PyArg_ParseTuple(args, "s#s#:interop_aad", &tenant, &tenant_n, &key, &key_n)) {
        return NULL;
    }
    ck_buf_init(&b);
    if (ck_interop_aad(&b, tenant, (size_t)tenant_n, key, (size_t)key_n) < 0) {
        PyErr_NoMemory();
    } else {
        r = buf_to_bytes(&b);
    }
    ck_buf_free(&b);
    return r;
}

static PyMethodDef interop_crypto_functions[] = {
    {"interop_aad", (PyCFunction)py_aad, METH_VARARGS, aad_doc},
    {"interop_seal", (PyCFunction)py_seal, METH_VARARGS, seal_doc},
    {"interop_open", (PyCFunction)py_open, METH_VARARGS, open_doc},
    {"interop_key_fingerprint", (PyCFunction)py_fingerprint, METH_VARARGS, fp_doc},
    {NULL, NULL, 0, NULL},
};

int ck_interop_crypto_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, interop_crypto_functions);
}
