/* PayloadBuffer: the C twin of ws13.utils.PayloadBuffer, part of
 * ws13._speedups.
 *
 * A large frame arrives over many reads (a 1 MiB frame in 4 to 700 of them).
 * Buffering the reads and unmasking the whole frame at the end allocates it
 * twice (the growing buffer, then the unmasked bytes) and copies it twice.
 * Here the payload's final `bytes` object is allocated once, when the frame
 * header announces its length, and each read is unmasked straight into it at
 * its offset; take() hands that object out once it is full. It is never seen
 * by Python code before then, which is what makes writing into a `bytes`
 * object after its creation safe.
 *
 * receive_buffer() and written(n) let a transport read the rest of the frame
 * straight into it (asyncio.BufferedProtocol: no copy of each read into a new
 * bytes object either): the buffer it returns exports the unfilled part of
 * the payload, writable. Each export holds a reference to the payload, so
 * that the memory stays valid until the transport releases it, even after
 * take() handed the payload out (uvloop releases the buffer after calling
 * buffer_updated(), where the frame completes); nothing writes to it then.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_speedups.h"

typedef struct {
    PyObject_HEAD
    PyObject *payload; /* bytes of the frame's full size, or NULL once taken */
    Py_ssize_t size;
    Py_ssize_t filled;  /* bytes written so far */
    Py_ssize_t checked; /* bytes UTF-8-checked so far */
    int masked;
    unsigned char mask[4];
} PayloadBufferObject;

static PyObject *
payload_buffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"size", "mask", NULL};
    Py_ssize_t size;
    Py_buffer mask;
    PayloadBufferObject *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ny*:PayloadBuffer", keywords, &size, &mask)) {
        return NULL;
    }
    if (mask.len != 0 && mask.len != 4) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "mask must contain 0 or 4 bytes");
        return NULL;
    }
    if (size < 0) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    self = (PayloadBufferObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->masked = mask.len == 4;
        if (self->masked) {
            memcpy(self->mask, mask.buf, 4);
        }
        self->size = size;
        /* Uninitialised: every byte is written before take() returns it. */
        self->payload = PyBytes_FromStringAndSize(NULL, size);
        if (self->payload == NULL) {
            Py_CLEAR(self);
        }
    }
    PyBuffer_Release(&mask);
    return (PyObject *)self;
}

