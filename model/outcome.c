#include "model/outcome.h"

#include <stdio.h>

hk_outcome_decision_t hk_outcome_decide(const hk_outcome_facts_t *f, const hk_outcome_policy_t *pol,
                                        uint64_t *rng)
{
    hk_outcome_decision_t d = {.action = HK_OUTCOME_ACT_DEAD_LETTER, .outcome = f->outcome};
    const char *last = f->last_error ? f->last_error : "";
    snprintf(d.reason, sizeof(d.reason), "%s", last);

    if (f->outcome == HK_OUTCOME_DELIVERED) {
        d.action = HK_OUTCOME_ACT_DELIVERED;
        return d;
    }
    if (f->outcome != HK_OUTCOME_RETRYABLE)
        return d; // permanent, gone, blocked, invalid...: retrying cannot help

    // head_of_line = block: an ordered head is retried until it succeeds.
    int unlimited = f->ordered && pol->hol_block;
    if (f->attempts >= f->max_attempts && !unlimited) {
        d.action = HK_OUTCOME_ACT_EXHAUSTED;
        d.outcome = HK_OUTCOME_EXHAUSTED;
        snprintf(d.reason, sizeof(d.reason), "%d attempts, last: %s", f->attempts, last);
        return d;
    }
    d.delay_ms = hk_backoff_next_delay(&pol->backoff, f->attempts, f->retry_after_ms, rng);
    d.due_wall_ms = f->now_wall_ms + d.delay_ms;
    if (f->expires_at_ms && d.due_wall_ms >= f->expires_at_ms) {
        d.action = HK_OUTCOME_ACT_EXPIRED;
        d.outcome = HK_OUTCOME_EXPIRED;
        snprintf(d.reason, sizeof(d.reason), "expires before attempt %d, last: %s", f->attempts + 1,
                 last);
        return d;
    }
    // A job with an ordering key always waits in memory: through the retry topic
    // the key's next job would overtake it. So does a batch item: its batch holds
    // it. Otherwise short waits stay in memory, unless hookd is draining.
    int in_memory =
        f->ordered || f->batch_item || (d.delay_ms <= pol->inline_max_ms && !f->draining);
    d.action = in_memory ? HK_OUTCOME_ACT_RETRY_MEMORY : HK_OUTCOME_ACT_RETRY_TOPIC;
    return d;
}

const char *hk_outcome_action_name(hk_outcome_action_t action)
{
    static const char *const names[HK_OUTCOME_ACT__CNT] = {
        [HK_OUTCOME_ACT_DELIVERED] = "delivered",
        [HK_OUTCOME_ACT_RETRY_MEMORY] = "retry_memory",
        [HK_OUTCOME_ACT_RETRY_TOPIC] = "retry_topic",
        [HK_OUTCOME_ACT_EXHAUSTED] = "exhausted",
        [HK_OUTCOME_ACT_EXPIRED] = "expired",
        [HK_OUTCOME_ACT_DEAD_LETTER] = "dead_letter",
    };
    return (unsigned)action < HK_OUTCOME_ACT__CNT ? names[action] : "unknown";
}
