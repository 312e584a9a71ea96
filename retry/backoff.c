// backoff: delay policy (schedule or exponential with full jitter) and the
// Retry-After parser. HTTP-dates are parsed by hand into a UTC day count, so
// the result never depends on the locale, the TZ variable or time_t's width.
#include "retry/backoff.h"

#include "base/civil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t effective_cap(const hk_backoff_t *b)
{
    return b->max_delay_ms > 0 ? b->max_delay_ms : INT64_MAX;
}

uint64_t hk_backoff_rand(uint64_t *state)
{
    // splitmix64 (Steele, Lea, Flood 2014): one add and two multiplies, fine
    // statistical quality for jitter, and every seed is valid.
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

// Uniform in [0, hi] without modulo bias (Lemire's threshold rejection).
static int64_t uniform_upto(uint64_t *rng, int64_t hi)
{
    uint64_t range = (uint64_t)hi + 1; // hi <= INT64_MAX, so no wrap
    uint64_t threshold = -range % range;
    uint64_t r;
    do {
        r = hk_backoff_rand(rng);
    } while (r < threshold);
    return (int64_t)(r % range);
}

// min(cap, base·mult^n), deciding "at the cap" with logarithms first so pow()
// never overflows however large n is.
static int64_t exponential_bound(int64_t base, double mult, int n, int64_t cap)
{
    if (base <= 0)
        return 0;
    if (base >= cap)
        return cap;
    if (!(mult > 1.0) || n == 0) // also catches NaN
        return base;
    if ((double)n * log(mult) >= log((double)cap / (double)base))
        return cap;
    double d = (double)base * pow(mult, n);
    if (d >= (double)cap)
        return cap;
    return (int64_t)d;
}

int64_t hk_backoff_delay(const hk_backoff_t *b, int failures, uint64_t *rng)
{
    int64_t cap = effective_cap(b);
    if (failures < 1)
        failures = 1;

    if (b->schedule_ms != NULL && b->schedule_cnt > 0) {
        size_t i = (size_t)failures - 1;
        if (i >= b->schedule_cnt)
            i = b->schedule_cnt - 1;
        int64_t d = b->schedule_ms[i];
        if (d < 0)
            d = 0;
        return d < cap ? d : cap;
    }

    int64_t hi = exponential_bound(b->base_ms, b->multiplier, failures - 1, cap);
    if (rng == NULL || hi == 0)
        return hi;
    return uniform_upto(rng, hi);
}

int64_t hk_backoff_next_delay(const hk_backoff_t *b, int failures, int64_t retry_after_ms,
                              uint64_t *rng)
{
    int64_t cap = effective_cap(b);
    int64_t d = hk_backoff_delay(b, failures, rng);
    if (retry_after_ms > d)
        d = retry_after_ms;
    return d < cap ? d : cap;
}

// ---- schedule -------------------------------------------------------------

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

// Parses one entry [s, e) (already trimmed). 0 ok, -1 malformed, -2 too large.
static int parse_delay(const char *s, const char *e, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1},
    };
    const char *p = s;
    int64_t v = 0;
    if (p == e || !is_digit(*p))
        return -1;
    for (; p < e && is_digit(*p); p++) {
        int digit = *p - '0';
        if (v > (INT64_MAX - digit) / 10)
            return -2;
        v = v * 10 + digit;
    }
    size_t ulen = (size_t)(e - p);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strlen(units[i].unit) == ulen && memcmp(p, units[i].unit, ulen) == 0) {
            if (v > INT64_MAX / units[i].ms)
                return -2;
            *out = v * units[i].ms;
            return 0;
        }
    }
    return -1;
}

int hk_backoff_parse_schedule(const char *text, int64_t **out, size_t *cnt, char *errstr,
                              size_t errstr_size)
{
    *out = NULL;
    *cnt = 0;
    const char *p = text ? text : "";
    while (is_ows(*p))
        p++;
    if (*p == '\0') {
        snprintf(errstr, errstr_size, "empty schedule: expected delays such as 5s,30s,2m");
        return -1;
    }

    size_t n = 1;
    for (const char *q = p; *q; q++)
        n += *q == ',';
    int64_t *v = malloc(n * sizeof(*v));
    if (v == NULL) {
        snprintf(errstr, errstr_size, "out of memory parsing the schedule");
        return -1;
    }

    for (size_t i = 0; i < n; i++) {
        const char *s = p;
        const char *e = strchr(s, ',');
        if (e == NULL)
            e = s + strlen(s);
        p = *e ? e + 1 : e;
        while (s < e && is_ows(*s))
            s++;
        while (e > s && is_ows(e[-1]))
            e--;
        int rc = parse_delay(s, e, &v[i]);
        if (rc != 0) {
            if (s == e)
                snprintf(errstr, errstr_size,
                         "entry %zu is empty: expected delays such as 5s,30s,2m", i + 1);
            else if (rc == -2)
                snprintf(errstr, errstr_size, "entry %zu \"%.*s\": delay too large", i + 1,
                         (int)(e - s), s);
            else
                snprintf(errstr, errstr_size,
                         "entry %zu \"%.*s\": expected a whole number with an optional unit ms, s, "
                         "m, h or d, such as 30s",
                         i + 1, (int)(e - s), s);
            free(v);
            return -1;
        }
    }
    *out = v;
    *cnt = n;
    return 0;
}

// ---- Retry-After ----------------------------------------------------------

typedef struct date_parser {
    const char *p;
} date_parser_t;

static int dp_char(date_parser_t *dp, char c)
{
    if (*dp->p != c)
        return -1;
    dp->p++;
    return 0;
}

