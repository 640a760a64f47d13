/* The C ABI end to end: error codes, built-in middleware, configuration, events, Reload. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CONFIG_PATH = "build/ctest-core-config.json";

static const char *GLOBAL_V1 =
    "{\"InjectHeaders\": {\"add\": {\"X-Global\": \"v1\"}},"
    " \"RelayEvent\": {\"event_name\": \"Relayed\"},"
    " \"LogEvent\": {\"level\": \"warning\"}}";
static const char *GLOBAL_V2 =
    "{\"InjectHeaders\": {\"add\": {\"X-Global\": \"v2\"}},"
    " \"RelayEvent\": {\"event_name\": \"Relayed\"},"
    " \"LogEvent\": {\"level\": \"warning\"}}";

static void test_abi_version(void) {
    CHECK(strcmp(CoProcessAbiVersion(), "coprocess-abi/1") == 0, "abi %s", CoProcessAbiVersion());
}

static void test_null_and_negative(void) {
    struct CoProcessMessage out = { (void *)1, 5 };
    char byte = 0;
    CHECK(Dispatch(NULL, &out) == COPROCESS_ERR_NULL, "NULL object");
    CHECK(out.p_data == NULL && out.length == 0, "new_object reset on failure");
    CHECK(strstr(CoProcessLastError(), "null") != NULL, "message names the null pointer: %s", CoProcessLastError());
    struct CoProcessMessage in = { &byte, 1 };
    CHECK(Dispatch(&in, NULL) == COPROCESS_ERR_NULL, "NULL new_object");
    struct CoProcessMessage nulldata = { NULL, 10 };
    CHECK(Dispatch(&nulldata, &out) == COPROCESS_ERR_NULL, "NULL p_data with a length");
    struct CoProcessMessage neg = { &byte, -4 };
    CHECK(Dispatch(&neg, &out) == COPROCESS_ERR_NULL, "negative length");
    CHECK(strstr(CoProcessLastError(), "negative") != NULL, "message: %s", CoProcessLastError());
    CHECK(DispatchEvent(NULL) == COPROCESS_ERR_NULL, "NULL event");
    struct CoProcessMessage negev = { &byte, -1 };
    CHECK(DispatchEvent(&negev) == COPROCESS_ERR_NULL, "negative event length");
    CoProcessFree(NULL);
}

static void test_invalid_bytes(void) {
    const unsigned char garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
    CHECK(harness_dispatch_bytes(garbage, sizeof garbage) == COPROCESS_ERR_INVALID, "garbage");
    CHECK(strstr(CoProcessLastError(), "not a valid coprocess.Object") != NULL, "%s", CoProcessLastError());

    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
    size_t len = coprocess__object__get_packed_size(obj);
    uint8_t *buf = malloc(len);
    coprocess__object__pack(obj, buf);
    CHECK(harness_dispatch_bytes(buf, (int)len - 3) == COPROCESS_ERR_INVALID, "truncated Object");
    CHECK(harness_dispatch_bytes(buf, (int)len) == 0, "whole Object");
    free(buf);
    harness_object_free(obj);

    CHECK(harness_dispatch_event("{\"message\": ") == COPROCESS_ERR_INVALID, "broken event JSON");
    CHECK(harness_dispatch_event("[1,2]") == COPROCESS_ERR_INVALID, "event JSON of the wrong shape");
    struct CoProcessMessage bad_utf8 = { "\xff\xfe", 2 };
    CHECK(DispatchEvent(&bad_utf8) == COPROCESS_ERR_INVALID, "event bytes not UTF-8");
}

static void test_not_found(void) {
    char empty = 0;
    struct CoProcessMessage in = { &empty, 0 };
    struct CoProcessMessage out = { NULL, 0 };
    CHECK(Dispatch(&in, &out) == COPROCESS_ERR_NOT_FOUND, "empty Object has no hook name");
    CHECK(strstr(CoProcessLastError(), "hook_name") != NULL, "%s", CoProcessLastError());

    Coprocess__Object *res;
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "NoSuchMiddleware");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_NOT_FOUND, "unknown hook name");
    CHECK(strstr(CoProcessLastError(), "NoSuchMiddleware") != NULL, "%s", CoProcessLastError());
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "StaticTokenAuth");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_NOT_FOUND, "StaticTokenAuth serves CustomKeyCheck only");
    CHECK(strstr(CoProcessLastError(), "Pre") != NULL, "%s", CoProcessLastError());
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__Unknown, "InjectHeaders");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_NOT_FOUND, "hook type Unknown");
    harness_object_free(obj);

    CHECK(harness_dispatch_event("{\"message\":{\"Type\":\"X\"},\"handler_name\":\"Nope\"}") == COPROCESS_ERR_NOT_FOUND,
          "unknown event handler");
}

static void test_config_errors(void) {
    Coprocess__Object *res;
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
    harness_add_spec(obj, "config_data", "{\"InjectHeaders\": {\"add\": ");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_CONFIG, "broken config_data");
    CHECK(strstr(CoProcessLastError(), "config_data") != NULL, "%s", CoProcessLastError());
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
    harness_add_spec(obj, "config_data", "{\"InjectHeaders\": {\"ad\": {}}}");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_CONFIG, "unknown key in a section");
    CHECK(strstr(CoProcessLastError(), "unknown field") != NULL, "%s", CoProcessLastError());
    harness_object_free(obj);
}

static void test_inject_headers(void) {
    Coprocess__Object *res;
    /* Global section. */
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Post, "InjectHeaders");
    CHECK(harness_dispatch(obj, &res) == 0, "global InjectHeaders");
    CHECK(res && harness_set_header(res, "X-Global") && strcmp(harness_set_header(res, "X-Global"), "v1") == 0, "global add");
    CHECK(res && harness_response_code(res) == -1, "return_overrides untouched");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    /* Per-API wins; Name:instance picks its own section. */
    const char *cd = "{\"InjectHeaders\": {\"add\": {\"X-Api\": \"a\"}, \"remove\": [\"Cookie\"]},"
                     " \"InjectHeaders:second\": {\"add\": {\"X-Second\": \"b\"}}}";
    for (int round = 0; round < 2; round++) { /* second round hits the per-API cache */
        obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
        harness_add_spec(obj, "config_data", cd);
        harness_add_header(obj, "Cookie", "secret=1");
        CHECK(harness_dispatch(obj, &res) == 0, "per-API InjectHeaders");
        CHECK(harness_set_header(res, "X-Api") && strcmp(harness_set_header(res, "X-Api"), "a") == 0, "per-API add");
        CHECK(harness_set_header(res, "X-Global") == NULL, "per-API section used whole, no merging");
        CHECK(harness_deleted_header(res, "Cookie"), "per-API remove");
        if (res) coprocess__object__free_unpacked(res, NULL);
        harness_object_free(obj);
    }

    obj = harness_object(COPROCESS__HOOK_TYPE__PostKeyAuth, "InjectHeaders:second");
    harness_add_spec(obj, "config_data", cd);
    CHECK(harness_dispatch(obj, &res) == 0, "named instance");
    CHECK(harness_set_header(res, "X-Second") != NULL && harness_set_header(res, "X-Api") == NULL, "instance section");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    /* Response hook edits response headers. */
    obj = harness_object(COPROCESS__HOOK_TYPE__Response, "InjectHeaders");
    Coprocess__ResponseObject resp = COPROCESS__RESPONSE_OBJECT__INIT;
    resp.status_code = 200;
    obj->response = &resp;
    harness_add_spec(obj, "config_data", "{\"InjectHeaders\": {\"add\": {\"X-Resp\": \"r\"}}}");
    CHECK(harness_dispatch(obj, &res) == 0, "Response hook");
    CHECK(res && res->response && res->response->status_code == 200, "response kept");
    CHECK(res && res->response &&
              harness_map_get(res->response->n_headers, (Coprocess__MiniRequestObject__SetHeadersEntry **)res->response->headers, "X-Resp"),
          "response header added");
    if (res) coprocess__object__free_unpacked(res, NULL);
    obj->response = NULL;
    harness_object_free(obj);
}

