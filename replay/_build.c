/* Typed messages from Arrow columns in C, for the columnar replay (issue 22). Optional: built
 * by `pip install -e .` (setup.py) when the machine has a C compiler; replay/columnar.py
 * builds the same messages in Python without it (tests/replay/test_build.py runs both and
 * compares every message and its encoding).
 *
 * Why by hand: no library turns Arrow columns into msgspec Structs. In Python, a message
 * costs the column lists (one object per value, then the list that holds them), the
 * interpreter's loop over zip(), and for a depth update ~30 level tuples and floats built
 * by zip and slicing. Here one loop reads the column buffers, makes each value as the
 * message takes it and calls the Struct type with the field names as keywords (the same
 * call the Python comprehension makes). Measured on 1M trades + 200k depth updates of 5
 * levels a side (numbers in the commit that added this file and in BENCHMARKS.md).
 *
 * build(cls, names, columns, n) -> list of n messages, cls(**{names[j]: value j of row i}).
 * A column is either a list (its objects as they are) or a tuple naming how to read buffers:
 *   (NUM, values)                    numbers: float64/32, (u)int8..64 or bool, by the format
 *   (DICT, values_list, indices)     values_list[indices[i]]
 *   (STR, offsets, data)             UTF-8 strings, int32 or int64 offsets
 *   (LEVELS, prices, sizes, offsets) [(prices[k], sizes[k]) for k in offsets[i]:offsets[i+1]]
 * Buffers are C-contiguous (numpy arrays, memoryviews); every length and offset is checked
 * before the loop, so a bad column is a ValueError, never a read out of bounds.
 *
 * take(parts, kind, row) -> [parts[kind[i]][row[i]] for i ...]: the replay order of the
 * messages of several tables (Batch.messages). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

enum { NUM = 0, DICT = 1, STR = 2, LEVELS = 3, LIST = 4 };
enum { F64, F32, I8, I16, I32, I64, U8, U16, U32, U64, BOOL };

typedef struct {
    Py_buffer view;
    int held;  /* view must be released */
    int type;  /* F64 ... BOOL */
    Py_ssize_t len;
} Buf;

typedef struct {
    int kind;
    PyObject *list; /* LIST: the column; DICT: the values (borrowed from the spec) */
    Buf a, b, c;
} Column;

/* The element type of a buffer from its struct-module format ('d', '<q', 'l', '?', ...). */
static int
buffer_type(const Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return -1;
    int signed_ = 0, fl = 0;
    switch (f[0]) {
    case 'd': case 'f': fl = 1; break;
    case 'b': case 'h': case 'i': case 'l': case 'q': case 'n': signed_ = 1; break;
    case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N': break;
    case '?': return v->itemsize == 1 ? BOOL : -1;
    default: return -1;
    }
    if (fl)
        return v->itemsize == 8 ? F64 : v->itemsize == 4 ? F32 : -1;
    switch (v->itemsize) {
    case 1: return signed_ ? I8 : U8;
    case 2: return signed_ ? I16 : U16;
    case 4: return signed_ ? I32 : U32;
    case 8: return signed_ ? I64 : U64;
    }
    return -1;
}

static int
get_buffer(PyObject *obj, Buf *b, const char *what)
{
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    b->held = 1;
    b->type = buffer_type(&b->view);
    if (b->type < 0 || b->view.ndim > 1) {
        PyErr_Format(PyExc_ValueError, "%s: unsupported buffer format %s", what,
                     b->view.format ? b->view.format : "B");
        return -1;
    }
    b->len = b->view.len / b->view.itemsize;
    return 0;
}

static void
release(Buf *b)
{
    if (b->held)
        PyBuffer_Release(&b->view);
    b->held = 0;
}

/* An integer element (the index and offset types). */
static inline long long
int_at(const Buf *b, Py_ssize_t i)
{
    const char *p = (const char *)b->view.buf;
    switch (b->type) {
    case I8: return ((const signed char *)p)[i];
    case I16: return ((const short *)p)[i];
    case I32: return ((const int *)p)[i];
    case I64: return ((const long long *)p)[i];
    case U8: return ((const unsigned char *)p)[i];
    case U16: return ((const unsigned short *)p)[i];
    case U32: return ((const unsigned int *)p)[i];
    case U64: return (long long)((const unsigned long long *)p)[i];
    case BOOL: return ((const unsigned char *)p)[i] != 0;
    }
    return 0;
}

static inline double
float_at(const Buf *b, Py_ssize_t i)
{
    return b->type == F64 ? ((const double *)b->view.buf)[i]
                          : (double)((const float *)b->view.buf)[i];
}

/* The Python object of element i of a NUM buffer: what numpy's tolist() gives. */
static inline PyObject *
number_at(const Buf *b, Py_ssize_t i)
{
    switch (b->type) {
    case F64: case F32: return PyFloat_FromDouble(float_at(b, i));
    case U64: return PyLong_FromUnsignedLongLong(((const unsigned long long *)b->view.buf)[i]);
    case BOOL: return Py_NewRef(((const unsigned char *)b->view.buf)[i] ? Py_True : Py_False);
    default: return PyLong_FromLongLong(int_at(b, i));
    }
}

