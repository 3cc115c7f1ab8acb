/* The caller's hot path of a span, compiled: `SpanCore`, the base class of agent_debug.sdk.tracer.Span.

   It holds a span's fields (tracer._PySpanFields when this module is not built) and does in C what Span's Python
   methods do, which stay as its specification and fallback: `span()` builds a span, `__enter__` starts a child of
   the current span, `set_payload` copies the payload, and `__exit__` ends an ok child span, serializes its record
   (in the caller: the record shows the span as it was when it ended) and appends the bytes to the writer's queue.
   Every other case (a root, an error, a retry, a span outside a run, a span ended twice) is handed to the Python
   methods `_start` and `_exit`. tests/test_cspan.py compares the bytes both paths write and runs the SDK's tests
   with this module and without it.

   Nothing here is stored between calls but the references `bind` hands over once, at import. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *trace_id, *span_id, *parent_id, *agent_name, *event_type, *name, *attributes, *payload, *status,
        *error, *token_cost, *run, *timestamp, *t0, *token, *ended, *duration_ns, *retry;
} SpanObject;

/* bound once by `bind` (tracer.py, at import) */
static PyObject *g_current;      /* the ContextVar of the current span */
static PyObject *g_id_pool;      /* list of fresh span ids, popped from the end */
static PyObject *g_new_span_id;  /* () -> str, refills the pool */
static PyObject *g_perf_ns;      /* time.perf_counter_ns */
static PyObject *g_time;         /* time.time */
static PyObject *g_dumps;        /* orjson.dumps */
static PyObject *g_dumps_record; /* safe.dumps_record: (rec) -> (bytes, fault | None) */
static PyObject *g_runtime;      /* the agent_debug.sdk.runtime module */
static PyObject *g_version;      /* FORMAT_VERSION */
static PyObject *g_sleep;        /* time.sleep */
static Py_ssize_t g_yield_mask = -1, g_wake_at = 0;

/* interned names */
static PyObject *s_trace_id, *s_span_id, *s_parent_id, *s_agent_name, *s_event_type, *s_timestamp, *s_duration_ns,
    *s_name, *s_format_version, *s_payload, *s_token_cost, *s_attributes, *s_ok, *s_root, *s_records,
    *s_anchor_wall, *s_anchor_ns, *s_start, *s_exit, *s_writer, *s_collectors, *s_emit, *s_q, *s_buffer_size,
    *s_append, *s_wake, *s_set, *s_stats, *s_dropped, *s_internal_error, *s_update;

#define SPAN_FIELDS(X)                                                                                               \
    X(trace_id) X(span_id) X(parent_id) X(agent_name) X(event_type) X(name) X(attributes) X(payload) X(status)     \
    X(error) X(token_cost) X(run) X(timestamp) X(t0) X(token) X(ended) X(duration_ns) X(retry)

static int span_traverse(SpanObject *self, visitproc visit, void *arg) {
#define VISIT(f) Py_VISIT(self->f);
    SPAN_FIELDS(VISIT)
#undef VISIT
    return 0;
}

static int span_clear(SpanObject *self) {
#define CLEAR(f) Py_CLEAR(self->f);
    SPAN_FIELDS(CLEAR)
#undef CLEAR
    return 0;
}

static void span_dealloc(SpanObject *self) {
    PyObject_GC_UnTrack(self);
    span_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject SpanCore_Type;

/* self.field = value (a new reference, stolen) */
#define SET(f, value)                                                                                                \
    do {                                                                                                             \
        PyObject *_old = self->f;                                                                                    \
        self->f = (value);                                                                                           \
        Py_XDECREF(_old);                                                                                            \
    } while (0)

static int not_bound(void) {
    if (g_current == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "agent_debug.sdk._cspan: bind() was not called");
        return 1;
    }
    return 0;
}