static void test_static_token(void) {
    const char *cd =
        "{\"StaticTokenAuth\": {\"header\": \"X-Api-Key\", \"tokens\": {\"tok-1\": {\"rate\": 100, \"per\": 60,"
        " \"quota_max\": 1000, \"quota_renewal_rate\": 3600, \"tags\": [\"gold\", \"c\"],"
        " \"access_rights\": {\"api-1\": {\"api_id\": \"api-1\", \"api_name\": \"Demo\", \"versions\": [\"Default\"]}}}}},"
        " \"StaticTokenAuth:strict\": {\"header\": \"X-Api-Key\", \"reject_code\": 401, \"tokens\": {}}}";
    Coprocess__Object *res;
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, "StaticTokenAuth");
    harness_add_spec(obj, "config_data", cd);
    harness_add_header(obj, "x-api-key", "tok-1");
    CHECK(harness_dispatch(obj, &res) == 0, "known token");
    CHECK(res && res->session != NULL, "session set");
    if (res && res->session) {
        Coprocess__SessionState *s = res->session;
        CHECK(s->rate == 100 && s->per == 60 && s->quota_max == 1000 && s->quota_renewal_rate == 3600, "limits");
        CHECK(s->n_tags == 2 && strcmp(s->tags[0], "gold") == 0, "tags");
        CHECK(s->n_access_rights == 1 && strcmp(s->access_rights[0]->key, "api-1") == 0 &&
                  s->access_rights[0]->value->n_versions == 1,
              "access rights");
    }
    CHECK(harness_metadata(res, "token") && strcmp(harness_metadata(res, "token"), "tok-1") == 0, "token in metadata");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, "StaticTokenAuth");
    harness_add_spec(obj, "config_data", cd);
    harness_add_header(obj, "X-Api-Key", "tok-2");
    CHECK(harness_dispatch(obj, &res) == 0, "unknown token is not a failure");
    CHECK(res && res->session == NULL && harness_metadata(res, "token") == NULL, "no session for unknown token");
    CHECK(harness_response_code(res) == -1, "left to the gateway (403)");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, "StaticTokenAuth:strict");
    harness_add_spec(obj, "config_data", cd);
    CHECK(harness_dispatch(obj, &res) == 0, "reject_code");
    CHECK(harness_response_code(res) == 401 && strcmp(harness_response_error(res), "Key not authorised") == 0, "401 answer");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);
}

