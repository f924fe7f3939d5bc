/* Native bulk Avro reader: validates Avro bodies against a compiled schema program and
 * decodes them into Arrow buffers (see formats/decoders/avrofast.py for the program and the
 * Python side).
 *
 * Every read is bounds-checked against the end of the record being read (the bytes are
 * untrusted): varints are capped at 10 bytes, lengths and block counts must be non-negative
 * and fit the remaining bytes, and the walk recurses only along the schema program, whose
 * depth is bounded when it is compiled. The walk runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ops (keep in sync with avrofast.py) */
enum {
    OP_NULL = 0,
    OP_BOOL = 1,
    OP_INT = 2,
    OP_LONG = 3,
    OP_FLOAT = 4,
    OP_DOUBLE = 5,
    OP_BYTES = 6,
    OP_STRING = 7,
    OP_FIXED = 8,
    OP_ENUM = 9,
    OP_RECORD = 10,
    OP_ARRAY = 11,
    OP_MAP = 12,
    OP_UNION = 13,
    OP_DECIMAL_BYTES = 14,
    OP_DECIMAL_FIXED = 15,
    OP_UUID = 16,
};

/* record verdicts (keep in sync with avrofast.py) */
enum {
    ST_OK = 0,
    ST_TRUNCATED = 1,
    ST_TRAILING = 2,
    ST_BAD_UNION = 3,
    ST_NEGATIVE_LENGTH = 4,
    ST_BAD_VARINT = 5,
    ST_BAD_COUNT = 6,
    ST_BAD_ENUM = 7,
    ST_TOO_DEEP = 8,
    ST_SHORT_VALUE = 9,
    ST_NO_MEMORY = 10,
    /* decoding only: values fastavro + pyarrow would treat differently (out of the range of
     * the Python type, not valid UTF-8, a non-canonical uuid, duplicate map keys ...): the
     * caller takes the fastavro path for the batch */
    ST_UNSUPPORTED = 20,
};

#define AVROFAST_API 2
#define MAX_DEPTH 64
/* items in one array/map whose items take no bytes (e.g. nulls) */
#define MAX_EMPTY_ITEMS (1 << 20)
#define MAP_DUP_CHECK_MAX 64

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

typedef struct {
    Buf b;
    int64_t n; /* bits */
} Bits;

typedef struct Node {
    int op;
    int id;       /* pre-order index: its output slot */
    int nullable; /* has a validity bitmap (the non-null branch of a union with null) */
    int64_t lo, hi; /* int/long value range (logical types) */
    int64_t size;   /* fixed size; union branch count */
    int64_t extra;  /* union: index of the null branch (-1: none); decimals: precision */
    int nchild;
    struct Node **child;
    int nsym;
    char **sym;
    Py_ssize_t *symlen;
    int min_zero; /* an instance may take zero bytes */
} Node;

/* the columns one decode call builds, one per node */
typedef struct {
    Bits valid;
    Buf offsets; /* int32: bytes/string/enum/uuid/array/map */
    Buf koff;    /* int32: map keys */
    Buf data;    /* values; map keys */
    Bits bits;   /* boolean values */
    int64_t length, null_count;
} Out;

typedef struct {
    Node *root;
    int nnodes;
} Program;