/* a method call whose result is not needed: 0, or -1 with the exception set */
static int done_with(PyObject *result) {
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* -- __enter__ ------------------------------------------------------------------------------------------------ */

static PyObject *pop_span_id(void) {
    Py_ssize_t n = PyList_GET_SIZE(g_id_pool);
    if (n > 0) {
        PyObject *id = PyList_GET_ITEM(g_id_pool, n - 1);
        Py_INCREF(id);
        if (PyList_SetSlice(g_id_pool, n - 1, n, NULL) < 0) {
            Py_DECREF(id);
            return NULL;
        }
        return id;
    }
    return PyObject_CallNoArgs(g_new_span_id);
}

static PyObject *span_enter(SpanObject *self, PyObject *Py_UNUSED(ignored)) {
    if (not_bound())
        return NULL;
    PyObject *parent;
    if (PyContextVar_Get(g_current, Py_None, &parent) < 0)
        return NULL;
    if (parent == Py_None || (self->retry != NULL && self->retry != Py_None) ||
        !PyObject_TypeCheck(parent, &SpanCore_Type)) {
        int rc = done_with(PyObject_CallMethodOneArg((PyObject *)self, s_start, parent));
        Py_DECREF(parent);
        if (rc < 0)
            return NULL;
    } else { /* a child span: the hot path */
        SpanObject *p = (SpanObject *)parent;
        if (p->trace_id == NULL || p->span_id == NULL || p->run == NULL || p->agent_name == NULL) {
            Py_DECREF(parent);
            PyErr_SetString(PyExc_AttributeError, "the current span was never started");
            return NULL;
        }
        PyObject *id = pop_span_id();
        if (id == NULL) {
            Py_DECREF(parent);
            return NULL;
        }
        SET(span_id, id);
        Py_INCREF(p->trace_id);
        SET(trace_id, p->trace_id);
        Py_INCREF(p->span_id);
        SET(parent_id, p->span_id);
        Py_INCREF(p->run);
        SET(run, p->run);
        if (self->agent_name == NULL || self->agent_name == Py_None) {
            Py_INCREF(p->agent_name);
            SET(agent_name, p->agent_name);
        }
        Py_DECREF(parent);
        PyObject *t0 = PyObject_CallNoArgs(g_perf_ns);
        if (t0 == NULL)
            return NULL;
        SET(t0, t0);
        /* wall time from the monotonic clock, anchored at the run's start: one clock read, not two */
        PyObject *ts;
        if (self->run != Py_None) {
            PyObject *wall = PyObject_GetAttr(self->run, s_anchor_wall);
            if (wall == NULL)
                return NULL;
            PyObject *ns = PyObject_GetAttr(self->run, s_anchor_ns);
            if (ns == NULL) {
                Py_DECREF(wall);
                return NULL;
            }
            /* run.anchor_wall + (t0 - run.anchor_ns) / 1e9, with Python's own operations */
            PyObject *diff = PyNumber_Subtract(t0, ns);
            Py_DECREF(ns);
            double d = diff == NULL ? -1.0 : PyFloat_AsDouble(diff);
            Py_XDECREF(diff);
            double w = PyFloat_AsDouble(wall);
            Py_DECREF(wall);
            if (PyErr_Occurred())
                return NULL;
            ts = PyFloat_FromDouble(w + d / 1e9);
        } else {
            ts = PyObject_CallNoArgs(g_time);
        }
        if (ts == NULL)
            return NULL;
        SET(timestamp, ts);
    }
    PyObject *token = PyContextVar_Set(g_current, (PyObject *)self);
    if (token == NULL)
        return NULL;
    SET(token, token);
    Py_INCREF(self);
    return (PyObject *)self;
}

/* -- set_payload ---------------------------------------------------------------------------------------------- */

/* runtime.internal_error(exc) for the exception being raised: counted and logged (re-raised under pytest) */
static PyObject *internal_error(void) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (exc == NULL)
        return NULL;
#endif
    PyObject *r = PyObject_CallMethodOneArg(g_runtime, s_internal_error, exc);
    Py_DECREF(exc);
    return r;
}

static PyObject *span_set_payload(SpanObject *self, PyObject *payload) {
    if (not_bound())
        return NULL;
    int rc;
    if (self->payload == NULL || self->payload == Py_None) {
        PyObject *copy = PyDict_CheckExact(payload) ? PyDict_Copy(payload)
                                                    : PyObject_CallOneArg((PyObject *)&PyDict_Type, payload);
        if (copy != NULL)
            SET(payload, copy);
        rc = copy == NULL ? -1 : 0;
    } else if (PyDict_CheckExact(self->payload) && PyDict_CheckExact(payload)) {
        rc = PyDict_Update(self->payload, payload);
    } else {
        rc = done_with(PyObject_CallMethodOneArg(self->payload, s_update, payload));
    }
    if (rc < 0) { /* not a mapping */
        if (!PyErr_ExceptionMatches(PyExc_Exception) || done_with(internal_error()) < 0)
            return NULL;
    }
    Py_INCREF(self);
    return (PyObject *)self;
}

