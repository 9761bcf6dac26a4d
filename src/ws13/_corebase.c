/* CoreBase: the C twin of ws13.corebase.CoreBase, part of ws13._speedups.
 *
 * The base type of ws13.protocol.Protocol. Its state is this C struct, read
 * from Python as members (Protocol sets them: corebase.py says what each
 * one is), and its two methods are the core's hot entry points:
 *
 * receive(data) -> (events, writes): when _fast_recv is True, the frame
 * parser (ws13_scan_messages) appends the whole single-frame messages at the
 * start of data to _events; what it leaves (a partial frame, a control frame,
 * a fragment, an error) goes to self._receive_rest(data, pos), and an
 * exception from _inflate to self._fail_inflated(exc). Otherwise the whole
 * read goes to self.receive_data(data). Then it hands out _events and
 * _writes (a new empty list for None), leaving None: the lists exist only
 * while they hold something, so an idle connection keeps none.
 *
 * send_message(message, *, text=None, compress=True) -> list[bytes]: when
 * _fast_send is True, compress is true and message is exactly str or bytes,
 * it frames the message here: permessage-deflate through _encode_message
 * (RSV1 when it compresses; RFC 7692 section 6), a masking key from
 * _mask_next (a client; RFC 6455 section 5.3), one buffer, or header and
 * payload side by side for an unmasked payload over COPY_MAX, after what
 * _writes held. Anything else goes to self._send_message(message, text,
 * compress), the general path (ws13/writer.py), which is the reference.
 *
 * C owns what it touches (shared/DESIGN.md): the fields are this struct's,
 * type-checked where C relies on their type (a TypeError, never a silent
 * slow path); the Python methods it calls are the documented contract of a
 * subclass, called only off the fast path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_speedups.h"

/* Unmasked payloads above this go out beside their header, not copied into
 * one frame: ws13.writer.COPY_MAX (a test checks that they are equal). */
#define COPY_MAX 4096

typedef struct {
    PyObject_HEAD
    PyObject *encode_message;
    PyObject *events;
    PyObject *expect_mask;
    PyObject *fast_recv;
    PyObject *fast_send;
    PyObject *inflate;
    PyObject *mask_next;
    PyObject *writes;
    PyObject *max_size;
    /* The traffic counters (see ws13.corebase): C integers, so that counting
     * on the hot paths allocates nothing. */
    long long bytes_received;
    long long bytes_sent;
    long long messages_received;
    long long messages_sent;
} CoreBaseObject;

