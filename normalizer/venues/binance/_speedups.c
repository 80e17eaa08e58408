/* The Binance parsers' hottest channels in C (issue 24): aggTrade, trade, bookTicker, kline
 * and depth of spot and USDⓈ-M. Optional: built by `pip install -e .` (setup.py) when the
 * machine has a C compiler; parse.py runs the pure-Python handlers alone when it is absent.
 *
 * A Handler takes only the plainest frames and refuses everything else to the Python handler
 * (`fallback`), which decodes the frame with msgspec and decides: a dead letter, an off-book
 * trade, a symbol seen for the first time, an escape in a string, a number written any other
 * way than Binance writes it. What it takes, it must turn into the very bytes the Python
 * handler would (tests/venues/binance/test_golden.py and test_speedups.py run both):
 *
 * - JSON: `{"stream":"<ascii>","data":{...}}`, keys and strings in plain ASCII with no
 *   escapes, no key twice, values of the other keys skipped (nested at most 8 deep). Any
 *   text outside that grammar is refused, so this reads a subset of what msgspec reads.
 * - ints (E, T, a, t, u, U, pu, kline t and n): JSON integers without a leading zero, at most 18 digits.
 * - prices and quantities: `"<digits>[.<digits>]"`, no leading zero, at most 15 significant
 *   digits, below 1e15 (the schemas' bound) and not below 1e-290. 15 significant digits survive the trip to
 *   a double and back, so the shortest form of that double, which msgspec writes, is the
 *   decimal itself without its zeros: written here straight from the text, in msgspec's
 *   notation (fixed from 1e-5 up, else `1.5e-7`). Zero prices and quantities where the
 *   schema wants them positive are refused.
 *
 * What it saves: the decode into Structs, the message Struct and its encoding, the Python
 * frame between them; a frame is read once and written once. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

enum { AGG_TRADE = 0, TRADE = 1, BOOK_TICKER = 2, KLINE = 3, DEPTH = 4, DEPTH_USDM = 5 };

static PyObject *s_data, *s_native_symbol, *s_ts_recv;

/* ------------------------------------------------------------------------------------- */
/* reading                                                                               */

typedef struct {
    const char *p, *end;
} Reader;

static inline void
ws(Reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static inline int
lit(Reader *r, char c)
{
    ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return 1;
    }
    return 0;
}

/* A plain string: printable ASCII, no backslash. Sets [s, s+n). */
static int
plain_string(Reader *r, const char **s, Py_ssize_t *n)
{
    ws(r);
    if (r->p >= r->end || *r->p != '"')
        return 0;
    const char *start = ++r->p;
    while (r->p < r->end) {
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            *s = start;
            *n = r->p - start;
            r->p++;
            return 1;
        }
        if (c == '\\' || c < 0x20 || c >= 0x7f)
            return 0;
        r->p++;
    }
    return 0;
}

/* A JSON integer without a leading zero, at most 18 digits. */
static int
integer(Reader *r, long long *out)
{
    ws(r);
    int neg = 0;
    if (r->p < r->end && *r->p == '-') {
        neg = 1;
        r->p++;
    }
    const char *start = r->p;
    long long v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (r->p - start >= 18)
            return 0; /* a 19th digit: msgspec decides (and v * 10 would overflow) */
        v = v * 10 + (*r->p - '0');
        r->p++;
    }
    Py_ssize_t n = r->p - start;
    if (n == 0 || (n > 1 && *start == '0'))
        return 0;
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
        return 0; /* a float where an int belongs: msgspec decides */
    if (neg && v == 0)
        return 0; /* -0 */
    *out = neg ? -v : v;
    return 1;
}

static int
boolean(Reader *r, int *out)
{
    ws(r);
    if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
        r->p += 4;
        *out = 1;
        return 1;
    }
    if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
        r->p += 5;
        *out = 0;
        return 1;
    }
    return 0;
}

/* A decimal string as msgspec writes its float: `out` gets the JSON number (NUL-free, at
 * most 32 bytes). `positive`: zero refused. 0 when the text is not of the plain form. */
