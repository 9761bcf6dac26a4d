/* What the translation units of ws13._speedups share. */
#ifndef WS13_SPEEDUPS_H
#define WS13_SPEEDUPS_H

#include <Python.h>

/* Below this size, releasing and retaking the GIL (~100 ns uncontended, up
 * to a whole switch interval when another thread holds it) costs more than
 * it lets other threads gain: masking 256 KiB takes about 10 us. */
#define RELEASE_GIL_MIN (256 * 1024)

/* "y*": exact bytes are read in place (view->obj stays NULL, so
 * release_bytes_like does nothing); anything else goes through the buffer
 * protocol, which also keeps a bytearray from being resized while we read
 * it. PyBUF_SIMPLE requests always get a contiguous buffer. */
static inline int
get_bytes_like(PyObject *arg, Py_buffer *view)
{
    if (PyBytes_CheckExact(arg)) {
        view->buf = PyBytes_AS_STRING(arg);
        view->len = PyBytes_GET_SIZE(arg);
        view->obj = NULL;
        return 0;
    }
    return PyObject_GetBuffer(arg, view, PyBUF_SIMPLE);
}

static inline void
release_bytes_like(Py_buffer *view)
{
    if (view->obj != NULL) {
        PyBuffer_Release(view);
    }
}

/* _speedups.c: XOR n bytes of `in` with the 4-byte mask m repeated, into
 * `out` (which may be `in`). */
void ws13_xor_mask(const unsigned char *in, unsigned char *out, Py_ssize_t n,
                   const unsigned char *m);

/* _utf8.c: validate the next n bytes of a UTF-8 stream from `state`
 * (utils.utf8_check's format); the new state, -1 for invalid UTF-8, -2 for a
 * state utf8_check can't have returned. Releases the GIL for long inputs. */
long long ws13_utf8_resume(long long state, const unsigned char *s, Py_ssize_t n);

/* _utf8.c: a UTF-8 state argument into *state (-2 for an int too large
 * to be one); -1 with an exception set if it isn't an int. */
int ws13_utf8_state(PyObject *arg, long long *state);

/* _speedups.c: the loop of parse_messages(data, pos, expect_mask, max_size,
 * out, inflate) over buf[pos:end] (max_size -1 for no limit; max_size_obj is
 * what inflate gets): the position of the first frame it leaves to the
 * Python code, or -1 with an exception set. */
Py_ssize_t ws13_scan_messages(const unsigned char *buf, Py_ssize_t end, Py_ssize_t pos,
                              int expect_mask, Py_ssize_t max_size, PyObject *max_size_obj,
                              PyObject *out, PyObject *inflate);

/* _speedups.c: build_frame()'s frame (with_payload 0: its header alone, for
 * a payload written beside it); _utf8.c: encode_text(). */
PyObject *ws13_frame(int first_byte, const unsigned char *payload, Py_ssize_t n,
                     const unsigned char *mask, int with_payload);
PyObject *ws13_encode_text(PyObject *text);

/* The module's state: one per interpreter that imports it. */
typedef struct {
    PyObject *os; /* the os module: MaskKeys calls its urandom */
    /* The names of the Python methods CoreBase calls off its fast path. */
    PyObject *str_receive_data;
    PyObject *str_receive_rest;
    PyObject *str_fail_inflated;
    PyObject *str_send_message;
} ws13_state;

extern struct PyModuleDef ws13_speedups_module;

static inline ws13_state *
ws13_get_state(PyObject *module)
{
    return (ws13_state *)PyModule_GetState(module);
}

/* _utf8.c: the module's utf8_check() and encode_text(). */
PyObject *ws13_utf8_check_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames);
PyObject *ws13_encode_text_py(PyObject *self, PyObject *text);

/* Module exec slots: each adds one type to ws13._speedups. */
int ws13_add_corebase(PyObject *module);        /* _corebase.c: CoreBase, COPY_MAX */
int ws13_add_maskkeys(PyObject *module);        /* _maskkeys.c: MaskKeys */
int ws13_add_payload_buffer(PyObject *module);  /* _payload.c: PayloadBuffer */

#endif
