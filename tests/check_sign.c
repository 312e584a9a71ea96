// Unit tests for base/sign.c: Standard Webhooks v1 signing and verification.
// Expected values come from the Standard Webhooks reference example and from
// Python's hmac/base64 modules, never from sign.c itself.
#include "base/sign.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/ck_main.h"

#define REF_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define REF_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define REF_TS     1614265330
#define REF_TS_STR "1614265330"
#define REF_BODY   "{\"test\": 2432232314}"
#define REF_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
// Same id/timestamp, empty body.
#define REF_SIG_EMPTY "v1,v48jdbgvh29KJz2Qc+ghw8G6vG3nAKnujWBg8oM/62A="
// 16-byte key 00 01 .. 0f, and its signature of the reference message.
#define KEY16_SECRET "whsec_AAECAwQFBgcICQoLDA0ODw=="
#define KEY16_SIG    "v1,YA6MmMhwztQQnjVT5s7VnIJrrIpIRYrxFLdJ8TxT/KM="
// 64-byte key 00 01 .. 3f (the longest accepted).
#define KEY64_SECRET                                                                               \
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"   \
    "Pw=="
#define KEY64_SIG "v1,LZ5zuwHTqQH3VM8ERUusjzVQq1FXzemvpR8Mk7Ivp5c="

// 24-byte key 00 01 .. 17: as long as the reference key, different bytes (Python).
#define KEY24_SECRET "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"
#define KEY24_SIG    "v1,/485aUtxlie+TIScVpHggMfqOB4so2KWb7+Gf727B44="
// The reference key and body one second later (Python).
#define REF_SIG_TS1 "v1,l6C9/1+N/lSU6+gfh+YEGqTK2aQ+k8nMEWDvvCgHh7U="

static int sign_ref(const char *secrets, char *out, size_t out_size)
{
    return hk_sign_header(secrets, REF_ID, REF_TS, REF_BODY, strlen(REF_BODY), out, out_size);
}

static int verify_ref(const char *secret, const char *header)
{
    return hk_sign_verify(secret, REF_ID, REF_TS_STR, REF_BODY, strlen(REF_BODY), header);
}

START_TEST(test_sign_matches_standard_webhooks_reference)
{
    char out[HK_SIGN_HEADER_MAX];
    int n = sign_ref(REF_SECRET, out, sizeof(out));
    ck_assert_str_eq(out, REF_SIG);
    ck_assert_int_eq(n, (int)strlen(REF_SIG));
}
END_TEST

START_TEST(test_sign_verify_accepts_reference_header)
{
    ck_assert_int_eq(verify_ref(REF_SECRET, REF_SIG), 1);
}
END_TEST

START_TEST(test_sign_accepts_16_and_64_byte_keys)
{
    char out[HK_SIGN_HEADER_MAX];
    ck_assert_int_gt(sign_ref(KEY16_SECRET, out, sizeof(out)), 0);
    ck_assert_str_eq(out, KEY16_SIG);
    // 64 bytes fill the HMAC block exactly: keeping EVP_DecodeBlock's two padding
    // zeros would make the key 66 bytes, which HMAC hashes first.
    ck_assert_int_gt(sign_ref(KEY64_SECRET, out, sizeof(out)), 0);
    ck_assert_str_eq(out, KEY64_SIG);
    ck_assert_int_eq(verify_ref(KEY64_SECRET, out), 1);
}
END_TEST

START_TEST(test_sign_rotation_writes_one_entry_per_secret)
{
    char out[HK_SIGN_HEADER_MAX];
    int n = sign_ref(REF_SECRET " " KEY16_SECRET, out, sizeof(out));
    ck_assert_str_eq(out, REF_SIG " " KEY16_SIG);
    ck_assert_int_eq(n, (int)strlen(out));
    ck_assert_int_eq(verify_ref(REF_SECRET, out), 1);
    ck_assert_int_eq(verify_ref(KEY16_SECRET, out), 1);
    ck_assert_int_eq(verify_ref(KEY64_SECRET, out), 0);
}
END_TEST

