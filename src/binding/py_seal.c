/*
 * py_seal.c - Python access to encrypted entries (ck_seal.c).
 *
 * Low-level and private (_seal_entry, _open_entry): the caller supplies the
 * data key. They exist so the format can be tested and cross-checked with
 * another AES-GCM implementation; @cache.secure keeps its data keys in C and
 * never passes them through Python objects.
 */
#include "module_state.h"

#include "ck_seal.h"
#include "py_codec.h"
#include "py_keyring.h"

#define CK_SEAL_DEFAULT_MAX_SIZE CK_ENTRY_DEFAULT_MAX_SIZE

static int check_len(const Py_buffer *b, Py_ssize_t want, const char *what)
{
    if (b->len != want) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes, got %zd", what, want, b->len);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(seal_doc,
             "_seal_entry($module, value, /, *, dek, nonce, key_fp, wrapped_dek, provider=1,\n"
             "            tenant='', cache_key=b'')\n--\n\n"
             "Serialize value with the msgpack codec and return it as an encrypted\n"
             "entry under the 32-byte data key dek (testing and interop only).");

static PyObject *seal_entry(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "dek", "nonce", "key_fp", "wrapped_dek", "provider",
                             "tenant", "cache_key", NULL};
    ck_state *st = ck_state_from_module(module);
    PyObject *value, *result = NULL;
    Py_buffer dek = {0}, nonce = {0}, fp = {0}, wrapped = {0}, key = {0};
    const char *tenant = "";
    Py_ssize_t tenant_len = 0;
    int provider = CK_PROVIDER_LOCAL;
    ck_aead *aead = NULL;
    ck_seal_params p = {.expires_at_ms = 0};
    ck_span t, k;
    ck_buf plain, out;
    ck_error err;

    ck_buf_init_secret(&plain);
    ck_buf_init(&out);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$y*y*y*y*is#y*:_seal_entry", kwlist, &value,
                                     &dek, &nonce, &fp, &wrapped, &provider, &tenant,
                                     &tenant_len, &key)) {
        goto error;
    }
    if (dek.buf == NULL || nonce.buf == NULL || fp.buf == NULL || wrapped.buf == NULL) {
        PyErr_SetString(PyExc_TypeError, "dek, nonce, key_fp and wrapped_dek are required");
        goto error;
    }
    if (check_len(&dek, CK_AEAD_KEY_LEN, "dek") < 0 ||
        check_len(&nonce, CK_AEAD_NONCE_LEN, "nonce") < 0 ||
        check_len(&fp, CK_SEAL_FP_LEN, "key_fp") < 0) {
        goto error;
    }
    if (provider < 0 || provider > 255) {
        PyErr_SetString(PyExc_ValueError, "provider must be 0..255");
        goto error;
    }
    if (ck_py_pack(st, value, &plain, 0) < 0) {
        goto error;
    }
    aead = ck_aead_new(dek.buf, &err);
    if (aead == NULL) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    memcpy(p.key_fp, fp.buf, CK_SEAL_FP_LEN);
    memcpy(p.nonce, nonce.buf, CK_AEAD_NONCE_LEN);
    p.provider = (uint8_t)provider;
    p.wrapped.p = wrapped.buf;
    p.wrapped.n = (size_t)wrapped.len;
    t.p = (const unsigned char *)tenant;
    t.n = (size_t)tenant_len;
    k.p = key.buf;
    k.n = key.buf == NULL ? 0 : (size_t)key.len;
    if (ck_seal(aead, &p, CK_SER_MSGPACK, plain.data, plain.len, t, k, &out, &err) < 0) {
        if (err.code == CK_EINVAL) {
            PyErr_Format(PyExc_ValueError, "%s", err.msg);
        } else {
            ck_raise_crypto_error(st, &err, 0);
        }
        goto error;
    }
    result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
error:
    ck_aead_free(aead);
    ck_buf_free(&plain); /* wipes */
    ck_buf_free(&out);
    PyBuffer_Release(&dek);
    PyBuffer_Release(&nonce);
    PyBuffer_Release(&fp);
    PyBuffer_Release(&wrapped);
    PyBuffer_Release(&key);
    return result;
}

PyDoc_STRVAR(open_doc,
             "_open_entry($module, entry, /, *, dek, tenant='', cache_key=b'',\n"
             "            max_size=104857600)\n--\n\n"
             "Authenticate and decrypt an encrypted entry with the 32-byte data key\n"
             "dek and return its value. DecryptionError when authentication fails,\n"
             "IntegrityError when the entry is malformed (testing and interop only).");

