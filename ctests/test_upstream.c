/* UpstreamRequestSigning through the C ABI: Date added or kept, header list rules, the output
 * header format, refusals and configuration errors. Every signature produced here is written
 * to a case file and checked at the end by tests/verify_cavage.py, an independent
 * draft-cavage-http-signatures-10 verifier (Python hmac for HMAC, the openssl CLI for RSA).
 * Runs from the repository root (as `make ctest` does). */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NAME "UpstreamRequestSigning"
#define DATE "Fri, 03 May 2024 12:00:42 GMT"
#define SECRET "test-secret"
#define PUBKEY "tests/data/test_rsa2048_pub.pem"
static const char *CASES_PATH = "build/ctest-upstream-cases.json";

/* ---- a growing string ---- */
struct buf { char *p; size_t len, cap; };

static void buf_put(struct buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void buf_str(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* s as a JSON string literal. */
static void buf_json(struct buf *b, const char *s) {
    buf_str(b, "\"");
    for (; *s; s++) {
        char esc[8];
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; buf_put(b, esc, 2); }
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); buf_str(b, esc); }
        else buf_put(b, (const char *)&c, 1);
    }
    buf_str(b, "\"");
}

static struct buf cases;
static int case_count;

/* ---- helpers ---- */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct buf b = { NULL, 0, 0 };
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&b, chunk, n);
    fclose(f);
    return b.p;
}

/* config_data {"<hook>": <section>} for a section given as JSON text. */
static void set_config(Coprocess__Object *obj, const char *hook, const char *section) {
    struct buf b = { NULL, 0, 0 };
    buf_str(&b, "{");
    buf_json(&b, hook);
    buf_str(&b, ": ");
    buf_str(&b, section);
    buf_str(&b, "}");
    harness_add_spec(obj, "config_data", b.p);
    free(b.p);
}

/* The value of a parameter of a signature header (param="value"), copied into out. */
static int sig_param(const char *header, const char *param, char *out, size_t cap) {
    char key[64];
    snprintf(key, sizeof key, "%s=\"", param);
    const char *p = strstr(header, key);
    if (!p) return 0;
    p += strlen(key);
    const char *end = strchr(p, '"');
    if (!end || (size_t)(end - p) >= cap) return 0;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = 0;
    return 1;
}

/* Record a verification case for the answer `res`: the upstream headers are the request's with
 * set_headers applied case-insensitively (as Go's Header.Set does). `key` is a JSON fragment
 * such as "\"secret\": \"...\"". With `tamper`, also a copy with another Date that must fail. */
static void add_case(const char *name, const Coprocess__Object *res, const char *path, const char *sig_header,
                     const char *key, int tamper) {
    if (!res || !res->request) return;
    for (int variant = 0; variant <= tamper; variant++) {
        struct buf *b = &cases;
        buf_str(b, case_count++ ? ",\n" : "\n");
        buf_str(b, "{\"name\": ");
        char label[256];
        snprintf(label, sizeof label, "c/%s%s", name, variant ? "/tampered-date" : "");
        buf_json(b, label);
        buf_str(b, ", \"method\": ");
        buf_json(b, res->request->method);
        buf_str(b, ", \"path\": ");
        buf_json(b, path);
        buf_str(b, ", \"signature_header\": ");
        buf_json(b, sig_header);
        buf_str(b, ", ");
        buf_str(b, key);
        if (variant) buf_str(b, ", \"expect_valid\": false");
        buf_str(b, ", \"headers\": {");
        int first = 1;
        const Coprocess__MiniRequestObject *r = res->request;
        for (size_t i = 0; i < r->n_headers; i++) {
            int replaced = 0;
            for (size_t j = 0; j < r->n_set_headers; j++)
                if (strcasecmp(r->set_headers[j]->key, r->headers[i]->key) == 0) replaced = 1;
            if (replaced) continue;
            if (!first) buf_str(b, ", ");
            first = 0;
            buf_json(b, r->headers[i]->key);
            buf_str(b, ": ");
            buf_json(b, variant && strcasecmp(r->headers[i]->key, "date") == 0 ? "Sat, 04 May 2024 12:00:42 GMT" : r->headers[i]->value);
        }
        for (size_t j = 0; j < r->n_set_headers; j++) {
            if (!first) buf_str(b, ", ");
            first = 0;
            buf_json(b, r->set_headers[j]->key);
            buf_str(b, ": ");
            buf_json(b, variant && strcasecmp(r->set_headers[j]->key, "date") == 0 ? "Sat, 04 May 2024 12:00:42 GMT" : r->set_headers[j]->value);
        }
        buf_str(b, "}}");
    }
}