// A thread keeps its HMAC keyed between calls: switching between two keys of the
// same length, and back, must sign with the key asked for each time, and the same
// key twice must sign each message afresh.
START_TEST(test_sign_switching_between_same_length_keys_uses_each_key)
{
    char out[HK_SIGN_HEADER_MAX];
    for (int round = 0; round < 2; round++) {
        ck_assert_int_gt(sign_ref(REF_SECRET, out, sizeof(out)), 0);
        ck_assert_str_eq(out, REF_SIG);
        ck_assert_int_gt(sign_ref(REF_SECRET, out, sizeof(out)), 0);
        ck_assert_str_eq(out, REF_SIG);
        ck_assert_int_gt(hk_sign_header(REF_SECRET, REF_ID, REF_TS + 1, REF_BODY, strlen(REF_BODY),
                                        out, sizeof(out)),
                         0);
        ck_assert_str_eq(out, REF_SIG_TS1);
        ck_assert_int_gt(sign_ref(KEY24_SECRET, out, sizeof(out)), 0);
        ck_assert_str_eq(out, KEY24_SIG);
    }
    ck_assert_int_gt(sign_ref(KEY24_SECRET " " REF_SECRET, out, sizeof(out)), 0);
    ck_assert_str_eq(out, KEY24_SIG " " REF_SIG);
}
END_TEST

START_TEST(test_sign_secrets_tolerate_extra_whitespace)
{
    char out[HK_SIGN_HEADER_MAX];
    ck_assert_int_gt(sign_ref("  " REF_SECRET "   \t" KEY16_SECRET " ", out, sizeof(out)), 0);
    ck_assert_str_eq(out, REF_SIG " " KEY16_SIG);
}
END_TEST

START_TEST(test_sign_empty_body)
{
    char out[HK_SIGN_HEADER_MAX];
    ck_assert_int_gt(hk_sign_header(REF_SECRET, REF_ID, REF_TS, NULL, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, REF_SIG_EMPTY);
    ck_assert_int_gt(hk_sign_header(REF_SECRET, REF_ID, REF_TS, "", 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, REF_SIG_EMPTY);
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, REF_ID, REF_TS_STR, NULL, 0, REF_SIG_EMPTY), 1);
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, REF_ID, REF_TS_STR, NULL, 0, REF_SIG), 0);
}
END_TEST

START_TEST(test_sign_verify_rejects_wrong_body)
{
    const char *body = "{\"test\": 2432232315}";
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, REF_ID, REF_TS_STR, body, strlen(body), REF_SIG),
                     0);
    // A prefix of the real body must not verify either.
    ck_assert_int_eq(
        hk_sign_verify(REF_SECRET, REF_ID, REF_TS_STR, REF_BODY, strlen(REF_BODY) - 1, REF_SIG), 0);
}
END_TEST

START_TEST(test_sign_verify_rejects_wrong_timestamp)
{
    ck_assert_int_eq(
        hk_sign_verify(REF_SECRET, REF_ID, "1614265331", REF_BODY, strlen(REF_BODY), REF_SIG), 0);
}
END_TEST

START_TEST(test_sign_verify_rejects_wrong_id)
{
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJeK", REF_TS_STR,
                                    REF_BODY, strlen(REF_BODY), REF_SIG),
                     0);
}
END_TEST

START_TEST(test_sign_verify_rejects_wrong_secret)
{
    ck_assert_int_eq(verify_ref(KEY16_SECRET, REF_SIG), 0);
}
END_TEST