static int
decimal(Reader *r, int positive, char *out, int *outlen)
{
    const char *s;
    Py_ssize_t n;
    if (!plain_string(r, &s, &n) || n == 0)
        return 0;
    const char *end = s + n, *dot = memchr(s, '.', n);
    const char *ip = s, *ie = dot ? dot : end; /* integer part */
    const char *fp = dot ? dot + 1 : end, *fe = end;
    if (ie == ip || (ie - ip > 1 && *ip == '0') || (dot && fe == fp))
        return 0;
    for (const char *c = ip; c < ie; c++)
        if (*c < '0' || *c > '9')
            return 0;
    for (const char *c = fp; c < fe; c++)
        if (*c < '0' || *c > '9')
            return 0;
    if (ie - ip > 15)
        return 0; /* >= 1e15: outside the schemas' bound */
    while (fe > fp && fe[-1] == '0')
        fe--; /* trailing zeros of the fraction say nothing */
    int int_zero = (ie - ip == 1 && *ip == '0');
    char *o = out;
    if (!int_zero) {
        /* significant digits: the integer part, then the fraction; trailing zeros of the
         * integer part count only when a fraction follows */
        Py_ssize_t sig = (ie - ip) + (fe - fp);
        if (fe == fp) {
            const char *t = ie;
            while (t > ip + 1 && t[-1] == '0')
                t--;
            sig = t - ip;
        }
        if (sig > 15)
            return 0;
        memcpy(o, ip, ie - ip);
        o += ie - ip;
        *o++ = '.';
        if (fe == fp)
            *o++ = '0';
        else {
            memcpy(o, fp, fe - fp);
            o += fe - fp;
        }
        *outlen = (int)(o - out);
        return 1;
    }
    /* 0.xxx */
    const char *d = fp;
    while (d < fe && *d == '0')
        d++;
    if (d == fe) { /* zero */
        if (positive)
            return 0;
        memcpy(out, "0.0", 3);
        *outlen = 3;
        return 1;
    }
    if (fe - d > 15 || d - fp > 290)
        return 0; /* past 1e-290 doubles lose digits (subnormals) and then become 0 */
    int exp10 = -(int)(d - fp) - 1; /* the first significant digit's power of ten */
    if (exp10 >= -5) {
        memcpy(o, "0.", 2);
        o += 2;
        memcpy(o, fp, fe - fp);
        o += fe - fp;
    }
    else {
        *o++ = *d;
        if (fe - d > 1) {
            *o++ = '.';
            memcpy(o, d + 1, fe - d - 1);
            o += fe - d - 1;
        }
        o += sprintf(o, "e%d", exp10);
    }
    *outlen = (int)(o - out);
    return 1;
}

