// classify: what one delivery attempt's result means (DESIGN §6). Pure policy.
#ifndef HK_CLASSIFY_H
#define HK_CLASSIFY_H

// Final or intermediate outcome of a job. The names (hk_outcome_name) are the
// `hookd-error-class` header values and metric labels: keep them stable.
typedef enum hk_outcome {
    HK_OUTCOME_DELIVERED = 0, // 2xx
    HK_OUTCOME_RETRYABLE,     // 408/425/429/5xx (500,502,503,504), connect/DNS/TLS error, timeout
    HK_OUTCOME_PERMANENT,     // 3xx (redirects are not followed), other 4xx, other statuses
    HK_OUTCOME_GONE,          // 410: the endpoint is disabled
    HK_OUTCOME_BLOCKED,       // refused by the network guard
    HK_OUTCOME_EXHAUSTED,     // retryable, but attempts used up
    HK_OUTCOME_EXPIRED,       // past expires_at
    HK_OUTCOME_INVALID,       // the message is not a valid job
    HK_OUTCOME__CNT
} hk_outcome_t;

// The raw result of one attempt.
typedef struct hk_attempt_result {
    int http_status; // 0 when no response was received
    int curl_code;   // CURLcode of the transfer (0 = CURLE_OK)
    int blocked;     // 1 when the network guard refused the address
} hk_attempt_result_t;

hk_outcome_t hk_classify(const hk_attempt_result_t *res);

// "delivered", "retryable", "permanent", "gone", "blocked", "exhausted", "expired", "invalid"
const char *hk_outcome_name(hk_outcome_t outcome);

#endif
