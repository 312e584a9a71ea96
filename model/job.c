// job: parses and validates one Kafka message value into an hk_job_t (DESIGN §4).
//
// The same fill code runs twice over the jansson tree: a measuring pass that validates
// everything and adds up the bytes the job needs, then a copying pass into one malloc'd
// block laid out as [hk_job_t][items][header arrays, strings, bodies]. One code path for
// both passes keeps the measured size and the copy in step; the arena still refuses to
// write past its end, so a mismatch becomes an error, never an overflow. Enum-like values
// ("POST", "default", "application/json") point at static strings, not into the block.
//
// A JSON body is sent as the producer wrote it, minus whitespace outside strings: jansson
// validates the message, then a small scanner finds the body's bytes in it (raw_*), so
// numbers (19.90, 1e2, integers past int64), escapes and key order reach the receiver as is.
#include "model/job.h"

#include "base/base64.h"
#include "base/civil.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum {
    JOB_MAX_DEPTH = 64, // containers open at once, the top-level object included
    JOB_ID_MAX = HK_JOB_ID_MAX,
    JOB_TENANT_MAX = 128,
    JOB_URL_MAX = 8192,
    JOB_HEADERS_MAX = 64,
    JOB_HEADER_NAME_MAX = 256,
    JOB_HEADER_VALUE_MAX = 8192,
    JOB_CTYPE_MAX = 255,
    JOB_ORDERING_KEY_MAX = 255,
    JOB_ITEMS_MAX = 100000,
    JOB_EXPIRES_AT_MAX = 64,
    JOB_ATTEMPTS_MIN = 1,
    JOB_ATTEMPTS_MAX = 100,
    JOB_TIMEOUT_MIN = 100,
    JOB_TIMEOUT_MAX = 120000,
};

#define JOB_DEFAULT_MAX_BYTES ((size_t)1024 * 1024)
#define JOB_LOAD_FLAGS        (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

// Bump allocator over the job's block. While measuring `base` is NULL: takes only count.
typedef struct arena {
    char *base;
    size_t cap;
    size_t used;
    bool overflow; // a take did not fit (copying) or the size wrapped (measuring)
} arena_t;

// Stands in for copied strings while measuring, so "is it set" checks work in both passes.
static const char k_measured[] = "";
static const char k_json_ctype[] = "application/json";

typedef struct ctx {
    arena_t a;
    bool measuring; // first pass: also runs the checks that cost (URL parsing)
    char *errstr;
    size_t errstr_size;
    char where[32]; // JSON path of the object being filled: "$" or "$.items[12]"
    const hk_job_src_t *src;
    const hk_job_defaults_t *defs;
    const unsigned char *raw; // the message value as received: JSON bodies are copied from it
    size_t raw_len;
    // Real bytes in both passes (they size the item ids and content types).
    const char *batch_id;
    size_t batch_id_len;
    const char *batch_ctype; // Content-Type from the batch's headers, for items inheriting them
    size_t batch_ctype_len;
    char derived_id[JOB_ID_MAX + 1];
} ctx_t;