/* -- __exit__ ------------------------------------------------------------------------------------------------- */

static int is_true(PyObject *o) { return o == Py_True ? 1 : (o == NULL || o == Py_False ? 0 : PyObject_IsTrue(o)); }

/* -- the record's bytes ---------------------------------------------------------------------------------------- */

/* fast_record: the bytes orjson.dumps(rec) gives for the record of an ok child span, written without building the
   dict: the envelope's fields directly, payload / token_cost / attributes and the timestamp by orjson. NULL
   without an exception when a field is outside what it writes exactly as orjson does (record_bytes then builds
   the dict: same bytes, slower); NULL with an exception when orjson failed on a value. */

typedef struct {
    const char *s;
    Py_ssize_t n;
} Piece;

/* bytes JSON writes as they are inside a string: not a control character, a quote or a backslash */
static unsigned char g_plain[256];

/* a str JSON writes as is between quotes: valid UTF-8 with no control character, quote or backslash */
static int plain_str(PyObject *o, Piece *out) {
    if (!PyUnicode_CheckExact(o))
        return 0;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL) { /* a lone surrogate: orjson refuses it, so does the dict path */
        PyErr_Clear();
        return 0;
    }
    const unsigned char *u = (const unsigned char *)s;
    unsigned char all = 1;
    for (Py_ssize_t i = 0; i < n; i++)
        all &= g_plain[u[i]];
    if (!all)
        return 0;
    out->s = s;
    out->n = n;
    return 1;
}