static PyMemberDef corebase_members[] = {
    {"_encode_message", T_OBJECT_EX, offsetof(CoreBaseObject, encode_message), 0, NULL},
    {"_events", T_OBJECT_EX, offsetof(CoreBaseObject, events), 0, NULL},
    {"_expect_mask", T_OBJECT_EX, offsetof(CoreBaseObject, expect_mask), 0, NULL},
    {"_fast_recv", T_OBJECT_EX, offsetof(CoreBaseObject, fast_recv), 0, NULL},
    {"_fast_send", T_OBJECT_EX, offsetof(CoreBaseObject, fast_send), 0, NULL},
    {"_inflate", T_OBJECT_EX, offsetof(CoreBaseObject, inflate), 0, NULL},
    {"_mask_next", T_OBJECT_EX, offsetof(CoreBaseObject, mask_next), 0, NULL},
    {"_writes", T_OBJECT_EX, offsetof(CoreBaseObject, writes), 0, NULL},
    {"max_size", T_OBJECT_EX, offsetof(CoreBaseObject, max_size), 0, NULL},
    {"bytes_received", T_LONGLONG, offsetof(CoreBaseObject, bytes_received), 0, NULL},
    {"bytes_sent", T_LONGLONG, offsetof(CoreBaseObject, bytes_sent), 0, NULL},
    {"messages_received", T_LONGLONG, offsetof(CoreBaseObject, messages_received), 0, NULL},
    {"messages_sent", T_LONGLONG, offsetof(CoreBaseObject, messages_sent), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *
corebase_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    CoreBaseObject *self = (CoreBaseObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* Every member set, so that C never finds NULL unless Python code
     * deleted one (then C raises AttributeError). */
    self->events = Py_NewRef(Py_None);
    self->writes = Py_NewRef(Py_None);
    self->expect_mask = PyLong_FromLong(0);
    if (self->expect_mask == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->encode_message = Py_NewRef(Py_None);
    self->fast_recv = Py_NewRef(Py_False);
    self->fast_send = Py_NewRef(Py_False);
    self->inflate = Py_NewRef(Py_None);
    self->mask_next = Py_NewRef(Py_None);
    self->max_size = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static int
corebase_traverse(CoreBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->encode_message);
    Py_VISIT(self->events);
    Py_VISIT(self->expect_mask);
    Py_VISIT(self->fast_recv);
    Py_VISIT(self->fast_send);
    Py_VISIT(self->inflate);
    Py_VISIT(self->mask_next);
    Py_VISIT(self->writes);
    Py_VISIT(self->max_size);
    return 0;
}

static int
corebase_clear(CoreBaseObject *self)
{
    Py_CLEAR(self->encode_message);
    Py_CLEAR(self->events);
    Py_CLEAR(self->expect_mask);
    Py_CLEAR(self->fast_recv);
    Py_CLEAR(self->fast_send);
    Py_CLEAR(self->inflate);
    Py_CLEAR(self->mask_next);
    Py_CLEAR(self->writes);
    Py_CLEAR(self->max_size);
    return 0;
}

static void
corebase_dealloc(CoreBaseObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    corebase_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* A member C relies on: AttributeError if Python code deleted it. */
static PyObject *
member(PyObject *value, const char *name)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "CoreBase attribute '%s' is not set", name);
    }
    return value;
}

/* A list member (_events, _writes), type-checked: C appends to it and hands
 * it out. None, while there is nothing in it, is returned as is. */
static PyObject *
list_member(PyObject *value, const char *name)
{
    if (member(value, name) != NULL && value != Py_None && !PyList_CheckExact(value)) {
        PyErr_Format(PyExc_TypeError, "CoreBase attribute '%s' must be a list or None, not %.50s",
                     name, Py_TYPE(value)->tp_name);
        return NULL;
    }
    return value;
}

static ws13_state *
state_of(CoreBaseObject *self)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(self), &ws13_speedups_module);
    return module == NULL ? NULL : ws13_get_state(module);
}

/* self.name(arg1[, arg2[, arg3]]) for a method of the contract: 0, or -1
 * with an exception set; *result gets the result if result isn't NULL. */