/* Skip one JSON value of the plain subset. */
static int
skip(Reader *r, int depth)
{
    if (depth > 8)
        return 0;
    ws(r);
    if (r->p >= r->end)
        return 0;
    char c = *r->p;
    const char *s;
    Py_ssize_t n;
    if (c == '"')
        return plain_string(r, &s, &n);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        r->p++;
        if (lit(r, close))
            return 1;
        for (;;) {
            if (c == '{') {
                if (!plain_string(r, &s, &n) || !lit(r, ':'))
                    return 0;
            }
            if (!skip(r, depth + 1))
                return 0;
            if (lit(r, ','))
                continue;
            return lit(r, close);
        }
    }
    if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
        r->p += 4;
        return 1;
    }
    int b;
    if (c == 't' || c == 'f')
        return boolean(r, &b);
    /* a number: JSON grammar */
    if (c == '-')
        r->p++;
    const char *start = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    if (r->p == start || (r->p - start > 1 && *start == '0'))
        return 0;
    if (r->p < r->end && *r->p == '.') {
        start = ++r->p;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
        if (r->p == start)
            return 0;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        start = r->p;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
        if (r->p == start)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------- */
/* the event, field by field                                                             */

typedef struct {
    /* presence bits, one per field, in the order of F_* */
    unsigned seen;
    const char *e, *s, *X;
    Py_ssize_t e_n, s_n, X_n;
    long long E, T, id; /* id: a (aggTrade), t (trade), u (bookTicker) */
    int E_null, m;
    char p[40], q[40], b[40], B[40], a[40], A[40];
    int p_n, q_n, b_n, B_n, a_n, A_n;
    /* kline: its `k` object */
    unsigned k_seen;
    const char *i;
    Py_ssize_t i_n;
    long long t, n;
    int x;
    char o[40], c[40], h[40], l[40], v[40];
    int o_n, c_n, h_n, l_n, v_n;
    /* depth: update ids, and where the levels start in the frame (read again to write) */
    long long U, u, pu;
    const char *bids, *asks;
} Event;

enum { F_E_TYPE = 1, F_E = 2, F_S = 4, F_ID = 8, F_P = 16, F_Q = 32, F_T = 64, F_M = 128,
       F_X = 256, F_B = 512, F_BQ = 1024, F_A = 2048, F_AQ = 4096,
       /* depth */ F_FIRST = 8192, F_LAST = 16384, F_PREV = 32768 };

#define ONCE(bit)              \
    do {                       \
        if (ev->seen & (bit))  \
            return 0;          \
        ev->seen |= (bit);     \
    } while (0)

#define K_ONCE(bit)              \
    do {                         \
        if (ev->k_seen & (bit))  \
            return 0;            \
        ev->k_seen |= (bit);     \
    } while (0)

enum { K_T = 1, K_I = 2, K_O = 4, K_C = 8, K_H = 16, K_L = 32, K_V = 64, K_N = 128,
       K_X = 256, K_ALL = 511 };

/* One key of a kline's `k` object. */
static int
kline_field(Reader *r, char c, Event *ev)
{
    switch (c) {
    case 't': K_ONCE(K_T); return integer(r, &ev->t);
    case 'i': K_ONCE(K_I); return plain_string(r, &ev->i, &ev->i_n);
    case 'o': K_ONCE(K_O); return decimal(r, 1, ev->o, &ev->o_n);
    case 'c': K_ONCE(K_C); return decimal(r, 1, ev->c, &ev->c_n);
    case 'h': K_ONCE(K_H); return decimal(r, 1, ev->h, &ev->h_n);
    case 'l': K_ONCE(K_L); return decimal(r, 1, ev->l, &ev->l_n);
    case 'v': K_ONCE(K_V); return decimal(r, 0, ev->v, &ev->v_n);
    case 'n': K_ONCE(K_N); return integer(r, &ev->n);
    case 'x': K_ONCE(K_X); return boolean(r, &ev->x);
    default: return skip(r, 2);
    }
}

/* A kline's `k` object, all of its nine fields present. */
static int
kline_body(Reader *r, Event *ev)
{
    const char *k;
    Py_ssize_t kn;
    if (!lit(r, '{'))
        return 0;
    if (!lit(r, '}')) {
        for (;;) {
            if (!plain_string(r, &k, &kn) || !lit(r, ':') ||
                !(kn == 1 ? kline_field(r, k[0], ev) : skip(r, 2)))
                return 0;
            if (lit(r, ','))
                continue;
            if (!lit(r, '}'))
                return 0;
            break;
        }
    }
    return ev->k_seen == K_ALL;
}

typedef struct Writer Writer;
static int levels(Reader *r, Writer *w);

/* One key of a depth update. */
static int
depth_field(int kind, Reader *r, const char *k, Py_ssize_t kn, Event *ev)
{
    if (kn == 2 && k[0] == 'p' && k[1] == 'u' && kind == DEPTH_USDM) {
        ONCE(F_PREV);
        return integer(r, &ev->pu);
    }
    switch (kn == 1 ? k[0] : 0) {
    case 'e': ONCE(F_E_TYPE); return plain_string(r, &ev->e, &ev->e_n);
    case 'E': ONCE(F_E); return integer(r, &ev->E);
    case 's': ONCE(F_S); return plain_string(r, &ev->s, &ev->s_n);
    case 'U': ONCE(F_FIRST); return integer(r, &ev->U);
    case 'u': ONCE(F_LAST); return integer(r, &ev->u);
    case 'b':
        ONCE(F_B);
        ws(r);
        ev->bids = r->p;
        return levels(r, NULL);
    case 'a':
        ONCE(F_A);
        ws(r);
        ev->asks = r->p;
        return levels(r, NULL);
    default: return skip(r, 1);
    }
}

/* One key's value into `ev`; 0 refuses the frame. */
static int
field(int kind, Reader *r, const char *k, Py_ssize_t kn, Event *ev)
{
    if (kind == DEPTH || kind == DEPTH_USDM)
        return depth_field(kind, r, k, kn, ev);
    char c = kn == 1 ? k[0] : 0;
    if (kind == BOOK_TICKER) {
        switch (c) {
        case 'u': ONCE(F_ID); return integer(r, &ev->id);
        case 's': ONCE(F_S); return plain_string(r, &ev->s, &ev->s_n);
        case 'b': ONCE(F_B); return decimal(r, 1, ev->b, &ev->b_n);
        case 'B': ONCE(F_BQ); return decimal(r, 0, ev->B, &ev->B_n);
        case 'a': ONCE(F_A); return decimal(r, 1, ev->a, &ev->a_n);
        case 'A': ONCE(F_AQ); return decimal(r, 0, ev->A, &ev->A_n);
        case 'E':
            ONCE(F_E);
            ws(r);
            if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
                r->p += 4;
                ev->E_null = 1;
                return 1;
            }
            return integer(r, &ev->E);
        default: return skip(r, 1);
        }
    }
    if (kind == KLINE) {
        switch (c) {
        case 'e': ONCE(F_E_TYPE); return plain_string(r, &ev->e, &ev->e_n);
        case 'E': ONCE(F_E); return integer(r, &ev->E);
        case 's': ONCE(F_S); return plain_string(r, &ev->s, &ev->s_n);
        case 'k': ONCE(F_ID); return kline_body(r, ev);
        default: return skip(r, 1);
        }
    }
    switch (c) {
    case 'e': ONCE(F_E_TYPE); return plain_string(r, &ev->e, &ev->e_n);
    case 'E': ONCE(F_E); return integer(r, &ev->E);
    case 's': ONCE(F_S); return plain_string(r, &ev->s, &ev->s_n);
    case 'p': ONCE(F_P); return decimal(r, 1, ev->p, &ev->p_n);
    case 'q': ONCE(F_Q); return decimal(r, 1, ev->q, &ev->q_n);
    case 'T': ONCE(F_T); return integer(r, &ev->T);
    case 'm': ONCE(F_M); return boolean(r, &ev->m);
    case 'a':
        if (kind != AGG_TRADE)
            return skip(r, 1);
        ONCE(F_ID);
        return integer(r, &ev->id);
    case 't':
        if (kind != TRADE)
            return skip(r, 1);
        ONCE(F_ID);
        return integer(r, &ev->id);
    case 'X':
        if (kind != TRADE)
            return skip(r, 1);
        ONCE(F_X);
        return plain_string(r, &ev->X, &ev->X_n);
    default: return skip(r, 1);
    }
}

