// outcome: what becomes of a task once an attempt has ended. Given the facts of
// the attempt (its classification by retry/classify.c, the attempt count, the
// job's limits and expiry, whether it is ordered or a batch item, whether hookd is
// draining, the receiver's Retry-After, the time) it returns one decision:
// delivered, retry in memory after a delay, retry through the retry topic at a
// due time, or a dead letter (exhausted, expired, or the attempt's own permanent
// class). worker/pipeline.c carries the decision out.
//
// Pure: no I/O, no clock (callers pass now), no hidden random state (the caller
// owns the jitter's rng state). Any thread may call it.
#ifndef HK_OUTCOME_H
#define HK_OUTCOME_H

#include <stdint.h>

#include "retry/backoff.h"
#include "retry/classify.h"

typedef enum hk_outcome_action {
    HK_OUTCOME_ACT_DELIVERED = 0, // 2xx: done (release the key, Redis done marker)
    HK_OUTCOME_ACT_RETRY_MEMORY,  // wait delay_ms in the dispatcher's delay heap
    HK_OUTCOME_ACT_RETRY_TOPIC,   // produce to the retry topic, due at due_wall_ms
    HK_OUTCOME_ACT_EXHAUSTED,     // retryable, but max_attempts are used up: DLQ
    HK_OUTCOME_ACT_EXPIRED,       // retryable, but the job expires before the next attempt: DLQ
    HK_OUTCOME_ACT_DEAD_LETTER,   // permanent, gone, blocked, invalid...: DLQ as classified
    HK_OUTCOME_ACT__CNT
} hk_outcome_action_t;

// The facts of one ended attempt (a plain value, filled from the task).
typedef struct hk_outcome_facts {
    hk_outcome_t outcome;   // the attempt's class (retry/classify.c)
    int attempts;           // attempts made, this one included
    int max_attempts;       // the job's limit
    int64_t expires_at_ms;  // wall clock ms; 0 = never expires
    int64_t retry_after_ms; // the response's Retry-After, -1 when none
    const char *last_error; // the attempt's error in words
    int ordered;            // waits on an ordering-key chain (dispatch.ordering = key)
    int batch_item;         // an item of a Postgres batch (its batch holds it)
    int draining;           // shutting down: retries go to the retry topic where they can
    int64_t now_wall_ms;
} hk_outcome_facts_t;

// The reloadable limits it decides with (built from the [retry]/[dispatch] config).
typedef struct hk_outcome_policy {
    hk_backoff_t backoff;  // delay after each failure, Retry-After, max_delay_ms
    int64_t inline_max_ms; // longest delay that waits in memory (retry.inline_max_ms)
    int hol_block;         // dispatch.head_of_line = block: ordered heads retry forever
} hk_outcome_policy_t;

#define HK_OUTCOME_REASON_MAX 256 // = sizeof(hk_task_t.error)

typedef struct hk_outcome_decision {
    hk_outcome_action_t action;
    hk_outcome_t outcome; // the class to record: EXHAUSTED/EXPIRED, else the attempt's
    int64_t delay_ms;     // retries: the wait before the next attempt
    int64_t due_wall_ms;  // retries: now_wall_ms + delay_ms
    // Dead letters: the error the DLQ record carries ("3 attempts, last: HTTP 503",
    // "expires before attempt 4, last: ..."; the attempt's own error otherwise).
    // Retries and deliveries: the attempt's error.
    char reason[HK_OUTCOME_REASON_MAX];
} hk_outcome_decision_t;

// Decides. The backoff's jitter draws from *rng (see hk_backoff_next_delay), and
// only when a retry is still possible; a NULL rng gives the upper bound.
hk_outcome_decision_t hk_outcome_decide(const hk_outcome_facts_t *facts,
                                        const hk_outcome_policy_t *pol, uint64_t *rng);

// "delivered", "retry_memory", "retry_topic", "exhausted", "expired", "dead_letter"
const char *hk_outcome_action_name(hk_outcome_action_t action);

#endif