static const char *HMAC_KEY = "\"secret\": \"" SECRET "\"";
static const char *HMAC_KEY_PLAIN = "\"secret\": \"" SECRET "\", \"plain\": true";
static const char *RSA_KEY = "\"public_key\": \"" PUBKEY "\"";

/* Dispatch a fresh Object for `hook` with config section `section` (JSON text) and headers
 * (name, value pairs, NULL-terminated). */
static int run(Coprocess__HookType type, const char *hook, const char *method, const char *url, const char *section,
               const char **headers, Coprocess__Object **res) {
    Coprocess__Object *obj = harness_object(type, hook);
    harness_set_method_url(obj, method, url, "/as/the/client/sent/it");
    for (int i = 0; headers && headers[i]; i += 2) harness_add_header(obj, headers[i], headers[i + 1]);
    if (section) set_config(obj, hook, section);
    int rc = harness_dispatch(obj, res);
    harness_object_free(obj);
    return rc;
}

static void release(Coprocess__Object *res) {
    if (res) coprocess__object__free_unpacked(res, NULL);
}

/* ---- tests ---- */

static void test_known_answer_and_format(void) {
    /* Signing string "(request-target): get /foo?a=1\ndate: Fri, 03 May 2024 12:00:42 GMT", key
     * "test-secret", hmac-sha256; computed with
     *   python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b'test-secret',
     *     b'(request-target): get /foo?a=1\ndate: Fri, 03 May 2024 12:00:42 GMT', hashlib.sha256).digest()).decode())"
     * = BztjhKGahyaVRYAo76aRpG5P2lDMraAc3kGp0kZCMYQ= (URL-query-escaped below). */
    const char *h[] = { "Date", DATE, "X-Other", "1", NULL };
    Coprocess__Object *res;
    int rc = run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/foo?a=1",
                 "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"key-1\", \"secret\": \"" SECRET "\","
                 " \"headers\": [\"(request-target)\", \"Date\"]}", h, &res);
    CHECK(rc == 0, "dispatch");
    const char *auth = harness_set_header(res, "Authorization");
    CHECK(auth && strcmp(auth, "Signature keyId=\"key-1\",algorithm=\"hmac-sha256\",headers=\"(request-target) date\","
                               "signature=\"BztjhKGahyaVRYAo76aRpG5P2lDMraAc3kGp0kZCMYQ%3D\"") == 0,
          "exact header: %s", auth ? auth : "(none)");
    CHECK(harness_set_header(res, "Date") == NULL, "a present Date is kept");
    CHECK(harness_response_code(res) == -1, "not rejected");
    add_case("kat", res, "/foo?a=1", "Authorization", HMAC_KEY, 1);
    release(res);

    /* plainSignature, a custom signature header, PostKeyAuth. */
    rc = run(COPROCESS__HOOK_TYPE__PostKeyAuth, NAME, "GET", "/foo?a=1",
             "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"key-1\", \"secret\": \"" SECRET "\", \"plainSignature\": true,"
             " \"signatureHeader\": \"Signature\", \"headers\": [\"(request-target)\", \"date\"]}", h, &res);
    CHECK(rc == 0, "dispatch");
    const char *sig = harness_set_header(res, "Signature");
    CHECK(sig && strstr(sig, "signature=\"BztjhKGahyaVRYAo76aRpG5P2lDMraAc3kGp0kZCMYQ=\"") != NULL, "plain base64: %s", sig ? sig : "");
    CHECK(harness_set_header(res, "Authorization") == NULL, "Authorization untouched");
    add_case("plain", res, "/foo?a=1", "Signature", HMAC_KEY_PLAIN, 1);
    release(res);
}