/* decimal digits of v >= 0 at the end of buf[0:24]; returns the first */
static char *digits(long long v, char *end) {
    unsigned long long u = (unsigned long long)v;
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

/* the JSON of the record's optional parts (payload, token_cost, attributes: in that order), each NULL when the
   record has none; -1 with an exception when orjson failed on one */
static int optional_parts(SpanObject *self, PyObject *parts[3]) {
    PyObject *values[3] = {self->payload, self->token_cost, NULL};
    if (self->attributes != NULL) {
        int some = is_true(self->attributes);
        if (some < 0)
            return -1;
        if (some)
            values[2] = self->attributes;
    }
    for (int i = 0; i < 3; i++) {
        if (values[i] == NULL || values[i] == Py_None)
            continue;
        if ((parts[i] = PyObject_CallOneArg(g_dumps, values[i])) == NULL)
            return -1;
    }
    return 0;
}

static PyObject *fast_record(SpanObject *self) {
    if (self->trace_id == NULL || self->span_id == NULL || self->parent_id == NULL || self->agent_name == NULL ||
        self->event_type == NULL || self->name == NULL || self->timestamp == NULL || self->duration_ns == NULL)
        return NULL; /* deleted by the agent: the dict path says which */
    Piece trace, span, parent = {"null", 4}, agent = {"null", 4}, kind, name;
    int parent_null = self->parent_id == Py_None, agent_null = self->agent_name == Py_None;
    if (!plain_str(self->trace_id, &trace) || !plain_str(self->span_id, &span) ||
        (!parent_null && !plain_str(self->parent_id, &parent)) ||
        (!agent_null && !plain_str(self->agent_name, &agent)) || !plain_str(self->event_type, &kind) ||
        !plain_str(self->name, &name))
        return NULL;
    if (!PyFloat_CheckExact(self->timestamp) || !PyLong_CheckExact(self->duration_ns) || !PyLong_CheckExact(g_version))
        return NULL;
    int overflow;
    long long dur = PyLong_AsLongLongAndOverflow(self->duration_ns, &overflow);
    if (overflow || dur < 0) {
        PyErr_Clear();
        return NULL;
    }
    long long version = PyLong_AsLongLongAndOverflow(g_version, &overflow);
    if (overflow || version < 0) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *parts[3] = {NULL, NULL, NULL}, *ts_json = NULL, *out = NULL;
    if (optional_parts(self, parts) < 0)
        goto done;
    /* the timestamp by orjson too: its float format (shortest round trip) is not repr's everywhere */
    if ((ts_json = PyObject_CallOneArg(g_dumps, self->timestamp)) == NULL)
        goto done;
    char dur_buf[24], ver_buf[24];
    char *dur_text = digits(dur, dur_buf + sizeof dur_buf), *ver_text = digits(version, ver_buf + sizeof ver_buf);
#define LIT(text) text, (Py_ssize_t)(sizeof(text) - 1)
    /* the quotes around parent_id and agent_name (pieces 5, 7, 9, 11) go when the value is null */
    Piece pieces[] = {
        {LIT("{\"trace_id\":\"")},
        trace,
        {LIT("\",\"span_id\":\"")},
        span,
        {LIT("\",\"parent_id\":")},
        {LIT("\"")},
        parent,
        {LIT("\"")},
        {LIT(",\"agent_name\":")},
        {LIT("\"")},
        agent,
        {LIT("\"")},
        {LIT(",\"event_type\":\"")},
        kind,
        {LIT("\",\"timestamp\":")},
        {PyBytes_AS_STRING(ts_json), PyBytes_GET_SIZE(ts_json)},
        {LIT(",\"duration_ns\":")},
        {dur_text, dur_buf + sizeof dur_buf - dur_text},
        {LIT(",\"name\":\"")},
        name,
        {LIT("\",\"format_version\":")},
        {ver_text, ver_buf + sizeof ver_buf - ver_text},
        {LIT(",\"payload\":")},
        {NULL, 0},
        {LIT(",\"token_cost\":")},
        {NULL, 0},
        {LIT(",\"attributes\":")},
        {NULL, 0},
        {LIT("}")},
    };
#undef LIT
    enum { PAYLOAD = 22 }; /* the index of the ",\"payload\":" piece; each optional part is a key and a value */
    if (parent_null)
        pieces[5].n = pieces[7].n = 0;
    if (agent_null)
        pieces[9].n = pieces[11].n = 0;
    for (int i = 0; i < 3; i++) {
        if (parts[i] == NULL)
            pieces[PAYLOAD + 2 * i].n = 0;
        else {
            pieces[PAYLOAD + 1 + 2 * i].s = PyBytes_AS_STRING(parts[i]);
            pieces[PAYLOAD + 1 + 2 * i].n = PyBytes_GET_SIZE(parts[i]);
        }
    }
    Py_ssize_t total = 0, count = (Py_ssize_t)(sizeof pieces / sizeof pieces[0]);
    for (Py_ssize_t i = 0; i < count; i++)
        total += pieces[i].n;
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out != NULL) {
        char *w = PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < count; i++) {
            memcpy(w, pieces[i].s, (size_t)pieces[i].n);
            w += pieces[i].n;
        }
    }
done:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(parts[i]);
    Py_XDECREF(ts_json);
    return out;
}

/* The record's bytes, and in *fault the fault dumps_record reports (a new reference, or NULL): written directly
   when fast_record can, else from the record dict as Span._record builds it (orjson.dumps, then dumps_record
   when orjson has no type for a value). NULL with an exception when neither could. */
static PyObject *record_bytes(SpanObject *self, PyObject **fault) {
    PyObject *data = fast_record(self);
    if (data != NULL)
        return data;
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear(); /* a value orjson has no type for: the dict path below counts it as it always does */
    }
    PyObject *rec = PyDict_New();
    if (rec == NULL)
        return NULL;
    PyObject *fields[][2] = {
        {s_trace_id, self->trace_id},     {s_span_id, self->span_id},     {s_parent_id, self->parent_id},
        {s_agent_name, self->agent_name}, {s_event_type, self->event_type}, {s_timestamp, self->timestamp},
        {s_duration_ns, self->duration_ns}, {s_name, self->name},       {s_format_version, g_version},
        {s_payload, self->payload},       {s_token_cost, self->token_cost}, {s_attributes, self->attributes},
    };
    enum { REQUIRED = 9 }; /* the first nine; payload and token_cost when not None, attributes when not empty */
    for (int i = 0; i < (int)(sizeof fields / sizeof fields[0]); i++) {
        PyObject *value = fields[i][1];
        if (i >= REQUIRED) {
            int some = value == NULL || value == Py_None ? 0 : i == REQUIRED + 2 ? is_true(value) : 1;
            if (some < 0)
                goto done;
            if (!some)
                continue;
        } else if (value == NULL) {
            PyErr_SetString(PyExc_AttributeError, "a span field is unset");
            goto done;
        }
        if (PyDict_SetItem(rec, fields[i][0], value) < 0)
            goto done;
    }
    data = PyObject_CallOneArg(g_dumps, rec);
    if (data == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        /* a value JSON has no type for, a non-string key, ...: rare, so paid for only then */
        PyErr_Clear();
        PyObject *pair = PyObject_CallOneArg(g_dumps_record, rec);
        if (pair == NULL)
            goto done;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "dumps_record returned no (data, fault) pair");
            goto done;
        }
        data = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
        if (PyTuple_GET_ITEM(pair, 1) != Py_None)
            *fault = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
        Py_DECREF(pair);
    }