static int
call_contract(CoreBaseObject *self, PyObject *name, PyObject *arg1, PyObject *arg2,
              PyObject *arg3, PyObject **result)
{
    PyObject *args[4] = {(PyObject *)self, arg1, arg2, arg3};
    size_t nargs = arg2 == NULL ? 2 : arg3 == NULL ? 3 : 4;
    PyObject *value;

    if (name == NULL) {
        return -1; /* state_of() failed */
    }
    value = PyObject_VectorcallMethod(name, args, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (value == NULL) {
        return -1;
    }
    if (result != NULL) {
        *result = value;
    }
    else {
        Py_DECREF(value);
    }
    return 0;
}

/* The exception being raised, normalised, with its traceback. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* The fast path of receive(): 0, or -1 with an exception set. */
static int
receive_fast(CoreBaseObject *self, PyObject *data)
{
    Py_buffer view;
    Py_ssize_t pos, max_size = -1;
    long expect_mask;
    PyObject *events, *inflate, *pos_obj;
    int status;

    if ((events = list_member(self->events, "_events")) == NULL) {
        return -1;
    }
    if (events == Py_None) {
        /* The parser appends to it; receive() hands it out. */
        if ((events = PyList_New(0)) == NULL) {
            return -1;
        }
        Py_SETREF(self->events, events);
    }
    if (member(self->expect_mask, "_expect_mask") == NULL ||
        member(self->max_size, "max_size") == NULL ||
        (inflate = member(self->inflate, "_inflate")) == NULL) {
        return -1;
    }
    expect_mask = PyLong_AsLong(self->expect_mask);
    if (expect_mask == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (self->max_size != Py_None) {
        max_size = PyLong_AsSsize_t(self->max_size);
        if (max_size == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (inflate != Py_None && !PyCallable_Check(inflate)) {
        PyErr_Format(PyExc_TypeError, "CoreBase attribute '_inflate' must be callable or None");
        return -1;
    }
    if (get_bytes_like(data, &view) < 0) {
        return -1;
    }
    /* The parser runs inflate, which is Python code: hold the objects. */
    Py_INCREF(events);
    Py_INCREF(inflate);
    pos = ws13_scan_messages((const unsigned char *)view.buf, view.len, 0, expect_mask != 0,
                             max_size, self->max_size, events,
                             inflate == Py_None ? NULL : inflate);
    Py_DECREF(events);
    Py_DECREF(inflate);
    if (pos < 0) {
        /* The decompressor consumed the frame: the Python code fails the
         * connection (or raises again what isn't a peer's fault). */
        PyObject *exc;
        ws13_state *state;
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            release_bytes_like(&view);
            return -1;
        }
        exc = take_exception();
        state = state_of(self);
        status = state == NULL ? -1
                               : call_contract(self, state->str_fail_inflated, exc, NULL, NULL, NULL);
        Py_XDECREF(exc);
        release_bytes_like(&view);
        return status;
    }
    if (pos == view.len) {
        release_bytes_like(&view);
        return 0;
    }
    release_bytes_like(&view);
    pos_obj = PyLong_FromSsize_t(pos);
    if (pos_obj == NULL) {
        return -1;
    }
    {
        ws13_state *state = state_of(self);
        status = state == NULL ? -1
                               : call_contract(self, state->str_receive_rest, data, pos_obj, NULL,
                                               NULL);
    }
    Py_DECREF(pos_obj);
    return status;
}

/* The list in *field handed out, None left in its place; a new empty list
 * for None. */
static PyObject *
hand_out(PyObject **field, const char *name)
{
    PyObject *list = list_member(*field, name);
    if (list == NULL) {
        return NULL;
    }
    if (list == Py_None) {
        return PyList_New(0);
    }
    *field = Py_NewRef(Py_None); /* the reference to list is the caller's now */
    return list;
}

/* The bytes in a list of writes: bytes-like items (SEND_EOF is not one). */
static long long
bytes_in(PyObject *writes)
{
    Py_ssize_t i, n = PyList_GET_SIZE(writes);
    long long total = 0;
    for (i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(writes, i);
        if (PyBytes_Check(item)) {
            total += PyBytes_GET_SIZE(item);
        }
        else if (PyByteArray_Check(item)) {
            total += PyByteArray_GET_SIZE(item);
        }
        else if (PyMemoryView_Check(item)) {
            total += PyMemoryView_GET_BUFFER(item)->len;
        }
    }
    return total;
}

/* The messages (str and bytes) in a list of events. */
static long long
messages_in(PyObject *events)
{
    Py_ssize_t i, n = PyList_GET_SIZE(events);
    long long total = 0;
    for (i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(events, i);
        total += PyUnicode_CheckExact(item) || PyBytes_CheckExact(item);
    }
    return total;
}

static PyObject *
corebase_receive(CoreBaseObject *self, PyObject *data)
{
    PyObject *events, *writes, *result;

    if (PyBytes_Check(data)) {
        self->bytes_received += PyBytes_GET_SIZE(data);
    }
    else if (PyByteArray_Check(data)) {
        self->bytes_received += PyByteArray_GET_SIZE(data);
    }
    else {
        Py_ssize_t size = PyObject_Size(data);
        if (size < 0) {
            return NULL;
        }
        self->bytes_received += size;
    }
    if (self->fast_recv == Py_True) {
        if (receive_fast(self, data) < 0) {
            return NULL;
        }
    }
    else {
        ws13_state *state = state_of(self);
        if (state == NULL ||
            call_contract(self, state->str_receive_data, data, NULL, NULL, NULL) < 0) {
            return NULL;
        }
    }
    events = hand_out(&self->events, "_events");
    if (events == NULL) {
        return NULL;
    }
    writes = hand_out(&self->writes, "_writes");
    if (writes == NULL) {
        Py_DECREF(events);
        return NULL;
    }
    self->messages_received += messages_in(events);
    self->bytes_sent += bytes_in(writes);
    result = PyTuple_Pack(2, events, writes);
    Py_DECREF(events);
    Py_DECREF(writes);
    return result;
}

/* The frame of send_message()'s fast path, as a list of buffers. */
static PyObject *
frame_message(CoreBaseObject *self, PyObject *message, PyObject *text)
{
    PyObject *payload, *key = NULL, *buffers = NULL;
    const unsigned char *mask = NULL;
    int first_byte, as_text;
    Py_ssize_t n;

    if (PyUnicode_CheckExact(message)) {
        as_text = text != Py_False;
        payload = ws13_encode_text(message);
        if (payload == NULL) {
            return NULL;
        }
    }
    else {
        as_text = text == Py_None ? 0 : PyObject_IsTrue(text);
        if (as_text < 0) {
            return NULL;
        }
        payload = Py_NewRef(message);
    }
    first_byte = as_text ? 0x81 : 0x82;
    if (member(self->encode_message, "_encode_message") == NULL ||
        member(self->mask_next, "_mask_next") == NULL) {
        goto done;
    }
    if (self->encode_message != Py_None) {
        PyObject *compressed = PyObject_CallOneArg(self->encode_message, payload);
        if (compressed == NULL) {
            goto done;
        }
        if (compressed != Py_None) {
            if (!PyBytes_Check(compressed)) {
                PyErr_Format(PyExc_TypeError, "_encode_message() must return bytes or None");
                Py_DECREF(compressed);
                goto done;
            }
            Py_SETREF(payload, compressed);
            first_byte |= 0x40; /* RFC 7692 section 6: RSV1, a compressed message */
        }
        else {
            Py_DECREF(compressed);
        }
    }
    if (self->mask_next != Py_None) {
        /* Section 5.3: a client masks every frame with a fresh random key. */
        key = PyObject_CallNoArgs(self->mask_next);
        if (key == NULL) {
            goto done;
        }
        if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) != 4) {
            PyErr_SetString(PyExc_ValueError, "_mask_next() must return 4 bytes");
            goto done;
        }
        mask = (const unsigned char *)PyBytes_AS_STRING(key);
    }
    n = PyBytes_GET_SIZE(payload);
    if (mask == NULL && n > COPY_MAX) {
        /* A large unmasked payload goes out as its own buffer, not copied. */
        PyObject *header = ws13_frame(first_byte, NULL, n, NULL, 0);
        if (header != NULL) {
            buffers = PyList_New(2);
            if (buffers == NULL) {
                Py_DECREF(header);
            }
            else {
                PyList_SET_ITEM(buffers, 0, header);
                PyList_SET_ITEM(buffers, 1, Py_NewRef(payload));
            }
        }
    }
    else {
        PyObject *frame =
            ws13_frame(first_byte, (const unsigned char *)PyBytes_AS_STRING(payload), n, mask, 1);
        if (frame != NULL) {
            buffers = PyList_New(1);
            if (buffers == NULL) {
                Py_DECREF(frame);
            }
            else {
                PyList_SET_ITEM(buffers, 0, frame);
            }
        }
    }

done:
    Py_DECREF(payload);
    Py_XDECREF(key);
    return buffers;
}

static PyObject *
corebase_send_message(CoreBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyObject *message, *text = Py_None, *compress = Py_True, *buffers, *writes;
    Py_ssize_t i, nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    int fast;

    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "send_message() takes 1 positional argument but %zd were given", nargs);
        return NULL;
    }
    message = args[0];
    for (i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "text") == 0) {
            text = args[1 + i];
        }
        else if (PyUnicode_CompareWithASCIIString(name, "compress") == 0) {
            compress = args[1 + i];
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "send_message() got an unexpected keyword argument '%U'", name);
            return NULL;
        }
    }
    fast = self->fast_send == Py_True &&
           (PyUnicode_CheckExact(message) || PyBytes_CheckExact(message));
    if (fast && compress != Py_True) {
        fast = PyObject_IsTrue(compress);
        if (fast < 0) {
            return NULL;
        }
    }
    if (!fast) {
        ws13_state *state = state_of(self);
        PyObject *result = NULL;
        if (state != NULL) {
            call_contract(self, state->str_send_message, message, text, compress, &result);
        }
        /* The general path counted the message (send_text / send_binary). */
        if (result != NULL && PyList_Check(result)) {
            self->bytes_sent += bytes_in(result);
        }
        return result;
    }
    buffers = frame_message(self, message, text);
    if (buffers == NULL) {
        return NULL;
    }
    writes = list_member(self->writes, "_writes");
    if (writes == NULL) {
        Py_DECREF(buffers);
        return NULL;
    }
    self->messages_sent += 1;
    if (writes == Py_None || PyList_GET_SIZE(writes) == 0) {
        self->bytes_sent += bytes_in(buffers);
        return buffers;
    }
    /* What was queued before (a Pong, say) goes first. */
    if (PyList_SetSlice(writes, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, buffers) < 0) {
        Py_DECREF(buffers);
        return NULL;
    }
    Py_DECREF(buffers);
    writes = hand_out(&self->writes, "_writes");
    if (writes != NULL) {
        self->bytes_sent += bytes_in(writes);
    }
    return writes;
}