/* --- buffers ------------------------------------------------------------------------------ */

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) {
        if (cap > ((size_t)1 << 40)) return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static inline int buf_zero(Buf *b, size_t n) {
    if (!n) return 0;
    if (buf_reserve(b, n)) return -1;
    memset(b->p + b->len, 0, n);
    b->len += n;
    return 0;
}

static inline int bits_put(Bits *b, int v) {
    if ((b->n & 7) == 0) {
        if (buf_reserve(&b->b, 1)) return -1;
        b->b.p[b->b.len++] = 0;
    }
    if (v) b->b.p[b->n >> 3] |= (char)(1 << (b->n & 7));
    b->n++;
    return 0;
}

static inline int off_put(Buf *b, int64_t v) {
    if (v > INT32_MAX) return -1;
    int32_t x = (int32_t)v;
    return buf_put(b, &x, 4);
}

/* --- the program ---------------------------------------------------------------------------- */

static void node_free(Node *n) {
    if (!n) return;
    for (int i = 0; i < n->nchild; i++) node_free(n->child[i]);
    free(n->child);
    for (int i = 0; i < n->nsym; i++) free(n->sym[i]);
    free(n->sym);
    free(n->symlen);
    free(n);
}

/* (op, lo, hi, size, extra, children, symbols) */
static Node *node_compile(PyObject *t, int depth, int nullable, int *counter) {
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "schema nests too deep");
        return NULL;
    }
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
        PyErr_SetString(PyExc_TypeError, "a program node is a 7-tuple");
        return NULL;
    }
    Node *n = calloc(1, sizeof(Node));
    if (!n) {
        PyErr_NoMemory();
        return NULL;
    }
    n->op = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
    n->lo = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 1));
    n->hi = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 2));
    n->size = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 3));
    n->extra = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 4));
    n->nullable = nullable && n->op != OP_NULL;
    n->id = (*counter)++;
    if (PyErr_Occurred()) goto fail;
    if (n->op < OP_NULL || n->op > OP_UUID) {
        PyErr_SetString(PyExc_ValueError, "unknown op");
        goto fail;
    }
    PyObject *children = PyTuple_GET_ITEM(t, 5);
    PyObject *symbols = PyTuple_GET_ITEM(t, 6);
    if (!PyTuple_Check(children) || !PyTuple_Check(symbols)) {
        PyErr_SetString(PyExc_TypeError, "children and symbols are tuples");
        goto fail;
    }
    Py_ssize_t nc = PyTuple_GET_SIZE(children);
    int want = n->op == OP_RECORD ? -1
               : (n->op == OP_ARRAY || n->op == OP_MAP) ? 1
               : n->op == OP_UNION ? 1
                                   : 0;
    if (want >= 0 && nc != want) {
        PyErr_SetString(PyExc_ValueError, "wrong number of children");
        goto fail;
    }
    if (n->op == OP_UNION && (n->size < 1 || n->size > 2 || n->extra >= n->size)) {
        PyErr_SetString(PyExc_ValueError, "unsupported union");
        goto fail;
    }
    if ((n->op == OP_FIXED || n->op == OP_DECIMAL_FIXED) &&
        (n->size < 0 || n->size > (1 << 30))) {
        PyErr_SetString(PyExc_ValueError, "bad fixed size");
        goto fail;
    }
    if ((n->op == OP_DECIMAL_BYTES || n->op == OP_DECIMAL_FIXED) &&
        (n->extra < 1 || n->extra > 38)) {
        PyErr_SetString(PyExc_ValueError, "bad decimal precision");
        goto fail;
    }
    if (nc) {
        n->child = calloc((size_t)nc, sizeof(Node *));
        if (!n->child) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < nc; i++) {
            int child_nullable = n->op == OP_UNION && n->extra >= 0;
            n->child[i] = node_compile(PyTuple_GET_ITEM(children, i), depth + 1, child_nullable, counter);
            n->nchild = (int)i + 1;
            if (!n->child[i]) goto fail;
        }
    }
    Py_ssize_t ns = PyTuple_GET_SIZE(symbols);
    if (n->op == OP_ENUM) {
        if (ns < 1) {
            PyErr_SetString(PyExc_ValueError, "enum without symbols");
            goto fail;
        }
        n->sym = calloc((size_t)ns, sizeof(char *));
        n->symlen = calloc((size_t)ns, sizeof(Py_ssize_t));
        if (!n->sym || !n->symlen) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < ns; i++) {
            PyObject *s = PyTuple_GET_ITEM(symbols, i);
            char *p;
            Py_ssize_t len;
            if (PyBytes_AsStringAndSize(s, &p, &len) < 0) goto fail;
            n->sym[i] = malloc((size_t)len + 1);
            if (!n->sym[i]) {
                PyErr_NoMemory();
                goto fail;
            }
            memcpy(n->sym[i], p, (size_t)len);
            n->symlen[i] = len;
            n->nsym = (int)i + 1;
        }
    }
    switch (n->op) {
        case OP_NULL:
            n->min_zero = 1;
            break;
        case OP_RECORD:
            n->min_zero = 1;
            for (int i = 0; i < n->nchild; i++)
                if (!n->child[i]->min_zero) n->min_zero = 0;
            break;
        case OP_FIXED:
        case OP_DECIMAL_FIXED:
            n->min_zero = n->size == 0;
            break;
        default:
            n->min_zero = 0;
    }
    return n;
