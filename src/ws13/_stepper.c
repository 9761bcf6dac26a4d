/* StepperCore: the C twin of ws13/asyncio/_stepcore.py, part of ws13._speedups.
 *
 * What runs per message when data_received() steps a reading task
 * (ws13/asyncio/stepping.py explains the design): done() and set_result(),
 * which the message queue calls; the step, which enters the task, sends the
 * message into the task's coroutine in the task's context and leaves it; and
 * the await the reader waits on, which here is the object itself acting as
 * its own iterator (am_send), where the pure-Python twin makes a generator
 * per await. Everything that happens once per connection or on the way out
 * of the fast path (_wake(), _hand_over(), _finish(), cancel(), ...) is in the
 * Python subclass, Stepper, and called from here by name.
 *
 * The attributes are the twin's __slots__, same names, same meaning, so the
 * subclass reads and writes them alike. An object attribute that was never
 * set reads as None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_speedups.h"

#define STATE_PENDING 0
#define STATE_DONE 1
#define STATE_CANCELLED 2

/* Where an await stands: before its first send (it yields the stepper), after
 * it (the next send ends it), or over. */
#define PHASE_OVER 0
#define PHASE_START 1
#define PHASE_YIELDED 2

typedef struct {
    PyObject_HEAD
    PyObject *cancel_message;
    PyObject *context;
    PyObject *coro;
    PyObject *exception;
    PyObject *external;
    PyObject *loop;
    PyObject *result;
    PyObject *task;
    PyObject *wakeup;
    int state;
    char blocking;
    char must_cancel;
    char stepping;
    char phase;
} StepperObject;

/* asyncio.tasks._enter_task and _leave_task, looked up at import. */
static PyObject *enter_task;
static PyObject *leave_task;
static PyObject *str_wake;
static PyObject *str_hand_over;
static PyObject *str_finish;
/* The StepperCore type, for _receiver.c's checks (ws13_stepper_waiting()). */
static PyTypeObject *stepper_type;

#define is_set ws13_is_set

static int
stepper_init(StepperObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *loop, *coro, *task;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "StepperCore() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_UnpackTuple(args, "StepperCore", 3, 3, &loop, &coro, &task)) {
        return -1;
    }
    Py_XSETREF(self->loop, Py_NewRef(loop));
    Py_XSETREF(self->coro, Py_NewRef(coro));
    Py_XSETREF(self->task, Py_NewRef(task));
    Py_CLEAR(self->result);
    Py_CLEAR(self->exception);
    Py_CLEAR(self->cancel_message);
    Py_CLEAR(self->wakeup);
    Py_CLEAR(self->context);
    Py_CLEAR(self->external);
    self->state = STATE_PENDING;
    self->blocking = 0;
    self->must_cancel = 0;
    self->stepping = 0;
    self->phase = PHASE_OVER;
    return 0;
}

static int
stepper_traverse(StepperObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->cancel_message);
    Py_VISIT(self->context);
    Py_VISIT(self->coro);
    Py_VISIT(self->exception);
    Py_VISIT(self->external);
    Py_VISIT(self->loop);
    Py_VISIT(self->result);
    Py_VISIT(self->task);
    Py_VISIT(self->wakeup);
    return 0;
}

static int
stepper_clear(StepperObject *self)
{
    Py_CLEAR(self->cancel_message);
    Py_CLEAR(self->context);
    Py_CLEAR(self->coro);
    Py_CLEAR(self->exception);
    Py_CLEAR(self->external);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->result);
    Py_CLEAR(self->task);
    Py_CLEAR(self->wakeup);
    return 0;
}

static void
stepper_dealloc(StepperObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    stepper_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* -- the await: the stepper is its own iterator --------------------------- */

static PyObject *
stepper_await(StepperObject *self)
{
    /* A new wait. (must_cancel stays: a cancel asked for inside the step
     * that led here is done when the step yields this wait.) */
    self->state = STATE_PENDING;
    Py_CLEAR(self->result);
    Py_CLEAR(self->exception);
    self->blocking = 1;
    self->phase = PHASE_START;
    return Py_NewRef(self);
}

static PySendResult
stepper_send(StepperObject *self, PyObject *arg, PyObject **presult)
{
    PyObject *message;
    if (self->phase == PHASE_START) {
        self->phase = PHASE_YIELDED;
        *presult = Py_NewRef(self);
        return PYGEN_NEXT;
    }
    if (self->phase != PHASE_YIELDED) {
        PyErr_SetString(PyExc_RuntimeError, "this await of the stepper is over");
        *presult = NULL;
        return PYGEN_ERROR;
    }
    self->phase = PHASE_OVER;
    if (arg != Py_None) {
        *presult = Py_NewRef(arg); /* sent by the step */
        return PYGEN_RETURN;
    }
    /* Woken by the task after set_result() (result() raised for the rest). */
    message = self->result;
    self->result = NULL;
    if (!is_set(message)) {
        Py_XDECREF(message);
        PyErr_SetString(PyExc_AssertionError, "the stepper was woken without a message");
        *presult = NULL;
        return PYGEN_ERROR;
    }
    *presult = message;
    return PYGEN_RETURN;
}

/* send() and __next__, for callers that don't use am_send (a coroutine run
 * under a tracer, such as coverage.py, calls these). */
static PyObject *
stepper_send_method(StepperObject *self, PyObject *arg)
{
    PyObject *result;
    PySendResult status = stepper_send(self, arg, &result);
    if (status == PYGEN_RETURN) {
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
        return NULL;
    }
    return status == PYGEN_NEXT ? result : NULL;
}

static PyObject *
stepper_iternext(StepperObject *self)
{
    return stepper_send_method(self, Py_None);
}

/* -- done(), set_result() and the step ------------------------------------ */

static PyObject *
stepper_done(StepperObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state != STATE_PENDING);
}