static PyMethodDef corebase_methods[] = {
    {"receive", (PyCFunction)corebase_receive, METH_O,
     "receive(data) -> (events, writes)\n\nFeed bytes received; return what arrived and what "
     "to write."},
    {"send_message", (PyCFunction)(void (*)(void))corebase_send_message,
     METH_FASTCALL | METH_KEYWORDS,
     "send_message(message, *, text=None, compress=True) -> list[bytes]\n\nSend a whole "
     "message; return all the bytes to write now."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot corebase_slots[] = {
    {Py_tp_doc, "The core's state and hot entry points; see ws13.corebase.CoreBase."},
    {Py_tp_new, corebase_new},
    {Py_tp_dealloc, corebase_dealloc},
    {Py_tp_traverse, corebase_traverse},
    {Py_tp_clear, corebase_clear},
    {Py_tp_methods, corebase_methods},
    {Py_tp_members, corebase_members},
    {0, NULL},
};

static PyType_Spec corebase_spec = {
    "ws13._speedups.CoreBase",
    sizeof(CoreBaseObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    corebase_slots,
};

/* Called by ws13._speedups' module exec slot: adds CoreBase and COPY_MAX. */
int
ws13_add_corebase(PyObject *module)
{
    ws13_state *state = ws13_get_state(module);
    PyObject *type;

    state->str_receive_data = PyUnicode_InternFromString("receive_data");
    state->str_receive_rest = PyUnicode_InternFromString("_receive_rest");
    state->str_fail_inflated = PyUnicode_InternFromString("_fail_inflated");
    state->str_send_message = PyUnicode_InternFromString("_send_message");
    if (state->str_receive_data == NULL || state->str_receive_rest == NULL ||
        state->str_fail_inflated == NULL || state->str_send_message == NULL) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "COPY_MAX", COPY_MAX) < 0) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &corebase_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "CoreBase", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