done:
    Py_DECREF(rec);
    return data;
}

/* runtime.emit(trace_id, 0, data), or Writer.emit for flags 0, inlined (tests/test_sdk_paths.py checks both drop
   alike): 0, or -1 with an exception set */
static int enqueue(PyObject *trace_id, PyObject *data) {
    PyObject *w = PyObject_GetAttr(g_runtime, s_writer);
    if (w == NULL)
        return -1;
    PyObject *collectors = PyObject_GetAttr(g_runtime, s_collectors);
    int some = collectors == NULL ? -1 : is_true(collectors);
    Py_XDECREF(collectors);
    if (some != 0 || w == Py_None) {
        Py_DECREF(w);
        if (some < 0)
            return -1;
        PyObject *zero = PyLong_FromLong(0);
        PyObject *argv[4] = {g_runtime, trace_id, zero, data};
        int rc = zero == NULL ? -1 : done_with(PyObject_VectorcallMethod(s_emit, argv, 4, NULL));
        Py_XDECREF(zero);
        return rc;
    }
    int rc = -1;
    PyObject *q = PyObject_GetAttr(w, s_q), *size = q == NULL ? NULL : PyObject_GetAttr(w, s_buffer_size);
    if (size == NULL)
        goto out;
    Py_ssize_t n = PyObject_Length(q), cap = PyNumber_AsSsize_t(size, PyExc_OverflowError);
    if (n < 0 || (cap == -1 && PyErr_Occurred()))
        goto out;
    if (n >= cap) { /* full: w.stats.dropped += 1 */
        PyObject *stats = PyObject_GetAttr(w, s_stats);
        PyObject *dropped = stats == NULL ? NULL : PyObject_GetAttr(stats, s_dropped);
        PyObject *one = dropped == NULL ? NULL : PyLong_FromLong(1);
        PyObject *more = one == NULL ? NULL : PyNumber_Add(dropped, one);
        rc = more == NULL ? -1 : PyObject_SetAttr(stats, s_dropped, more);
        Py_XDECREF(more);
        Py_XDECREF(one);
        Py_XDECREF(dropped);
        Py_XDECREF(stats);
        goto out;
    }
    if (done_with(PyObject_CallMethodOneArg(q, s_append, data)) < 0)
        goto out;
    n += 1;
    rc = 0;
    if ((n & g_yield_mask) == 0 && n >= g_wake_at) { /* a burst: see Writer.emit */
        PyObject *wake = PyObject_GetAttr(w, s_wake);
        rc = wake == NULL ? -1 : done_with(PyObject_CallMethodNoArgs(wake, s_set));
        Py_XDECREF(wake);
        PyObject *zero = rc < 0 ? NULL : PyLong_FromLong(0);
        rc = zero == NULL ? -1 : done_with(PyObject_CallOneArg(g_sleep, zero));
        Py_XDECREF(zero);
    }
out:
    Py_XDECREF(q);
    Py_XDECREF(size);
    Py_DECREF(w);
    return rc;
}

