/* HMACSignatureAuth through the C ABI: signed requests pass and the session decodes with
 * hmac_enabled and the token; every failure gives its code and message; a key that exists
 * only in the host store (served by the harness's TykGetData) authenticates. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME "HMACSignatureAuth"
#define DATE "Fri, 03 May 2024 12:00:42 GMT"
#define SECRET "c2VjcmV0"

static const char *BAD_REQUEST = "Custom middleware: Bad request";
static const char *UNSUPPORTED = "Bad HMAC request, unsupported algorithm";
static const char *NOT_AUTHORIZED = "Custom middleware: Not authorized";

/* Known answers for key "c2VjcmV0" over "date: Fri, 03 May 2024 12:00:42 GMT", query-escaped as
 * sent on the wire. sha512 is the reference vector; the others were produced with
 *   printf '%s' 'date: Fri, 03 May 2024 12:00:42 GMT' | openssl dgst -<alg> -hmac c2VjcmV0 -binary | base64
 * and then '+' -> %2B, '/' -> %2F, '=' -> %3D. */
static const struct { const char *alg, *sig; } VECTORS[] = {
    { "hmac-sha1", "dyxQFPTndnGXjLvUHID6DD1no8Q%3D" },
    { "hmac-sha256", "hFn0BlRpQjwNrnlHki%2F9Wi%2FkXeLnIDoLtIAtDiz5W%2Bc%3D" },
    { "hmac-sha384", "tGsK62g6z8DzHSl9bVnm5QzvAPs3Ii5uRFZhE%2BCVbW%2BbrVT247B1mJDGH1S4NgVA" },
    { "hmac-sha512", "9kwBK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D" },
};
#define SHA512_SIG "9kwBK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D"

static const char *CONFIG_DATA =
    "{\"" NAME "\": {\"keys\": {\"k1\": \"" SECRET "\"},"
    " \"allowed_algorithms\": [\"hmac-sha1\", \"hmac-sha256\", \"hmac-sha384\", \"hmac-sha512\"],"
    " \"session\": {\"rate\": 100, \"per\": 1, \"quota_max\": -1, \"tags\": [\"hmac\"],"
    "   \"access_rights\": {\"api-1\": {\"api_id\": \"api-1\", \"versions\": [\"Default\"]}}}},"
    " \"" NAME ":sha512only\": {\"keys\": {\"k1\": \"" SECRET "\"}, \"allowed_algorithms\": [\"hmac-sha512\"]},"
    " \"" NAME ":skew\": {\"keys\": {\"k1\": \"" SECRET "\"}, \"clock_skew_ms\": 300000}}";

static Coprocess__Object *request(const char *hook, const char *authorization, const char *date) {
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, hook);
    harness_add_spec(obj, "config_data", CONFIG_DATA);
    if (authorization) harness_add_header(obj, "Authorization", authorization);
    if (date) harness_add_header(obj, "Date", date);
    return obj;
}

static char *auth(const char *key_id, const char *alg, const char *sig) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "Signature keyId=\"%s\",algorithm=\"%s\",signature=\"%s\"", key_id, alg, sig);
    return buf;
}

/* Dispatch and check an authenticated answer. */
static void expect_ok(const char *what, const char *hook, const char *authorization, const char *date, const char *key_id,
                      const char *secret) {
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(hook, authorization, date);
    int rc = harness_dispatch(obj, &res);
    CHECK(rc == 0, "%s: Dispatch returned %d", what, rc);
    if (res) {
        CHECK(harness_response_code(res) == -1, "%s: return_overrides untouched (%d %s)", what, harness_response_code(res),
              harness_response_error(res));
        CHECK(res->session != NULL, "%s: session set", what);
        if (res->session) {
            CHECK(res->session->hmac_enabled, "%s: hmac_enabled", what);
            CHECK(strcmp(res->session->hmac_secret, secret) == 0, "%s: hmac_secret", what);
            CHECK(res->session->last_updated && strlen(res->session->last_updated) >= 10 &&
                      strtoll(res->session->last_updated, NULL, 10) > 1700000000LL,
                  "%s: last_updated = %s", what, res->session->last_updated);
        }
        const char *token = harness_metadata(res, "token");
        CHECK(token && strcmp(token, key_id) == 0, "%s: metadata token = %s", what, token ? token : "(none)");
        coprocess__object__free_unpacked(res, NULL);
    }
    harness_object_free(obj);
}