fail:
    node_free(n);
    return NULL;
}

/* --- reading ---------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    int emit;
} Reader;

static inline int read_long(Reader *r, int64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return ST_TRUNCATED;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1) return ST_BAD_VARINT;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return ST_OK;
        }
        shift += 7;
    }
    return ST_BAD_VARINT;
}

static inline int read_len(Reader *r, int64_t *out) {
    int st = read_long(r, out);
    if (st) return st;
    if (*out < 0) return ST_NEGATIVE_LENGTH;
    if (*out > r->end - r->p) return ST_TRUNCATED;
    return ST_OK;
}

static int utf8_ok(const uint8_t *s, int64_t n) {
    int64_t i = 0;
    while (i < n) {
        uint64_t w;
        if (i + 8 <= n && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ULL))) {
            i += 8; /* eight ASCII bytes */
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int k;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            k = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + k >= n) return 0;
        for (int j = 1; j <= k; j++) {
            uint8_t d = s[i + j];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int is_canonical_uuid(const uint8_t *s, int64_t n) {
    if (n != 36) return 0;
    for (int i = 0; i < 36; i++) {
        uint8_t c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* big-endian two's complement -> int128, 0 when it does not fit or exceeds the precision */
static int decimal_value(const uint8_t *s, int64_t n, int64_t precision, __int128 *out) {
    if (n == 0) {
        *out = 0;
        return 1;
    }
    int neg = s[0] & 0x80;
    int64_t i = 0;
    /* leading sign-extension bytes */
    while (n - i > 16) {
        if (s[i] != (neg ? 0xFF : 0x00)) return 0;
        i++;
    }
    unsigned __int128 u = neg ? ~(unsigned __int128)0 : 0;
    for (; i < n; i++) u = (u << 8) | s[i];
    __int128 v = (__int128)u;
    if ((v < 0) != (neg != 0)) return 0;
    __int128 limit = 1;
    for (int64_t k = 0; k < precision; k++) limit *= 10;
    if (v >= limit || v <= -limit) return 0;
    *out = v;
    return 1;
}

typedef struct {
    const uint8_t *p, *end;
    int emit;
    Out *outs;
} Ctx;

/* the node whose column holds n's values (a union's values are its branch's) */
static inline Node *column_of(Node *n) {
    while (n->op == OP_UNION) n = n->child[0];
    return n;
}

/* an empty slot (what Arrow's builders append to the children of a null struct), valid
 * unless the caller writes the validity bit */
static int append_empty(Ctx *c, Node *n, int with_validity) {
    if (n->op == OP_UNION) return append_empty(c, n->child[0], 1);
    Out *o = &c->outs[n->id];
    if (with_validity && n->nullable && bits_put(&o->valid, 1)) return -1;
    o->length++;
    switch (n->op) {
        case OP_NULL:
            o->null_count++;
            return 0;
        case OP_BOOL:
            return bits_put(&o->bits, 0);
        case OP_INT:
        case OP_FLOAT:
            return buf_zero(&o->data, 4);
        case OP_LONG:
        case OP_DOUBLE:
            return buf_zero(&o->data, 8);
        case OP_BYTES:
        case OP_STRING:
        case OP_ENUM:
        case OP_UUID:
            return off_put(&o->offsets, (int64_t)o->data.len);
        case OP_FIXED:
            return buf_zero(&o->data, (size_t)n->size);
        case OP_DECIMAL_BYTES:
        case OP_DECIMAL_FIXED:
            return buf_zero(&o->data, 16);
        case OP_RECORD:
            for (int i = 0; i < n->nchild; i++)
                if (append_empty(c, n->child[i], 1)) return -1;
            return 0;
        case OP_ARRAY:
        case OP_MAP:
            return off_put(&o->offsets, c->outs[column_of(n->child[0])->id].length);
    }
    return 0;
}

/* a null slot of the non-null branch of a union */
static int append_null(Ctx *c, Node *n) {
    Out *o = &c->outs[n->id];
    if (n->op == OP_NULL) {
        o->length++;
        o->null_count++;
        return 0;
    }
    if (bits_put(&o->valid, 0)) return -1;
    o->null_count++;
    return append_empty(c, n, 0);
}

#define NOMEM(x) \
    do {         \
        if (x) return ST_NO_MEMORY; \
    } while (0)

static int read_node(Ctx *c, Node *n);

static inline int begin(Ctx *c, Node *n, Out *o) {
    if (n->nullable && bits_put(&o->valid, 1)) return -1;
    o->length++;
    return 0;
}

static int read_block_items(Ctx *c, Node *n, Out *o) {
    Node *item = n->child[0];
    int is_map = n->op == OP_MAP;
    int zero = !is_map && item->min_zero;
    int64_t total = 0;
    Out *io = c->emit ? &c->outs[column_of(item)->id] : NULL;
    int64_t first_key = c->emit && is_map ? (int64_t)(o->koff.len / 4) - 1 : 0;
    for (;;) {
        int64_t count, bsize = -1;
        int st = read_long((Reader *)c, &count);
        if (st) return st;
        if (count == 0) break;
        if (count < 0) {
            if (count == INT64_MIN) return ST_BAD_COUNT;
            count = -count;
            st = read_long((Reader *)c, &bsize);
            if (st) return st;
            if (bsize < 0) return ST_NEGATIVE_LENGTH;
            if (bsize > c->end - c->p) return ST_TRUNCATED;
        }
        if (!zero && count > c->end - c->p) return ST_TRUNCATED;
        total += count;
        if (zero && total > MAX_EMPTY_ITEMS) return ST_BAD_COUNT;
        const uint8_t *block = c->p;
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                int64_t len;
                st = read_len((Reader *)c, &len);
                if (st) return st;
                if (c->emit) {
                    if (!utf8_ok(c->p, len)) return ST_UNSUPPORTED;
                    NOMEM(buf_put(&o->data, c->p, (size_t)len));
                    NOMEM(off_put(&o->koff, (int64_t)o->data.len));
                }
                c->p += len;
            }
            st = read_node(c, item);
            if (st) return st;
        }
        if (bsize >= 0 && c->p - block != bsize) return ST_BAD_COUNT;
    }
    if (is_map && c->emit && total > 1) {
        /* fastavro keeps the last of duplicate keys (a dict): not this path */
        if (total > MAP_DUP_CHECK_MAX) return ST_UNSUPPORTED;
        const int32_t *ko = (const int32_t *)o->koff.p;
        int64_t base = first_key;
        for (int64_t i = 0; i < total; i++) {
            int32_t s1 = ko[base + i], e1 = ko[base + i + 1];
            for (int64_t j = i + 1; j < total; j++) {
                int32_t s2 = ko[base + j], e2 = ko[base + j + 1];
                if (e1 - s1 == e2 - s2 && !memcmp(o->data.p + s1, o->data.p + s2, (size_t)(e1 - s1)))
                    return ST_UNSUPPORTED;
            }
        }
    }
    if (c->emit) NOMEM(off_put(&o->offsets, io->length));
    return ST_OK;
}

static int read_node(Ctx *c, Node *n) {
    int64_t v, len;
    int st;
    Out *o = c->emit ? &c->outs[n->id] : NULL;
    switch (n->op) {
        case OP_NULL:
            if (o) {
                o->length++;
                o->null_count++;
            }
            return ST_OK;
        case OP_BOOL: {
            if (c->p >= c->end) return ST_TRUNCATED;
            uint8_t b = *c->p++;
            if (o) {
                NOMEM(begin(c, n, o));
                NOMEM(bits_put(&o->bits, b != 0));
            }
            return ST_OK;
        }
        case OP_INT:
        case OP_LONG:
            st = read_long((Reader *)c, &v);
            if (st) return st;
            if (o) {
                if (v < n->lo || v > n->hi) return ST_UNSUPPORTED;
                NOMEM(begin(c, n, o));
                if (n->op == OP_INT) {
                    int32_t x = (int32_t)v;
                    NOMEM(buf_put(&o->data, &x, 4));
                } else {
                    NOMEM(buf_put(&o->data, &v, 8));
                }
            }
            return ST_OK;
        case OP_FLOAT:
        case OP_DOUBLE: {
            int64_t k = n->op == OP_FLOAT ? 4 : 8;
            if (c->end - c->p < k) return ST_TRUNCATED;
            if (o) {
                NOMEM(begin(c, n, o));
                NOMEM(buf_put(&o->data, c->p, (size_t)k));
            }
            c->p += k;
            return ST_OK;
        }
        case OP_BYTES:
        case OP_STRING:
        case OP_UUID:
            st = read_len((Reader *)c, &len);
            if (st) return st;
            if (o) {
                if (n->op == OP_STRING && !utf8_ok(c->p, len)) return ST_UNSUPPORTED;
                if (n->op == OP_UUID && !is_canonical_uuid(c->p, len)) return ST_UNSUPPORTED;
                NOMEM(begin(c, n, o));
                NOMEM(buf_put(&o->data, c->p, (size_t)len));
                NOMEM(off_put(&o->offsets, (int64_t)o->data.len));
            }
            c->p += len;
            return ST_OK;
        case OP_FIXED:
            if (c->end - c->p < n->size) return ST_TRUNCATED;
            if (o) {
                NOMEM(begin(c, n, o));
                NOMEM(buf_put(&o->data, c->p, (size_t)n->size));
            }
            c->p += n->size;
            return ST_OK;
        case OP_DECIMAL_BYTES:
        case OP_DECIMAL_FIXED: {
            if (n->op == OP_DECIMAL_BYTES) {
                st = read_len((Reader *)c, &len);
                if (st) return st;
            } else {
                len = n->size;
                if (c->end - c->p < len) return ST_TRUNCATED;
            }
            if (o) {
                __int128 d;
                if (!decimal_value(c->p, len, n->extra, &d)) return ST_UNSUPPORTED;
                NOMEM(begin(c, n, o));
                NOMEM(buf_put(&o->data, &d, 16));
            }
            c->p += len;
            return ST_OK;
        }
        case OP_ENUM:
            st = read_long((Reader *)c, &v);
            if (st) return st;
            if (v < 0 || v >= n->nsym) return ST_BAD_ENUM;
            if (o) {
                NOMEM(begin(c, n, o));
                NOMEM(buf_put(&o->data, n->sym[v], (size_t)n->symlen[v]));
                NOMEM(off_put(&o->offsets, (int64_t)o->data.len));
            }
            return ST_OK;
        case OP_RECORD:
            if (o) NOMEM(begin(c, n, o));
            for (int i = 0; i < n->nchild; i++) {
                st = read_node(c, n->child[i]);
                if (st) return st;
            }
            return ST_OK;
        case OP_ARRAY:
        case OP_MAP:
            if (o) NOMEM(begin(c, n, o));
            return read_block_items(c, n, o);
        case OP_UNION:
            st = read_long((Reader *)c, &v);
            if (st) return st;
            if (v < 0 || v >= n->size) return ST_BAD_UNION;
            if (v == n->extra) {
                if (o) NOMEM(append_null(c, n->child[0]));
                return ST_OK;
            }
            return read_node(c, n->child[0]);
    }
    return ST_UNSUPPORTED;
}

/* --- Python interface ------------------------------------------------------------------------ */

#define CAPSULE "s3sink.avrofast.program"

static void program_destroy(PyObject *cap) {
    Program *p = PyCapsule_GetPointer(cap, CAPSULE);
    if (p) {
        node_free(p->root);
        free(p);
    }
}

static PyObject *py_compile(PyObject *self, PyObject *arg) {
    int counter = 0;
    Node *root = node_compile(arg, 0, 0, &counter);
    if (!root) return NULL;
    Program *p = malloc(sizeof(Program));
    if (!p) {
        node_free(root);
        return PyErr_NoMemory();
    }
    p->root = root;
    p->nnodes = counter;
    PyObject *cap = PyCapsule_New(p, CAPSULE, program_destroy);
    if (!cap) {
        node_free(root);
        free(p);
    }
    return cap;
}

static int init_outs(Node *n, Out *outs) {
    Out *o = &outs[n->id];
    switch (n->op) {
        case OP_MAP:
            if (off_put(&o->koff, 0)) return -1;
            /* fall through */
        case OP_BYTES:
        case OP_STRING:
        case OP_ENUM:
        case OP_UUID:
        case OP_ARRAY:
            if (off_put(&o->offsets, 0)) return -1;
    }
    for (int i = 0; i < n->nchild; i++)
        if (init_outs(n->child[i], outs)) return -1;
    return 0;
}

static void free_outs(Out *outs, int n) {
    if (!outs) return;
    for (int i = 0; i < n; i++) {
        free(outs[i].valid.b.p);
        free(outs[i].offsets.p);
        free(outs[i].koff.p);
        free(outs[i].data.p);
        free(outs[i].bits.b.p);
    }
    free(outs);
}

/* args: program, buffer, offsets (int64 buffer of n+1 value boundaries), header bytes */
typedef struct {
    Program *prog;
    Py_buffer data, offs;
    Py_ssize_t n, header;
    int64_t *bounds; /* a private copy of the offsets, checked (the walk runs without the GIL) */
    PyObject *values; /* or: a tuple of bytes (immutable, referenced: read without the GIL) */
} Args;

/* args: program, a sequence of bytes values, header bytes */
static int parse_list_args(PyObject *args, Args *a) {
    PyObject *cap, *seq;
    memset(a, 0, sizeof *a);
    if (!PyArg_ParseTuple(args, "OOn", &cap, &seq, &a->header)) return -1;
    a->prog = PyCapsule_GetPointer(cap, CAPSULE);
    if (!a->prog) return -1;
    if (a->header < 0) {
        PyErr_SetString(PyExc_ValueError, "negative header");
        return -1;
    }
    a->values = PySequence_Tuple(seq);
    if (!a->values) return -1;
    a->n = PyTuple_GET_SIZE(a->values);
    for (Py_ssize_t i = 0; i < a->n; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(a->values, i))) {
            PyErr_SetString(PyExc_TypeError, "values must be bytes");
            Py_CLEAR(a->values);
            return -1;
        }
    }
    return 0;
}

