/* ReqHubMerchant in local mode through the C ABI, with the harness's host store (TykGetData /
 * TykStoreData with TTL): a valid request, every denial local mode produces, a replayed
 * nonce (this node and another node), a stale timestamp, CustomKeyCheck's session.
 *
 * The client tokens are fixed vectors computed independently of the library:
 *   python3 -c "import hmac,hashlib,base64; n=base64.b64encode(bytes([I])*20).decode();
 *     print(n, base64.b64encode(hmac.new(('client-priv-A'+'1700000000000'+n+'/v1/items?id=7').encode(),
 *     b'client-pub-A', hashlib.sha256).digest()).decode())"     for I = 1, 2, 3, 4
 * Their timestamp (2023-11-14) is fixed, so the main section accepts a 50-year window; the
 * ":fresh" section keeps the default 5 minutes and finds the same timestamp stale. Last, remote
 * mode with an unreachable verifier: 503 and the event through TykTriggerEvent. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TS "1700000000000"
#define URI "/v1/items?id=7"
#define N1 "AQEBAQEBAQEBAQEBAQEBAQEBAQE="
#define T1 "LEmcXvjdxspKah4vJdfWMMxsQhJH0UyyWL382pkYgJE="
#define N2 "AgICAgICAgICAgICAgICAgICAgI="
#define T2 "QEaU+yDpx0d8vYcrT9Au5YiCFW6bDCqYXRvGNLvQ360="
#define N3 "AwMDAwMDAwMDAwMDAwMDAwMDAwM="
#define T3 "3swF+DVLG0k8UVY9b18ItPGGhuQ/8dweX0Sy2g5XjJk="
#define N4 "BAQEBAQEBAQEBAQEBAQEBAQEBAQ="
#define T4 "/lYP1O+2/XDPzhomuoK6UICoUE8V9Ee/Mw3I9gi3n3c="

static const char *CONFIG =
    "{\"ReqHubMerchant\": {\"mode\": \"local\", \"api\": \"prod-1\", \"window_ms\": 1577880000000,"
    "  \"clients\": {\"client-pub-A\": {\"private_key\": \"client-priv-A\", \"api\": \"prod-1\"},"
    "               \"client-pub-B\": {\"private_key\": \"client-priv-B\", \"api\": \"prod-2\"}},"
    "  \"session\": {\"rate\": 50, \"per\": 1, \"quota_max\": -1, \"tags\": [\"reqhub\"]}},"
    " \"ReqHubMerchant:fresh\": {\"mode\": \"local\", \"api\": \"prod-1\","
    "  \"clients\": {\"client-pub-A\": {\"private_key\": \"client-priv-A\", \"api\": \"prod-1\"}}},"
    " \"ReqHubMerchant:broken\": {\"mode\": \"local\"}}";

struct client_headers { const char *token, *key, *ts, *nonce, *url; };

static Coprocess__Object *request(Coprocess__HookType type, const char *hook, struct client_headers h) {
    Coprocess__Object *obj = harness_object(type, hook);
    harness_set_method_url(obj, "GET", URI, URI);
    harness_add_spec(obj, "config_data", CONFIG);
    if (h.token) harness_add_header(obj, "ClientToken", h.token);
    if (h.key) harness_add_header(obj, "ClientKey", h.key);
    if (h.ts) harness_add_header(obj, "ClientTimestamp", h.ts);
    if (h.nonce) harness_add_header(obj, "ClientNonce", h.nonce);
    if (h.url) harness_add_header(obj, "ClientUrl", h.url);
    return obj;
}

/* Dispatch and check a 403 denial with the given code; returns 1 when it matched. */
static int expect_denied(Coprocess__HookType type, const char *hook, struct client_headers h, const char *code, const char *what) {
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(type, hook, h);
    int rc = harness_dispatch(obj, &res);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s: ", code);
    const char *body = res ? harness_response_error(res) : NULL;
    int ok = rc == 0 && res && harness_response_code(res) == 403 && body && strncmp(body, prefix, strlen(prefix)) == 0;
    CHECK(ok, "%s: rc %d, code %d, body %s", what, rc, res ? harness_response_code(res) : 0, body ? body : "(none)");
    if (res) {
        CHECK(res->session == NULL && harness_metadata(res, "token") == NULL, "%s: no session on denial", what);
        coprocess__object__free_unpacked(res, NULL);
    }
    harness_object_free(obj);
    return ok;
}