/* Dispatch and check a rejection. */
static void expect_reject(const char *what, const char *hook, const char *authorization, const char *date, int code,
                          const char *message) {
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(hook, authorization, date);
    int rc = harness_dispatch(obj, &res);
    CHECK(rc == 0, "%s: a rejection is not a failure (rc %d)", what, rc);
    if (res) {
        CHECK(harness_response_code(res) == code, "%s: code %d, want %d", what, harness_response_code(res), code);
        CHECK(strcmp(harness_response_error(res), message) == 0, "%s: message \"%s\"", what, harness_response_error(res));
        CHECK(res->session == NULL && harness_metadata(res, "token") == NULL, "%s: no session, no token", what);
        coprocess__object__free_unpacked(res, NULL);
    }
    harness_object_free(obj);
}

static void test_signed_requests_pass(void) {
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++)
        expect_ok(VECTORS[i].alg, NAME, auth("k1", VECTORS[i].alg, VECTORS[i].sig), DATE, "k1", SECRET);

    /* The template's limits come through. */
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(NAME, auth("k1", "hmac-sha512", SHA512_SIG), DATE);
    CHECK(harness_dispatch(obj, &res) == 0, "template dispatch");
    CHECK(res && res->session && res->session->rate == 100.0 && res->session->per == 1.0 && res->session->quota_max == -1,
          "template limits");
    CHECK(res && res->session && res->session->n_tags == 1 && strcmp(res->session->tags[0], "hmac") == 0, "template tags");
    CHECK(res && res->session && res->session->n_access_rights == 1, "template access rights");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    /* Lower-case escapes and an unencoded signature are accepted too. */
    expect_ok("lower-case escapes", NAME,
              auth("k1", "hmac-sha512", "9kwBK%2fyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2bA%3d%3d"),
              DATE, "k1", SECRET);
    expect_ok("unencoded", NAME,
              auth("k1", "hmac-sha512", "9kwBK/yrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp+A=="),
              DATE, "k1", SECRET);
}