/* The whole frame into `ev`: 1 when it is of the plain form and complete. */
static int
read_frame(int kind, const char *p, Py_ssize_t n, Event *ev)
{
    Reader r = {p, p + n};
    const char *k;
    Py_ssize_t kn;
    if (!lit(&r, '{') || !plain_string(&r, &k, &kn) || kn != 6 || memcmp(k, "stream", 6) ||
        !lit(&r, ':') || !plain_string(&r, &k, &kn) || !lit(&r, ',') ||
        !plain_string(&r, &k, &kn) || kn != 4 || memcmp(k, "data", 4) || !lit(&r, ':') ||
        !lit(&r, '{'))
        return 0;
    if (!lit(&r, '}')) {
        for (;;) {
            if (!plain_string(&r, &k, &kn) || !lit(&r, ':') || !field(kind, &r, k, kn, ev))
                return 0;
            if (lit(&r, ','))
                continue;
            if (!lit(&r, '}'))
                return 0;
            break;
        }
    }
    if (!lit(&r, '}'))
        return 0;
    ws(&r);
    if (r.p != r.end)
        return 0;
    unsigned depth = F_E_TYPE | F_E | F_S | F_FIRST | F_LAST | F_B | F_A;
    unsigned want = kind == BOOK_TICKER  ? (F_ID | F_S | F_B | F_BQ | F_A | F_AQ)
                    : kind == KLINE      ? (F_E_TYPE | F_E | F_S | F_ID)
                    : kind == DEPTH      ? depth
                    : kind == DEPTH_USDM ? (depth | F_PREV)
                                         : (F_E_TYPE | F_E | F_S | F_ID | F_P | F_Q | F_T | F_M);
    return (ev->seen & want) == want;
}