static PyObject *span_exit(SpanObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (not_bound())
        return NULL;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__ expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *exc = args[1];
    PyObject *run = self->run;
    int ended = is_true(self->ended);
    if (ended < 0)
        return NULL;
    int slow = exc != Py_None || run == NULL || run == Py_None || ended || self->status == NULL ||
               self->t0 == NULL || self->trace_id == NULL;
    if (!slow && self->status != s_ok) {
        int eq = PyObject_RichCompareBool(self->status, s_ok, Py_EQ);
        if (eq < 0)
            return NULL;
        slow = !eq;
    }
    if (!slow) {
        PyObject *root = PyObject_GetAttr(run, s_root);
        if (root == NULL)
            return NULL;
        slow = root == (PyObject *)self;
        Py_DECREF(root);
    }
    if (slow)
        return PyObject_CallMethodOneArg((PyObject *)self, s_exit, exc);

    /* the hot path of _exit/end/_emit/_record and runtime.emit: an ok child span */
    PyObject *now = PyObject_CallNoArgs(g_perf_ns);
    if (now == NULL)
        return NULL;
    PyObject *dur = PyNumber_Subtract(now, self->t0);
    Py_DECREF(now);
    if (dur == NULL)
        return NULL;
    SET(duration_ns, dur);
    SET(ended, Py_NewRef(Py_True));
    if (self->token != NULL && self->token != Py_None) {
        if (PyContextVar_Reset(g_current, self->token) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) /* exited in another context than it was entered in */
                return NULL;
            PyErr_Clear();
        }
    }
    SET(token, Py_NewRef(Py_None));

    Py_INCREF(run); /* held while the record is built and queued */
    PyObject *fault = NULL, *data = record_bytes(self, &fault), *records = NULL;
    int rc = data == NULL || enqueue(self->trace_id, data) < 0 ? -1 : 0;
    if (rc == 0 && (records = PyObject_GetAttr(run, s_records)) == NULL)
        rc = -1;
    if (rc == 0 && records != Py_None)
        rc = done_with(PyObject_CallMethodOneArg(records, s_append, data));
    Py_XDECREF(records);
    Py_XDECREF(data);
    Py_DECREF(run);
    if (rc < 0) {
        Py_XDECREF(fault);
        /* an SDK fault: counted and logged (re-raised under pytest); KeyboardInterrupt, ...: not one */
        if (!PyErr_ExceptionMatches(PyExc_Exception) || done_with(internal_error()) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (fault != NULL) { /* counted once the record is on its way */
        rc = done_with(PyObject_CallMethodOneArg(g_runtime, s_internal_error, fault));
        Py_DECREF(fault);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* -- span(...) ------------------------------------------------------------------------------------------------ */

static PyObject *g_span_type;        /* tracer.Span */
static PyObject *g_copy_attributes;  /* tracer._copy_attributes: a copy, or {} and a counted fault */
static PyObject *s_AGENT, *s_retry_of, *s_agent, *s_event_type_kw, *s_attributes_kw, *s_name_kw;

static int kw_is(PyObject *key, PyObject *name) {
    return key == name || PyUnicode_Compare(key, name) == 0;
}

static PyObject *new_span(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    (void)module;
    if (not_bound())
        return NULL;
    PyObject *name = NULL, *agent = Py_None, *event_type = s_AGENT, *attributes = Py_None, *retry = Py_None;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "span() takes 1 positional argument but %zd were given", nargs);
        return NULL;
    }
    if (nargs == 1)
        name = args[0];
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i), *value = args[nargs + i];
        if (kw_is(key, s_agent))
            agent = value;
        else if (kw_is(key, s_event_type_kw))
            event_type = value;
        else if (kw_is(key, s_attributes_kw))
            attributes = value;
        else if (kw_is(key, s_retry_of))
            retry = value;
        else if (kw_is(key, s_name_kw)) {
            if (name != NULL) {
                PyErr_SetString(PyExc_TypeError, "span() got multiple values for argument 'name'");
                return NULL;
            }
            name = value;
        } else {
            PyErr_Format(PyExc_TypeError, "span() got an unexpected keyword argument '%U'", key);
            return NULL;
        }
    }
    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "span() missing 1 required positional argument: 'name'");
        return NULL;
    }
    PyObject *attrs;
    int some = attributes == Py_None ? 0 : PyObject_IsTrue(attributes);
    if (some == 0)
        attrs = PyDict_New();
    else {
        attrs = some > 0 && PyDict_CheckExact(attributes) ? PyDict_Copy(attributes)
                : some > 0 ? PyObject_CallOneArg((PyObject *)&PyDict_Type, attributes) : NULL;
        if (attrs == NULL) { /* not a mapping */
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return NULL;
            PyErr_Clear();
            attrs = PyObject_CallOneArg(g_copy_attributes, attributes);
        }
    }
    if (attrs == NULL)
        return NULL;
    PyTypeObject *type = (PyTypeObject *)g_span_type;
    SpanObject *self = (SpanObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(attrs);
        return NULL;
    }
    self->attributes = attrs;
    self->name = Py_NewRef(name);
    self->agent_name = Py_NewRef(agent);
    self->event_type = Py_NewRef(event_type);
    self->status = Py_NewRef(s_ok);
    self->ended = Py_NewRef(Py_False);
    self->retry = Py_NewRef(retry);
    PyObject **nones[] = {&self->payload, &self->error, &self->token_cost, &self->run, &self->token};
    for (size_t i = 0; i < sizeof nones / sizeof nones[0]; i++)
        *nones[i] = Py_NewRef(Py_None);
    return (PyObject *)self;
}