static void test_events(void) {
    const char *ev = "{\"message\":{\"Type\":\"AuthFailure\",\"Meta\":{\"Path\":\"/x\"},\"TimeStamp\":\"2024-05-03\"},"
                     "\"handler_name\":\"RelayEvent\",\"spec\":{\"APIID\":\"api-1\",\"OrgID\":\"org-1\"}}";
    int before = harness_event_count;
    CHECK(harness_dispatch_event(ev) == 0, "RelayEvent");
    CHECK(harness_event_count == before + 1, "TykTriggerEvent called");
    if (harness_event_count == before + 1) {
        CHECK(strcmp(harness_events[before].name, "Relayed") == 0, "relayed name %s", harness_events[before].name);
        CHECK(strcmp(harness_events[before].payload, ev) == 0, "payload is the event JSON exactly");
    }
    const char *log_ev = "{\"message\":{\"Type\":\"QuotaExceeded\",\"Meta\":{},\"TimeStamp\":\"t\"},\"handler_name\":\"LogEvent\"}";
    CHECK(harness_dispatch_event(log_ev) == 0, "LogEvent");
    int found = 0;
    for (int i = 0; i < harness_log_count; i++)
        if (strstr(harness_logs[i].msg, "QuotaExceeded") && strcmp(harness_logs[i].level, "warning") == 0) found = 1;
    CHECK(found, "LogEvent logged through CoProcessLog at the configured level");
}

static void test_reload(void) {
    Coprocess__Object *res;
    CHECK(harness_write_file(CONFIG_PATH, GLOBAL_V2) == 0, "write config");
    CHECK(Reload() == 0, "Reload");
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
    CHECK(harness_dispatch(obj, &res) == 0 && strcmp(harness_set_header(res, "X-Global"), "v2") == 0, "new config after Reload");
    if (res) coprocess__object__free_unpacked(res, NULL);

    CHECK(harness_write_file(CONFIG_PATH, "{\"InjectHeaders\": ") == 0, "write broken config");
    CHECK(Reload() == COPROCESS_ERR_CONFIG, "broken file on Reload");
    CHECK(strstr(CoProcessLastError(), "previous configuration kept") != NULL, "%s", CoProcessLastError());
    CHECK(harness_dispatch(obj, &res) == 0 && strcmp(harness_set_header(res, "X-Global"), "v2") == 0, "last good state kept");
    if (res) coprocess__object__free_unpacked(res, NULL);

    CHECK(harness_write_file(CONFIG_PATH, "{\"InjectHeaders\": {\"add\": {\"Bad Header\": \"x\"}}}") == 0, "write");
    CHECK(Reload() == COPROCESS_ERR_CONFIG, "invalid section on Reload");
    CHECK(harness_write_file(CONFIG_PATH, "{\"RelayEvent\": {}}") == 0, "write");
    CHECK(Reload() == COPROCESS_ERR_CONFIG, "RelayEvent without event_name");
    CHECK(harness_write_file(CONFIG_PATH, "{\"NotAMiddleware\": {}}") == 0, "write");
    CHECK(Reload() == COPROCESS_ERR_CONFIG, "unknown section");

    CHECK(harness_write_file(CONFIG_PATH, "{}") == 0, "write empty config");
    CHECK(Reload() == 0, "Reload to empty");
    CHECK(harness_dispatch_event("{\"message\":{\"Type\":\"X\"},\"handler_name\":\"RelayEvent\"}") == COPROCESS_ERR_CONFIG,
          "RelayEvent without a section is a configuration error");
    CHECK(harness_write_file(CONFIG_PATH, GLOBAL_V1) == 0, "restore");
    CHECK(Reload() == 0, "Reload");
    harness_object_free(obj);
}