static int parse_args(PyObject *args, Args *a) {
    PyObject *cap;
    memset(a, 0, sizeof *a);
    if (!PyArg_ParseTuple(args, "Oy*y*n", &cap, &a->data, &a->offs, &a->header)) return -1;
    a->prog = PyCapsule_GetPointer(cap, CAPSULE);
    if (!a->prog) goto fail;
    if (a->offs.len % 8 || a->offs.len < 8) {
        PyErr_SetString(PyExc_ValueError, "offsets: n + 1 int64 values");
        goto fail;
    }
    if (a->header < 0) {
        PyErr_SetString(PyExc_ValueError, "negative header");
        goto fail;
    }
    a->n = a->offs.len / 8 - 1;
    a->bounds = malloc((size_t)a->offs.len);
    if (!a->bounds) {
        PyErr_NoMemory();
        goto fail;
    }
    memcpy(a->bounds, a->offs.buf, (size_t)a->offs.len);
    const int64_t *o = a->bounds;
    if (o[0] < 0) goto bad_offsets;
    for (Py_ssize_t i = 0; i < a->n; i++) {
        if (o[i] > o[i + 1] || o[i + 1] > a->data.len) goto bad_offsets;
    }
    return 0;
bad_offsets:
    PyErr_SetString(PyExc_ValueError, "offsets out of order or past the buffer");
fail:
    free(a->bounds);
    PyBuffer_Release(&a->data);
    PyBuffer_Release(&a->offs);
    return -1;
}