/* ------------------------------------------------------------------------------------- */
/* writing                                                                               */

struct Writer {
    char *p;
};

static inline void
put(Writer *w, const char *s, Py_ssize_t n)
{
    memcpy(w->p, s, n);
    w->p += n;
}

#define PUTS(w, lit) put((w), (lit), sizeof(lit) - 1)

/* A list of [price, size] levels, each decimal as in `decimal`; written to `w` too unless
 * it is NULL. Written, a level is never longer than its text in the frame. */
static int
levels(Reader *r, Writer *w)
{
    char pb[40], sb[40];
    int pn, sn;
    if (!lit(r, '['))
        return 0;
    if (w)
        *w->p++ = '[';
    if (lit(r, ']')) {
        if (w)
            *w->p++ = ']';
        return 1;
    }
    for (int first = 1;; first = 0) {
        if (!lit(r, '[') || !decimal(r, 1, pb, &pn) || !lit(r, ',') || !decimal(r, 0, sb, &sn) ||
            !lit(r, ']'))
            return 0; /* a level is [price, size], exactly */
        if (w) {
            if (!first)
                *w->p++ = ',';
            *w->p++ = '[';
            put(w, pb, pn);
            *w->p++ = ',';
            put(w, sb, sn);
            *w->p++ = ']';
        }
        if (lit(r, ','))
            continue;
        if (!lit(r, ']'))
            return 0;
        if (w)
            *w->p++ = ']';
        return 1;
    }
}

/* `v`, then `zeros` zeros (v * 10**zeros without overflow) */
static void
put_int(Writer *w, long long v, int zeros)
{
    char buf[24];
    int i = 0;
    unsigned long long u = v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
    if (v < 0)
        *w->p++ = '-';
    do {
        buf[i++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (i)
        *w->p++ = buf[--i];
    if (v != 0)
        for (int z = 0; z < zeros; z++)
            *w->p++ = '0';
}

/* a str as plain ASCII JSON-safe bytes, or NULL (refused) */
static const char *
ascii(PyObject *s, Py_ssize_t *n)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s))
        return NULL;
    const char *t = (const char *)PyUnicode_DATA(s);
    *n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < *n; i++)
        if (t[i] == '"' || t[i] == '\\' || t[i] < 0x20 || t[i] == 0x7f)
            return NULL;
    return t;
}

/* ------------------------------------------------------------------------------------- */
/* the handler                                                                           */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int kind;
    PyObject *venue;    /* the messages' venue */
    PyObject *out_type; /* normalizer.venues.base.Out */
    PyObject *names;    /* dict native -> (subject, symbol, msg-id prefix) */
    PyObject *fallback; /* the Python handler, bound */
} Handler;

static PyObject *
one_out(Handler *self, PyObject *subject, PyObject *msg_id, PyObject *data)
{
    PyTypeObject *tp = (PyTypeObject *)self->out_type;
    PyObject *out = tp->tp_alloc(tp, 3);
    if (out == NULL) {
        Py_DECREF(msg_id);
        Py_DECREF(data);
        return NULL;
    }
    Py_INCREF(subject);
    PyTuple_SET_ITEM(out, 0, subject);
    PyTuple_SET_ITEM(out, 1, msg_id);
    PyTuple_SET_ITEM(out, 2, data);
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, out);
    return list;
}