static int
is_float(const Buf *b)
{
    return b->type == F64 || b->type == F32;
}

static int
is_int(const Buf *b)
{
    return !is_float(b) && b->type != BOOL;
}

/* Offsets: n + 1 ints, from 0 or more, never decreasing, the last within `limit`. */
static int
check_offsets(const Buf *off, Py_ssize_t n, Py_ssize_t limit, const char *what)
{
    if (!is_int(off) || off->len < n + 1) {
        PyErr_Format(PyExc_ValueError, "%s: offsets must be %zd integers", what, n + 1);
        return -1;
    }
    long long prev = int_at(off, 0);
    if (prev < 0)
        goto bad;
    for (Py_ssize_t i = 1; i <= n; i++) {
        long long o = int_at(off, i);
        if (o < prev)
            goto bad;
        prev = o;
    }
    if (prev > limit)
        goto bad;
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "%s: offsets out of order or past the values", what);
    return -1;
}

static int
parse_column(PyObject *spec, Column *c, Py_ssize_t n)
{
    if (PyList_Check(spec)) {
        c->kind = LIST;
        c->list = spec;
        if (PyList_GET_SIZE(spec) < n) {
            PyErr_SetString(PyExc_ValueError, "a list column is shorter than n");
            return -1;
        }
        return 0;
    }
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 2) {
        PyErr_SetString(PyExc_TypeError, "a column is a list or a (kind, ...) tuple");
        return -1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(spec);
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (kind == -1 && PyErr_Occurred())
        return -1;
    c->kind = (int)kind;
    switch (kind) {
    case NUM:
        if (size != 2 || get_buffer(PyTuple_GET_ITEM(spec, 1), &c->a, "values") < 0)
            break;
        if (c->a.len < n) {
            PyErr_SetString(PyExc_ValueError, "values: shorter than n");
            return -1;
        }
        return 0;
    case DICT:
        if (size != 3 || !PyList_Check(PyTuple_GET_ITEM(spec, 1)))
            break;
        c->list = PyTuple_GET_ITEM(spec, 1);
        if (get_buffer(PyTuple_GET_ITEM(spec, 2), &c->a, "indices") < 0)
            return -1;
        if (!is_int(&c->a) || c->a.len < n) {
            PyErr_SetString(PyExc_ValueError, "indices: n integers wanted");
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            long long k = int_at(&c->a, i);
            if (k < 0 || k >= PyList_GET_SIZE(c->list)) {
                PyErr_SetString(PyExc_ValueError, "indices: past the dictionary");
                return -1;
            }
        }
        return 0;
    case STR:
        if (size != 3 || get_buffer(PyTuple_GET_ITEM(spec, 1), &c->a, "offsets") < 0 ||
            get_buffer(PyTuple_GET_ITEM(spec, 2), &c->b, "data") < 0)
            break;
        return check_offsets(&c->a, n, c->b.view.len, "string");
    case LEVELS:
        if (size != 4 || get_buffer(PyTuple_GET_ITEM(spec, 1), &c->a, "prices") < 0 ||
            get_buffer(PyTuple_GET_ITEM(spec, 2), &c->b, "sizes") < 0 ||
            get_buffer(PyTuple_GET_ITEM(spec, 3), &c->c, "offsets") < 0)
            break;
        if (!is_float(&c->a) || !is_float(&c->b)) {
            PyErr_SetString(PyExc_ValueError, "levels: prices and sizes are floats");
            return -1;
        }
        return check_offsets(&c->c, n, c->a.len < c->b.len ? c->a.len : c->b.len, "levels");
    }
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "column kind %ld: wrong parts", kind);
    return -1;
}

static PyObject *
levels_at(const Column *c, Py_ssize_t i)
{
    Py_ssize_t a = (Py_ssize_t)int_at(&c->c, i), b = (Py_ssize_t)int_at(&c->c, i + 1);
    PyObject *out = PyList_New(b - a);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = a; k < b; k++) {
        PyObject *p = PyFloat_FromDouble(float_at(&c->a, k));
        PyObject *s = p ? PyFloat_FromDouble(float_at(&c->b, k)) : NULL;
        PyObject *t = s ? PyTuple_New(2) : NULL;
        if (t == NULL) {
            Py_XDECREF(p);
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(t, 0, p);
        PyTuple_SET_ITEM(t, 1, s);
        PyObject_GC_UnTrack(t); /* two floats: never part of a cycle (see below) */
        PyList_SET_ITEM(out, k - a, t);
    }
    /* Untracked by the cyclic collector, like the message Struct that holds it (gc=False in
     * streams/schemas.py): a replay keeps a batch's millions of levels alive while the next
     * is built, and every collection walked them all (~8 % of the build, perf). A list a
     * caller later makes part of a cycle is then never collected, as msgspec documents for
     * gc=False Structs; nothing in jetmarket does that. */
    PyObject_GC_UnTrack(out);
    return out;
}

