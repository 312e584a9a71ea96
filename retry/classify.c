// classify: maps one attempt's raw result (HTTP status, CURLcode, guard flag)
// to an outcome class (DESIGN §6). curl.h is included for the CURLE_* constants
// only; nothing here calls libcurl.
#include "retry/classify.h"

#include <stddef.h>

#include <curl/curl.h>

static hk_outcome_t classify_status(int status)
{
    if (status >= 200 && status <= 299)
        return HK_OUTCOME_DELIVERED;

    switch (status) {
    case 408: // Request Timeout
    case 425: // Too Early
    case 429: // Too Many Requests
    case 500: // Internal Server Error
    case 502: // Bad Gateway
    case 503: // Service Unavailable
    case 504: // Gateway Timeout
        return HK_OUTCOME_RETRYABLE;
    case 410: // Gone: the receiver says this endpoint will never accept again
        return HK_OUTCOME_GONE;
    default:
        break;
    }

    // Everything else is permanent: 1xx as a final status, 3xx (redirects are
    // not followed, so repeating gets the same redirect), the other 4xx (the
    // request itself is wrong), and the 5xx outside the list above. Those 5xx
    // describe a server that cannot handle this request as configured rather
    // than a passing condition: 501 method not implemented, 505 HTTP version
    // not supported, 506/508 server misconfiguration or loop, 507 storage,
    // 510/511 extensions or network authentication required. Retrying them on
    // a schedule only burns attempts; a receiver that wants a retry answers
    // 503 (optionally with Retry-After). Out-of-range values are permanent too.
    return HK_OUTCOME_PERMANENT;
}

// No HTTP status: the receiver never answered, so the curl code decides.
static hk_outcome_t classify_curl(int code)
{
    switch (code) {
    // The request is wrong or cannot be made by this build: every retry fails
    // the same way.
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNKNOWN_OPTION:
        return HK_OUTCOME_PERMANENT;

    // Name resolution, connecting, timeouts, TLS, broken transfers, HTTP/2
    // framing: the network or the receiver may well recover.
    case CURLE_OK: // finished without a status: no response
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
#if LIBCURL_VERSION_NUM >= 0x074d00 // 7.77.0
    case CURLE_SSL_CLIENTCERT:
#endif
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return HK_OUTCOME_RETRYABLE;

    default:
        // Any other transport failure (out of memory, a callback abort, a weird
        // server reply, ...) says nothing against the request itself and the
        // receiver never answered: retry, still bounded by max_attempts.
        return HK_OUTCOME_RETRYABLE;
    }
}

hk_outcome_t hk_classify(const hk_attempt_result_t *res)
{
    if (res->blocked)
        return HK_OUTCOME_BLOCKED;
    // Once a status arrived the receiver has answered, and its answer decides:
    // a transport error after it (e.g. our response-size cap aborting the body)
    // does not undo a 2xx, nor turn a 4xx into something worth retrying.
    if (res->http_status != 0)
        return classify_status(res->http_status);
    return classify_curl(res->curl_code);
}

const char *hk_outcome_name(hk_outcome_t outcome)
{
    static const char *const names[HK_OUTCOME__CNT] = {
        [HK_OUTCOME_DELIVERED] = "delivered", [HK_OUTCOME_RETRYABLE] = "retryable",
        [HK_OUTCOME_PERMANENT] = "permanent", [HK_OUTCOME_GONE] = "gone",
        [HK_OUTCOME_BLOCKED] = "blocked",     [HK_OUTCOME_EXHAUSTED] = "exhausted",
        [HK_OUTCOME_EXPIRED] = "expired",     [HK_OUTCOME_INVALID] = "invalid",
    };
    if ((int)outcome < 0 || outcome >= HK_OUTCOME__CNT)
        return "unknown";
    return names[outcome];
}
