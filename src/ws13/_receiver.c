/* data_received() of ws13.asyncio.Connection in C, part of ws13._speedups.
 *
 * The twin is Connection.data_received in ws13/asyncio/connection.py, which
 * stays the reference and the pure-Python path: install_receiver() replaces
 * the class's method with this one, which does the same, in the same order,
 * with the same calls for everything off the common path (a partial frame, a
 * control frame, a handler, a full queue). It exists because that method runs
 * once per read of every connection and was ~100 bytecodes: ~2,500 of the
 * ~15,000 instructions of a 32 B echo (bench/instructions.py).
 *
 * Attribute access is what makes such a method cheap or not. A generic
 * PyObject_GetAttr on a __slots__ attribute costs 70-100 instructions, more
 * than CPython 3.11's specialised bytecode (~10). So install_receiver() finds
 * the member descriptors of the slots once (Connection, Protocol and
 * MessageQueue keep theirs in __slots__) and reads their offsets, as the
 * specialising interpreter does. The offsets hold for every instance of those
 * classes and their subclasses, because a subclass extends its base's layout;
 * the method descriptor made for Connection refuses any other `self`, and the
 * protocol and the queue are checked with PyObject_TypeCheck before use.
 * An unset slot (NULL) sends the call to the Python twin, which raises the
 * AttributeError the user would expect.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_speedups.h"

/* What install_receiver() found: the classes, the slots' offsets, the
 * Python twin, and the two constants data_received() compares with. */
static PyTypeObject *protocol_type, *queue_type;
static PyObject *py_twin, *open_state, *inflate_errors;
static Py_ssize_t off_protocol, off_messages, off_on_message;
static Py_ssize_t off_fast_recv, off_expect_mask, off_max_size, off_events, off_inflate;
static Py_ssize_t off_writes, off_state, off_large, off_waiter;

static PyObject *str_receive_rest, *str_read_large, *str_flush, *str_fail_inflated;
static PyObject *str_handler_failed, *str_put, *str_handle_event, *str_receive_data;
static PyObject *str_done, *str_set_result;

#define slot ws13_slot
#define set_slot ws13_set_slot
#define call_method ws13_call_method_status

/* The raised exception, normalized, with its traceback, as `except E as exc`
 * would bind it; the error indicator is cleared. */