static PyObject *
call_task_hook(PyObject *hook, StepperObject *self)
{
    PyObject *args[2] = {self->loop, self->task};
    if (self->loop == NULL || self->task == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "StepperCore.__init__() was not called");
        return NULL;
    }
    return PyObject_Vectorcall(hook, args, 2, NULL);
}

/* Run the task's coroutine up to its next wait; the task is entered. */
static PyObject *
stepper_step(StepperObject *self, PyObject *message)
{
    PyObject *context = Py_XNewRef(self->context);
    PyObject *coro = Py_XNewRef(self->coro);
    PyObject *yielded = NULL;
    PyObject *exc_type, *exc_value, *exc_tb, *left;
    PySendResult status = PYGEN_ERROR;
    int entered = 0, raised = 0;

    self->stepping = 1;
    if (!is_set(coro)) {
        PyErr_SetString(PyExc_RuntimeError, "StepperCore.__init__() was not called");
    }
    else if (!is_set(context) || PyContext_Enter(context) == 0) {
        entered = is_set(context);
        status = PyIter_Send(coro, message, &yielded);
        raised = status == PYGEN_ERROR;
        if (entered && PyContext_Exit(context) < 0) {
            Py_CLEAR(yielded);
            status = PYGEN_ERROR;
            raised = 0;
        }
    }
    self->stepping = 0;
    Py_XDECREF(context);
    Py_XDECREF(coro);
    /* The task is left whatever the step did; its exception waits meanwhile. */
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    left = call_task_hook(leave_task, self);
    if (left == NULL) {
        Py_CLEAR(yielded);
        if (exc_type != NULL) {
            PyErr_Clear();
            PyErr_Restore(exc_type, exc_value, exc_tb);
        }
        return NULL;
    }
    Py_DECREF(left);
    if (raised && exc_type != NULL) {
        /* The coroutine raised: its task ends with the exception. */
        PyErr_NormalizeException(&exc_type, &exc_value, &exc_tb);
        if (exc_tb != NULL) {
            PyException_SetTraceback(exc_value, exc_tb);
        }
        left = PyObject_CallMethodObjArgs((PyObject *)self, str_finish, Py_None, exc_value, NULL);
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
        return left;
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
    if (status == PYGEN_ERROR) {
        return NULL;
    }
    if (status == PYGEN_RETURN) {
        /* The coroutine returned: so does its task. */
        left = PyObject_CallMethodObjArgs((PyObject *)self, str_finish, yielded, Py_None, NULL);
        Py_DECREF(yielded);
        return left;
    }
    if (yielded == (PyObject *)self) {
        /* Waiting for the next message again, the task none the wiser. */
        Py_DECREF(yielded);
        if (self->must_cancel) {
            self->must_cancel = 0;
            self->state = STATE_CANCELLED;
            return PyObject_CallMethodNoArgs((PyObject *)self, str_wake);
        }
        Py_RETURN_NONE;
    }
    left = PyObject_CallMethodOneArg((PyObject *)self, str_hand_over, yielded);
    Py_DECREF(yielded);
    return left;
}

static PyObject *
stepper_set_result(StepperObject *self, PyObject *message)
{
    if (is_set(self->wakeup) && !self->stepping && is_set(self->task)) {
        PyObject *entered = call_task_hook(enter_task, self);
        if (entered != NULL) {
            Py_DECREF(entered);
            return stepper_step(self, message);
        }
        if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) {
            return NULL;
        }
        /* Another task is running: not called from the event loop. */
        PyErr_Clear();
    }
    self->state = STATE_DONE;
    Py_XSETREF(self->result, Py_NewRef(message));
    return PyObject_CallMethodNoArgs((PyObject *)self, str_wake);
}

/* For _receiver.c: 1 if `waiter` is a StepperCore (or subclass) whose wait
 * isn't over, 0 if it is one whose wait is over, -1 if it is something else. */
int
ws13_stepper_waiting(PyObject *waiter)
{
    if (stepper_type == NULL || !PyObject_TypeCheck(waiter, stepper_type)) {
        return -1;
    }
    return ((StepperObject *)waiter)->state == STATE_PENDING;
}

