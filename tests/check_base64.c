// check_base64: the base64 leaf against RFC 4648's test vectors, OpenSSL's
// encoder as an outside reference, and the inputs the strict decoder refuses.
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/base64.h"
#include "tests/support/ck_main.h"

// RFC 4648 section 10.
static const struct {
    const char *plain;
    const char *encoded;
} rfc_vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

START_TEST(test_base64_encodes_rfc4648_vectors)
{
    const char *plain = rfc_vectors[_i].plain, *want = rfc_vectors[_i].encoded;
    char out[16];
    memset(out, 'x', sizeof(out));
    ck_assert_uint_eq(hk_base64_encoded_len(strlen(plain)), strlen(want));
    ck_assert_uint_eq(hk_base64_encode(plain, strlen(plain), out), strlen(want));
    ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(test_base64_decodes_rfc4648_vectors_strict_and_lenient)
{
    const char *want = rfc_vectors[_i].plain, *enc = rfc_vectors[_i].encoded;
    for (unsigned flags = 0; flags <= HK_BASE64_CANONICAL; flags++) {
        unsigned char out[16];
        memset(out, 0xee, sizeof(out));
        ck_assert_int_eq(hk_base64_decoded_len(enc, strlen(enc), flags), (long)strlen(want));
        ck_assert_int_eq(hk_base64_decode(enc, strlen(enc), out, flags), (long)strlen(want));
        ck_assert_mem_eq(out, want, strlen(want));
        ck_assert_uint_eq(out[strlen(want)], 0xee); // nothing written past the bytes
    }
}
END_TEST

// Every length from 0 to 200 of pseudo-random bytes (all 256 values occur):
// the encoding matches OpenSSL's and decodes back to the same bytes.
START_TEST(test_base64_round_trips_and_matches_openssl)
{
    uint64_t state = 0x9e3779b97f4a7c15u;
    unsigned char data[200], back[200];
    char ours[300], ref[300];
    for (size_t len = 0; len <= sizeof(data); len++) {
        for (size_t i = 0; i < len; i++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            data[i] = (unsigned char)(state >> 56);
        }
        int ref_len = EVP_EncodeBlock((unsigned char *)ref, data, (int)len);
        size_t n = hk_base64_encode(data, len, ours);
        ck_assert_uint_eq(n, (size_t)ref_len);
        ck_assert_str_eq(ours, ref);
        // What we encode is canonical, so the strict decoder takes it back.
        ck_assert_int_eq(hk_base64_decode(ours, n, back, HK_BASE64_CANONICAL), (long)len);
        ck_assert_mem_eq(back, data, len);
    }
}
END_TEST

// Not padded standard base64, for either mode.
static const char *const rejected[] = {
    "Zg",        // unpadded
    "Zg=",       // length not a multiple of 4
    "Zm9vY",     // ditto
    "=",         //
    "====",      // padding only
    "Z===",      // three '='
    "Zg==Zg==",  // '=' before the end
    "Zm=v",      // '=' inside the last group
    "Zm9v=g==",  // '=' inside an earlier group
    "Zm9v!A==",  // outside the alphabet
    "Zm9-Yg==",  // base64url's '-'
    "Zm9_Yg==",  // base64url's '_'
    "Zm9v Yg=",  // whitespace
    "Zm9v\nYg=", // a line break
    "Zg=a",      // '=' then a letter
};

START_TEST(test_base64_rejects_malformed_input)
{
    const char *s = rejected[_i];
    for (unsigned flags = 0; flags <= HK_BASE64_CANONICAL; flags++) {
        unsigned char out[16];
        memset(out, 0xee, sizeof(out));
        ck_assert_msg(hk_base64_decoded_len(s, strlen(s), flags) == -1, "accepted \"%s\"", s);
        ck_assert_int_eq(hk_base64_decode(s, strlen(s), out, flags), -1);
        for (size_t i = 0; i < sizeof(out); i++)
            ck_assert_uint_eq(out[i], 0xee); // out untouched on failure
    }
}
END_TEST

START_TEST(test_base64_nul_inside_the_length_is_rejected)
{
    ck_assert_int_eq(hk_base64_decoded_len("Zm\0v", 4, 0), -1);
}
END_TEST

// Unused bits set in the last character before the padding: the same byte
// spelled another way. Lenient decoding ignores the bits; canonical refuses.
START_TEST(test_base64_canonical_refuses_nonzero_trailing_bits)
{
    unsigned char out[4];
    // "Zh==": 'h' = 33 = 100001, the low 4 bits (unused under "==") are 0001.
    ck_assert_int_eq(hk_base64_decode("Zh==", 4, out, 0), 1);
    ck_assert_uint_eq(out[0], 'f');
    ck_assert_int_eq(hk_base64_decoded_len("Zh==", 4, HK_BASE64_CANONICAL), -1);
    // "Zm9=": '9' = 61 = 111101, the low 2 bits (unused under "=") are 01.
    ck_assert_int_eq(hk_base64_decode("Zm9=", 4, out, 0), 2);
    ck_assert_mem_eq(out, "fo", 2);
    ck_assert_int_eq(hk_base64_decoded_len("Zm9=", 4, HK_BASE64_CANONICAL), -1);
    // Bit 3 alone under "==" (the highest unused bit) is caught too: 'o' = 'g' | 8.
    ck_assert_int_eq(hk_base64_decoded_len("Zo==", 4, HK_BASE64_CANONICAL), -1);
    ck_assert_int_eq(hk_base64_decoded_len("Zg==", 4, HK_BASE64_CANONICAL), 1);
    // Without padding there are no unused bits: every character counts.
    ck_assert_int_eq(hk_base64_decoded_len("Zm9/", 4, HK_BASE64_CANONICAL), 3);
}
END_TEST

// The input is a length, not a string: bytes past n are not read.
START_TEST(test_base64_reads_only_n_characters)
{
    unsigned char out[8];
    ck_assert_int_eq(hk_base64_decode("Zg==!!!!", 4, out, HK_BASE64_CANONICAL), 1);
    ck_assert_uint_eq(out[0], 'f');
    ck_assert_int_eq(hk_base64_decoded_len("Zm9vYmFy", 4, 0), 3);
}
END_TEST

Suite *hk_test_suite(hk_ck_run_t *run)
{
    (void)run;
    Suite *s = suite_create("base64");
    TCase *tc = tcase_create("codec");
    int nvec = (int)(sizeof(rfc_vectors) / sizeof(rfc_vectors[0]));
    tcase_add_loop_test(tc, test_base64_encodes_rfc4648_vectors, 0, nvec);
    tcase_add_loop_test(tc, test_base64_decodes_rfc4648_vectors_strict_and_lenient, 0, nvec);
    tcase_add_test(tc, test_base64_round_trips_and_matches_openssl);
    tcase_add_loop_test(tc, test_base64_rejects_malformed_input, 0,
                        (int)(sizeof(rejected) / sizeof(rejected[0])));
    tcase_add_test(tc, test_base64_nul_inside_the_length_is_rejected);
    tcase_add_test(tc, test_base64_canonical_refuses_nonzero_trailing_bits);
    tcase_add_test(tc, test_base64_reads_only_n_characters);
    suite_add_tcase(s, tc);
    return s;
}