static void release_args(Args *a) {
    free(a->bounds);
    a->bounds = NULL;
    Py_CLEAR(a->values);
    PyBuffer_Release(&a->data);
    PyBuffer_Release(&a->offs);
}

/* walks records [0, n): a verdict per record in status[i], or (stop_at_bad) the verdict of the
 * first bad record in *status; returns the index of that record, or n */
static Py_ssize_t walk(Args *a, Ctx *c, uint8_t *status, int stop_at_bad) {
    const uint8_t *buf = a->data.buf;
    const int64_t *o = a->bounds;
    for (Py_ssize_t i = 0; i < a->n; i++) {
        int st;
        const uint8_t *start, *end;
        if (a->values) {
            PyObject *v = PyTuple_GET_ITEM(a->values, i);
            start = (const uint8_t *)PyBytes_AS_STRING(v);
            end = start + PyBytes_GET_SIZE(v);
        } else {
            start = buf + o[i];
            end = buf + o[i + 1];
        }
        if (end - start < a->header) {
            st = ST_SHORT_VALUE;
        } else {
            c->p = start + a->header;
            c->end = end;
            st = read_node(c, a->prog->root);
            if (!st && c->p != c->end) st = ST_TRAILING;
        }
        if (stop_at_bad) {
            if (st) {
                *status = (uint8_t)st;
                return i;
            }
        } else {
            status[i] = (uint8_t)st;
        }
    }
    return a->n;
}