START_TEST(test_sign_verify_rejects_tampered_signature)
{
    char hdr[] = REF_SIG;
    hdr[10] ^= 0x01; // one bit of one base64 character
    ck_assert_int_eq(verify_ref(REF_SECRET, hdr), 0);

    char truncated[] = REF_SIG;
    truncated[strlen(truncated) - 1] = '\0';
    ck_assert_int_eq(verify_ref(REF_SECRET, truncated), 0);

    ck_assert_int_eq(verify_ref(REF_SECRET, REF_SIG "A"), 0);
    ck_assert_int_eq(verify_ref(REF_SECRET, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), 0);
    ck_assert_int_eq(verify_ref(REF_SECRET, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), 0);
}
END_TEST

START_TEST(test_sign_verify_skips_garbage_entries)
{
    ck_assert_int_eq(verify_ref(REF_SECRET, "garbage v2,abc v1, v1,short ,,, " REF_SIG " junk"), 1);
    ck_assert_int_eq(verify_ref(REF_SECRET, "\t" REF_SIG "\t"), 1);
    ck_assert_int_eq(verify_ref(REF_SECRET, "garbage v2,abc v1, v1,short"), 0);
    ck_assert_int_eq(verify_ref(REF_SECRET, ""), 0);
    ck_assert_int_eq(verify_ref(REF_SECRET, "   "), 0);
    ck_assert_int_eq(verify_ref(REF_SECRET, NULL), 0);
    // Entries glued together without a space are one bad entry.
    ck_assert_int_eq(verify_ref(REF_SECRET, REF_SIG REF_SIG), 0);
}
END_TEST

START_TEST(test_sign_verify_bad_secret_is_an_error)
{
    ck_assert_int_eq(verify_ref("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", REF_SIG), -1);
    ck_assert_int_eq(verify_ref("whsec_!!!!", REF_SIG), -1);
    ck_assert_int_eq(verify_ref(NULL, REF_SIG), -1);
    // verify takes exactly one secret.
    ck_assert_int_eq(verify_ref(REF_SECRET " " KEY16_SECRET, REF_SIG), -1);
}
END_TEST