static void
payload_buffer_dealloc(PayloadBufferObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    Py_CLEAR(self->payload);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static int
check_not_taken(PayloadBufferObject *self)
{
    if (self->payload == NULL) {
        PyErr_SetString(PyExc_ValueError, "payload already taken");
        return -1;
    }
    return 0;
}

/* Unmask the n payload bytes that follow the `filled` first ones, from `in`
 * into `out` (which may be `in`). */
static void
unmask_next(PayloadBufferObject *self, const unsigned char *in, unsigned char *out,
            Py_ssize_t n)
{
    /* The key as it applies from this offset of the payload (section 5.3:
     * octet i is XORed with key octet i MOD 4). */
    unsigned char rotated[4];
    int i;

    for (i = 0; i < 4; i++) {
        rotated[i] = self->mask[(self->filled + i) & 3];
    }
    if (n < RELEASE_GIL_MIN) {
        ws13_xor_mask(in, out, n, rotated);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        ws13_xor_mask(in, out, n, rotated);
        Py_END_ALLOW_THREADS
    }
}

/* feed(data, start) -> int */
static PyObject *
payload_buffer_feed(PayloadBufferObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    Py_ssize_t start, n;
    unsigned char *out;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "feed() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (check_not_taken(self) < 0) {
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* uvloop's and asyncio's reads are bytes: read in place, no export. */
    if (get_bytes_like(args[0], &data) < 0) {
        return NULL;
    }
    if (start < 0 || start > data.len) {
        release_bytes_like(&data);
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    n = data.len - start;
    if (n > self->size - self->filled) {
        n = self->size - self->filled;
    }
    out = (unsigned char *)PyBytes_AS_STRING(self->payload) + self->filled;
    if (self->masked) {
        unmask_next(self, (const unsigned char *)data.buf + start, out, n);
    }
    else {
        memcpy(out, (const unsigned char *)data.buf + start, (size_t)n);
    }
    self->filled += n;
    release_bytes_like(&data);
    return PyLong_FromSsize_t(start + n);
}

/* check_utf8(state) -> int */
static PyObject *
payload_buffer_check_utf8(PayloadBufferObject *self, PyObject *arg)
{
    long long state;

    if (ws13_utf8_state(arg, &state) < 0 || check_not_taken(self) < 0) {
        return NULL;
    }
    state = ws13_utf8_resume(
        state, (const unsigned char *)PyBytes_AS_STRING(self->payload) + self->checked,
        self->filled - self->checked);
    if (state == -2) {
        PyErr_SetString(PyExc_ValueError, "invalid UTF-8 state");
        return NULL;
    }
    self->checked = self->filled;
    return PyLong_FromLongLong(state);
}

/* written(nbytes): the next nbytes of the payload were written, masked, into
 * the buffer receive_buffer() returned: unmask them in place. */
static PyObject *
payload_buffer_written(PayloadBufferObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    unsigned char *at;

    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (check_not_taken(self) < 0) {
        return NULL;
    }
    if (n < 0 || n > self->size - self->filled) {
        PyErr_SetString(PyExc_ValueError, "nbytes out of range");
        return NULL;
    }
    at = (unsigned char *)PyBytes_AS_STRING(self->payload) + self->filled;
    if (self->masked) {
        unmask_next(self, at, at, n);
    }
    self->filled += n;
    Py_RETURN_NONE;
}

/* receive_buffer() -> memoryview */
static PyObject *
payload_buffer_receive_buffer(PayloadBufferObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyMemoryView_FromObject((PyObject *)self);
}

static int
payload_buffer_getbuffer(PayloadBufferObject *self, Py_buffer *view, int flags)
{
    if (self->payload == NULL) {
        PyErr_SetString(PyExc_BufferError, "payload already taken");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self,
                          PyBytes_AS_STRING(self->payload) + self->filled,
                          self->size - self->filled, 0, flags) < 0) {
        return -1;
    }
    Py_INCREF(self->payload);
    view->internal = self->payload;
    return 0;
}

static void
payload_buffer_releasebuffer(PayloadBufferObject *self, Py_buffer *view)
{
    Py_XDECREF((PyObject *)view->internal);
}

/* take() -> bytes */
static PyObject *
payload_buffer_take(PayloadBufferObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *payload;

    if (check_not_taken(self) < 0) {
        return NULL;
    }
    if (self->filled != self->size) {
        PyErr_Format(PyExc_ValueError, "payload incomplete: %zd of %zd bytes", self->filled,
                     self->size);
        return NULL;
    }
    payload = self->payload;
    self->payload = NULL;
    return payload;
}

static PyObject *
payload_buffer_get_remaining(PayloadBufferObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->size - self->filled);
}

static PyMethodDef payload_buffer_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))payload_buffer_feed, METH_FASTCALL,
     "feed(data, start) -> int\n\nUnmask data[start:], up to the payload's end, into the "
     "payload; return the position after the bytes taken."},
    {"check_utf8", (PyCFunction)payload_buffer_check_utf8, METH_O,
     "check_utf8(state) -> int\n\nutf8_check() the bytes fed since the last check."},
    {"written", (PyCFunction)payload_buffer_written, METH_O,
     "written(nbytes)\n\nUnmask the next nbytes, written into receive_buffer()."},
    {"receive_buffer", (PyCFunction)payload_buffer_receive_buffer, METH_NOARGS,
     "receive_buffer() -> memoryview\n\nThe unfilled part of the payload, writable."},
    {"take", (PyCFunction)payload_buffer_take, METH_NOARGS,
     "take() -> bytes\n\nThe whole payload, once; ValueError before it is complete."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef payload_buffer_getset[] = {
    {"remaining", (getter)payload_buffer_get_remaining, NULL, "Bytes still to feed.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot payload_buffer_slots[] = {
    {Py_tp_doc, "A large frame's payload, unmasked read by read into its final bytes; "
                "see ws13.utils.PayloadBuffer."},
    {Py_tp_new, payload_buffer_new},
    {Py_tp_dealloc, payload_buffer_dealloc},
    {Py_tp_methods, payload_buffer_methods},
    {Py_tp_getset, payload_buffer_getset},
    {Py_bf_getbuffer, payload_buffer_getbuffer},
    {Py_bf_releasebuffer, payload_buffer_releasebuffer},
    {0, NULL},
};

static PyType_Spec payload_buffer_spec = {
    "ws13._speedups.PayloadBuffer",
    sizeof(PayloadBufferObject),
    0,
    Py_TPFLAGS_DEFAULT,
    payload_buffer_slots,
};

int
ws13_add_payload_buffer(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &payload_buffer_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "PayloadBuffer", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