/* The messages of a plain frame; Py_None to refuse it; NULL on an error. */
static PyObject *
fast(Handler *self, PyObject *frame)
{
    PyObject *raw = NULL, *native = NULL, *ts_recv_o = NULL, *result = Py_None;
    Event ev;
    memset(&ev, 0, sizeof ev);
    raw = PyObject_GetAttr(frame, s_data);
    if (raw == NULL)
        return NULL;
    if (!PyBytes_CheckExact(raw) ||
        !read_frame(self->kind, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), &ev))
        goto refuse;
    if (self->kind == AGG_TRADE && (ev.e_n != 8 || memcmp(ev.e, "aggTrade", 8)))
        goto refuse;
    if (self->kind == KLINE && (ev.e_n != 5 || memcmp(ev.e, "kline", 5)))
        goto refuse;
    int depth = self->kind == DEPTH || self->kind == DEPTH_USDM;
    if (depth && (ev.e_n != 11 || memcmp(ev.e, "depthUpdate", 11) || ev.U > ev.u))
        goto refuse; /* U > u: Python names the dead letter */
    if (self->kind == TRADE) {
        if (ev.e_n != 5 || memcmp(ev.e, "trade", 5))
            goto refuse;
        if ((ev.seen & F_X) && (ev.X_n != 6 || memcmp(ev.X, "MARKET", 6)))
            goto refuse; /* off-book: counted and dropped in Python */
    }
    native = PyObject_GetAttr(frame, s_native_symbol);
    if (native == NULL)
        goto error;
    Py_ssize_t nn;
    const char *nat = ascii(native, &nn);
    if (nat == NULL || nn != ev.s_n || memcmp(nat, ev.s, nn))
        goto refuse;
    PyObject *names = PyDict_GetItemWithError(self->names, native); /* borrowed */
    if (names == NULL) {
        if (PyErr_Occurred())
            goto error;
        goto refuse; /* first sight of the symbol: Python names it */
    }
    if (!PyTuple_CheckExact(names) || PyTuple_GET_SIZE(names) != 3)
        goto refuse;
    Py_ssize_t sym_n, venue_n, prefix_n;
    const char *sym = ascii(PyTuple_GET_ITEM(names, 1), &sym_n);
    const char *prefix = ascii(PyTuple_GET_ITEM(names, 2), &prefix_n);
    const char *venue = ascii(self->venue, &venue_n);
    if (sym == NULL || prefix == NULL || venue == NULL || sym_n > 200 || prefix_n > 300 ||
        venue_n > 100)
        goto refuse;
    ts_recv_o = PyObject_GetAttr(frame, s_ts_recv);
    if (ts_recv_o == NULL)
        goto error;
    if (!PyLong_CheckExact(ts_recv_o))
        goto refuse;
    int overflow;
    long long ts_recv = PyLong_AsLongLongAndOverflow(ts_recv_o, &overflow);
    if (overflow || (ts_recv == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        goto refuse;
    }
    long long event_ms;
    int event_zeros = 6; /* ms -> ns */
    if (self->kind == BOOK_TICKER) {
        /* spot frames carry no event time: the receive time stands in (so does 0) */
        int has = (ev.seen & F_E) && !ev.E_null && ev.E != 0;
        event_ms = has ? ev.E : ts_recv;
        event_zeros = has ? 6 : 0;
    }
    else if (self->kind == KLINE || depth)
        event_ms = ev.E;
    else
        event_ms = ev.T;
    if (self->kind == KLINE && ev.i_n > 100)
        goto refuse;

    /* the payload, then the message id */
    /* bounds: venue <= 100, symbol <= 200, interval <= 100 bytes (checked above), a decimal
     * <= 28, an int with its zeros <= 26, the keys ~200: the payload stays under 1024; the id
     * is the prefix (<= 300), the interval and two ints: under 512 */
    char stack[1024], idbuf[512];
    /* a depth update's levels, written, are never longer than in the frame */
    char *buf = depth ? PyMem_Malloc(PyBytes_GET_SIZE(raw) + 1024) : stack;
    if (buf == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    Writer w = {buf};
    if (depth)
        PUTS(&w, "{\"type\":\"book\",\"venue\":\"");
    else if (self->kind == BOOK_TICKER)
        PUTS(&w, "{\"type\":\"bbo\",\"venue\":\"");
    else if (self->kind == KLINE)
        PUTS(&w, "{\"type\":\"candle\",\"venue\":\"");
    else
        PUTS(&w, "{\"type\":\"trade\",\"venue\":\"");
    put(&w, venue, venue_n);
    PUTS(&w, "\",\"symbol\":\"");
    put(&w, sym, sym_n);
    PUTS(&w, "\",\"ts_event\":");
    put_int(&w, event_ms, event_zeros);
    PUTS(&w, ",\"ts_recv\":");
    put_int(&w, ts_recv, 0);
    Writer iw = {idbuf};
    put(&iw, prefix, prefix_n);
    if (self->kind == BOOK_TICKER) {
        PUTS(&w, ",\"bid_price\":");
        put(&w, ev.b, ev.b_n);
        PUTS(&w, ",\"bid_size\":");
        put(&w, ev.B, ev.B_n);
        PUTS(&w, ",\"ask_price\":");
        put(&w, ev.a, ev.a_n);
        PUTS(&w, ",\"ask_size\":");
        put(&w, ev.A, ev.A_n);
        PUTS(&w, ",\"seq\":");
        put_int(&w, ev.id, 0);
        PUTS(&w, "}");
        put_int(&iw, ev.id, 0);
    }
    else if (depth) {
        PUTS(&w, ",\"snapshot\":false,\"bids\":");
        Reader lr = {ev.bids, PyBytes_AS_STRING(raw) + PyBytes_GET_SIZE(raw)};
        levels(&lr, &w); /* read once already: it cannot fail now */
        PUTS(&w, ",\"asks\":");
        lr.p = ev.asks;
        levels(&lr, &w);
        PUTS(&w, ",\"seq\":");
        put_int(&w, ev.u, 0);
        if (self->kind == DEPTH_USDM) {
            PUTS(&w, ",\"prev_seq\":");
            put_int(&w, ev.pu, 0);
        }
        else
            PUTS(&w, ",\"prev_seq\":null");
        PUTS(&w, ",\"first_seq\":");
        put_int(&w, ev.U, 0);
        PUTS(&w, ",\"checksum\":null}");
        put_int(&iw, ev.u, 0);
    }
    else if (self->kind == KLINE) {
        PUTS(&w, ",\"interval\":\"");
        put(&w, ev.i, ev.i_n);
        PUTS(&w, "\",\"ts_open\":");
        put_int(&w, ev.t, 6);
        PUTS(&w, ",\"open\":");
        put(&w, ev.o, ev.o_n);
        PUTS(&w, ",\"high\":");
        put(&w, ev.h, ev.h_n);
        PUTS(&w, ",\"low\":");
        put(&w, ev.l, ev.l_n);
        PUTS(&w, ",\"close\":");
        put(&w, ev.c, ev.c_n);
        PUTS(&w, ",\"volume\":");
        put(&w, ev.v, ev.v_n);
        if (ev.x)
            PUTS(&w, ",\"closed\":true,\"trades\":");
        else
            PUTS(&w, ",\"closed\":false,\"trades\":");
        put_int(&w, ev.n, 0);
        PUTS(&w, "}");
        /* "<prefix><interval>:<open ms>:<event ms>" */
        put(&iw, ev.i, ev.i_n);
        *iw.p++ = ':';
        put_int(&iw, ev.t, 0);
        *iw.p++ = ':';
        put_int(&iw, ev.E, 0);
    }
    else {
        char *id_start = iw.p;
        if (self->kind == AGG_TRADE)
            *iw.p++ = 'a';
        put_int(&iw, ev.id, 0);
        PUTS(&w, ",\"id\":\"");
        put(&w, id_start, iw.p - id_start);
        PUTS(&w, "\",\"price\":");
        put(&w, ev.p, ev.p_n);
        PUTS(&w, ",\"size\":");
        put(&w, ev.q, ev.q_n);
        if (ev.m) /* the buyer was the maker: the taker sold */
            PUTS(&w, ",\"side\":\"sell\",\"aggregated\":");
        else
            PUTS(&w, ",\"side\":\"buy\",\"aggregated\":");
        if (self->kind == AGG_TRADE)
            PUTS(&w, "true}");
        else
            PUTS(&w, "false}");
    }
    PyObject *data = PyBytes_FromStringAndSize(buf, w.p - buf);
    if (buf != stack)
        PyMem_Free(buf);
    if (data == NULL)
        goto error;
    PyObject *msg_id = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, idbuf, iw.p - idbuf);
    if (msg_id == NULL) {
        Py_DECREF(data);
        goto error;
    }
    result = one_out(self, PyTuple_GET_ITEM(names, 0), msg_id, data);
    goto done;
refuse:
    result = Py_None;
    Py_INCREF(result);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(raw);
    Py_XDECREF(native);
    Py_XDECREF(ts_recv_o);
    return result;
}