/* -- the type ------------------------------------------------------------------------------------------------- */

static PyMethodDef span_methods[] = {
    {"__enter__", (PyCFunction)span_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))span_exit, METH_FASTCALL, NULL},
    {"set_payload", (PyCFunction)span_set_payload, METH_O,
     "set_payload($self, payload, /)\n--\n\nThe span's payload (a copy; a later call updates it)."},
    {NULL, NULL, 0, NULL},
};

#define MEMBER(f, pyname) {pyname, T_OBJECT_EX, offsetof(SpanObject, f), 0, NULL},
static PyMemberDef span_members[] = {
    MEMBER(trace_id, "trace_id") MEMBER(span_id, "span_id") MEMBER(parent_id, "parent_id")
    MEMBER(agent_name, "agent_name") MEMBER(event_type, "event_type") MEMBER(name, "name")
    MEMBER(attributes, "attributes") MEMBER(payload, "payload") MEMBER(status, "status") MEMBER(error, "error")
    MEMBER(token_cost, "token_cost") MEMBER(run, "run") MEMBER(timestamp, "timestamp") MEMBER(t0, "_t0")
    MEMBER(token, "_token") MEMBER(ended, "_ended") MEMBER(duration_ns, "duration_ns") MEMBER(retry, "_retry")
    {NULL, 0, 0, 0, NULL},
};
#undef MEMBER

static PyTypeObject SpanCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "agent_debug.sdk._cspan.SpanCore",
    .tp_basicsize = sizeof(SpanObject),
    .tp_dealloc = (destructor)span_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fields of a span and its hot path (__enter__, set_payload, __exit__), compiled.",
    .tp_traverse = (traverseproc)span_traverse,
    .tp_clear = (inquiry)span_clear,
    .tp_methods = span_methods,
    .tp_members = span_members,
    /* tp_new: object's (set at init), so that object.__new__(Span) builds one as it builds a plain object */
};

/* -- bind ----------------------------------------------------------------------------------------------------- */

static PyObject *bind(PyObject *module, PyObject *args, PyObject *kwargs) {
    (void)module;
    static char *kwlist[] = {"current", "id_pool", "new_span_id", "perf_ns", "time", "dumps", "dumps_record",
                             "runtime", "format_version", "sleep", "yield_mask", "wake_at", "span_type",
                             "copy_attributes", NULL};
    PyObject *current, *pool, *new_id, *perf, *time_fn, *dumps, *dumps_record, *runtime, *version, *sleep, *span_type,
        *copy_attributes;
    Py_ssize_t mask, wake_at;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$O!O!OOOOOOOOnnO!O", kwlist, &PyContextVar_Type,
                                     &current, &PyList_Type, &pool, &new_id, &perf, &time_fn, &dumps, &dumps_record,
                                     &runtime, &version, &sleep, &mask, &wake_at, &PyType_Type, &span_type,
                                     &copy_attributes))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)span_type, &SpanCore_Type)) {
        PyErr_SetString(PyExc_TypeError, "span_type must be a subclass of SpanCore");
        return NULL;
    }