/* The additive path through the real ABI: the answer is the input bytes, unchanged, followed
 * by the appended edits, and decodes to the authenticated Object; an Object the middleware
 * does not change comes back byte for byte. */
static void test_answer_layout(void) {
    const char *cd = "{\"StaticTokenAuth\": {\"header\": \"X-Api-Key\", \"tokens\": {\"tok-1\": {\"rate\": 7}}}}";
    const char *tokens[] = { "tok-1", "tok-2" };
    for (int i = 0; i < 2; i++) {
        Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, "StaticTokenAuth");
        harness_add_spec(obj, "config_data", cd);
        harness_add_header(obj, "X-Api-Key", tokens[i]);
        size_t len = coprocess__object__get_packed_size(obj);
        uint8_t *buf = malloc(len);
        coprocess__object__pack(obj, buf);
        struct CoProcessMessage in = { buf, (int)len }, out = { NULL, 0 };
        CHECK(Dispatch(&in, &out) == 0, "dispatch %s", tokens[i]);
        CHECK(out.p_data != NULL && out.length >= (int)len && memcmp(out.p_data, buf, len) == 0,
              "answer starts with the input bytes (%d >= %zu)", out.length, len);
        if (i == 0) {
            CHECK(out.length > (int)len, "edits appended after the input");
            Coprocess__Object *res = coprocess__object__unpack(NULL, (size_t)out.length, out.p_data);
            CHECK(res && res->session && res->session->rate == 7 && harness_metadata(res, "token") &&
                      strcmp(harness_metadata(res, "token"), "tok-1") == 0,
                  "the appended session and token decode");
            if (res) coprocess__object__free_unpacked(res, NULL);
        } else {
            CHECK(out.length == (int)len, "unchanged Object answered as sent (%d vs %zu)", out.length, len);
        }
        CoProcessFree(out.p_data);
        free(buf);
        harness_object_free(obj);
    }
}

/* The value of a sample line `series value` in a metrics exposition, -1 when absent. */
static long long metric(const char *text, size_t len, const char *series) {
    size_t n = strlen(series);
    const char *end = text + len;
    for (const char *line = text; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (l > n && memcmp(line, series, n) == 0 && line[n] == ' ') return atoll(line + n + 1);
        line += l + 1;
    }
    return -1;
}

/* Runs last: the counts cover every dispatch this program made. */
static void test_metrics(void) {
    CHECK(CoProcessMetrics(NULL) == COPROCESS_ERR_NULL, "NULL out");
    struct CoProcessMessage out = { NULL, 0 };
    CHECK(CoProcessMetrics(&out) == COPROCESS_OK, "CoProcessMetrics");
    CHECK(out.p_data != NULL && out.length > 0, "a malloc'd exposition");
    if (!out.p_data) return;
    const char *text = out.p_data;
    size_t len = (size_t)out.length;
    long long passed = metric(text, len, "coprocess_dispatch_total{middleware=\"StaticTokenAuth\",hook=\"CustomKeyCheck\",outcome=\"passed\"}");
    long long rejected = metric(text, len, "coprocess_dispatch_total{middleware=\"StaticTokenAuth\",hook=\"CustomKeyCheck\",outcome=\"rejected\"}");
    long long garbage = metric(text, len, "coprocess_dispatch_total{middleware=\"unregistered\",hook=\"Unknown\",outcome=\"error\"}");
    long long reloads = metric(text, len, "coprocess_reload_total{result=\"ok\"}");
    CHECK(passed >= 1 && rejected >= 1, "StaticTokenAuth passed %lld, rejected %lld", passed, rejected);
    CHECK(garbage >= 1, "garbage counted as unregistered: %lld", garbage);
    CHECK(reloads >= 1, "reloads %lld", reloads);
    CHECK(memchr(text, '\0', len) == NULL, "text without NUL");
    CoProcessFree(out.p_data);
}

int main(void) {
    CHECK(harness_write_file(CONFIG_PATH, GLOBAL_V1) == 0, "write %s", CONFIG_PATH);
    setenv("COPROCESS_CONFIG", CONFIG_PATH, 1);
    test_abi_version();
    test_null_and_negative();
    test_invalid_bytes();
    test_not_found();
    test_config_errors();
    test_inject_headers();
    test_static_token();
    test_answer_layout();
    test_events();
    test_reload();
    test_metrics();
    harness_reset();
    return harness_summary();
}
