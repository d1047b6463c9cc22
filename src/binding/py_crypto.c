/*
 * py_crypto.c - Python binding of AES-256-GCM and HKDF-SHA256 (ck_crypto.h).
 *
 * Owns the module functions aes256gcm_seal, aes256gcm_open and hkdf_sha256:
 * argument parsing, length checks on keys and nonces, pinning inputs with
 * Py_buffer, releasing the GIL around large seals and opens, and turning
 * ck_error into Python exceptions. All cryptography lives in ck_aead.c and
 * ck_crypto.c.
 *
 * These functions build a ck_aead per call and free it (which wipes the key
 * schedule) before returning, on every path. The entry layer keeps
 * long-lived ck_aead objects instead; these are the one-shot primitives.
 *
 * Exceptions: a failed authentication (wrong key, tampered or truncated
 * data) raises DecryptionError; any other failure of the crypto library
 * raises EncryptionError (DecryptionError's base); wrong argument types
 * raise TypeError, wrong key/nonce lengths ValueError, allocation failure
 * MemoryError. No message ever contains key bytes or user data.
 */
#include "module_state.h"

#include <stdlib.h>
#include <string.h>

#include "ck_buf.h"
#include "ck_crypto.h"
#include "py_args.h"
#include "py_keyring.h"

/* Below this many bytes AES-GCM (several GB/s with AES-NI) finishes in
   microseconds, less than dropping and retaking the GIL costs. The same
   threshold as py_format.c. */
#define CK_CRYPTO_NOGIL_MIN ((size_t)64 << 10)

#define CK_AUTH_FAILED_MSG "authentication failed: wrong key, tampered or truncated data"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Argument parsing                                                         */
/* ------------------------------------------------------------------------ */

/* Pin obj's bytes in view; an absent optional argument (NULL) leaves view
   zeroed, i.e. empty. 0, or -1 with TypeError/BufferError set. */
static int get_buffer(PyObject *obj, Py_buffer *view)
{
    if (obj == NULL) {
        return 0;
    }
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

/* Pin a buffer that must be exactly len bytes long; the message names only
   the lengths, never the bytes (it may be a key). */
static int get_fixed_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t len, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view->len != len) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes, got %zd", what, len, view->len);
        return -1;
    }
    return 0;
}

/* An absent optional buffer (view->obj == NULL) is empty, hence stable. */
static int buffer_is_stable(const Py_buffer *view)
{
    return view->obj == NULL || view->readonly;
}

/* ------------------------------------------------------------------------ */
/* Core calls, with the GIL released on large inputs                        */
/* ------------------------------------------------------------------------ */

/*
 * Safe without the GIL: every pointer is C memory the caller keeps alive
 * (pinned Py_buffers, a bytes object no other code has seen yet, a local
 * nonce copy), and the ck_aead is local to the call.
 *
 * The GIL is released only when the data and AAD are read-only: another
 * Python thread could rewrite a bytearray while we work. Sealing would
 * then authenticate a torn mix of old and new bytes as if the caller had
 * written it, and opening could hand out plaintext that differs from the
 * ciphertext the tag was checked against.
 */
static int nogil_worthwhile(size_t n, const Py_buffer *aad, const Py_buffer *in)
{
    return n + (size_t)aad->len >= CK_CRYPTO_NOGIL_MIN && buffer_is_stable(aad) &&
           buffer_is_stable(in);
}