static PyObject *
caught(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* Call method `name` of `obj` with the exception being raised: the C form of
 * `except ... as exc: obj.name(exc)`. */
static int
handle_caught(PyObject *obj, PyObject *name)
{
    PyObject *exc = caught();
    int status;
    if (exc == NULL) {
        return -1;
    }
    status = call_method(obj, name, exc, NULL);
    Py_DECREF(exc);
    return status;
}

/* A large frame is under way: maybe read its rest in place (_read_large()). */
static int
check_large(PyObject *self, PyObject *protocol)
{
    return ws13_is_set(slot(protocol, off_large)) ? call_method(self, str_read_large, NULL, NULL) : 0;
}

/* The core's fast path (Protocol.receive_data() inlined): whole
 * single-frame messages go straight into protocol._events. */
static int
receive_fast(PyObject *self, PyObject *protocol, PyObject *data)
{
    PyObject *events = slot(protocol, off_events);
    PyObject *max_size_obj = slot(protocol, off_max_size);
    PyObject *inflate = slot(protocol, off_inflate);
    Py_ssize_t max_size = -1, pos;
    int expect_mask = PyObject_IsTrue(slot(protocol, off_expect_mask));
    Py_buffer view;

    if (expect_mask < 0) {
        return -1;
    }
    if (max_size_obj != Py_None) {
        max_size = PyNumber_AsSsize_t(max_size_obj, PyExc_OverflowError);
        if (max_size == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (!PyList_Check(events)) {
        PyErr_Format(PyExc_TypeError, "protocol._events must be a list, not %.50s",
                     Py_TYPE(events)->tp_name);
        return -1;
    }
    if (get_bytes_like(data, &view) < 0) {
        return -1;
    }
    Py_INCREF(events);
    Py_INCREF(max_size_obj);
    Py_INCREF(inflate);
    pos = ws13_parse_messages((const unsigned char *)view.buf, view.len, 0, expect_mask, max_size,
                              max_size_obj, events, inflate == Py_None ? NULL : inflate);
    Py_DECREF(events);
    Py_DECREF(max_size_obj);
    Py_DECREF(inflate);
    if (pos < 0) {
        release_bytes_like(&view);
        if (!PyErr_ExceptionMatches(inflate_errors)) {
            return -1;
        }
        return handle_caught(protocol, str_fail_inflated);
    }
    if (pos != view.len) {
        PyObject *pos_obj = PyLong_FromSsize_t(pos);
        int status;
        release_bytes_like(&view);
        if (pos_obj == NULL) {
            return -1;
        }
        status = call_method(protocol, str_receive_rest, data, pos_obj);
        Py_DECREF(pos_obj);
        return status < 0 ? -1 : check_large(self, protocol);
    }
    release_bytes_like(&view);
    return 0;
}

/* A message for the reader: the handler's, or the queue's (MessageQueue.put()
 * inlined when a reader waits, and then without the method calls when it
 * waits on a stepper). */
static int
deliver(PyObject *self, PyObject *messages, PyObject *message)
{
    PyObject *handler = slot(self, off_on_message);
    PyObject *waiter, *result;
    int waiting, is_stepper;

    if (ws13_is_set(handler)) {
        Py_INCREF(handler);
        result = PyObject_CallOneArg(handler, message);
        Py_DECREF(handler);
        if (result != NULL) {
            Py_DECREF(result);
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        return handle_caught(self, str_handler_failed);
    }
    waiter = slot(messages, off_waiter);
    if (!ws13_is_set(waiter)) {
        return call_method(messages, str_put, message, NULL);
    }
    Py_INCREF(waiter);
    waiting = ws13_stepper_waiting(waiter);
    is_stepper = waiting >= 0;
    if (!is_stepper) {
        result = PyObject_CallMethodNoArgs(waiter, str_done);
        waiting = result == NULL ? -1 : PyObject_Not(result);
        Py_XDECREF(result);
        if (waiting < 0) {
            Py_DECREF(waiter);
            return -1;
        }
    }
    if (!waiting) {
        Py_DECREF(waiter);
        return call_method(messages, str_put, message, NULL);
    }
    set_slot(messages, off_waiter, Py_None);
    result = is_stepper ? ws13_stepper_set_result(waiter, message)
                        : PyObject_CallMethodOneArg(waiter, str_set_result, message);
    Py_DECREF(waiter);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

/* Connection.data_received() with its protocol and queue checked. */
static int
receive(PyObject *self, PyObject *protocol, PyObject *messages, PyObject *data)
{
    PyObject *events, *writes, *event;
    Py_ssize_t i;
    int status = 0, dirty;

    if (slot(protocol, off_fast_recv) == Py_True) {
        if (receive_fast(self, protocol, data) < 0) {
            return -1;
        }
    }
    else if (call_method(protocol, str_receive_data, data, NULL) < 0 ||
             check_large(self, protocol) < 0) {
        return -1;
    }
    writes = slot(protocol, off_writes);
    dirty = writes == NULL ? 1 : PyObject_IsTrue(writes); /* NULL: _flush() raises */
    if (dirty < 0) {
        return -1;
    }
    if ((dirty || slot(protocol, off_state) != open_state) &&
        call_method(self, str_flush, NULL, NULL) < 0) {
        return -1;
    }
    events = slot(protocol, off_events);
    if (events == NULL || !PyList_CheckExact(events) || PyList_GET_SIZE(events) == 0) {
        return 0;
    }
    Py_INCREF(events);
    {
        PyObject *fresh = PyList_New(0);
        if (fresh == NULL) {
            Py_DECREF(events);
            return -1;
        }
        set_slot(protocol, off_events, fresh);
        Py_DECREF(fresh);
    }
    for (i = 0; status == 0 && i < PyList_GET_SIZE(events); i++) {
        event = Py_NewRef(PyList_GET_ITEM(events, i));
        if (PyUnicode_CheckExact(event) || PyBytes_CheckExact(event)) {
            status = deliver(self, messages, event);
        }
        else {
            status = call_method(self, str_handle_event, event, NULL);
        }
        Py_DECREF(event);
    }
    Py_DECREF(events);
    return status;
}

static PyObject *
data_received(PyObject *self, PyObject *data)
{
    PyObject *protocol = slot(self, off_protocol);
    PyObject *messages = slot(self, off_messages);
    int status;

    if (protocol == NULL || messages == NULL || !PyObject_TypeCheck(protocol, protocol_type) ||
        !PyObject_TypeCheck(messages, queue_type) || slot(protocol, off_events) == NULL ||
        slot(protocol, off_fast_recv) == NULL || slot(protocol, off_expect_mask) == NULL ||
        slot(protocol, off_max_size) == NULL || slot(protocol, off_inflate) == NULL ||
        slot(protocol, off_state) == NULL || slot(protocol, off_writes) == NULL ||
        slot(protocol, off_large) == NULL) {
        /* Not what install_receiver() was shown: the Python twin decides. */
        return PyObject_CallFunctionObjArgs(py_twin, self, data, NULL);
    }
    Py_INCREF(protocol);
    Py_INCREF(messages);
    status = receive(self, protocol, messages, data);
    Py_DECREF(protocol);
    Py_DECREF(messages);
    if (status < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef data_received_def = {
    "data_received", (PyCFunction)data_received, METH_O,
    "Feed bytes from the transport to the core; deliver the messages (C twin of the Python "
    "method, see ws13/_receiver.c).",
};

/* The offset of the __slots__ attribute `name` of `cls`, or -1 with an
 * exception set (_speedups.h). */
Py_ssize_t
ws13_slot_offset(PyObject *cls, const char *name)
{
    PyObject *descr = PyObject_GetAttrString(cls, name);
    Py_ssize_t offset = -1;
    if (descr == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX) {
        offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    }
    else {
        PyErr_Format(PyExc_TypeError, "%.100s.%s is not a __slots__ attribute",
                     ((PyTypeObject *)cls)->tp_name, name);
    }
    Py_DECREF(descr);
    return offset;
}

static PyObject *
install_receiver(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *connection, *protocol, *queue, *twin, *method;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "install_receiver() takes 5 arguments: connection class, "
                                         "protocol class, queue class, OPEN, INFLATE_ERRORS");
        return NULL;
    }
    connection = args[0];
    protocol = args[1];
    queue = args[2];
    if (!PyType_Check(connection) || !PyType_Check(protocol) || !PyType_Check(queue)) {
        PyErr_SetString(PyExc_TypeError, "install_receiver() needs three classes first");
        return NULL;
    }
    if (py_twin != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "install_receiver() was already called");
        return NULL;
    }
    twin = PyDict_GetItemString(((PyTypeObject *)connection)->tp_dict, "data_received");
    if (twin == NULL || !PyFunction_Check(twin)) {
        PyErr_SetString(PyExc_TypeError, "the connection class must define data_received()");
        return NULL;
    }
    WS13_SLOT_OFFSET(off_protocol, connection, "protocol");
    WS13_SLOT_OFFSET(off_messages, connection, "_messages");
    WS13_SLOT_OFFSET(off_on_message, connection, "_on_message");
    WS13_SLOT_OFFSET(off_fast_recv, protocol, "_fast_recv");
    WS13_SLOT_OFFSET(off_expect_mask, protocol, "_expect_mask");
    WS13_SLOT_OFFSET(off_max_size, protocol, "max_size");
    WS13_SLOT_OFFSET(off_events, protocol, "_events");
    WS13_SLOT_OFFSET(off_inflate, protocol, "_inflate");
    WS13_SLOT_OFFSET(off_writes, protocol, "_writes");
    WS13_SLOT_OFFSET(off_state, protocol, "_state");
    WS13_SLOT_OFFSET(off_large, protocol, "_large");
    WS13_SLOT_OFFSET(off_waiter, queue, "_waiter");
    /* Our own reference before the method replaces it: the class's goes then. */
    py_twin = Py_NewRef(twin);
    method = PyDescr_NewMethod((PyTypeObject *)connection, &data_received_def);
    if (method == NULL || PyObject_SetAttrString(connection, "data_received", method) < 0) {
        Py_XDECREF(method);
        Py_CLEAR(py_twin);
        return NULL;
    }
    Py_DECREF(method);
    protocol_type = (PyTypeObject *)Py_NewRef(protocol);
    queue_type = (PyTypeObject *)Py_NewRef(queue);
    open_state = Py_NewRef(args[3]);
    inflate_errors = Py_NewRef(args[4]);
    Py_RETURN_NONE;
}

static PyMethodDef receiver_functions[] = {
    {"install_receiver", (PyCFunction)(void (*)(void))install_receiver, METH_FASTCALL,
     "install_receiver(Connection, Protocol, MessageQueue, OPEN, INFLATE_ERRORS)\n\n"
     "Make Connection.data_received this module's C twin of it (once)."},
    {NULL, NULL, 0, NULL},
};

/* Called by ws13._speedups' module exec slot: adds install_receiver(). */
int
ws13_add_receiver(PyObject *module)
{
    if (ws13_intern(&str_receive_rest, "_receive_rest") < 0 ||
        ws13_intern(&str_read_large, "_read_large") < 0 || ws13_intern(&str_flush, "_flush") < 0 ||
        ws13_intern(&str_fail_inflated, "_fail_inflated") < 0 ||
        ws13_intern(&str_handler_failed, "_handler_failed") < 0 || ws13_intern(&str_put, "put") < 0 ||
        ws13_intern(&str_handle_event, "_handle_event") < 0 ||
        ws13_intern(&str_receive_data, "receive_data") < 0 || ws13_intern(&str_done, "done") < 0 ||
        ws13_intern(&str_set_result, "set_result") < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, receiver_functions);
}