static void test_pass_and_replay(void) {
    struct client_headers h1 = { T1, "client-pub-A", TS, N1, URI };
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant", h1);
    CHECK(harness_dispatch(obj, &res) == 0, "valid request dispatches");
    CHECK(res && harness_response_code(res) == -1, "valid request passes (code %d: %s)", res ? harness_response_code(res) : 0,
          res ? harness_response_error(res) : "");
    const char *meta = res ? harness_metadata(res, "reqhub") : NULL;
    CHECK(meta && strstr(meta, "\"client_key\":\"client-pub-A\"") != NULL, "metadata reqhub: %s", meta ? meta : "(none)");
    const char *stored = harness_store_get("reqhub-nonce-client-pub-A:" N1);
    CHECK(stored && strcmp(stored, TS) == 0, "nonce stored through CoProcessStoreDataIfAbsent under prefix + key + ':' + nonce");
    CHECK(harness_if_absent_calls == 1 && harness_store_calls == 0 && harness_get_calls == 0,
          "one atomic store-if-absent, no get or plain store (%d, %d, %d)", harness_if_absent_calls, harness_get_calls,
          harness_store_calls);
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    expect_denied(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant", h1, "merchant_signature_invalid", "replayed nonce");
    CHECK(harness_if_absent_calls == 2 && harness_store_calls == 0 && strcmp(harness_store_get("reqhub-nonce-client-pub-A:" N1), TS) == 0,
          "a replay is decided by one store-if-absent that writes nothing");

    /* Another gateway node already recorded N2 in the shared store. */
    harness_store_put("reqhub-nonce-client-pub-A:" N2, TS, 300);
    struct client_headers h2 = { T2, "client-pub-A", TS, N2, URI };
    expect_denied(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant", h2, "merchant_signature_invalid", "nonce seen by another node");
}

static void test_stale(void) {
    struct client_headers h3 = { T3, "client-pub-A", TS, N3, URI };
    int before = harness_if_absent_calls;
    expect_denied(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant:fresh", h3, "merchant_signature_invalid", "stale timestamp (5 min window)");
    CHECK(harness_if_absent_calls == before && harness_store_get("reqhub-nonce-client-pub-A:" N3) == NULL, "stale request stores nothing");
}

/* The store does not answer: the request is refused (503) and its nonce is not recorded, so
 * the same request passes once the store is back (test_custom_key_check sends it next). */
static void test_store_down(void) {
    struct client_headers h4 = { T4, "client-pub-A", TS, N4, URI };
    harness_store_down = 1;
    int events = harness_event_count;
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant", h4);
    CHECK(harness_dispatch(obj, &res) == 0, "dispatch during a store outage");
    const char *body = res ? harness_response_error(res) : NULL;
    CHECK(res && harness_response_code(res) == 503 && body && strncmp(body, "verification_unavailable: ", 26) == 0,
          "store outage: 503 verification_unavailable (%s)", body ? body : "(none)");
    CHECK(harness_event_count == events + 1 && strcmp(harness_events[events].name, "ReqHubVerificationUnavailable") == 0 &&
              strstr(harness_events[events].payload, "\"mode\":\"local\"") != NULL,
          "outage event fired");
    CHECK(harness_store_get("reqhub-nonce-client-pub-A:" N4) == NULL, "nothing stored during the outage");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);
    harness_store_down = 0;
}

static void test_custom_key_check(void) {
    struct client_headers h4 = { T4, "client-pub-A", TS, N4, URI };
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(COPROCESS__HOOK_TYPE__CustomKeyCheck, "ReqHubMerchant", h4);
    CHECK(harness_dispatch(obj, &res) == 0, "CustomKeyCheck dispatches");
    CHECK(res && harness_response_code(res) == -1, "CustomKeyCheck passes");
    CHECK(res && res->session && res->session->rate == 50 && res->session->quota_max == -1 && res->session->n_tags == 1,
          "session from the template");
    const char *token = res ? harness_metadata(res, "token") : NULL;
    CHECK(token && strcmp(token, "client-pub-A") == 0, "metadata token = ClientKey");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);
}

static void test_denials(void) {
    Coprocess__HookType ckc = COPROCESS__HOOK_TYPE__CustomKeyCheck, pre = COPROCESS__HOOK_TYPE__Pre;
    struct client_headers no_nonce = { T1, "client-pub-A", TS, NULL, URI };
    expect_denied(pre, "ReqHubMerchant", no_nonce, "headers_missing", "ClientNonce missing");
    struct client_headers none = { NULL, NULL, NULL, NULL, NULL };
    expect_denied(ckc, "ReqHubMerchant", none, "headers_missing", "no ReqHub headers");
    struct client_headers other_url = { T1, "client-pub-A", TS, N1, "/v1/items" };
    expect_denied(pre, "ReqHubMerchant", other_url, "url_mismatch", "ClientUrl differs from request_uri");
    struct client_headers unknown = { T1, "client-pub-Z", TS, N1, URI };
    expect_denied(ckc, "ReqHubMerchant", unknown, "client_not_found", "unknown client");
    struct client_headers product = { T1, "client-pub-B", TS, N1, URI };
    expect_denied(pre, "ReqHubMerchant", product, "product_mismatch", "client of another API");
    struct client_headers forged = { "LEmcXvjdxspKah4vJdfWMMxsQhJH0UyyWL382pkYgJF=", "client-pub-A", TS, N3, URI };
    expect_denied(ckc, "ReqHubMerchant", forged, "client_signature_invalid", "altered token");
    struct client_headers swapped = { T1, "client-pub-A", TS, N3, URI };
    expect_denied(pre, "ReqHubMerchant", swapped, "client_signature_invalid", "token of another nonce");
    struct client_headers bad_ts = { T1, "client-pub-A", "17000000000", N1, URI };
    expect_denied(pre, "ReqHubMerchant", bad_ts, "merchant_signature_invalid", "malformed timestamp");
    struct client_headers bad_nonce = { T1, "client-pub-A", TS, "short", URI };
    expect_denied(pre, "ReqHubMerchant", bad_nonce, "merchant_signature_invalid", "malformed nonce");
}

static void test_errors(void) {
    struct client_headers h = { T1, "client-pub-A", TS, N1, URI };
    Coprocess__Object *res = NULL;
    Coprocess__Object *obj = request(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant:broken", h);
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_CONFIG, "local mode without api is -5");
    CHECK(strstr(CoProcessLastError(), "api") != NULL, "%s", CoProcessLastError());
    harness_object_free(obj);
    obj = request(COPROCESS__HOOK_TYPE__Post, "ReqHubMerchant", h);
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_NOT_FOUND, "Post hook is not served");
    harness_object_free(obj);
}