static int seal_nogil_if_large(ck_aead *a, const unsigned char *nonce, const Py_buffer *aad,
                               const Py_buffer *pt, unsigned char *ct, unsigned char *tag,
                               ck_error *err)
{
    size_t n = (size_t)pt->len;
    int rc;

    if (!nogil_worthwhile(n, aad, pt)) {
        return ck_aead_seal(a, nonce, aad->buf, (size_t)aad->len, pt->buf, n, ct, tag, err);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_aead_seal(a, nonce, aad->buf, (size_t)aad->len, pt->buf, n, ct, tag, err);
    Py_END_ALLOW_THREADS
    return rc;
}

/* data is ciphertext || tag, at least CK_AEAD_TAG_LEN bytes long. */
static int open_nogil_if_large(ck_aead *a, const unsigned char *nonce, const Py_buffer *aad,
                               const Py_buffer *data, unsigned char *pt, ck_error *err)
{
    size_t n = (size_t)data->len - CK_AEAD_TAG_LEN;
    const unsigned char *ct = (const unsigned char *)data->buf;
    int rc;

    if (!nogil_worthwhile(n, aad, data)) {
        return ck_aead_open(a, nonce, aad->buf, (size_t)aad->len, ct, n, ct + n, pt, err);
    }
    Py_BEGIN_ALLOW_THREADS
    rc = ck_aead_open(a, nonce, aad->buf, (size_t)aad->len, ct, n, ct + n, pt, err);
    Py_END_ALLOW_THREADS
    return rc;
}

/* ------------------------------------------------------------------------ */
/* aes256gcm_seal / aes256gcm_open                                          */
/* ------------------------------------------------------------------------ */

static const char *const aead_optnames[] = {"aad"};

PyDoc_STRVAR(aes256gcm_seal_doc,
             "aes256gcm_seal($module, key, nonce, plaintext, /, aad=b'')\n--\n\n"
             "Encrypt and authenticate plaintext with AES-256-GCM -> bytes.\n\n"
             "Returns ciphertext || 16-byte tag. key must be 32 bytes and nonce 12;\n"
             "a nonce must never be reused with the same key. aad is authenticated\n"
             "but not encrypted, and must be given again to aes256gcm_open.");

static PyObject *py_aes256gcm_seal(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    ck_state *st = ck_state_from_module(module);
    PyObject *slots[4];
    Py_buffer key = {0}, nonce = {0}, pt = {0}, aad = {0};
    unsigned char nonce_copy[CK_AEAD_NONCE_LEN];
    PyObject *result = NULL;
    ck_aead *a = NULL;
    unsigned char *out;
    size_t n;
    ck_error err;

    if (ck_parse_fastcall("aes256gcm_seal", args, nargs, kwnames, 3, aead_optnames, 1, slots) < 0) {
        goto error;
    }
    if (get_fixed_buffer(slots[0], &key, CK_AEAD_KEY_LEN, "key") < 0 ||
        get_fixed_buffer(slots[1], &nonce, CK_AEAD_NONCE_LEN, "nonce") < 0 ||
        get_buffer(slots[2], &pt) < 0 || get_buffer(slots[3], &aad) < 0) {
        goto error;
    }
    if (pt.len > PY_SSIZE_T_MAX - CK_AEAD_TAG_LEN) {
        PyErr_SetString(PyExc_OverflowError, "plaintext is too large");
        goto error;
    }
    n = (size_t)pt.len;
    /* The core reads the nonce while the GIL may be released: copy it so a
       writable nonce buffer cannot change under it. */
    memcpy(nonce_copy, nonce.buf, CK_AEAD_NONCE_LEN);
    a = ck_aead_new(key.buf, &err);
    if (a == NULL) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    /* Seal straight into the bytes object: no copy of the ciphertext. */
    result = PyBytes_FromStringAndSize(NULL, pt.len + CK_AEAD_TAG_LEN);
    if (result == NULL) {
        goto error;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    if (seal_nogil_if_large(a, nonce_copy, &aad, &pt, out, out + n, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        Py_CLEAR(result);
        goto error;
    }
error:
    ck_aead_free(a);
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    PyBuffer_Release(&pt);
    PyBuffer_Release(&aad);
    return result;
}

PyDoc_STRVAR(aes256gcm_open_doc,
             "aes256gcm_open($module, key, nonce, data, /, aad=b'')\n--\n\n"
             "Verify and decrypt data (ciphertext || 16-byte tag) -> bytes.\n\n"
             "Raises DecryptionError when authentication fails: wrong key, nonce or\n"
             "aad, tampered or truncated data. No plaintext is returned unless the\n"
             "tag verifies.");

static PyObject *py_aes256gcm_open(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    ck_state *st = ck_state_from_module(module);
    PyObject *slots[4];
    Py_buffer key = {0}, nonce = {0}, data = {0}, aad = {0};
    unsigned char nonce_copy[CK_AEAD_NONCE_LEN];
    PyObject *result = NULL;
    ck_aead *a = NULL;
    size_t n;
    ck_error err;

    if (ck_parse_fastcall("aes256gcm_open", args, nargs, kwnames, 3, aead_optnames, 1, slots) < 0) {
        goto error;
    }
    if (get_fixed_buffer(slots[0], &key, CK_AEAD_KEY_LEN, "key") < 0 ||
        get_fixed_buffer(slots[1], &nonce, CK_AEAD_NONCE_LEN, "nonce") < 0 ||
        get_buffer(slots[2], &data) < 0 || get_buffer(slots[3], &aad) < 0) {
        goto error;
    }
    /* Data cut short of a tag is a truncated entry, i.e. an authentication
       failure like any other. */
    if (data.len < CK_AEAD_TAG_LEN) {
        PyErr_SetString(st->DecryptionError, CK_AUTH_FAILED_MSG);
        goto error;
    }
    n = (size_t)data.len - CK_AEAD_TAG_LEN;
    memcpy(nonce_copy, nonce.buf, CK_AEAD_NONCE_LEN);
    a = ck_aead_new(key.buf, &err);
    if (a == NULL) {
        ck_raise_crypto_error(st, &err, 0);
        goto error;
    }
    /* For n == 0 this is the shared empty bytes object; the core writes
       nothing to a zero-length output, so that is safe. */
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (result == NULL) {
        goto error;
    }
    /* On failure the core has already wiped the unauthenticated plaintext
       out of result before it is dropped. */
    if (open_nogil_if_large(a, nonce_copy, &aad, &data, (unsigned char *)PyBytes_AS_STRING(result),
                            &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        Py_CLEAR(result);
        goto error;
    }
error:
    ck_aead_free(a);
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    PyBuffer_Release(&data);
    PyBuffer_Release(&aad);
    return result;
}

/* ------------------------------------------------------------------------ */
/* hkdf_sha256                                                              */
/* ------------------------------------------------------------------------ */

static const char *const hkdf_optnames[] = {"salt", "info", "length"};

PyDoc_STRVAR(hkdf_sha256_doc,
             "hkdf_sha256($module, ikm, /, salt=b'', info=b'', length=32)\n--\n\n"
             "Derive length bytes from ikm with HKDF-SHA256 (RFC 5869) -> bytes.\n\n"
             "ikm must not be empty; length must be between 1 and 8160 (255 * 32).\n"
             "An empty salt means HashLen zero bytes, as the RFC specifies.");

static PyObject *py_hkdf_sha256(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    ck_state *st = ck_state_from_module(module);
    PyObject *slots[4];
    Py_buffer ikm = {0}, salt = {0}, info = {0};
    PyObject *result = NULL;
    Py_ssize_t length = 32;
    ck_error err;

    if (ck_parse_fastcall("hkdf_sha256", args, nargs, kwnames, 1, hkdf_optnames, 3, slots) < 0) {
        goto error;
    }
    if (slots[3] != NULL) {
        /* __index__ only, so a float length is a TypeError. */
        length = PyNumber_AsSsize_t(slots[3], PyExc_OverflowError);
        if (length == -1 && PyErr_Occurred()) {
            goto error;
        }
    }
    if (length < 1 || length > 255 * 32) {
        PyErr_SetString(PyExc_ValueError, "length must be between 1 and 8160 (255 * 32)");
        goto error;
    }
    if (get_buffer(slots[0], &ikm) < 0 || get_buffer(slots[1], &salt) < 0 ||
        get_buffer(slots[2], &info) < 0) {
        goto error;
    }
    if (ikm.len == 0) {
        PyErr_SetString(PyExc_ValueError, "ikm must not be empty");
        goto error;
    }
    result = PyBytes_FromStringAndSize(NULL, length);
    if (result == NULL) {
        goto error;
    }
    /* Derivation is microseconds of work: the GIL stays held. On failure the
       core wipes the partial output before result is dropped. */
    if (ck_hkdf_sha256(ikm.buf, (size_t)ikm.len, salt.buf, (size_t)salt.len, info.buf,
                       (size_t)info.len, (unsigned char *)PyBytes_AS_STRING(result),
                       (size_t)length, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        Py_CLEAR(result);
        goto error;
    }
error:
    PyBuffer_Release(&ikm);
    PyBuffer_Release(&salt);
    PyBuffer_Release(&info);
    return result;
}

PyDoc_STRVAR(secure_heap_used_doc,
             "secure_heap_used($module, /)\n--\n\n"
             "Bytes of OpenSSL's secure heap in use (where cachekit keeps master keys\n"
             "and AES contexts' key copies), or -1 when the process has none.");

static PyObject *py_secure_heap_used(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return PyLong_FromLong(ck_secure_used());
}

PyDoc_STRVAR(secret_buf_probe_doc,
             "_secret_buf_probe($module, secret, /)\n--\n\n"
             "Tests only: fill a ck_buf (secret mode or not) past its inline array,\n"
             "grow it off that heap block, allocate a block of the same size and\n"
             "return (reused, left): whether malloc handed the old block back, and\n"
             "how many of its bytes past the allocator's 16-byte header still hold\n"
             "the fill pattern.");

static PyObject *py_secret_buf_probe(PyObject *module, PyObject *arg)
{
    enum { FILL = 400, MARK = 0x5A, ALLOC_HEADER = 16, HOLD = 8 };
    unsigned char fill[FILL];
    unsigned char *again = NULL;
    void *hold[HOLD] = {NULL}, *fence = NULL;
    uintptr_t old_addr;
    size_t old_cap, i, left = 0;
    int secret, reused;
    ck_buf b;

    (void)module;
    secret = PyObject_IsTrue(arg);
    if (secret < 0) {
        return NULL;
    }
    memset(fill, MARK, sizeof(fill));
    /* Empty glibc's per-thread cache of 512-byte blocks (it keeps at most
       7), so the block the growth frees is the next one malloc returns. A
       NULL here or for the fence only makes reuse less likely, which the
       result reports. */
    for (i = 0; i < HOLD; i++) {
        hold[i] = malloc(2 * CK_BUF_INLINE);
    }
    if (secret) {
        ck_buf_init_secret(&b);
    } else {
        ck_buf_init(&b);
    }
    /* Inline -> a heap block of 512 bytes holding the pattern ... */
    if (ck_buf_append(&b, fill, sizeof(fill)) < 0) {
        goto nomem;
    }
    old_addr = (uintptr_t)b.data;
    old_cap = b.cap;
    /* A block right after it, so realloc cannot grow it in place. */
    fence = malloc(2 * CK_BUF_INLINE);
    /* ... which this growth leaves behind (freed, or realloc'd away). */
    if (ck_buf_reserve(&b, old_cap) < 0) {
        goto nomem;
    }
    again = malloc(old_cap);
    if (again == NULL) {
        goto nomem;
    }
    reused = (uintptr_t)again == old_addr;
    if (reused) {
        /* Reading the bytes malloc returned is the point of the probe. */
        for (i = ALLOC_HEADER; i < FILL; i++) {
            left += again[i] == MARK;
        }
    }
    free(again);
    free(fence);
    for (i = 0; i < HOLD; i++) {
        free(hold[i]);
    }
    ck_buf_free(&b);
    return Py_BuildValue("(On)", reused ? Py_True : Py_False, (Py_ssize_t)left);
nomem:
    free(fence);
    for (i = 0; i < HOLD; i++) {
        free(hold[i]);
    }
    ck_buf_free(&b);
    return PyErr_NoMemory();
}

PyDoc_STRVAR(aead_provider_doc,
             "_aead_provider($module, /, recheck=False, force=False)\n--\n\n"
             "Tests only: the name of the OpenSSL provider whose AES-256-GCM new keys\n"
             "use (None before first use). recheck=True first re-fetches with the\n"
             "current default properties, as creating a Keyring does; force=True\n"
             "re-resolves the implementation even when the provider is unchanged.");

static PyObject *py_aead_provider(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"recheck", "force", NULL};
    ck_state *st = ck_state_from_module(module);
    const char *name;
    int recheck = 0, force = 0;
    ck_error err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pp:_aead_provider", kwlist, &recheck,
                                     &force)) {
        return NULL;
    }
    if ((recheck || force) && ck_aead_recheck(force, &err) < 0) {
        ck_raise_crypto_error(st, &err, 0);
        return NULL;
    }
    name = ck_aead_provider_name();
    if (name == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(name);
}

PyDoc_STRVAR(siphash128_doc,
             "_siphash128($module, key, msg, /)\n--\n\n"
             "Tests only: SipHash-2-4 with a 128-bit output of msg under a 16-byte key\n"
             "(the function that keys @cache.secure's L1 store, ck_siphash.c).");

static PyObject *py_siphash128(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer key, msg;
    unsigned char out[16];
    uint64_t k[2] = {0, 0};
    PyObject *result = NULL;
    int i;

    (void)module;
    key.obj = msg.obj = NULL;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_siphash128 takes a key and a message");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &key, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[1], &msg, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    if (key.len != 16) {
        PyErr_SetString(PyExc_ValueError, "the SipHash key is 16 bytes");
        goto done;
    }
    for (i = 7; i >= 0; i--) {
        k[0] = (k[0] << 8) | ((const unsigned char *)key.buf)[i];
        k[1] = (k[1] << 8) | ((const unsigned char *)key.buf)[8 + i];
    }
    ck_siphash128(k, msg.buf, (size_t)msg.len, out);
    result = PyBytes_FromStringAndSize((const char *)out, sizeof(out));
done:
    if (key.obj != NULL) {
        PyBuffer_Release(&key);
    }
    if (msg.obj != NULL) {
        PyBuffer_Release(&msg);
    }
    return result;
}

/* ------------------------------------------------------------------------ */
/* Registration                                                             */
/* ------------------------------------------------------------------------ */

/* The double cast through void (*)(void) tells gcc the signature mismatch
   is intended (METH_FASTCALL | METH_KEYWORDS functions take 4 arguments). */
#define FASTCALL_KW(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef crypto_methods[] = {
    {"aes256gcm_seal", FASTCALL_KW(py_aes256gcm_seal), METH_FASTCALL | METH_KEYWORDS,
     aes256gcm_seal_doc},
    {"aes256gcm_open", FASTCALL_KW(py_aes256gcm_open), METH_FASTCALL | METH_KEYWORDS,
     aes256gcm_open_doc},
    {"hkdf_sha256", FASTCALL_KW(py_hkdf_sha256), METH_FASTCALL | METH_KEYWORDS, hkdf_sha256_doc},
    {"secure_heap_used", py_secure_heap_used, METH_NOARGS, secure_heap_used_doc},
    {"_secret_buf_probe", py_secret_buf_probe, METH_O, secret_buf_probe_doc},
    {"_aead_provider", (PyCFunction)(void (*)(void))py_aead_provider, METH_VARARGS | METH_KEYWORDS,
     aead_provider_doc},
    {"_siphash128", (PyCFunction)(void (*)(void))py_siphash128, METH_FASTCALL, siphash128_doc},
    {NULL, NULL, 0, NULL},
};

int ck_crypto_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, crypto_methods);
}