#define KEEP(g, v)                                                                                                   \
    Py_INCREF(v);                                                                                                    \
    Py_XSETREF(g, v);
    KEEP(g_current, current)
    KEEP(g_id_pool, pool)
    KEEP(g_new_span_id, new_id)
    KEEP(g_perf_ns, perf)
    KEEP(g_time, time_fn)
    KEEP(g_dumps, dumps)
    KEEP(g_dumps_record, dumps_record)
    KEEP(g_runtime, runtime)
    KEEP(g_version, version)
    KEEP(g_sleep, sleep)
    KEEP(g_span_type, span_type)
    KEEP(g_copy_attributes, copy_attributes)
#undef KEEP
    g_yield_mask = mask;
    g_wake_at = wake_at;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"span", (PyCFunction)(void (*)(void))new_span, METH_FASTCALL | METH_KEYWORDS,
     "span($module, /, name, *, agent=None, event_type='AGENT', attributes=None, retry_of=None)\n--\n\n"
     "A child of the current span (or a new trace's root when there is none); the agent defaults to the\n"
     "parent's. A context manager (`with` / `async with`) and a decorator (sync or async)."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_VARARGS | METH_KEYWORDS,
     "bind(*, current, id_pool, new_span_id, perf_ns, time, dumps, dumps_record, runtime, format_version, sleep, "
     "yield_mask, wake_at, span_type, copy_attributes)\n--\n\n"
     "The references the hot path uses (tracer.py calls this once, at import)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cspan_module = {
    PyModuleDef_HEAD_INIT, "_cspan",
    "The span's hot path, compiled (see tracer.py: Span's Python methods are the same path).",
    -1, module_methods, NULL, NULL, NULL, NULL,
};

#define INTERN(var, text)                                                                                            \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                             \
        return NULL;

PyMODINIT_FUNC PyInit__cspan(void) {
    INTERN(s_trace_id, "trace_id")
    INTERN(s_span_id, "span_id")
    INTERN(s_parent_id, "parent_id")
    INTERN(s_agent_name, "agent_name")
    INTERN(s_event_type, "event_type")
    INTERN(s_timestamp, "timestamp")
    INTERN(s_duration_ns, "duration_ns")
    INTERN(s_name, "name")
    INTERN(s_format_version, "format_version")
    INTERN(s_payload, "payload")
    INTERN(s_token_cost, "token_cost")
    INTERN(s_attributes, "attributes")
    INTERN(s_ok, "ok")
    INTERN(s_root, "root")
    INTERN(s_records, "records")
    INTERN(s_anchor_wall, "anchor_wall")
    INTERN(s_anchor_ns, "anchor_ns")
    INTERN(s_start, "_start")
    INTERN(s_exit, "_exit")
    INTERN(s_writer, "_writer")
    INTERN(s_collectors, "_collectors")
    INTERN(s_q, "_q")
    INTERN(s_buffer_size, "buffer_size")
    INTERN(s_append, "append")
    INTERN(s_wake, "_wake")
    INTERN(s_set, "set")
    INTERN(s_stats, "stats")
    INTERN(s_dropped, "dropped")
    INTERN(s_internal_error, "internal_error")
    INTERN(s_update, "update")
    INTERN(s_emit, "emit")
    INTERN(s_AGENT, "AGENT")
    INTERN(s_retry_of, "retry_of")
    INTERN(s_agent, "agent")
    INTERN(s_event_type_kw, "event_type")
    INTERN(s_attributes_kw, "attributes")
    INTERN(s_name_kw, "name")
    SpanCore_Type.tp_new = PyBaseObject_Type.tp_new; /* so that object.__new__(Span) is allowed, as in Python */
    for (int c = 0; c < 256; c++)
        g_plain[c] = c >= 0x20 && c != '"' && c != '\\';
    if (PyType_Ready(&SpanCore_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&cspan_module);
    if (m == NULL)
        return NULL;
    /* what tracer.py expects of this module (bind's arguments, the fields): a module built from another version
       of this file is not used (tracer.py runs the Python path), rather than failing at import or mid-span */
    if (PyModule_AddIntConstant(m, "ABI", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&SpanCore_Type);
    if (PyModule_AddObject(m, "SpanCore", (PyObject *)&SpanCore_Type) < 0) {
        Py_DECREF(&SpanCore_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