static void test_failures(void) {
    char buf[1024];
    expect_reject("no Authorization", NAME, NULL, DATE, 400, BAD_REQUEST);
    expect_reject("no Date", NAME, auth("k1", "hmac-sha512", SHA512_SIG), NULL, 400, BAD_REQUEST);
    expect_reject("not a Signature header", NAME, "Bearer k1", DATE, 400, BAD_REQUEST);
    snprintf(buf, sizeof buf, "Signature keyId=\"k1\",algorithm=\"hmac-sha512\"");
    expect_reject("missing signature field", NAME, buf, DATE, 400, BAD_REQUEST);
    snprintf(buf, sizeof buf, "%s,keyid=\"k1\"", auth("k1", "hmac-sha512", SHA512_SIG));
    expect_reject("duplicate parameter", NAME, buf, DATE, 400, BAD_REQUEST);
    snprintf(buf, sizeof buf, "%s,nonce=\"1\"", auth("k1", "hmac-sha512", SHA512_SIG));
    expect_reject("unknown parameter", NAME, buf, DATE, 400, BAD_REQUEST);
    snprintf(buf, sizeof buf, "Signature keyId=\"k1\",algorithm=\"hmac-sha512\",signature=\"%s", SHA512_SIG);
    expect_reject("unterminated quote", NAME, buf, DATE, 400, BAD_REQUEST);
    snprintf(buf, sizeof buf, "%s,headers=\"date x-not-sent\"", auth("k1", "hmac-sha512", SHA512_SIG));
    expect_reject("listed header missing", NAME, buf, DATE, 400, BAD_REQUEST);
    expect_reject("unsupported algorithm", NAME, auth("k1", "hmac-md5", SHA512_SIG), DATE, 400, UNSUPPORTED);
    expect_reject("disallowed algorithm", NAME ":sha512only", auth("k1", VECTORS[1].alg, VECTORS[1].sig), DATE, 400, UNSUPPORTED);
    expect_ok("allowed algorithm of the instance", NAME ":sha512only", auth("k1", "hmac-sha512", SHA512_SIG), DATE, "k1", SECRET);
    expect_reject("unknown key", NAME, auth("nobody", "hmac-sha512", SHA512_SIG), DATE, 401, NOT_AUTHORIZED);
    expect_reject("wrong signature", NAME, auth("k1", "hmac-sha384", SHA512_SIG), DATE, 401, NOT_AUTHORIZED);
    expect_reject("Date not the signed one", NAME, auth("k1", "hmac-sha512", SHA512_SIG), "Fri, 03 May 2024 12:00:43 GMT", 401,
                  NOT_AUTHORIZED);
    expect_reject("Date outside the skew window", NAME ":skew", auth("k1", "hmac-sha512", SHA512_SIG), DATE, 401, NOT_AUTHORIZED);
    expect_reject("unparsable Date with skew on", NAME ":skew", auth("k1", "hmac-sha512", SHA512_SIG), "soon", 401, NOT_AUTHORIZED);

    /* Hostile: a 64 KiB Authorization header. */
    size_t n = 65536;
    char *big = malloc(n + 1);
    memset(big, 'A', n);
    memcpy(big, "Signature keyId=\"", 17);
    big[n] = '\0';
    expect_reject("64 KiB unterminated header", NAME, big, DATE, 400, BAD_REQUEST);
    free(big);

    /* Wrong hook type is a registry mismatch (-3). */
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, NAME);
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_NOT_FOUND, "Pre hook refused");
    harness_object_free(obj);

    /* An unknown configuration key is -5. */
    obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, NAME);
    harness_add_spec(obj, "config_data", "{\"" NAME "\": {\"keys\": {\"k1\": \"" SECRET "\"}, \"clockskew\": 5}}");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_CONFIG, "unknown config key");
    CHECK(strstr(CoProcessLastError(), "clockskew") != NULL, "%s", CoProcessLastError());
    CHECK(strstr(CoProcessLastError(), SECRET) == NULL, "config error without the secret");
    harness_object_free(obj);
}

static void test_store_key(void) {
    int gets = harness_get_calls;
    expect_reject("store key not there yet", NAME, auth("from-store", "hmac-sha256", VECTORS[1].sig), DATE, 401, NOT_AUTHORIZED);
    CHECK(harness_get_calls == gets + 1, "TykGetData asked once (%d)", harness_get_calls - gets);
    harness_store_put("hmac-secret-from-store", SECRET, 0);
    expect_ok("key only in the host store", NAME, auth("from-store", "hmac-sha256", VECTORS[1].sig), DATE, "from-store", SECRET);
    CHECK(harness_get_calls == gets + 2, "TykGetData asked again (no cache by default)");
    /* A table key never reaches the store. */
    expect_ok("table key", NAME, auth("k1", "hmac-sha256", VECTORS[1].sig), DATE, "k1", SECRET);
    CHECK(harness_get_calls == gets + 2, "table keys do not call TykGetData");
    /* A rotated store secret applies at once. */
    harness_store_put("hmac-secret-from-store", "rotated", 0);
    expect_reject("rotated store secret", NAME, auth("from-store", "hmac-sha256", VECTORS[1].sig), DATE, 401, NOT_AUTHORIZED);
}

static void test_no_secret_in_logs(void) {
    for (int i = 0; i < harness_log_count; i++) {
        CHECK(strstr(harness_logs[i].msg, SECRET) == NULL, "log line %d leaks the secret", i);
        CHECK(strstr(harness_logs[i].msg, "9kwBK") == NULL, "log line %d leaks a signature", i);
    }
    CHECK(harness_log_count > 0, "refusals are logged (debug)");
}

int main(void) {
    unsetenv("COPROCESS_CONFIG");
    test_signed_requests_pass();
    test_failures();
    test_store_key();
    test_no_secret_in_logs();
    harness_reset();
    return harness_summary();
}
