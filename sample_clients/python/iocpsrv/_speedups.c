/*
 * iocpsrv._speedups: the optional C accelerator of the asyncio layer
 * (_transport.py). It links nothing: _accel.py hands it the addresses of
 * iocp_wait and iocp_send from the library ctypes already loaded (so
 * _loader.py stays the one place that finds the library). Without it (no
 * compiler when the package was installed, or IOCPSRV_PURE_PYTHON=1) the
 * pure-Python code does the same.
 *
 * What it does, and only that:
 *   bind(wait_addr, send_addr)       the library's two functions
 *   wait(server, events, max, ms)    iocp_wait, the GIL released
 *   send(server, id, data)           iocp_send of a bytes object
 *   deliver(conns, events, n, other) one batch: each DATA event's bytes go
 *       to its transport's protocol.data_received() directly (as
 *       IocpTransport._data_received would); every other event, and DATA
 *       for a transport that is paused or holds bytes, goes to Python:
 *       other(type, value, id, data, len), or transport._data_received().
 *
 * Copyright the iocpsrv authors.
 * Distributed under the Boost Software License, Version 1.0
 * (see LICENSE_1_0.txt or https://www.boost.org/LICENSE_1_0.txt).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* struct iocp_event of api/iocpsrv.h: 40 bytes, the same everywhere. */
typedef struct {
  uint32_t type;
  int32_t value;
  uint64_t id;
  uint64_t data;
  uint64_t len;
  uint64_t context;
} event;

#define EVENT_DATA 2

typedef int (*wait_fn)(void *server, void *events, uint32_t max, int32_t timeout_ms);
typedef int (*send_fn)(void *server, uint64_t id, const void *data, size_t len);

static wait_fn iocp_wait_ = NULL;
static send_fn iocp_send_ = NULL;

static PyObject *s_closing, *s_reading_paused, *s_held, *s_protocol, *s_data_received,
    *s_data_received_tr, *s_fatal, *s_fatal_text;

static PyObject *bind(PyObject *self, PyObject *args) {
  unsigned long long wait_addr, send_addr;
  (void)self;
  if (!PyArg_ParseTuple(args, "KK:bind", &wait_addr, &send_addr))
    return NULL;
  if (!wait_addr || !send_addr) {
    PyErr_SetString(PyExc_ValueError, "bind: a function address is 0");
    return NULL;
  }
  iocp_wait_ = (wait_fn)(uintptr_t)wait_addr;
  iocp_send_ = (send_fn)(uintptr_t)send_addr;
  Py_RETURN_NONE;
}

static int unbound(void) {
  if (iocp_wait_)
    return 0;
  PyErr_SetString(PyExc_RuntimeError, "iocpsrv._speedups: bind() was not called");
  return 1;
}

static PyObject *wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  void *server, *events;
  unsigned long max;
  long timeout;
  int n;
  (void)self;
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "wait(server, events, max, timeout_ms)");
    return NULL;
  }
  if (unbound())
    return NULL;
  server = PyLong_AsVoidPtr(args[0]);
  events = PyLong_AsVoidPtr(args[1]);
  max = PyLong_AsUnsignedLong(args[2]);
  timeout = PyLong_AsLong(args[3]);
  if (PyErr_Occurred())
    return NULL;
  Py_BEGIN_ALLOW_THREADS
  n = iocp_wait_(server, events, (uint32_t)max, (int32_t)timeout);
  Py_END_ALLOW_THREADS
  return PyLong_FromLong(n);
}

static PyObject *send(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  void *server;
  unsigned long long id;
  (void)self;
  if (nargs != 3 || !PyBytes_CheckExact(args[2])) {
    PyErr_SetString(PyExc_TypeError, "send(server, id, data: bytes)");
    return NULL;
  }
  if (unbound())
    return NULL;
  server = PyLong_AsVoidPtr(args[0]);
  id = PyLong_AsUnsignedLongLong(args[1]);
  if (PyErr_Occurred())
    return NULL;
  /* Not releasing the GIL: iocp_send copies and never blocks; a release
   * would cost more than the call. */
  return PyLong_FromLong(
      iocp_send_(server, id, PyBytes_AS_STRING(args[2]), (size_t)PyBytes_GET_SIZE(args[2])));
}

/* The transport's own test of IocpTransport._data_received: 1 when the
 * bytes may go straight to the protocol, 0 when Python must decide (paused,
 * bytes held), -1 when the transport is closing (drop them), -2 on error. */
static int direct(PyObject *tr) {
  PyObject *v;
  int r;
  if (!(v = PyObject_GetAttr(tr, s_closing)))
    return -2;
  r = PyObject_IsTrue(v);
  Py_DECREF(v);
  if (r)
    return r < 0 ? -2 : -1;
  if (!(v = PyObject_GetAttr(tr, s_reading_paused)))
    return -2;
  r = PyObject_IsTrue(v);
  Py_DECREF(v);
  if (r)
    return r < 0 ? -2 : 0;
  if (!(v = PyObject_GetAttr(tr, s_held)))
    return -2;
  r = PyObject_IsTrue(v);
  Py_DECREF(v);
  return r < 0 ? -2 : !r;
}