/* A loopback port nobody listens on: bind an ephemeral port, then close it. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Remote mode whose verifier is unreachable: 503 and the ReqHubVerificationUnavailable event
 * through the host's TykTriggerEvent. */
static void test_remote_unavailable(void) {
    int port = closed_port();
    CHECK(port > 0, "ephemeral port");
    char config[512];
    snprintf(config, sizeof config,
             "{\"ReqHubMerchant\": {\"public_key\": \"merchant-pub\", \"private_key\": \"merchant-priv\","
             " \"verify_url\": \"http://127.0.0.1:%d/req\", \"timeout_ms\": 2000}}", port);
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "ReqHubMerchant");
    harness_set_method_url(obj, "GET", URI, URI);
    harness_add_spec(obj, "config_data", config);
    harness_add_header(obj, "ClientToken", T1);
    harness_add_header(obj, "ClientKey", "client-pub-A");
    harness_add_header(obj, "ClientTimestamp", TS);
    harness_add_header(obj, "ClientNonce", N1);
    harness_add_header(obj, "ClientUrl", URI);
    int events = harness_event_count;
    Coprocess__Object *res = NULL;
    CHECK(harness_dispatch(obj, &res) == 0, "remote dispatch");
    const char *body = res ? harness_response_error(res) : NULL;
    CHECK(res && harness_response_code(res) == 503 && body && strncmp(body, "verification_unavailable: ", 26) == 0,
          "503 verification_unavailable: %s", body ? body : "(none)");
    CHECK(harness_event_count == events + 1 && strcmp(harness_events[events].name, "ReqHubVerificationUnavailable") == 0,
          "event fired through TykTriggerEvent");
    CHECK(harness_event_count == events + 1 && strstr(harness_events[events].payload, "\"api_id\":\"api-1\"") != NULL &&
              strstr(harness_events[events].payload, "merchant-priv") == NULL,
          "event payload: %s", harness_event_count > events ? harness_events[events].payload : "");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);
}

int main(void) {
    unsetenv("COPROCESS_CONFIG");
    harness_reset();
    test_pass_and_replay();
    test_stale();
    test_store_down();
    test_custom_key_check();
    test_denials();
    test_errors();
    test_remote_unavailable();
    harness_reset();
    return harness_summary();
}