static inline PyObject *
value_at(const Column *c, Py_ssize_t i)
{
    switch (c->kind) {
    case LIST: return Py_NewRef(PyList_GET_ITEM(c->list, i));
    case NUM: return number_at(&c->a, i);
    case DICT: return Py_NewRef(PyList_GET_ITEM(c->list, (Py_ssize_t)int_at(&c->a, i)));
    case STR: {
        long long a = int_at(&c->a, i), b = int_at(&c->a, i + 1);
        return PyUnicode_DecodeUTF8((const char *)c->b.view.buf + a, (Py_ssize_t)(b - a), NULL);
    }
    case LEVELS: return levels_at(c, i);
    }
    return NULL;
}

#define MAX_FIELDS 64

static PyObject *
build(PyObject *self, PyObject *args)
{
    PyObject *cls, *names, *columns;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OO!O!n", &cls, &PyTuple_Type, &names, &PyList_Type, &columns, &n))
        return NULL;
    Py_ssize_t m = PyTuple_GET_SIZE(names);
    if (m != PyList_GET_SIZE(columns) || m > MAX_FIELDS || n < 0) {
        PyErr_Format(PyExc_ValueError, "%zd names, %zd columns (at most %d)", m,
                     PyList_GET_SIZE(columns), MAX_FIELDS);
        return NULL;
    }
    Column cols[MAX_FIELDS];
    memset(cols, 0, sizeof(cols));
    PyObject *out = NULL;
    PyObject *vals[MAX_FIELDS];
    for (Py_ssize_t j = 0; j < m; j++)
        if (parse_column(PyList_GET_ITEM(columns, j), &cols[j], n) < 0)
            goto done;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t j = 0;
        for (; j < m; j++) {
            /* a list column shrunk by the call below would be caught here */
            if (cols[j].kind == LIST && i >= PyList_GET_SIZE(cols[j].list)) {
                PyErr_SetString(PyExc_ValueError, "a list column changed size");
                break;
            }
            if ((vals[j] = value_at(&cols[j], i)) == NULL)
                break;
        }
        PyObject *msg = j == m ? PyObject_Vectorcall(cls, vals, 0, names) : NULL;
        for (Py_ssize_t k = 0; k < j; k++)
            Py_DECREF(vals[k]);
        if (msg == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, msg);
    }
done:
    for (Py_ssize_t j = 0; j < m; j++) {
        release(&cols[j].a);
        release(&cols[j].b);
        release(&cols[j].c);
    }
    return out;
}

static PyObject *
take(PyObject *self, PyObject *args)
{
    PyObject *parts, *kind_obj, *row_obj;
    if (!PyArg_ParseTuple(args, "O!OO", &PyList_Type, &parts, &kind_obj, &row_obj))
        return NULL;
    Buf kind = {0}, row = {0};
    PyObject *out = NULL;
    if (get_buffer(kind_obj, &kind, "kind") < 0 || get_buffer(row_obj, &row, "row") < 0)
        goto done;
    if (!is_int(&kind) || !is_int(&row) || kind.len != row.len) {
        PyErr_SetString(PyExc_ValueError, "kind and row: integers of one length");
        goto done;
    }
    Py_ssize_t nparts = PyList_GET_SIZE(parts);
    for (Py_ssize_t p = 0; p < nparts; p++)
        if (!PyList_Check(PyList_GET_ITEM(parts, p))) {
            PyErr_SetString(PyExc_TypeError, "parts: a list of lists");
            goto done;
        }
    out = PyList_New(kind.len);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < kind.len; i++) {
        long long k = int_at(&kind, i), r = int_at(&row, i);
        if (k < 0 || k >= nparts || r < 0 || r >= PyList_GET_SIZE(PyList_GET_ITEM(parts, k))) {
            PyErr_Format(PyExc_IndexError, "message %zd: part %lld row %lld out of range", i, k, r);
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, Py_NewRef(PyList_GET_ITEM(PyList_GET_ITEM(parts, k), r)));
    }
done:
    release(&kind);
    release(&row);
    return out;
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS,
     "build(cls, names, columns, n) -> [cls(**row) for the n rows of the columns]"},
    {"take", take, METH_VARARGS, "take(parts, kind, row) -> [parts[kind[i]][row[i]] ...]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_build",
    "Typed messages from Arrow columns in C; replay/columnar.py builds them in Python without it.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__build(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "NUM", NUM) < 0 || PyModule_AddIntConstant(m, "DICT", DICT) < 0 ||
        PyModule_AddIntConstant(m, "STR", STR) < 0 || PyModule_AddIntConstant(m, "LEVELS", LEVELS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
