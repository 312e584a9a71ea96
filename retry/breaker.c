// breaker: count-based circuit breaker. The window is a ring of the last
// `window` call outcomes; a generation number, bumped on every transition,
// stamps tickets so results are only counted in the state they started in.
#include "retry/breaker.h"

#include <stdlib.h>
#include <string.h>

struct hk_breaker_s {
    hk_breaker_opts_t br_opts;
    hk_breaker_state_t br_state; // stored; OPEN turns HALF_OPEN lazily in allow()
    uint64_t br_gen;             // current generation; tickets of 0 never match
    int64_t br_open_until;       // OPEN: when it ends
    int64_t br_open_dur;         // current OPEN length; open_ms again after closing
    uint64_t br_trips;

    // CLOSED: the window and the current run of failures
    int br_ring_pos; // next slot to write
    int br_ring_cnt; // calls in the window (<= window)
    int br_ring_fail;
    int br_consecutive;

    // HALF_OPEN
    int br_probes_taken; // slots handed out and not released by IGNORE
    int br_probes_ok;

    // transitions not yet taken, oldest at br_trans_head
    struct {
        hk_breaker_state_t from, to;
    } br_trans[HK_BREAKER_TRANSITIONS_MAX];
    int br_trans_head;
    int br_trans_cnt;

    uint8_t br_ring[]; // window outcomes, 1 = failure
};

hk_breaker_opts_t hk_breaker_opts_default(void)
{
    return (hk_breaker_opts_t){
        .window = 20,
        .min_calls = 10,
        .failure_rate = 0.5,
        .consecutive_failures = 5,
        .open_ms = 30000,
        .max_open_ms = 600000,
        .probes = 3,
    };
}

hk_breaker_t *hk_breaker_new(const hk_breaker_opts_t *opts)
{
    hk_breaker_opts_t o = opts ? *opts : hk_breaker_opts_default();
    if (o.window < 1)
        o.window = 1;
    if (o.min_calls < 1)
        o.min_calls = 1;
    if (o.min_calls > o.window)
        o.min_calls = o.window;
    if (o.probes < 1)
        o.probes = 1;
    if (o.open_ms < 1)
        o.open_ms = 1;
    if (o.max_open_ms < o.open_ms)
        o.max_open_ms = o.open_ms;

    hk_breaker_t *br = calloc(1, sizeof(*br) + (size_t)o.window);
    if (br == NULL)
        return NULL;
    br->br_opts = o;
    br->br_state = HK_BREAKER_CLOSED;
    br->br_gen = 1;
    br->br_open_dur = o.open_ms;
    return br;
}

void hk_breaker_destroy(hk_breaker_t *br)
{
    free(br);
}

static void clear_window(hk_breaker_t *br)
{
    memset(br->br_ring, 0, (size_t)br->br_opts.window);
    br->br_ring_pos = 0;
    br->br_ring_cnt = 0;
    br->br_ring_fail = 0;
    br->br_consecutive = 0;
}

static void push_transition(hk_breaker_t *br, hk_breaker_state_t from, hk_breaker_state_t to)
{
    if (br->br_trans_cnt == HK_BREAKER_TRANSITIONS_MAX) {
        br->br_trans_head = (br->br_trans_head + 1) % HK_BREAKER_TRANSITIONS_MAX;
        br->br_trans_cnt--;
    }
    int i = (br->br_trans_head + br->br_trans_cnt) % HK_BREAKER_TRANSITIONS_MAX;
    br->br_trans[i].from = from;
    br->br_trans[i].to = to;
    br->br_trans_cnt++;
}

static void set_state(hk_breaker_t *br, int64_t now_ms, hk_breaker_state_t to)
{
    push_transition(br, br->br_state, to);
    br->br_state = to;
    br->br_gen++; // every ticket handed out so far is now stale
    br->br_probes_taken = 0;
    br->br_probes_ok = 0;

    switch (to) {
    case HK_BREAKER_OPEN:
        br->br_trips++;
        br->br_open_until =
            now_ms > INT64_MAX - br->br_open_dur ? INT64_MAX : now_ms + br->br_open_dur;
        break;
    case HK_BREAKER_HALF_OPEN:
        break;
    case HK_BREAKER_CLOSED:
        clear_window(br);
        br->br_open_until = 0;
        br->br_open_dur = br->br_opts.open_ms;
        break;
    }
}

static void trip_from_closed(hk_breaker_t *br, int64_t now_ms)
{
    br->br_open_dur = br->br_opts.open_ms;
    set_state(br, now_ms, HK_BREAKER_OPEN);
}

static void retrip_from_half_open(hk_breaker_t *br, int64_t now_ms)
{
    int64_t max = br->br_opts.max_open_ms;
    br->br_open_dur = br->br_open_dur > max / 2 ? max : br->br_open_dur * 2;
    set_state(br, now_ms, HK_BREAKER_OPEN);
}

static int rate_reached(const hk_breaker_t *br)
{
    double rate = br->br_opts.failure_rate;
    if (!(rate > 0.0 && rate <= 1.0) || br->br_ring_cnt < br->br_opts.min_calls)
        return 0;
    // A small tolerance so 0.3·10 and friends compare as people expect.
    return (double)br->br_ring_fail >= rate * br->br_ring_cnt - 1e-9;
}