/* protocol.data_received(data) failed: as IocpTransport._protocol_data,
 * SystemExit and KeyboardInterrupt propagate, anything else is
 * transport._fatal(exc, text). 0, or -1 with the exception set. */
static int failed(PyObject *tr) {
  PyObject *exc, *res;
#if PY_VERSION_HEX >= 0x030C0000
  exc = PyErr_GetRaisedException();
#else
  PyObject *type, *tb;
  PyErr_Fetch(&type, &exc, &tb);
  PyErr_NormalizeException(&type, &exc, &tb);
  if (tb && exc)
    PyException_SetTraceback(exc, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
#endif
  if (!exc)
    return 0;
  if (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
      PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt)) {
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore((PyObject *)Py_TYPE(exc), exc, PyException_GetTraceback(exc));
    Py_INCREF(Py_TYPE(exc));
#endif
    return -1;
  }
  res = PyObject_CallMethodObjArgs(tr, s_fatal, exc, s_fatal_text, NULL);
  Py_DECREF(exc);
  if (!res)
    return -1;
  Py_DECREF(res);
  return 0;
}

/* One DATA event for transport `tr`: 0, or -1 with an exception set. */
static int data(PyObject *tr, const event *e) {
  PyObject *bytes, *proto, *res = NULL;
  int how = direct(tr);
  if (how == -2)
    return -1;
  if (how == -1)
    return 0;
  bytes = PyBytes_FromStringAndSize((const char *)(uintptr_t)e->data, (Py_ssize_t)e->len);
  if (!bytes)
    return -1;
  if (how == 0) {
    PyObject *a[2] = {tr, bytes};
    res = PyObject_VectorcallMethod(s_data_received_tr, a, 2, NULL);
    Py_DECREF(bytes);
    if (!res)
      return -1;
    Py_DECREF(res);
    return 0;
  }
  proto = PyObject_GetAttr(tr, s_protocol);
  if (proto) {
    PyObject *a[2] = {proto, bytes};
    res = PyObject_VectorcallMethod(s_data_received, a, 2, NULL);
    Py_DECREF(proto);
  }
  Py_DECREF(bytes);
  if (res) {
    Py_DECREF(res);
    return 0;
  }
  return failed(tr);
}

static PyObject *deliver(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  PyObject *conns, *other, *key, *tr, *res;
  const event *ev;
  Py_ssize_t n, i;
  (void)self;
  if (nargs != 4 || !PyDict_Check(args[0])) {
    PyErr_SetString(PyExc_TypeError, "deliver(conns: dict, events, n, other)");
    return NULL;
  }
  conns = args[0];
  ev = (const event *)PyLong_AsVoidPtr(args[1]);
  n = PyLong_AsSsize_t(args[2]);
  other = args[3];
  if (PyErr_Occurred())
    return NULL;
  for (i = 0; i < n; i++) {
    const event *e = &ev[i];
    if (e->type != EVENT_DATA) {
      res = PyObject_CallFunction(other, "IiKKK", (unsigned)e->type, (int)e->value,
                                  (unsigned long long)e->id, (unsigned long long)e->data,
                                  (unsigned long long)e->len);
      if (!res)
        return NULL;
      Py_DECREF(res);
      continue;
    }
    if (!(key = PyLong_FromUnsignedLongLong(e->id)))
      return NULL;
    tr = PyDict_GetItemWithError(conns, key);
    Py_DECREF(key);
    if (!tr) {
      if (PyErr_Occurred())
        return NULL;
      continue;
    }
    Py_INCREF(tr); /* the protocol may drop it from conns meanwhile */
    if (data(tr, e) < 0) {
      Py_DECREF(tr);
      return NULL;
    }
    Py_DECREF(tr);
  }
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, "bind(wait_addr, send_addr): the library's iocp_wait and iocp_send."},
    {"wait", (PyCFunction)(void (*)(void))wait, METH_FASTCALL,
     "wait(server, events, max, timeout_ms) -> int: iocp_wait, the GIL released."},
    {"send", (PyCFunction)(void (*)(void))send, METH_FASTCALL,
     "send(server, id, data) -> int: iocp_send of a bytes object."},
    {"deliver", (PyCFunction)(void (*)(void))deliver, METH_FASTCALL,
     "deliver(conns, events, n, other): one batch of n events (see the module's text)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "iocpsrv._speedups",
                                    "The optional C accelerator of iocpsrv's asyncio layer.", -1,
                                    methods, NULL, NULL, NULL, NULL};

static int intern(PyObject **slot, const char *text) {
  *slot = PyUnicode_InternFromString(text);
  return *slot ? 0 : -1;
}

PyMODINIT_FUNC PyInit__speedups(void) {
  if (intern(&s_closing, "_closing") || intern(&s_reading_paused, "_reading_paused") ||
      intern(&s_held, "_held") || intern(&s_protocol, "_protocol") ||
      intern(&s_data_received, "data_received") ||
      intern(&s_data_received_tr, "_data_received") || intern(&s_fatal, "_fatal"))
    return NULL;
  s_fatal_text = PyUnicode_FromString("Fatal error: protocol.data_received() call failed.");
  if (!s_fatal_text)
    return NULL;
  return PyModule_Create(&module);
}