__attribute__((format(printf, 2, 3))) static int fail(ctx_t *c, const char *fmt, ...)
{
    if (!c->errstr || c->errstr_size == 0)
        return -1;
    int n = snprintf(c->errstr, c->errstr_size, "%s", c->where);
    if (n >= 0 && (size_t)n < c->errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errstr + n, c->errstr_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// Reasons travel in DLQ headers and log lines: keep them printable ASCII whatever the
// input echoed into them (jansson's "near '...'", header names).
static void sanitize_reason(char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

static void *arena_take(arena_t *a, size_t n, size_t align)
{
    size_t off = a->used;
    if (off % align)
        off += align - off % align;
    if (off < a->used || off + n < off || (a->base && off + n > a->cap)) {
        a->overflow = true;
        return NULL;
    }
    a->used = off + n;
    return a->base ? a->base + off : NULL;
}

static const char *arena_str(arena_t *a, const char *s, size_t n)
{
    char *p = arena_take(a, n + 1, 1);
    if (!p)
        return k_measured; // measuring, or an overflow caught after the copy
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

// Present and not JSON null: a null field counts as absent.
static json_t *get(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static bool is_alnum(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static bool is_id_char(unsigned char ch)
{
    return is_alnum(ch) || ch == '_' || ch == ':' || ch == '-';
}

// RFC 7230 tchar.
static bool is_token_char(unsigned char ch)
{
    return is_alnum(ch) || (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool has_cr_lf(const char *s, size_t n)
{
    return memchr(s, '\r', n) || memchr(s, '\n', n);
}

// Control characters other than HTAB (NUL, DEL included).
static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return true;
    }
    return false;
}

// Valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF) without NUL.
static bool is_utf8_text(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c0 = s[i];
        size_t len;
        uint32_t cp, min;
        if (c0 == 0)
            return false;
        if (c0 < 0x80) {
            i++;
            continue;
        }
        if (c0 >= 0xc2 && c0 <= 0xdf) {
            len = 2, cp = c0 & 0x1fu, min = 0x80;
        } else if (c0 >= 0xe0 && c0 <= 0xef) {
            len = 3, cp = c0 & 0x0fu, min = 0x800;
        } else if (c0 >= 0xf0 && c0 <= 0xf4) {
            len = 4, cp = c0 & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

// The ordering key of a Kafka key longer than JOB_ORDERING_KEY_MAX bytes:
// "sha256:" and the lower-case hex SHA-256 of its bytes (71 bytes, NUL ended).
#define ORDERING_KEY_HASHED "sha256:"
static void hash_key(const void *key, size_t len, char *out)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(key, len, md);
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(ORDERING_KEY_HASHED);
    memcpy(out, ORDERING_KEY_HASHED, n);
    for (size_t i = 0; i < sizeof(md); i++) {
        out[n++] = hex[md[i] >> 4];
        out[n++] = hex[md[i] & 15];
    }
    out[n] = '\0';
}

// Index just past the string that opens at p[i] == '"', or n when it does not end.
// Only escapes are recognised (the byte after '\\' never ends the string), so it runs
// over any bytes: before jansson (too_deep()) and over scanned values (raw_compact(),
// patch_value()). skip_string() is the strict one.
static size_t skip_string_loose(const unsigned char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return n;
}

// Finds the first container opened deeper than JOB_MAX_DEPTH, before jansson recurses
// (its own limit is 2048). Exact for valid JSON; for invalid JSON either answer is fine,
// the job is rejected anyway.
static bool too_deep(const unsigned char *p, size_t n, size_t *at)
{
    size_t depth = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (ch == '"') {
            i = skip_string_loose(p, n, i) - 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > JOB_MAX_DEPTH) {
                *at = i;
                return true;
            }
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

// ---- raw JSON: where a value sits in the message bytes ----
//
// Strict and bounds-checked, so it also runs over bytes jansson refused (patch_big_ints()).
// Functions returning an index return the one just past what they scanned, 0 when the bytes
// are malformed (a scanned token is never empty, so 0 is never a real end).

// A value in the message: p[off .. off+len), inside `depth` containers (the top level is 0).
typedef struct raw {
    size_t off;
    size_t len;
    int depth;
} raw_t;

static bool is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static bool is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}

static int hex_value(unsigned char ch)
{
    if (is_digit(ch))
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static size_t skip_ws(const unsigned char *p, size_t n, size_t i)
{
    while (i < n && is_ws(p[i]))
        i++;
    return i;
}

// The string starting at p[i] == '"'. UTF-8 is left to jansson.
static size_t skip_string(const unsigned char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        unsigned char ch = p[i];
        if (ch == '"')
            return i + 1;
        if (ch < 0x20)
            return 0;
        if (ch != '\\')
            continue;
        if (++i >= n)
            return 0;
        if (p[i] == 'u') {
            if (n - i < 5)
                return 0;
            for (size_t k = 1; k <= 4; k++)
                if (hex_value(p[i + k]) < 0)
                    return 0;
            i += 4;
        } else if (p[i] == '\0' || !strchr("\"\\/bfnrt", p[i])) {
            return 0;
        }
    }
    return 0;
}

// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; *is_int when it has neither of the last two.
static size_t skip_number(const unsigned char *p, size_t n, size_t i, bool *is_int)
{
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || !is_digit(p[i]))
        return 0;
    if (p[i++] != '0')
        while (i < n && is_digit(p[i]))
            i++;
    *is_int = true;
    if (i < n && p[i] == '.') {
        if (++i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
        *is_int = false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        if (++i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
        *is_int = false;
    }
    return i;
}

static size_t skip_value(const unsigned char *p, size_t n, size_t i, int depth);

// Moves to the next entry of the container `ct` ('{' or '[' at ct.off); *cur is 0 before
// the first. Returns 1 with the entry's index in *at, 0 at the closing bracket (then *cur is
// just past it), -1 when malformed.
static int raw_step(const unsigned char *p, raw_t ct, size_t *cur, size_t *at)
{
    size_t n = ct.off + ct.len;
    size_t i = skip_ws(p, n, *cur ? *cur : ct.off + 1);
    if (i < n && p[i] == (p[ct.off] == '{' ? '}' : ']')) {
        *cur = i + 1;
        return 0;
    }
    if (*cur) { // past the previous entry: a comma and the next one must follow
        if (i >= n || p[i] != ',')
            return -1;
        i = skip_ws(p, n, i + 1);
    }
    *at = i;
    return 1;
}

// Steps through an object's members; *cur starts at 0. Returns 1 with the key (quotes
// included) and the value, 0 after the last member (*cur is then past the '}'), -1 when
// malformed.
static int raw_next_member(const unsigned char *p, raw_t obj, size_t *cur, raw_t *key, raw_t *val)
{
    size_t n = obj.off + obj.len, i = 0;
    if (obj.len == 0 || p[obj.off] != '{')
        return -1;
    int rc = raw_step(p, obj, cur, &i);
    if (rc <= 0)
        return rc;
    if (i >= n || p[i] != '"')
        return -1;
    size_t end = skip_string(p, n, i);
    if (!end)
        return -1;
    *key = (raw_t){i, end - i, obj.depth + 1};
    i = skip_ws(p, n, end);
    if (i >= n || p[i] != ':')
        return -1;
    i = skip_ws(p, n, i + 1);
    if (!(end = skip_value(p, n, i, obj.depth + 1)))
        return -1;
    *val = (raw_t){i, end - i, obj.depth + 1};
    *cur = end;
    return 1;
}

// Steps through an array's elements; *cur starts at 0. Returns 1 with the element, 0 after
// the last one (*cur is then past the ']'), -1 when malformed.
static int raw_next_element(const unsigned char *p, raw_t arr, size_t *cur, raw_t *el)
{
    size_t n = arr.off + arr.len, i = 0;
    if (arr.len == 0 || p[arr.off] != '[')
        return -1;
    int rc = raw_step(p, arr, cur, &i);
    if (rc <= 0)
        return rc;
    size_t end = skip_value(p, n, i, arr.depth + 1);
    if (!end)
        return -1;
    *el = (raw_t){i, end - i, arr.depth + 1};
    *cur = end;
    return 1;
}

static size_t skip_word(const unsigned char *p, size_t n, size_t i, const char *w)
{
    size_t wl = strlen(w);
    return n - i >= wl && memcmp(p + i, w, wl) == 0 ? i + wl : 0;
}

// The value starting at p[i], nested in `depth` containers.
static size_t skip_value(const unsigned char *p, size_t n, size_t i, int depth)
{
    if (i >= n)
        return 0;
    switch (p[i]) {
    case '"':
        return skip_string(p, n, i);
    case 't':
        return skip_word(p, n, i, "true");
    case 'f':
        return skip_word(p, n, i, "false");
    case 'n':
        return skip_word(p, n, i, "null");
    case '{':
    case '[': {
        if (depth >= JOB_MAX_DEPTH) // the same limit too_deep() applies
            return 0;
        raw_t ct = {i, n - i, depth}, key, val;
        size_t cur = 0;
        int rc;
        while ((rc = p[i] == '{' ? raw_next_member(p, ct, &cur, &key, &val)
                                 : raw_next_element(p, ct, &cur, &val)) > 0)
            ;
        return rc == 0 ? cur : 0;
    }
    default: {
        bool is_int;
        return skip_number(p, n, i, &is_int);
    }
    }
}

// Whether the key p[key] (a scanned string, quotes included) decodes to the ASCII `name`.
// Producers may escape any character: "b\u006fdy" is "body".
static bool raw_key_is(const unsigned char *p, raw_t key, const char *name)
{
    size_t k = 0, end = key.off + key.len - 1;
    for (size_t i = key.off + 1; i < end; k++) {
        unsigned cp = p[i++];
        if (cp == '\\') {
            unsigned char e = p[i++];
            if (e == 'u') {
                cp = 0;
                for (size_t d = 0; d < 4; d++)
                    cp = cp << 4 | (unsigned)hex_value(p[i++]);
            } else { // '"', '\\' and '/' stand for themselves
                static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
                const char *at = strchr(from, e);
                cp = at ? (unsigned char)to[at - from] : e;
            }
        }
        // Stops at the NUL ending `name`: cp is never 0 when compared.
        if (cp == 0 || cp >= 0x80 || (unsigned char)name[k] != cp)
            return false;
    }
    return name[k] == '\0';
}

// The top-level value: from the first non-blank byte to the end of the message.
static raw_t raw_root(const unsigned char *p, size_t n)
{
    size_t i = skip_ws(p, n, 0);
    return (raw_t){i, n - i, 0};
}

// Member `name` of the object `obj`: 1 with its value, 0 when absent, -1 when malformed.
static int raw_member(const unsigned char *p, raw_t obj, const char *name, raw_t *val)
{
    size_t cur = 0;
    raw_t key;
    int rc;
    while ((rc = raw_next_member(p, obj, &cur, &key, val)) > 0)
        if (raw_key_is(p, key, name))
            return 1;
    return rc;
}

// Copies the scanned value p[v] to `out` (when not NULL) without the whitespace outside its
// strings. Returns the length of the copy.
static size_t raw_compact(const unsigned char *p, raw_t v, char *out)
{
    size_t o = 0, end = v.off + v.len;
    for (size_t i = v.off; i < end; i++) {
        unsigned char ch = p[i];
        if (ch == '"') { // a string is copied as it is, escapes included
            size_t stop = skip_string_loose(p, end, i);
            if (out)
                memcpy(out + o, p + i, stop - i);
            o += stop - i;
            i = stop - 1;
        } else if (!is_ws(ch)) {
            if (out)
                out[o] = (char)ch;
            o++;
        }
    }
    return o;
}

// An integer token (optional '-', digits without leading zeros) outside int64.
static bool beyond_int64(const unsigned char *s, size_t n)
{
    size_t neg = s[0] == '-';
    const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
    return n - neg > 19 || (n - neg == 19 && memcmp(s + neg, lim, 19) > 0);
}

// Writes a zero of the same length ("0e000...", "-0e00...") over each integer in p[v] that
// is beyond int64, into *copy (made from p on first use). False when out of memory.
static bool patch_value(const unsigned char *p, size_t n, raw_t v, unsigned char **copy)
{
    size_t end = v.off + v.len;
    for (size_t i = v.off; i < end; i++) {
        unsigned char ch = p[i];
        if (ch == '"') {
            i = skip_string_loose(p, end, i) - 1;
            continue;
        }
        if (ch != '-' && !is_digit(ch))
            continue;
        bool is_int = false;
        size_t stop = skip_number(p, end, i, &is_int);
        if (!stop)
            break; // cannot happen: the value was scanned
        if (is_int && beyond_int64(p + i, stop - i)) {
            if (!*copy) {
                if (!(*copy = malloc(n)))
                    return false;
                memcpy(*copy, p, n);
            }
            size_t k = i + (ch == '-');
            (*copy)[k] = '0';
            (*copy)[k + 1] = 'e';
            memset(*copy + k + 2, '0', stop - k - 2);
        }
        i = stop - 1;
    }
    return true;
}

// jansson refuses integers beyond int64 (JSON_DECODE_INT_AS_REAL would round them), yet a
// body passes through as written, so there they are fine. Returns a copy of the message in
// which those inside the top-level body and the items' bodies are zeros of the same length,
// for jansson to validate everything else at unchanged lines and columns; NULL when there is
// nothing to patch. Other big integers, and anything after bytes that do not scan, are left
// for jansson to refuse.
static unsigned char *patch_big_ints(const unsigned char *p, size_t n)
{
    unsigned char *copy = NULL;
    raw_t root = raw_root(p, n), key, val, item, ikey, ival;
    size_t cur = 0;
    bool ok = true;
    while (ok && raw_next_member(p, root, &cur, &key, &val) > 0) {
        if (raw_key_is(p, key, "body")) {
            ok = patch_value(p, n, val, &copy);
        } else if (raw_key_is(p, key, "items")) {
            size_t icur = 0;
            while (ok && raw_next_element(p, val, &icur, &item) > 0) {
                size_t mcur = 0;
                while (ok && raw_next_member(p, item, &mcur, &ikey, &ival) > 0)
                    if (raw_key_is(p, ikey, "body"))
                        ok = patch_value(p, n, ival, &copy);
            }
        }
    }
    if (!ok) {
        free(copy);
        return NULL;
    }
    return copy;
}

// Exactly `n` ASCII digits.
static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

// RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), 'T'/'Z' in either
// case. Fractions below a millisecond are truncated; a leap second 60 is accepted.
static bool parse_rfc3339(const char *s, size_t n, int64_t *out_ms)
{
    int year, mon, day, hh, mi, ss, ms = 0;
    if (n < 20 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &mon) || s[7] != '-' ||
        !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &hh) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &ss))
        return false;
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (i - start < 3)
                ms = ms * 10 + (s[i] - '0');
        if (i == start)
            return false;
        for (size_t k = i - start; k < 3; k++)
            ms *= 10;
    }
    int off_min = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int oh, om;
        if (n - i < 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (i != n)
        return false;
    if (mon < 1 || mon > 12 || day < 1 || day > hk_civil_days_in_month(year, mon) || hh > 23 ||
        mi > 59 || ss > 60)
        return false;
    int64_t secs = hk_civil_days_from_civil(year, mon, day) * 86400 + hh * 3600 + mi * 60 + ss -
                   (int64_t)off_min * 60;
    *out_ms = secs * 1000 + ms;
    return true;
}

static int check_url(ctx_t *c, const char *s, size_t n)
{
    if (n == 0 || n > JOB_URL_MAX)
        return fail(c, ".url: must be an absolute http(s) URL of at most %d bytes", JOB_URL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f)
            return fail(c, ".url: contains a space or control character");
        if (ch >= 0x80)
            return fail(c, ".url: contains non-ASCII bytes (percent-encode them)");
        if (ch == '\\') // not allowed by RFC 3986; browsers and curl disagree on it
            return fail(c, ".url: contains a backslash");
    }
    // Insist on "scheme://" and a non-empty authority: curl also takes "http:/host" and
    // reads "http:///path" as host "path".
    size_t auth = strncasecmp(s, "http://", 7) == 0    ? 7
                  : strncasecmp(s, "https://", 8) == 0 ? 8
                                                       : 0;
    if (!auth || auth == n || strchr("/?#", s[auth]))
        return fail(c, ".url: not an absolute http(s) URL");
    if (!c->measuring)
        return 0; // checked in the first pass already

    CURLU *u = curl_url();
    if (!u)
        return fail(c, ".url: out of memory while checking it");
    char *host = NULL, *user = NULL, *password = NULL;
    int rc = 0;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, s, 0);
    if (uc != CURLUE_OK)
        rc = fail(c, ".url: not an absolute http(s) URL (%s)", curl_url_strerror(uc));
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host)
        rc = fail(c, ".url: not an absolute http(s) URL (no host)");
    else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
             curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
        rc = fail(c, ".url: must not contain credentials (user:password@); use headers");
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(u);
    return rc;
}

// Why a header a job may not set is refused, or NULL when it may.
static const char *header_refusal(const char *name)
{
    static const struct {
        const char *name;
        const char *why;
    } refused[] = {
        {"Host", "set by hookd"},
        {"Content-Length", "set by hookd"},
        {"Transfer-Encoding", "set by hookd"},
        {"Idempotency-Key", "set by hookd"},
        {"Connection", "hop-by-hop"},
        {"Keep-Alive", "hop-by-hop"},
        {"Proxy-Connection", "hop-by-hop"},
        {"TE", "hop-by-hop"},
        {"Trailer", "hop-by-hop"},
        {"Upgrade", "hop-by-hop"},
        {"Proxy-Authorization", "proxy credentials"},
    };
    if (strncasecmp(name, "webhook-", 8) == 0)
        return "webhook-* headers are set by hookd";
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strcasecmp(name, refused[i].name) == 0)
            return refused[i].why;
    return NULL;
}

static int check_ctype(ctx_t *c, const char *path, const char *s, size_t n)
{
    if (n == 0 || n > JOB_CTYPE_MAX)
        return fail(c, "%s: must be 1-%d bytes", path, JOB_CTYPE_MAX);
    if (has_cr_lf(s, n))
        return fail(c, "%s: contains CR/LF", path);
    if (has_ctl(s, n))
        return fail(c, "%s: contains a control character", path);
    return 0;
}

// Own headers go into the block; "Content-Type" is taken out of them and returned in
// *ctype so that job->content_type is the only place a content type lives.
static int fill_headers(ctx_t *c, const json_t *hv, hk_job_t *job, const char **ctype,
                        size_t *ctype_len)
{
    if (!json_is_object(hv))
        return fail(c, ".headers: must be an object of header name to string value");
    if (json_object_size(hv) > JOB_HEADERS_MAX)
        return fail(c, ".headers: at most %d headers, got %zu", JOB_HEADERS_MAX,
                    json_object_size(hv));
    const char *name;
    json_t *v;
    size_t cnt = 0;
    json_object_foreach((json_t *)hv, name, v)
    {
        size_t nlen = strlen(name);
        if (has_cr_lf(name, nlen))
            return fail(c, ".headers.%.64s: name contains CR/LF", name);
        bool token = nlen >= 1 && nlen <= JOB_HEADER_NAME_MAX;
        for (size_t i = 0; token && i < nlen; i++)
            token = is_token_char((unsigned char)name[i]);
        if (!token)
            return fail(c, ".headers.%.64s: name must be an HTTP token of 1-%d characters", name,
                        JOB_HEADER_NAME_MAX);
        const char *why = header_refusal(name);
        if (why)
            return fail(c, ".headers.%s: header not allowed (%s)", name, why);
        if (!json_is_string(v))
            return fail(c, ".headers.%s: value must be a string", name);
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n > JOB_HEADER_VALUE_MAX)
            return fail(c, ".headers.%s: value longer than %d bytes", name, JOB_HEADER_VALUE_MAX);
        if (has_cr_lf(s, n))
            return fail(c, ".headers.%s: value contains CR/LF", name);
        if (memchr(s, '\0', n))
            return fail(c, ".headers.%s: value contains NUL", name);
        if (has_ctl(s, n))
            return fail(c, ".headers.%s: value contains a control character", name);
        if (strcasecmp(name, "Content-Type") == 0) {
            char path[64];
            snprintf(path, sizeof path, ".headers.%s", name);
            if (check_ctype(c, path, s, n) < 0)
                return -1;
            *ctype = s;
            *ctype_len = n;
        } else {
            cnt++;
        }
    }

    hk_job_header_t *hdrs =
        cnt ? arena_take(&c->a, cnt * sizeof *hdrs, _Alignof(hk_job_header_t)) : NULL;
    size_t i = 0;
    json_object_foreach((json_t *)hv, name, v)
    {
        if (strcasecmp(name, "Content-Type") == 0)
            continue;
        const char *n = arena_str(&c->a, name, strlen(name));
        const char *val = arena_str(&c->a, json_string_value(v), json_string_length(v));
        if (hdrs && i < cnt)
            hdrs[i] = (hk_job_header_t){.name = n, .value = val};
        i++;
    }
    job->headers = hdrs; // NULL while measuring: only the count matters then
    job->headers_cnt = cnt;
    return 0;
}