static void record_closed(hk_breaker_t *br, int64_t now_ms, int failed)
{
    int w = br->br_opts.window;
    if (br->br_ring_cnt == w)
        br->br_ring_fail -= br->br_ring[br->br_ring_pos];
    else
        br->br_ring_cnt++;
    br->br_ring[br->br_ring_pos] = (uint8_t)failed;
    br->br_ring_fail += failed;
    br->br_ring_pos = (br->br_ring_pos + 1) % w;
    br->br_consecutive = failed ? br->br_consecutive + 1 : 0;

    int consecutive = br->br_opts.consecutive_failures;
    // The rate is checked after every call, a success included: the call that
    // brings the window to min_calls can be the one that shows the rate.
    if ((consecutive > 0 && br->br_consecutive >= consecutive) || rate_reached(br))
        trip_from_closed(br, now_ms);
}

int hk_breaker_force_open(hk_breaker_t *br, int64_t now_ms, int64_t until_ms)
{
    if (until_ms <= now_ms)
        return 0;
    if (br->br_state == HK_BREAKER_OPEN && now_ms < br->br_open_until) {
        if (until_ms <= br->br_open_until)
            return 0;
        br->br_open_until = until_ms; // same open period, held longer
        return 1;
    }
    int64_t dur = until_ms - now_ms;
    br->br_open_dur = dur < br->br_opts.open_ms ? br->br_opts.open_ms : dur;
    set_state(br, now_ms, HK_BREAKER_OPEN);
    br->br_open_until = until_ms;
    return 1;
}

int hk_breaker_allow(hk_breaker_t *br, int64_t now_ms, hk_breaker_ticket_t *ticket)
{
    if (br->br_state == HK_BREAKER_OPEN && now_ms >= br->br_open_until)
        set_state(br, now_ms, HK_BREAKER_HALF_OPEN);

    int ok = 0;
    switch (br->br_state) {
    case HK_BREAKER_CLOSED:
        ok = 1;
        break;
    case HK_BREAKER_OPEN:
        break;
    case HK_BREAKER_HALF_OPEN:
        if (br->br_probes_taken < br->br_opts.probes) {
            br->br_probes_taken++;
            ok = 1;
        }
        break;
    }
    if (ticket != NULL)
        ticket->gen = ok ? br->br_gen : 0;
    return ok;
}

void hk_breaker_record(hk_breaker_t *br, int64_t now_ms, hk_breaker_ticket_t ticket,
                       hk_breaker_result_t r)
{
    if (ticket.gen != br->br_gen)
        return; // started before the latest transition: it says nothing about now

    switch (br->br_state) {
    case HK_BREAKER_CLOSED:
        if (r != HK_BREAKER_IGNORE)
            record_closed(br, now_ms, r == HK_BREAKER_FAILURE);
        break;
    case HK_BREAKER_OPEN:
        break; // no tickets are handed out while OPEN
    case HK_BREAKER_HALF_OPEN:
        if (r == HK_BREAKER_FAILURE) {
            retrip_from_half_open(br, now_ms);
        } else if (r == HK_BREAKER_SUCCESS) {
            if (++br->br_probes_ok >= br->br_opts.probes)
                set_state(br, now_ms, HK_BREAKER_CLOSED);
        } else if (br->br_probes_taken > br->br_probes_ok) {
            br->br_probes_taken--; // the slot goes to another attempt
        }
        break;
    }
}

hk_breaker_state_t hk_breaker_state(const hk_breaker_t *br, int64_t now_ms)
{
    if (br->br_state == HK_BREAKER_OPEN && now_ms >= br->br_open_until)
        return HK_BREAKER_HALF_OPEN;
    return br->br_state;
}

int64_t hk_breaker_open_until(const hk_breaker_t *br)
{
    return br->br_state == HK_BREAKER_OPEN ? br->br_open_until : 0;
}

double hk_breaker_failure_rate(const hk_breaker_t *br)
{
    return br->br_ring_cnt ? (double)br->br_ring_fail / br->br_ring_cnt : 0.0;
}

void hk_breaker_snapshot(const hk_breaker_t *br, int64_t now_ms, hk_breaker_snapshot_t *snap)
{
    hk_breaker_state_t st = hk_breaker_state(br, now_ms);
    *snap = (hk_breaker_snapshot_t){
        .state = st,
        .failure_rate = hk_breaker_failure_rate(br),
        .calls = br->br_ring_cnt,
        .failures = br->br_ring_fail,
        .consecutive_failures = br->br_consecutive,
        .open_until_ms = st == HK_BREAKER_OPEN ? br->br_open_until : 0,
        .open_duration_ms = br->br_open_dur,
        .probes_in_flight =
            br->br_state == HK_BREAKER_HALF_OPEN ? br->br_probes_taken - br->br_probes_ok : 0,
        .probes_succeeded = br->br_state == HK_BREAKER_HALF_OPEN ? br->br_probes_ok : 0,
        .trips = br->br_trips,
    };
}

int hk_breaker_take_transition(hk_breaker_t *br, hk_breaker_state_t *from, hk_breaker_state_t *to)
{
    if (br->br_trans_cnt == 0)
        return 0;
    *from = br->br_trans[br->br_trans_head].from;
    *to = br->br_trans[br->br_trans_head].to;
    br->br_trans_head = (br->br_trans_head + 1) % HK_BREAKER_TRANSITIONS_MAX;
    br->br_trans_cnt--;
    return 1;
}

const char *hk_breaker_state_name(hk_breaker_state_t state)
{
    switch (state) {
    case HK_BREAKER_CLOSED:
        return "closed";
    case HK_BREAKER_OPEN:
        return "open";
    case HK_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}