START_TEST(test_sign_check_secret_accepts_valid_secrets)
{
    char err[128] = "";
    ck_assert_int_eq(hk_sign_check_secret(REF_SECRET, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_sign_check_secret(KEY16_SECRET, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_sign_check_secret(KEY64_SECRET, err, sizeof(err)), 0);
    ck_assert_int_eq(hk_sign_check_secret("whsec_AAECAwQFBgcICQoLDA0ODxA=", err, sizeof(err)), 0);
    ck_assert_int_eq(hk_sign_check_secret(REF_SECRET, NULL, 0), 0);
}
END_TEST

static const char *bad_secrets[] = {
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",       // no prefix
    "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", // prefix is case-sensitive
    "whsec_",                                 // nothing after the prefix
    "",                                       // empty
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  // length not a multiple of 4
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w", // URL-safe alphabet
    "whsec_MfKQ9r8GKYqrTwjUPD8I PZIo2LaLaSw", // space inside
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_AAECAwQFBgcICQoLDA0ODw=A", // padding in the middle
    "whsec_AAECAwQFBgcICQoLDA0OD===", // three padding characters
    "whsec_AAECAwQFBgcICQoLDA0ODx==", // non-canonical: unused bits set
    "whsec_AAECAwQFBgcICQoLDA0ODxB=", // non-canonical with one '='
    "whsec_AAECAwQFBgcICQoLDA0O",     // 15 bytes: too short
    "whsec_AAAAAAAAAAAAAAAA",         // 12 bytes: too short
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A"
    "=", // 65 bytes: too long
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BB"
    "QkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=",
};

START_TEST(test_sign_check_secret_rejects_bad_secret)
{
    const char *secret = bad_secrets[_i];
    char err[128] = "";
    ck_assert_msg(hk_sign_check_secret(secret, err, sizeof(err)) == -1, "accepted \"%s\"", secret);
    ck_assert_msg(strncmp(err, "webhook secret ", 15) == 0, "errstr \"%s\"", err);
    // The message names the problem, never the secret.
    if (strlen(secret) > 6)
        ck_assert_ptr_null(strstr(err, secret + 6));

    // hk_sign_header takes a space-separated list, so a leading space is fine there.
    if (secret[0] != ' ') {
        char out[HK_SIGN_HEADER_MAX] = "x";
        ck_assert_int_eq(sign_ref(secret, out, sizeof(out)), -1);
        ck_assert_str_eq(out, "");
    }
}
END_TEST

// One entry of a list, by length: the reasons config quotes after "secret 2 of 3".
START_TEST(test_sign_check_secret_n_names_the_problem)
{
    const char *list =
        "nope whsec_AAECAwQFBgcICQoLDA0ODx== whsec_AAECAwQFBgcICQoLDA0O " KEY16_SECRET;
    char why[64] = "";
    ck_assert_int_eq(hk_sign_check_secret_n(list, 4, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "does not start with whsec_");
    ck_assert_int_eq(hk_sign_check_secret_n(list + 5, 30, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "is not canonical padded base64 after whsec_");
    ck_assert_int_eq(hk_sign_check_secret_n(list + 36, 26, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "decodes to 15 bytes");
    ck_assert_int_eq(hk_sign_check_secret_n(list + 63, strlen(KEY16_SECRET), NULL, 0), 0);
    ck_assert_int_eq(hk_sign_check_secret_n("whsec_", 6, why, sizeof(why)), -1);
    ck_assert_str_eq(why, "is not canonical padded base64 after whsec_");
}
END_TEST

START_TEST(test_sign_check_secret_null_and_tiny_errstr)
{
    char err[8];
    ck_assert_int_eq(hk_sign_check_secret(NULL, err, sizeof(err)), -1);
    ck_assert_int_eq(strlen(err), sizeof(err) - 1); // truncated, still terminated
    ck_assert_int_eq(hk_sign_check_secret("nope", NULL, 0), -1);
}
END_TEST

START_TEST(test_sign_header_rejects_one_bad_secret_among_good)
{
    char out[HK_SIGN_HEADER_MAX] = "x";
    ck_assert_int_eq(sign_ref(REF_SECRET " whsec_bad", out, sizeof(out)), -1);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(sign_ref("", out, sizeof(out)), -1);
    ck_assert_int_eq(sign_ref("   ", out, sizeof(out)), -1);
    ck_assert_int_eq(sign_ref(NULL, out, sizeof(out)), -1);
}
END_TEST

START_TEST(test_sign_header_out_too_small)
{
    char out[HK_SIGN_HEADER_MAX];
    size_t one = strlen(REF_SIG) + 1; // entry + NUL

    ck_assert_int_eq(sign_ref(REF_SECRET, out, one - 1), HK_SIGN_ETOOBIG);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(sign_ref(REF_SECRET, out, 0), HK_SIGN_ETOOBIG);
    ck_assert_int_eq(sign_ref(REF_SECRET, out, one), (int)one - 1);
    ck_assert_str_eq(out, REF_SIG);

    size_t two = 2 * strlen(REF_SIG) + 2; // two entries, a space, NUL
    ck_assert_int_eq(sign_ref(REF_SECRET " " KEY16_SECRET, out, two - 1), HK_SIGN_ETOOBIG);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(sign_ref(REF_SECRET " " KEY16_SECRET, out, two), (int)two - 1);
}
END_TEST

// n copies of REF_SECRET and KEY16_SECRET, alternating, space separated.
static void rotation_list(char *secrets, size_t size, int n)
{
    secrets[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(secrets);
        snprintf(secrets + len, size - len, "%s%s", i ? " " : "",
                 i % 2 ? KEY16_SECRET : REF_SECRET);
    }
}

START_TEST(test_sign_header_fits_rotation_in_header_max)
{
    // HK_SIGN_HEADER_MAX holds HK_SIGN_MAX_SECRETS (ten) rotated signatures, each of
    // them there and valid.
    ck_assert_int_eq(HK_SIGN_MAX_SECRETS, 10);
    char secrets[2048];
    rotation_list(secrets, sizeof(secrets), HK_SIGN_MAX_SECRETS);
    char out[HK_SIGN_HEADER_MAX];
    ck_assert_int_eq(sign_ref(secrets, out, sizeof(out)), 10 * 47 + 9);
    ck_assert_int_eq(verify_ref(REF_SECRET, out), 1);
    ck_assert_int_eq(verify_ref(KEY16_SECRET, out), 1);
    // The tenth entry is the last one: a KEY16 signature.
    ck_assert_str_eq(out + 9 * 48, KEY16_SIG);
    // The exact size fits; one byte less does not, and then nothing is written.
    ck_assert_int_eq(sign_ref(secrets, out, 10 * 48), 10 * 47 + 9);
    ck_assert_int_eq(sign_ref(secrets, out, 10 * 48 - 1), HK_SIGN_ETOOBIG);
    ck_assert_str_eq(out, "");
}
END_TEST

// One past the limit: an error, never a header that carries some of the signatures
// (a receiver that only knows the eleventh secret would reject it, and a caller that
// ignored the error would send it unsigned).
START_TEST(test_sign_header_one_past_the_limit_is_an_error_not_a_partial_header)
{
    char secrets[2048];
    rotation_list(secrets, sizeof(secrets), HK_SIGN_MAX_SECRETS + 1);
    char out[HK_SIGN_HEADER_MAX];
    memset(out, 'x', sizeof(out));
    ck_assert_int_eq(sign_ref(secrets, out, sizeof(out)), HK_SIGN_ETOOBIG);
    ck_assert_str_eq(out, "");
    // A bad secret is the other error, wherever it stands.
    ck_assert_int_eq(sign_ref(REF_SECRET " whsec_bad", out, sizeof(out)), HK_SIGN_EINVAL);
    ck_assert_str_eq(out, "");
    // A buffer sized for eleven takes them all.
    char big[HK_SIGN_HEADER_MAX * 2];
    ck_assert_int_eq(sign_ref(secrets, big, sizeof(big)), 11 * 47 + 10);
}
END_TEST

START_TEST(test_sign_timestamp_is_decimal_seconds)
{
    char out[HK_SIGN_HEADER_MAX];
    ck_assert_int_gt(
        hk_sign_header(REF_SECRET, REF_ID, 0, REF_BODY, strlen(REF_BODY), out, sizeof(out)), 0);
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, REF_ID, "0", REF_BODY, strlen(REF_BODY), out), 1);
    ck_assert_int_gt(
        hk_sign_header(REF_SECRET, REF_ID, INT64_MAX, REF_BODY, strlen(REF_BODY), out, sizeof(out)),
        0);
    ck_assert_int_eq(
        hk_sign_verify(REF_SECRET, REF_ID, "9223372036854775807", REF_BODY, strlen(REF_BODY), out),
        1);
    ck_assert_int_gt(
        hk_sign_header(REF_SECRET, REF_ID, INT64_MIN, REF_BODY, strlen(REF_BODY), out, sizeof(out)),
        0);
    ck_assert_int_eq(
        hk_sign_verify(REF_SECRET, REF_ID, "-9223372036854775808", REF_BODY, strlen(REF_BODY), out),
        1);
    // The header's text is the signed text (deliver writes webhook-timestamp with it).
    static const struct {
        int64_t v;
        const char *text;
    } cases[] = {{0, "0"},
                 {7, "7"},
                 {10, "10"},
                 {1796650883, "1796650883"},
                 {-1, "-1"},
                 {INT64_MAX, "9223372036854775807"},
                 {INT64_MIN, "-9223372036854775808"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ts[HK_SIGN_TIMESTAMP_MAX];
        ck_assert_int_eq(hk_sign_timestamp_text(cases[i].v, ts), (int)strlen(cases[i].text));
        ck_assert_str_eq(ts, cases[i].text);
    }
}
END_TEST

START_TEST(test_sign_binary_body_with_nul_bytes)
{
    const unsigned char body[] = {0x00, 0xff, 0x00, 0x2e, 0x0a};
    char out[HK_SIGN_HEADER_MAX];
    ck_assert_int_gt(
        hk_sign_header(REF_SECRET, REF_ID, REF_TS, body, sizeof(body), out, sizeof(out)), 0);
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, REF_ID, REF_TS_STR, body, sizeof(body), out), 1);
    ck_assert_int_eq(hk_sign_verify(REF_SECRET, REF_ID, REF_TS_STR, body, 1, out), 0);
}
END_TEST

static void *sign_thread(void *arg)
{
    int *ok = arg;
    char out[HK_SIGN_HEADER_MAX];
    *ok = 1;
    for (int i = 0; i < 200; i++) {
        if (sign_ref(REF_SECRET " " KEY16_SECRET, out, sizeof(out)) < 0 ||
            strcmp(out, REF_SIG " " KEY16_SIG) != 0 || verify_ref(KEY16_SECRET, out) != 1)
            *ok = 0;
    }
    return NULL;
}

START_TEST(test_sign_is_thread_safe)
{
    enum { N = 4 };
    pthread_t th[N];
    int ok[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, sign_thread, &ok[i]), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(ok[i], 1);
    }
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("sign");

    TCase *tc = tcase_create("header");
    tcase_add_test(tc, test_sign_matches_standard_webhooks_reference);
    tcase_add_test(tc, test_sign_accepts_16_and_64_byte_keys);
    tcase_add_test(tc, test_sign_rotation_writes_one_entry_per_secret);
    tcase_add_test(tc, test_sign_switching_between_same_length_keys_uses_each_key);
    tcase_add_test(tc, test_sign_secrets_tolerate_extra_whitespace);
    tcase_add_test(tc, test_sign_empty_body);
    tcase_add_test(tc, test_sign_header_rejects_one_bad_secret_among_good);
    tcase_add_test(tc, test_sign_header_out_too_small);
    tcase_add_test(tc, test_sign_header_fits_rotation_in_header_max);
    tcase_add_test(tc, test_sign_header_one_past_the_limit_is_an_error_not_a_partial_header);
    tcase_add_test(tc, test_sign_timestamp_is_decimal_seconds);
    tcase_add_test(tc, test_sign_binary_body_with_nul_bytes);
    tcase_add_test(tc, test_sign_is_thread_safe);
    suite_add_tcase(s, tc);

    tc = tcase_create("verify");
    tcase_add_test(tc, test_sign_verify_accepts_reference_header);
    tcase_add_test(tc, test_sign_verify_rejects_wrong_body);
    tcase_add_test(tc, test_sign_verify_rejects_wrong_timestamp);
    tcase_add_test(tc, test_sign_verify_rejects_wrong_id);
    tcase_add_test(tc, test_sign_verify_rejects_wrong_secret);
    tcase_add_test(tc, test_sign_verify_rejects_tampered_signature);
    tcase_add_test(tc, test_sign_verify_skips_garbage_entries);
    tcase_add_test(tc, test_sign_verify_bad_secret_is_an_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("secret");
    tcase_add_test(tc, test_sign_check_secret_accepts_valid_secrets);
    tcase_add_loop_test(tc, test_sign_check_secret_rejects_bad_secret, 0,
                        (int)(sizeof(bad_secrets) / sizeof(bad_secrets[0])));
    tcase_add_test(tc, test_sign_check_secret_null_and_tiny_errstr);
    tcase_add_test(tc, test_sign_check_secret_n_names_the_problem);
    suite_add_tcase(s, tc);
    return s;
}