/* Whether `date` is what libc's strftime gives for a second within 5 s of now. */
static int is_now_rfc1123(const char *date) {
    time_t now = time(NULL);
    for (time_t t = now - 5; t <= now + 5; t++) {
        char want[64];
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (strcmp(want, date) == 0) return 1;
    }
    return 0;
}

static void test_date(void) {
    Coprocess__Object *res;
    const char *cfg = "{\"algorithm\": \"hmac-sha1\", \"keyId\": \"k\", \"secret\": \"" SECRET "\"}";
    const char *none[] = { "X-A", "1", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/d", cfg, none, &res) == 0, "dispatch");
    const char *date = harness_set_header(res, "Date");
    CHECK(date && is_now_rfc1123(date), "Date added, RFC 1123 GMT, now: %s", date ? date : "(none)");
    char list[256] = "";
    const char *auth = harness_set_header(res, "Authorization");
    CHECK(auth && sig_param(auth, "headers", list, sizeof list) && strcmp(list, "(request-target) date x-a") == 0, "list %s", list);
    add_case("date-added", res, "/d", "Authorization", HMAC_KEY, 1);
    release(res);

    const char *empty[] = { "date", "", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Pre, NAME, "GET", "/d", cfg, empty, &res) == 0, "dispatch");
    date = harness_set_header(res, "Date");
    CHECK(date && is_now_rfc1123(date), "an empty Date is replaced");
    add_case("date-empty", res, "/d", "Authorization", HMAC_KEY, 1);
    release(res);

    const char *lower[] = { "date", DATE, NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/d", cfg, lower, &res) == 0, "dispatch");
    CHECK(harness_set_header(res, "Date") == NULL, "date (any case) kept");
    add_case("date-kept", res, "/d", "Authorization", HMAC_KEY, 1);
    release(res);
}

static void test_header_lists(void) {
    Coprocess__Object *res;
    char list[256];
    /* Default: (request-target), then every header lower-cased and sorted, minus the signature header. */
    const char *h[] = { "Zeta", "z", "alpha", "a", "Authorization", "Basic old", "Content-Type", "text/plain", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "POST", "/items?x=1",
              "{\"algorithm\": \"hmac-sha512\", \"keyId\": \"k\", \"secret\": \"" SECRET "\"}", h, &res) == 0, "dispatch");
    const char *auth = harness_set_header(res, "Authorization");
    CHECK(auth && sig_param(auth, "headers", list, sizeof list) && strcmp(list, "(request-target) alpha content-type date zeta") == 0,
          "default list: %s", list);
    add_case("default-list", res, "/items?x=1", "Authorization", HMAC_KEY, 1);
    release(res);

    /* Configured: those present, in order. */
    const char *cfg = "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"k\", \"secret\": \"" SECRET "\","
                      " \"headers\": [\"X-B\", \"(request-target)\", \"X-Missing\", \"x-a\"]}";
    const char *h2[] = { "x-a", "1", "X-B", "2", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/c", cfg, h2, &res) == 0, "dispatch");
    auth = harness_set_header(res, "Authorization");
    CHECK(auth && sig_param(auth, "headers", list, sizeof list) && strcmp(list, "x-b (request-target) x-a") == 0, "configured: %s", list);
    add_case("configured-list", res, "/c", "Authorization", HMAC_KEY, 0);
    release(res);

    /* Configured, none present: (request-target) date. */
    const char *h3[] = { "X-Other", "1", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/n",
              "{\"algorithm\": \"hmac-sha384\", \"keyId\": \"k\", \"secret\": \"" SECRET "\", \"headers\": [\"X-None\"]}", h3, &res) == 0,
          "dispatch");
    auth = harness_set_header(res, "Authorization");
    CHECK(auth && sig_param(auth, "headers", list, sizeof list) && strcmp(list, "(request-target) date") == 0, "fallback: %s", list);
    const char *head = "Signature keyId=\"k\",algorithm=\"hmac-sha384\",headers=\"(request-target) date\",signature=\"";
    CHECK(auth && strncmp(auth, head, strlen(head)) == 0 && auth[strlen(auth) - 1] == '"', "format: %s", auth ? auth : "");
    add_case("none-present", res, "/n", "Authorization", HMAC_KEY, 1);
    release(res);
}