// `raw` is where `obj` sits in the message: a JSON body is copied from there.
static int fill_body(ctx_t *c, const json_t *obj, raw_t raw, hk_job_t *job, const char *hdr_ctype,
                     size_t hdr_ctype_len)
{
    json_t *body = get(obj, "body");
    json_t *b64 = get(obj, "body_base64");
    json_t *ct = get(obj, "content_type");
    const char *ctype = hdr_ctype;
    size_t ctype_len = hdr_ctype_len;

    if (ct) {
        if (!json_is_string(ct))
            return fail(c, ".content_type: must be a string");
        if (check_ctype(c, ".content_type", json_string_value(ct), json_string_length(ct)) < 0)
            return -1;
        ctype = json_string_value(ct);
        ctype_len = json_string_length(ct);
    }
    if (body && b64)
        return fail(c, ": body and body_base64 are mutually exclusive");

    if (body) {
        raw_t v;
        if (raw_member(c->raw, raw, "body", &v) != 1) // jansson has it, so cannot happen
            return fail(c, ".body: internal error: not found in the message");
        size_t n = raw_compact(c->raw, v, NULL);
        char *p = arena_take(&c->a, n + 1, 1);
        if (p) {
            raw_compact(c->raw, v, p);
            p[n] = '\0';
        }
        job->body = p ? p : k_measured;
        job->body_len = n;
        if (!ctype) {
            ctype = k_json_ctype;
            ctype_len = sizeof k_json_ctype - 1;
        }
    } else if (b64) {
        if (!json_is_string(b64))
            return fail(c, ".body_base64: must be a string of standard base64");
        const char *s = json_string_value(b64);
        size_t n = json_string_length(b64);
        long dn = hk_base64_decoded_len(s, n, 0);
        if (dn < 0)
            return fail(c, ".body_base64: not valid standard base64 (A-Z a-z 0-9 + /, padded "
                           "with =, no whitespace)");
        if (!ctype)
            return fail(c, ".content_type: required with body_base64");
        char *p = arena_take(&c->a, (size_t)dn + 1, 1);
        if (p) {
            hk_base64_decode(s, n, (unsigned char *)p, 0);
            p[dn] = '\0';
        }
        job->body = p ? p : k_measured;
        job->body_len = (size_t)dn;
    } else {
        job->body = NULL;
        job->body_len = 0;
        job->content_type = NULL;
        return 0;
    }
    if (ctype == k_json_ctype)
        job->content_type = k_json_ctype;
    else
        job->content_type = arena_str(&c->a, ctype, ctype_len);
    return 0;
}

