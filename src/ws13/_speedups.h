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

/* _speedups.c: validate the next n bytes of a UTF-8 stream from `state`
 * (utils.utf8_check's format); the new state, -1 for invalid UTF-8, -2 for a
 * state utf8_check can't have returned. Releases the GIL for long inputs. */
long long ws13_utf8_resume(long long state, const unsigned char *s, Py_ssize_t n);

/* _speedups.c: a UTF-8 state argument into *state (-2 for an int too large
 * to be one); -1 with an exception set if it isn't an int. */
int ws13_utf8_state(PyObject *arg, long long *state);

/* _speedups.c: parse_messages(data, pos, expect_mask, max_size, out,
 * inflate)'s loop over buf[pos:end] (max_size -1 for no limit; max_size_obj
 * is what inflate gets); the position of the first frame it leaves to the
 * Python code, or -1 with an exception set. */
Py_ssize_t ws13_parse_messages(const unsigned char *buf, Py_ssize_t end, Py_ssize_t pos,
                               int expect_mask, Py_ssize_t max_size, PyObject *max_size_obj,
                               PyObject *out, PyObject *inflate);

/* _speedups.c: build_frame()'s frame (with_payload 0: its header alone, for
 * a payload written beside it) and encode_text(). */
PyObject *ws13_build_frame(int first_byte, const unsigned char *payload, Py_ssize_t n,
                           const unsigned char *mask, int with_payload);
PyObject *ws13_encode_text(PyObject *text);

/* Whether an object attribute is set: neither NULL (never set) nor None. */
static inline int
ws13_is_set(PyObject *value)
{
    return value != NULL && value != Py_None;
}

/* *where = the interned str `text`, unless already made; 0 or -1. */
static inline int
ws13_intern(PyObject **where, const char *text)
{
    if (*where == NULL) {
        *where = PyUnicode_InternFromString(text);
    }
    return *where == NULL ? -1 : 0;
}

/* A __slots__ attribute of an object whose class was checked, at the offset
 * that ws13_slot_offset() (_receiver.c) found for it: NULL while unset. */
static inline PyObject *
ws13_slot(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

static inline void
ws13_set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject **where = (PyObject **)((char *)obj + offset);
    PyObject *old = *where;
    *where = Py_NewRef(value);
    Py_XDECREF(old);
}

/* _receiver.c: the offset of the __slots__ attribute `name` of class `cls`,
 * or -1 with an exception set if it isn't one. */
Py_ssize_t ws13_slot_offset(PyObject *cls, const char *name);

/* In an install function: var = the offset of slot `name` of `cls`, or
 * return NULL (the exception is set). */
#define WS13_SLOT_OFFSET(var, cls, name)                 \
    if (((var) = ws13_slot_offset((cls), (name))) < 0) { \
        return NULL;                                     \
    }

/* obj.name(), obj.name(arg1) or obj.name(arg1, arg2) (arg2, then arg1, NULL
 * for fewer): the result, or NULL with an exception set. */
static inline PyObject *
ws13_call_method(PyObject *obj, PyObject *name, PyObject *arg1, PyObject *arg2)
{
    PyObject *args[3] = {obj, arg1, arg2};
    size_t nargs = arg1 == NULL ? 1 : arg2 == NULL ? 2 : 3;
    return PyObject_VectorcallMethod(name, args, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* ws13_call_method() for a call whose result isn't needed: 0, or -1 with an
 * exception set. */
static inline int
ws13_call_method_status(PyObject *obj, PyObject *name, PyObject *arg1, PyObject *arg2)
{
    PyObject *result = ws13_call_method(obj, name, arg1, arg2);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* _stepper.c: whether `waiter` is a StepperCore still waiting (1), one whose
 * wait is over (0), or not a StepperCore (-1); and its set_result(). */
int ws13_stepper_waiting(PyObject *waiter);
PyObject *ws13_stepper_set_result(PyObject *stepper, PyObject *message);

/* Module exec slots: each adds one type to ws13._speedups. */
int ws13_add_stepper(PyObject *module);         /* _stepper.c: StepperCore */
int ws13_add_maskkeys(PyObject *module);        /* _maskkeys.c: MaskKeys */
int ws13_add_payload_buffer(PyObject *module);  /* _payload.c: PayloadBuffer */
int ws13_add_receiver(PyObject *module);        /* _receiver.c: install_receiver */
int ws13_add_sender(PyObject *module);          /* _sender.c: install_sender, send_whole */

#endif