static PyObject *open_entry(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "dek", "tenant", "cache_key", "max_size", NULL};
    ck_state *st = ck_state_from_module(module);
    Py_buffer entry = {0}, dek = {0}, key = {0};
    const char *tenant = "";
    Py_ssize_t tenant_len = 0, max_size = (Py_ssize_t)CK_SEAL_DEFAULT_MAX_SIZE;
    unsigned char *pt = NULL;
    PyObject *result = NULL;
    ck_aead *aead = NULL;
    ck_sealed s;
    ck_span t, k;
    ck_error err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|$y*s#y*n:_open_entry", kwlist, &entry,
                                     &dek, &tenant, &tenant_len, &key, &max_size)) {
        goto error;
    }
    if (dek.buf == NULL) {
        PyErr_SetString(PyExc_TypeError, "dek is required");
        goto error;
    }
    if (check_len(&dek, CK_AEAD_KEY_LEN, "dek") < 0) {
        goto error;
    }
    if (max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "max_size must be >= 0");
        goto error;
    }
    if (ck_sealed_parse(entry.buf, (size_t)entry.len, (size_t)max_size, &s, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto error;
    }
    pt = PyMem_Malloc(s.plaintext_len ? s.plaintext_len : 1);
    if (pt == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    aead = ck_aead_new(dek.buf, &err);
    if (aead == NULL) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    t.p = (const unsigned char *)tenant;
    t.n = (size_t)tenant_len;
    k.p = key.buf;
    k.n = key.buf == NULL ? 0 : (size_t)key.len;
    if (ck_sealed_open(aead, &s, t, k, pt, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto error;
    }
    if (s.h.serializer != CK_SER_MSGPACK) {
        PyErr_Format(st->IntegrityError, "entry uses serializer %u, not msgpack", s.h.serializer);
        goto error;
    }
    result = ck_py_unpack(st, pt, s.plaintext_len);
error:
    ck_aead_free(aead);
    if (pt != NULL) {
        ck_wipe(pt, s.plaintext_len);
        PyMem_Free(pt);
    }
    PyBuffer_Release(&entry);
    PyBuffer_Release(&dek);
    PyBuffer_Release(&key);
    return result;
}

PyDoc_STRVAR(read_sealed_doc,
             "read_sealed_header($module, entry, /)\n--\n\n"
             "Parse the header and crypto block of an encrypted entry without\n"
             "decrypting: key_fp, provider, wrapped_dek, nonce, tag, serializer,\n"
             "header_len, ciphertext_len.");

static PyObject *read_sealed_header(PyObject *module, PyObject *arg)
{
    ck_state *st = ck_state_from_module(module);
    Py_buffer entry = {0};
    PyObject *result = NULL;
    ck_sealed s;
    ck_error err;

    if (PyObject_GetBuffer(arg, &entry, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (ck_sealed_parse(entry.buf, (size_t)entry.len, SIZE_MAX, &s, &err) < 0) {
        ck_raise_crypto_error(st, &err, 1);
        goto error;
    }
    result = Py_BuildValue("{s:y#,s:i,s:y#,s:y#,s:y#,s:i,s:i,s:n}", "key_fp",
                           (const char *)s.key_fp, (Py_ssize_t)CK_SEAL_FP_LEN, "provider",
                           s.provider, "wrapped_dek", (const char *)s.wrapped.p,
                           (Py_ssize_t)s.wrapped.n, "nonce", (const char *)s.nonce,
                           (Py_ssize_t)CK_AEAD_NONCE_LEN, "tag", (const char *)s.tag,
                           (Py_ssize_t)CK_AEAD_TAG_LEN, "serializer", s.h.serializer,
                           "header_len", s.h.header_len, "ciphertext_len",
                           (Py_ssize_t)s.ciphertext.n);
error:
    PyBuffer_Release(&entry);
    return result;
}

static PyMethodDef seal_functions[] = {
    {"_seal_entry", (PyCFunction)(void (*)(void))seal_entry, METH_VARARGS | METH_KEYWORDS,
     seal_doc},
    {"_open_entry", (PyCFunction)(void (*)(void))open_entry, METH_VARARGS | METH_KEYWORDS,
     open_doc},
    {"read_sealed_header", (PyCFunction)read_sealed_header, METH_O, read_sealed_doc},
    {NULL, NULL, 0, NULL},
};

int ck_seal_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, seal_functions);
}