static int fill_int(ctx_t *c, const json_t *obj, const char *key, int min, int max, int dflt,
                    int *out)
{
    json_t *v = get(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    json_int_t i = json_is_integer(v) ? json_integer_value(v) : (json_int_t)min - 1;
    if (i < min || i > max)
        return fail(c, ".%s: must be an integer between %d and %d", key, min, max);
    *out = (int)i;
    return 0;
}

// The fields webhooks and batch items share (a batch's own fields too, minus the body).
// `parent` is the batch when filling one of its items: missing fields inherit from it.
static int fill_common(ctx_t *c, const json_t *obj, raw_t raw, hk_job_t *job,
                       const hk_job_t *parent, bool with_body)
{
    json_t *v;

    if ((v = get(obj, "tenant"))) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        bool ok = json_is_string(v) && n >= 1 && n <= JOB_TENANT_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = s[i] > 0x20 && s[i] < 0x7f;
        if (!ok)
            return fail(c, ".tenant: must be 1-%d printable ASCII characters without spaces",
                        JOB_TENANT_MAX);
        job->tenant = arena_str(&c->a, s, n);
    } else {
        job->tenant = parent ? parent->tenant : "default";
    }

    if ((v = get(obj, "url"))) {
        if (!json_is_string(v))
            return fail(c, ".url: must be a string holding an absolute http(s) URL");
        if (check_url(c, json_string_value(v), json_string_length(v)) < 0)
            return -1;
        job->url = arena_str(&c->a, json_string_value(v), json_string_length(v));
    } else {
        job->url = parent ? parent->url : NULL;
    }

    if ((v = get(obj, "method"))) {
        static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        job->method = NULL;
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
            if (strcmp(s, methods[i]) == 0)
                job->method = methods[i];
        if (!job->method)
            return fail(c, ".method: must be one of POST, PUT, PATCH, DELETE, GET");
    } else {
        job->method = parent ? parent->method : "POST";
    }

    const char *hdr_ctype = NULL;
    size_t hdr_ctype_len = 0;
    if ((v = get(obj, "headers"))) {
        if (fill_headers(c, v, job, &hdr_ctype, &hdr_ctype_len) < 0)
            return -1;
    } else if (parent) {
        job->headers = parent->headers;
        job->headers_cnt = parent->headers_cnt;
        hdr_ctype = c->batch_ctype;
        hdr_ctype_len = c->batch_ctype_len;
    } else {
        job->headers = NULL;
        job->headers_cnt = 0;
    }
    if (!parent) {
        c->batch_ctype = hdr_ctype;
        c->batch_ctype_len = hdr_ctype_len;
    }

    if (with_body && fill_body(c, obj, raw, job, hdr_ctype, hdr_ctype_len) < 0)
        return -1;

    if (fill_int(c, obj, "max_attempts", JOB_ATTEMPTS_MIN, JOB_ATTEMPTS_MAX,
                 parent ? parent->max_attempts : c->defs->max_attempts, &job->max_attempts) < 0)
        return -1;
    if (fill_int(c, obj, "timeout_ms", JOB_TIMEOUT_MIN, JOB_TIMEOUT_MAX,
                 parent ? parent->timeout_ms : c->defs->timeout_ms, &job->timeout_ms) < 0)
        return -1;

    if ((v = get(obj, "expires_at"))) {
        int64_t ms = 0;
        if (!json_is_string(v) || json_string_length(v) > JOB_EXPIRES_AT_MAX ||
            !parse_rfc3339(json_string_value(v), json_string_length(v), &ms))
            return fail(c, ".expires_at: must be an RFC 3339 time such as 2026-11-21T10:00:00Z");
        if (ms <= 0)
            return fail(c, ".expires_at: must be after 1970-01-01T00:00:00Z");
        job->expires_at_ms = ms;
    } else {
        job->expires_at_ms = parent ? parent->expires_at_ms : 0;
    }

    if ((v = get(obj, "ordering_key"))) {
        size_t n = json_string_length(v);
        if (!json_is_string(v) || n < 1 || n > JOB_ORDERING_KEY_MAX)
            return fail(c, ".ordering_key: must be a string of 1-%d bytes", JOB_ORDERING_KEY_MAX);
        job->ordering_key = arena_str(&c->a, json_string_value(v), n);
    } else {
        job->ordering_key = NULL;
    }
    return 0;
}