static void test_rsa(void) {
    Coprocess__Object *res;
    char *pem = read_file("tests/data/test_rsa2048_pkcs8.pem");
    CHECK(pem != NULL, "read the test key");
    if (!pem) return;
    struct buf cfg = { NULL, 0, 0 };
    buf_str(&cfg, "{\"algorithm\": \"rsa-sha256\", \"keyId\": \"rsa-1\", \"privateKey\": ");
    buf_json(&cfg, pem);
    buf_str(&cfg, "}");
    const char *h[] = { "Date", DATE, "X-Id", "7", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "PUT", "/r?x=1", cfg.p, h, &res) == 0, "dispatch");
    const char *auth = harness_set_header(res, "Authorization");
    char sig[1024] = "";
    const char *head = "Signature keyId=\"rsa-1\",algorithm=\"rsa-sha256\",headers=\"(request-target) date x-id\",signature=\"";
    CHECK(auth && strncmp(auth, head, strlen(head)) == 0,
          "format: %s", auth ? auth : "");
    CHECK(auth && sig_param(auth, "signature", sig, sizeof sig) && strlen(sig) == 344 && strchr(sig, '%') == NULL,
          "plain base64 of 256 bytes: %s", sig);
    add_case("rsa-inline", res, "/r?x=1", "Authorization", RSA_KEY, 1);
    release(res);
    free(cfg.p);

    /* From the host store, a certificate before the key; absent first (500, not remembered). */
    const char *store_cfg = "{\"algorithm\": \"rsa-sha256\", \"keyId\": \"rsa-2\", \"certificateId\": \"cert-xyz\"}";
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/s", store_cfg, h, &res) == 0, "dispatch");
    CHECK(harness_response_code(res) == 500 && strcmp(harness_response_error(res), "Certificate not found") == 0, "absent: %d %s",
          harness_response_code(res), harness_response_error(res));
    CHECK(res && res->request->n_set_headers == 0, "nothing set");
    release(res);
    char *cert = read_file("tests/data/test_cert.pem");
    char *pkcs1 = read_file("tests/data/test_rsa2048_pkcs1.pem");
    struct buf both = { NULL, 0, 0 };
    buf_str(&both, cert ? cert : "");
    buf_str(&both, pkcs1 ? pkcs1 : "");
    harness_store_put("cert-xyz", both.p, 0);
    int gets = harness_get_calls;
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/s", store_cfg, h, &res) == 0, "dispatch");
    CHECK(harness_get_calls == gets + 1, "fetched through TykGetData");
    CHECK(harness_response_code(res) == -1 && harness_set_header(res, "Authorization") != NULL, "signed with the stored key");
    add_case("rsa-store", res, "/s", "Authorization", RSA_KEY, 1);
    release(res);
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/s", store_cfg, h, &res) == 0, "dispatch");
    CHECK(harness_get_calls == gets + 1, "kept: no second TykGetData");
    add_case("rsa-store-cached", res, "/s", "Authorization", RSA_KEY, 0);
    release(res);
    free(both.p);
    free(cert);
    free(pkcs1);
    free(pem);
}