// Exactly `min`..`max` digits.
static int dp_digits(date_parser_t *dp, int min, int max, int *out)
{
    int v = 0, n = 0;
    while (n < max && is_digit(dp->p[n])) {
        v = v * 10 + (dp->p[n] - '0');
        n++;
    }
    if (n < min || is_digit(dp->p[n]))
        return -1;
    dp->p += n;
    *out = v;
    return 0;
}

static int lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

// Matches one of `names` (ASCII case-insensitive) followed by a non-letter;
// returns its index or -1.
static int dp_name(date_parser_t *dp, const char *const *names, int cnt)
{
    size_t len = 0;
    while ((dp->p[len] >= 'A' && dp->p[len] <= 'Z') || (dp->p[len] >= 'a' && dp->p[len] <= 'z'))
        len++;
    for (int i = 0; i < cnt; i++) {
        if (strlen(names[i]) != len)
            continue;
        size_t k = 0;
        while (k < len && lower(dp->p[k]) == lower(names[i][k]))
            k++;
        if (k == len) {
            dp->p += len;
            return i;
        }
    }
    return -1;
}

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int dp_month(date_parser_t *dp, int *month)
{
    int i = dp_name(dp, month_names, 12);
    if (i < 0)
        return -1;
    *month = i + 1;
    return 0;
}

static int dp_time(date_parser_t *dp, int *h, int *mi, int *s)
{
    if (dp_digits(dp, 2, 2, h) || dp_char(dp, ':') || dp_digits(dp, 2, 2, mi) || dp_char(dp, ':') ||
        dp_digits(dp, 2, 2, s))
        return -1;
    return 0;
}

static int dp_gmt(date_parser_t *dp)
{
    static const char *const gmt[1] = {"GMT"};
    return dp_name(dp, gmt, 1) == 0 ? 0 : -1;
}

// Parses an HTTP-date (RFC 9110 §5.6.7) into ms since the epoch. The weekday
// must be a valid name but is not checked against the date (recipients only
// need the date; some senders get the weekday wrong).
static int parse_http_date(const char *s, int64_t now_ms, int64_t *out_ms)
{
    static const char *const wkday[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const weekday[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                           "Friday", "Saturday", "Sunday"};
    date_parser_t dp = {s};
    int year = 0, month = 0, day = 0, h = 0, mi = 0, sec = 0;
    int64_t y;

    if (dp_name(&dp, wkday, 7) >= 0) {
        if (dp_char(&dp, ',') == 0) {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT (a 1-digit day is tolerated)
            if (dp_char(&dp, ' ') || dp_digits(&dp, 1, 2, &day) || dp_char(&dp, ' ') ||
                dp_month(&dp, &month) || dp_char(&dp, ' ') || dp_digits(&dp, 4, 4, &year) ||
                dp_char(&dp, ' ') || dp_time(&dp, &h, &mi, &sec) || dp_char(&dp, ' ') ||
                dp_gmt(&dp))
                return -1;
        } else {
            // asctime: Sun Nov  6 08:49:37 1994 (day is 2DIGIT or SP DIGIT)
            if (dp_char(&dp, ' ') || dp_month(&dp, &month) || dp_char(&dp, ' '))
                return -1;
            if (*dp.p == ' ')
                dp.p++;
            if (dp_digits(&dp, 1, 2, &day) || dp_char(&dp, ' ') || dp_time(&dp, &h, &mi, &sec) ||
                dp_char(&dp, ' ') || dp_digits(&dp, 4, 4, &year))
                return -1;
        }
        y = year;
    } else if (dp_name(&dp, weekday, 7) >= 0) {
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        int yy = 0;
        if (dp_char(&dp, ',') || dp_char(&dp, ' ') || dp_digits(&dp, 2, 2, &day) ||
            dp_char(&dp, '-') || dp_month(&dp, &month) || dp_char(&dp, '-') ||
            dp_digits(&dp, 2, 2, &yy) || dp_char(&dp, ' ') || dp_time(&dp, &h, &mi, &sec) ||
            dp_char(&dp, ' ') || dp_gmt(&dp))
            return -1;
        // RFC 9110: a two-digit year more than 50 years in the future means the
        // most recent past year with the same last two digits.
        int64_t now_year = 0;
        hk_civil_from_days(now_ms / 86400000 - (now_ms % 86400000 < 0), &now_year, NULL, NULL);
        y = now_year - now_year % 100 + yy;
        if (y > now_year + 50)
            y -= 100;
    } else {
        return -1;
    }

    while (is_ows(*dp.p))
        dp.p++;
    if (*dp.p != '\0')
        return -1;
    // 60 admits a leap second; it lands on the next minute like timegm() does.
    if (day < 1 || day > hk_civil_days_in_month(y, month) || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t secs = hk_civil_days_from_civil(y, month, day) * 86400 + h * 3600 + mi * 60 + sec;
    *out_ms = secs * 1000;
    return 0;
}

int hk_backoff_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    if (value == NULL)
        return -1;
    const char *p = value;
    while (is_ows(*p))
        p++;

    if (is_digit(*p)) {
        int64_t secs = 0;
        for (; is_digit(*p); p++) {
            int digit = *p - '0';
            if (secs > (INT64_MAX / 1000 - digit) / 10)
                return -1; // more seconds than an int64 of ms holds
            secs = secs * 10 + digit;
        }
        while (is_ows(*p))
            p++;
        if (*p != '\0')
            return -1; // "1.5", "10s", "10 20"
        *delay_ms = secs * 1000;
        return 0;
    }

    int64_t at_ms;
    if (parse_http_date(p, now_ms, &at_ms) != 0)
        return -1;
    if (at_ms <= now_ms) {
        *delay_ms = 0;
        return 0;
    }
    if (now_ms < 0 && at_ms > INT64_MAX + now_ms)
        return -1;
    *delay_ms = at_ms - now_ms;
    return 0;
}