size_t hk_job_derive_id(const char *topic, int32_t partition, int64_t offset,
                        char out[HK_JOB_ID_MAX + 1])
{
    char tail[48];
    int tn = snprintf(tail, sizeof tail, "-%" PRId32 "-%" PRId64, partition, offset);
    if (tn < 0 || (size_t)tn >= sizeof tail)
        return 0;
    if (!topic)
        topic = "";
    size_t tl = strnlen(topic, JOB_ID_MAX);
    if (tl > JOB_ID_MAX - (size_t)tn)
        tl = JOB_ID_MAX - (size_t)tn;
    for (size_t i = 0; i < tl; i++)
        out[i] = is_id_char((unsigned char)topic[i]) ? topic[i] : '_';
    memcpy(out + tl, tail, (size_t)tn + 1);
    return tl + (size_t)tn;
}

static int derive_id(ctx_t *c)
{
    if (!c->src)
        return fail(c, ".id: required when the job has no Kafka source to derive it from");
    size_t n = hk_job_derive_id(c->src->topic, c->src->partition, c->src->offset, c->derived_id);
    if (n == 0)
        return fail(c, ".id: cannot derive one from the Kafka source");
    c->batch_id = c->derived_id;
    c->batch_id_len = n;
    return 0;
}

// `raw` is where the items array sits in the message; the items are walked in step with it.
static int fill_items(ctx_t *c, const json_t *items, raw_t raw, hk_job_t *job)
{
    size_t cnt = json_array_size(items);
    hk_job_t *arr = arena_take(&c->a, cnt * sizeof *arr, _Alignof(hk_job_t));
    hk_job_t scratch;
    size_t cur = 0;
    for (size_t i = 0; i < cnt; i++) {
        snprintf(c->where, sizeof c->where, "$.items[%zu]", i);
        const json_t *obj = json_array_get(items, i);
        hk_job_t *it = arr ? &arr[i] : &scratch;
        memset(it, 0, sizeof *it);
        if (!json_is_object(obj))
            return fail(c, ": must be a JSON object");
        raw_t it_raw;
        if (raw_next_element(c->raw, raw, &cur, &it_raw) != 1)
            return fail(c, ": internal error: not found in the message");
        json_t *t = get(obj, "type");
        if (t && !(json_is_string(t) && strcmp(json_string_value(t), "webhook") == 0))
            return fail(c, ".type: batch items are webhooks: leave type out or set \"webhook\"");

        char id[JOB_ID_MAX + 32];
        int n = snprintf(id, sizeof id, "%.*s:%zu", (int)c->batch_id_len, c->batch_id, i);
        it->type = HK_JOB_WEBHOOK;
        it->id = arena_str(&c->a, id, (size_t)n);
        if (fill_common(c, obj, it_raw, it, job, true) < 0)
            return -1;
        if (!it->url)
            return fail(c, ".url: required (neither the item nor the batch has one)");
        it->max_failure_ratio = 1.0;
    }
    job->items = arr; // NULL while measuring
    job->items_cnt = cnt;
    snprintf(c->where, sizeof c->where, "$");
    return 0;
}