static void test_refusals_and_config_errors(void) {
    Coprocess__Object *res;
    struct { const char *cfg; const char *msg; } refusals[] = {
        { "{}", "Fields required for signing the request are missing" },
        { "{\"algorithm\": \"hmac-sha256\", \"secret\": \"" SECRET "\"}", "Fields required for signing the request are missing" },
        { "{\"keyId\": \"k\", \"algorithm\": \"hmac-sha256\"}", "Fields required for signing the request are missing" },
        { "{\"keyId\": \"k\", \"algorithm\": \"rsa-sha256\"}", "Fields required for signing the request are missing" },
        { "{\"keyId\": \"k\", \"algorithm\": \"hmac-md5\", \"secret\": \"x\"}", "Request signing algorithm is not supported" },
        { "{\"keyId\": \"k\", \"algorithm\": \"rsa-sha256\", \"privateKey\": \"-----BEGIN RSA PRIVATE KEY-----\\nTUlJQm9vcHM=\\n-----END RSA PRIVATE KEY-----\"}",
          "Request signing key cannot be used: " },
    };
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/", refusals[i].cfg, NULL, &res) == 0, "a refusal is not a failure (%zu)", i);
        CHECK(harness_response_code(res) == 500, "500 (%zu)", i);
        CHECK(strncmp(harness_response_error(res), refusals[i].msg, strlen(refusals[i].msg)) == 0, "message %s", harness_response_error(res));
        CHECK(strstr(harness_response_error(res), "TUlJ") == NULL, "no key material");
        CHECK(res && res->request->n_set_headers == 0, "no Date, no signature (%zu)", i);
        release(res);
    }
    CHECK(!harness_logged("TUlJ") && !harness_logged(SECRET), "no key material or secret in logs");

    const char *bad[] = {
        "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"k\", \"secret\": \"" SECRET "\", \"enabled\": true}",
        "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"k\\\"\", \"secret\": \"" SECRET "\"}",
        "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"k\", \"secret\": \"" SECRET "\", \"headers\": [\"a b\"]}",
        "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"k\", \"secret\": \"" SECRET "\", \"signatureHeader\": \"X Sig\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/", bad[i], NULL, &res) == COPROCESS_ERR_CONFIG, "config error %zu", i);
        CHECK(strstr(CoProcessLastError(), SECRET) == NULL, "no secret in %s", CoProcessLastError());
    }
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/", bad[0], NULL, &res) == COPROCESS_ERR_CONFIG &&
              strstr(CoProcessLastError(), "unknown field") != NULL,
          "unknown key named: %s", CoProcessLastError());
    CHECK(run(COPROCESS__HOOK_TYPE__CustomKeyCheck, NAME, "GET", "/", "{}", NULL, &res) == COPROCESS_ERR_NOT_FOUND,
          "not a CustomKeyCheck middleware");
    /* A hostile header value cannot smuggle a line into the signing string. */
    const char *h[] = { "X-Bad", "a\nx-admin: true", NULL };
    CHECK(run(COPROCESS__HOOK_TYPE__Post, NAME, "GET", "/", "{\"algorithm\": \"hmac-sha256\", \"keyId\": \"k\", \"secret\": \"s\"}", h,
              &res) == 0,
          "dispatch");
    CHECK(harness_response_code(res) == 400 && harness_set_header(res, "Authorization") == NULL, "refused: %d", harness_response_code(res));
    release(res);
}

static void verify_all(void) {
    buf_str(&cases, "\n]}\n");
    CHECK(harness_write_file(CASES_PATH, cases.p) == 0, "write %s", CASES_PATH);
    fflush(stdout);
    int status = system("python3 tests/verify_cavage.py build/ctest-upstream-cases.json");
    CHECK(status == 0, "independent verifier accepts every signature and refuses every tampered copy (status %d)", status);
    free(cases.p);
}

int main(void) {
    buf_str(&cases, "{\"cases\": [");
    test_known_answer_and_format();
    test_date();
    test_header_lists();
    test_rsa();
    test_refusals_and_config_errors();
    CHECK(case_count >= 20, "cases recorded: %d", case_count);
    verify_all();
    harness_reset();
    return harness_summary();
}