static PyObject *
handler_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Handler *self = (Handler *)op;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Handler takes one Frame");
        return NULL;
    }
    PyObject *result = fast(self, args[0]);
    if (result == NULL)
        PyErr_Clear(); /* the Python handler meets the same problem and names it */
    else if (result != Py_None)
        return result;
    Py_XDECREF(result);
    return PyObject_Vectorcall(self->fallback, args, 1, NULL);
}

/* Handler.fast(frame): the C path alone, None when it refuses the frame (tests). */
static PyObject *
handler_fast(PyObject *op, PyObject *frame)
{
    return fast((Handler *)op, frame);
}

static PyMethodDef handler_methods[] = {
    {"fast", handler_fast, METH_O, "The C path alone: the messages, or None (refused)."},
    {NULL, NULL, 0, NULL},
};

static int
handler_traverse(Handler *self, visitproc visit, void *arg)
{
    Py_VISIT(self->venue);
    Py_VISIT(self->out_type);
    Py_VISIT(self->names);
    Py_VISIT(self->fallback);
    return 0;
}

static int
handler_clear(Handler *self)
{
    Py_CLEAR(self->venue);
    Py_CLEAR(self->out_type);
    Py_CLEAR(self->names);
    Py_CLEAR(self->fallback);
    return 0;
}