static int fill_top(ctx_t *c, const json_t *root, hk_job_t *job)
{
    raw_t raw = raw_root(c->raw, c->raw_len);
    json_t *v;

    job->type = HK_JOB_WEBHOOK;
    if ((v = get(root, "type"))) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(s, "batch") == 0)
            job->type = HK_JOB_BATCH;
        else if (strcmp(s, "webhook") != 0)
            return fail(c, ".type: must be \"webhook\" or \"batch\"");
    }

    if ((v = get(root, "id"))) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        bool ok = json_is_string(v) && n >= 1 && n <= JOB_ID_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = is_id_char((unsigned char)s[i]);
        if (!ok)
            return fail(c, ".id: must be 1-%d characters of [A-Za-z0-9_:-]", JOB_ID_MAX);
        c->batch_id = s;
        c->batch_id_len = n;
    } else if (derive_id(c) < 0) {
        return -1;
    }
    job->id = arena_str(&c->a, c->batch_id, c->batch_id_len);

    bool batch = job->type == HK_JOB_BATCH;
    if (fill_common(c, root, raw, job, NULL, !batch) < 0)
        return -1;

    if (!job->ordering_key && c->src && c->src->key && c->src->key_len > 0 &&
        is_utf8_text(c->src->key, c->src->key_len)) {
        if (c->src->key_len <= JOB_ORDERING_KEY_MAX) {
            job->ordering_key = arena_str(&c->a, c->src->key, c->src->key_len);
        } else {
            // A longer Kafka key is the producer's partitioning key, not a
            // mistake: rather than refuse the job, order it by a digest of the
            // key, bounded in size. Equal keys still share a chain.
            char hashed[sizeof(ORDERING_KEY_HASHED) + 2 * SHA256_DIGEST_LENGTH];
            hash_key(c->src->key, c->src->key_len, hashed);
            job->ordering_key = arena_str(&c->a, hashed, strlen(hashed));
        }
    }

    job->max_failure_ratio = 1.0;
    if (!batch) {
        if (!job->url)
            return fail(c, get(root, "items") ? ".url: required for a webhook job (a job with "
                                                "items needs \"type\": \"batch\")"
                                              : ".url: required for a webhook job");
        return 0;
    }

    if ((v = get(root, "max_failure_ratio"))) {
        double r = json_is_number(v) ? json_number_value(v) : -1.0;
        if (!(r >= 0.0 && r <= 1.0))
            return fail(c, ".max_failure_ratio: must be a number between 0 and 1");
        job->max_failure_ratio = r;
    }
    v = get(root, "items");
    if (!v)
        return fail(c, ".items: required for a batch job");
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > JOB_ITEMS_MAX)
        return fail(c, ".items: must be an array of 1-%d job objects", JOB_ITEMS_MAX);
    raw_t items_raw;
    if (raw_member(c->raw, raw, "items", &items_raw) != 1) // jansson has it, so cannot happen
        return fail(c, ".items: internal error: not found in the message");
    return fill_items(c, v, items_raw, job);
}