static PyObject *validate_impl(Args *ap) {
    Args a = *ap;
    PyObject *out = PyBytes_FromStringAndSize(NULL, a.n);
    if (!out) {
        release_args(&a);
        return NULL;
    }
    uint8_t *status = (uint8_t *)PyBytes_AS_STRING(out);
    Ctx c = {0};
    c.emit = 0;
    Py_BEGIN_ALLOW_THREADS
    walk(&a, &c, status, 0);
    Py_END_ALLOW_THREADS
    release_args(&a);
    return out;
}

static PyObject *bytes_or_none(const char *p, size_t len, int keep) {
    if (!keep) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(len ? p : "", (Py_ssize_t)len);
}

static int export(Node *n, Out *outs, PyObject *list) {
    if (n->op == OP_UNION) return export(n->child[0], outs, list);
    Out *o = &outs[n->id];
    int has_offsets = n->op == OP_BYTES || n->op == OP_STRING || n->op == OP_ENUM ||
                      n->op == OP_UUID || n->op == OP_ARRAY || n->op == OP_MAP;
    PyObject *data;
    if (n->op == OP_BOOL)
        data = bytes_or_none(o->bits.b.p, o->bits.b.len, 1);
    else
        data = bytes_or_none(o->data.p, o->data.len, n->op != OP_NULL && n->op != OP_RECORD &&
                                                         n->op != OP_ARRAY);
    PyObject *t = Py_BuildValue(
        "(LLNNNN)", (long long)o->length, (long long)o->null_count,
        bytes_or_none(o->valid.b.p, o->valid.b.len, n->nullable && o->null_count > 0),
        bytes_or_none(o->offsets.p, o->offsets.len, has_offsets), data,
        bytes_or_none(o->koff.p, o->koff.len, n->op == OP_MAP));
    if (!t || PyList_Append(list, t)) {
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(t);
    for (int i = 0; i < n->nchild; i++)
        if (export(n->child[i], outs, list)) return -1;
    return 0;
}

/* decode(program, buffer, offsets, header) -> [(length, null_count, validity, offsets, data,
 * key_offsets)] per node (pre-order, unions left out), or (status, index) of the first record
 * that cannot be decoded here */
static PyObject *decode_impl(Args *ap) {
    Args a = *ap;
    int nn = a.prog->nnodes;
    Out *outs = calloc((size_t)nn, sizeof(Out));
    if (!outs) {
        release_args(&a);
        return PyErr_NoMemory();
    }
    if (init_outs(a.prog->root, outs)) {
        free_outs(outs, nn);
        release_args(&a);
        return PyErr_NoMemory();
    }
    Ctx c = {0};
    c.emit = 1;
    c.outs = outs;
    uint8_t st = 0;
    Py_ssize_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = walk(&a, &c, &st, 1);
    Py_END_ALLOW_THREADS
    release_args(&a);
    PyObject *result;
    if (bad < a.n) {
        result = Py_BuildValue("(in)", (int)st, bad);
    } else {
        result = PyList_New(0);
        if (result && export(a.prog->root, outs, result)) Py_CLEAR(result);
    }
    free_outs(outs, nn);
    return result;
}

static PyObject *py_validate(PyObject *self, PyObject *args) {
    Args a;
    if (parse_args(args, &a)) return NULL;
    return validate_impl(&a);
}

static PyObject *py_decode(PyObject *self, PyObject *args) {
    Args a;
    if (parse_args(args, &a)) return NULL;
    return decode_impl(&a);
}

static PyObject *py_validate_values(PyObject *self, PyObject *args) {
    Args a;
    if (parse_list_args(args, &a)) return NULL;
    return validate_impl(&a);
}

static PyObject *py_decode_values(PyObject *self, PyObject *args) {
    Args a;
    if (parse_list_args(args, &a)) return NULL;
    return decode_impl(&a);
}

/* bodies(values, header) -> bytes: b"".join(v[header:] for v in values), one copy */
static PyObject *py_bodies(PyObject *self, PyObject *args) {
    PyObject *seq;
    Py_ssize_t header;
    if (!PyArg_ParseTuple(args, "On", &seq, &header)) return NULL;
    if (header < 0) {
        PyErr_SetString(PyExc_ValueError, "negative header");
        return NULL;
    }
    PyObject *t = PySequence_Fast(seq, "values must be a sequence");
    if (!t) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(t), total = 0;
    PyObject **items = PySequence_Fast_ITEMS(t);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i]) || PyBytes_GET_SIZE(items[i]) < header) {
            PyErr_SetString(PyExc_ValueError, "values must be bytes of at least the header");
            Py_DECREF(t);
            return NULL;
        }
        total += PyBytes_GET_SIZE(items[i]) - header;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out) {
        char *w = PyBytes_AS_STRING(out);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t len = PyBytes_GET_SIZE(items[i]) - header;
            memcpy(w, PyBytes_AS_STRING(items[i]) + header, (size_t)len);
            w += len;
        }
    }
    Py_DECREF(t);
    return out;
}