/* For _receiver.c: set_result() on a StepperCore, without the method call. */
PyObject *
ws13_stepper_set_result(PyObject *stepper, PyObject *message)
{
    return stepper_set_result((StepperObject *)stepper, message);
}

static PyObject *
stepper_step_method(StepperObject *self, PyObject *message)
{
    return stepper_step(self, message);
}

/* A class statement's subclass doesn't inherit am_send on CPython 3.11
 * (inherit_slots() copies am_await, am_aiter and am_anext only), so every
 * await of a Stepper went through tp_iternext and the send() method, with a
 * StopIteration raised and caught per message. Give the subclass ours. */
static PyObject *
stepper_init_subclass(PyObject *cls, PyObject *Py_UNUSED(ignored))
{
    PyTypeObject *type = (PyTypeObject *)cls;
    if (PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE) && type->tp_as_async != NULL
        && type->tp_as_async->am_send == NULL) {
        type->tp_as_async->am_send = (sendfunc)stepper_send;
    }
    Py_RETURN_NONE;
}

static PyMethodDef stepper_methods[] = {
    {"__init_subclass__", (PyCFunction)stepper_init_subclass, METH_NOARGS | METH_CLASS,
     "Give a subclass the C am_send (CPython 3.11 doesn't inherit it)."},
    {"done", (PyCFunction)stepper_done, METH_NOARGS, "Whether the current wait is over."},
    {"set_result", (PyCFunction)stepper_set_result, METH_O,
     "Give the waiting reader a message: step it now if possible."},
    {"_step", (PyCFunction)stepper_step_method, METH_O,
     "Run the task's coroutine up to its next wait (the task is entered)."},
    {"send", (PyCFunction)stepper_send_method, METH_O, "The await's iterator protocol."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef stepper_members[] = {
    {"_asyncio_future_blocking", T_BOOL, offsetof(StepperObject, blocking), 0, NULL},
    {"_cancel_message", T_OBJECT, offsetof(StepperObject, cancel_message), 0, NULL},
    {"_context", T_OBJECT, offsetof(StepperObject, context), 0, NULL},
    {"_coro", T_OBJECT, offsetof(StepperObject, coro), 0, NULL},
    {"_exception", T_OBJECT, offsetof(StepperObject, exception), 0, NULL},
    {"_external", T_OBJECT, offsetof(StepperObject, external), 0, NULL},
    {"_loop", T_OBJECT, offsetof(StepperObject, loop), 0, NULL},
    {"_must_cancel", T_BOOL, offsetof(StepperObject, must_cancel), 0, NULL},
    {"_result", T_OBJECT, offsetof(StepperObject, result), 0, NULL},
    {"_state", T_INT, offsetof(StepperObject, state), 0, NULL},
    {"_stepping", T_BOOL, offsetof(StepperObject, stepping), 0, NULL},
    {"_wakeup", T_OBJECT, offsetof(StepperObject, wakeup), 0, NULL},
    {"task", T_OBJECT, offsetof(StepperObject, task), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot stepper_slots[] = {
    {Py_tp_doc, "What a task reading messages waits on; see ws13/asyncio/_stepcore.py."},
    {Py_tp_init, stepper_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, stepper_dealloc},
    {Py_tp_traverse, stepper_traverse},
    {Py_tp_clear, stepper_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, stepper_iternext},
    {Py_tp_methods, stepper_methods},
    {Py_tp_members, stepper_members},
    {Py_am_await, stepper_await},
    {Py_am_send, stepper_send},
    {0, NULL},
};

static PyType_Spec stepper_spec = {
    "ws13._speedups.StepperCore",
    sizeof(StepperObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    stepper_slots,
};

/* Called by ws13._speedups' module exec slot: adds StepperCore. */
int
ws13_add_stepper(PyObject *module)
{
    PyObject *tasks, *type;
    if (enter_task == NULL) {
        tasks = PyImport_ImportModule("asyncio.tasks");
        if (tasks == NULL) {
            return -1;
        }
        enter_task = PyObject_GetAttrString(tasks, "_enter_task");
        leave_task = enter_task == NULL ? NULL : PyObject_GetAttrString(tasks, "_leave_task");
        Py_DECREF(tasks);
        if (leave_task == NULL) {
            Py_CLEAR(enter_task);
            return -1;
        }
        str_wake = PyUnicode_InternFromString("_wake");
        str_hand_over = PyUnicode_InternFromString("_hand_over");
        str_finish = PyUnicode_InternFromString("_finish");
        if (str_wake == NULL || str_hand_over == NULL || str_finish == NULL) {
            return -1;
        }
    }
    type = PyType_FromSpec(&stepper_spec);
    if (type == NULL) {
        return -1;
    }
    Py_XSETREF(stepper_type, (PyTypeObject *)Py_NewRef(type));
    if (PyModule_AddObject(module, "StepperCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}