static void json_failure(ctx_t *c, const json_error_t *err)
{
    const char *text = err->text;
    const char *note = "";
    switch (json_error_code(err)) {
    case json_error_invalid_utf8:
        note = "invalid UTF-8: ";
        break;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        text = "strings and keys must not contain \\u0000 (NUL)";
        break;
    default:
        if (strncmp(text, "invalid Unicode", 15) == 0)
            note = "unpaired UTF-16 surrogate: ";
        break;
    }
    fail(c, ": invalid JSON at line %d column %d: %s%s", err->line, err->column, note, text);
}

// Checks the raw bytes, then parses them. NULL with the reason set when they are no job.
static json_t *load(ctx_t *c, const void *value, size_t len)
{
    size_t max_bytes = c->defs->max_job_bytes ? c->defs->max_job_bytes : JOB_DEFAULT_MAX_BYTES;
    size_t at = 0;
    if (!value || len == 0) {
        fail(c, ": empty job");
        return NULL;
    }
    if (len > max_bytes) {
        fail(c, ": job is %zu bytes, more than limits.max_job_bytes (%zu)", len, max_bytes);
        return NULL;
    }
    if (too_deep(value, len, &at)) {
        fail(c, ": nested deeper than %d levels (at byte %zu)", JOB_MAX_DEPTH, at);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(value, len, JOB_LOAD_FLAGS, &jerr);
    if (!root && json_error_code(&jerr) == json_error_numeric_overflow) {
        unsigned char *patched = patch_big_ints(value, len);
        if (patched) { // bodies are copied from `value`, the tree only validates
            root = json_loadb((const char *)patched, len, JOB_LOAD_FLAGS, &jerr);
            free(patched);
        }
    }
    if (!root) {
        json_failure(c, &jerr);
        return NULL;
    }
    if (!json_is_object(root)) {
        fail(c, ": must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

// Pass 1 validates and measures, pass 2 copies into one block.
static hk_job_t *build(ctx_t *c, const json_t *root)
{
    hk_job_t scratch = {0};
    c->measuring = true;
    arena_take(&c->a, sizeof(hk_job_t), _Alignof(hk_job_t));
    if (fill_top(c, root, &scratch) < 0)
        return NULL;
    if (c->a.overflow) {
        fail(c, ": job too large to hold in memory");
        return NULL;
    }

    size_t size = c->a.used;
    char *mem = malloc(size);
    if (!mem) {
        fail(c, ": out of memory (%zu bytes)", size);
        return NULL;
    }
    c->a = (arena_t){.base = mem, .cap = size};
    c->measuring = false;
    c->batch_ctype = NULL;
    c->batch_ctype_len = 0;
    hk_job_t *job = arena_take(&c->a, sizeof *job, _Alignof(hk_job_t)); // offset 0: job == mem
    if (job)
        memset(job, 0, sizeof *job);
    if (!job || fill_top(c, root, job) < 0 || c->a.overflow || c->a.used != size) {
        snprintf(c->where, sizeof c->where, "$");
        fail(c, ": internal error: job size changed between passes");
        free(mem);
        return NULL;
    }
    job->mem_bytes = size;
    return job;
}

hk_job_t *hk_job_parse(const void *value, size_t len, const hk_job_src_t *src,
                       const hk_job_defaults_t *defs, char *errstr, size_t errstr_size)
{
    static const hk_job_defaults_t builtin = {
        .max_attempts = 10, .timeout_ms = 10000, .max_job_bytes = JOB_DEFAULT_MAX_BYTES};
    ctx_t c = {.errstr = errstr,
               .errstr_size = errstr_size,
               .where = "$",
               .src = src,
               .raw = value,
               .raw_len = len};
    c.defs = defs ? defs : &builtin;
    if (errstr && errstr_size)
        errstr[0] = '\0';

    json_t *root = load(&c, value, len);
    hk_job_t *job = root ? build(&c, root) : NULL;
    json_decref(root);
    if (!job && errstr && errstr_size) {
        if (!errstr[0])
            snprintf(errstr, errstr_size, "$: invalid job");
        sanitize_reason(errstr);
    }
    return job;
}

void hk_job_destroy(hk_job_t *job)
{
    free(job);
}

// Standard base64 with padding of `len` bytes into a new string.
static char *base64_of(const char *data, size_t len)
{
    char *out = malloc(hk_base64_encoded_len(len) + 1);
    if (out)
        hk_base64_encode(data, len, out);
    return out;
}

char *hk_job_to_json(const hk_job_t *job, size_t *len)
{
    json_t *obj =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:i}", "id", job->id, "type", "webhook", "tenant",
                  job->tenant, "url", job->url ? job->url : "", "method", job->method,
                  "max_attempts", job->max_attempts, "timeout_ms", job->timeout_ms);
    if (!obj)
        return NULL;
    if (job->headers_cnt) {
        json_t *h = json_object();
        for (size_t i = 0; i < job->headers_cnt; i++)
            json_object_set_new(h, job->headers[i].name, json_string(job->headers[i].value));
        json_object_set_new(obj, "headers", h);
    }
    if (job->body) {
        char *b64 = base64_of(job->body, job->body_len);
        json_object_set_new(obj, "body_base64", json_string(b64 ? b64 : ""));
        free(b64);
        json_object_set_new(
            obj, "content_type",
            json_string(job->content_type ? job->content_type : "application/octet-stream"));
    }
    if (job->expires_at_ms) {
        time_t secs = (time_t)(job->expires_at_ms / 1000);
        struct tm tm;
        char when[64];
        gmtime_r(&secs, &tm);
        size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof(when) - n, ".%03dZ", (int)(job->expires_at_ms % 1000));
        json_object_set_new(obj, "expires_at", json_string(when));
    }
    if (job->ordering_key)
        json_object_set_new(obj, "ordering_key", json_string(job->ordering_key));
    char *out = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (out && len)
        *len = strlen(out);
    return out;
}