static PyMethodDef methods[] = {
    {"validate_values", py_validate_values, METH_VARARGS,
     "validate_values(program, values, header) -> bytes: a status per value"},
    {"decode_values", py_decode_values, METH_VARARGS,
     "decode_values(program, values, header) -> columns, or (status, index)"},
    {"bodies", py_bodies, METH_VARARGS,
     "bodies(values, header) -> the values without their headers, joined"},
    {"compile", py_compile, METH_O, "compile(node) -> program"},
    {"validate", py_validate, METH_VARARGS,
     "validate(program, buffer, offsets, header) -> bytes: a status per record"},
    {"decode", py_decode, METH_VARARGS,
     "decode(program, buffer, offsets, header) -> columns, or (status, index)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_avrofast", "Native bulk Avro validation and decoding", -1, methods,
};

PyMODINIT_FUNC PyInit__avrofast(void) {
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ || \
    !defined(__SIZEOF_INT128__)
    PyErr_SetString(PyExc_ImportError, "_avrofast needs a little-endian 64-bit compiler");
    return NULL;
#endif
    PyObject *m = PyModule_Create(&module);
    /* the interface version avrofast.py checks (a stale in-place build is not used) */
    if (m && PyModule_AddIntConstant(m, "API", AVROFAST_API) < 0) Py_CLEAR(m);
    return m;
}