static void
handler_dealloc(Handler *self)
{
    PyObject_GC_UnTrack(self);
    handler_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
handler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind", "venue", "out_type", "names", "fallback", NULL};
    int kind;
    PyObject *venue, *out_type, *names, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iUOO!O", kwlist, &kind, &venue, &out_type,
                                     &PyDict_Type, &names, &fallback))
        return NULL;
    if (kind < AGG_TRADE || kind > DEPTH_USDM) {
        PyErr_SetString(PyExc_ValueError,
                        "kind: 0 aggTrade, 1 trade, 2 bookTicker, 3 kline, 4 depth (spot), "
                        "5 depth (USDⓈ-M)");
        return NULL;
    }
    if (!PyType_Check(out_type) || !PyType_IsSubtype((PyTypeObject *)out_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "out_type must be a tuple subclass");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    Handler *self = (Handler *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = handler_vectorcall;
    self->kind = kind;
    Py_INCREF(venue);
    self->venue = venue;
    Py_INCREF(out_type);
    self->out_type = out_type;
    Py_INCREF(names);
    self->names = names;
    Py_INCREF(fallback);
    self->fallback = fallback;
    return (PyObject *)self;
}

static PyTypeObject HandlerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "normalizer.venues.binance._speedups.Handler",
    .tp_doc = "Handler(kind, venue, out_type, names, fallback): a hot channel's plain frames "
              "in C, every other frame to `fallback`.",
    .tp_basicsize = sizeof(Handler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = handler_new,
    .tp_dealloc = (destructor)handler_dealloc,
    .tp_traverse = (traverseproc)handler_traverse,
    .tp_clear = (inquiry)handler_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Handler, vectorcall),
    .tp_methods = handler_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The Binance parsers' hot channels in C; parse.py runs Python alone without it.", -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    s_data = PyUnicode_InternFromString("data");
    s_native_symbol = PyUnicode_InternFromString("native_symbol");
    s_ts_recv = PyUnicode_InternFromString("ts_recv");
    if (s_data == NULL || s_native_symbol == NULL || s_ts_recv == NULL)
        return NULL;
    if (PyType_Ready(&HandlerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HandlerType);
    if (PyModule_AddObject(m, "Handler", (PyObject *)&HandlerType) < 0) {
        Py_DECREF(&HandlerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
