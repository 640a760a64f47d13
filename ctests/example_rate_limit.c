/* The example plugin library examples/rate-limit (librate_limit_plugin.so), built by its own
 * crate with coprocess::export_plugin!, loaded through the same C ABI and host functions. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <string.h>

static Coprocess__Object *limited(const char *client) {
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "RateLimit");
    harness_add_spec(obj, "config_data", "{\"RateLimit\": {\"limit\": 2, \"window_secs\": 600, \"key_header\": \"X-Client\"}}");
    harness_add_header(obj, "X-Client", client);
    return obj;
}

int main(void) {
    CHECK(strcmp(CoProcessAbiVersion(), "coprocess-abi/1") == 0, "same ABI as libcoprocess");
    Coprocess__Object *res;
    Coprocess__Object *obj = limited("client-a");
    for (int i = 0; i < 2; i++) {
        CHECK(harness_dispatch(obj, &res) == 0, "admitted %d", i);
        CHECK(harness_response_code(res) == -1, "not rejected");
        if (res) coprocess__object__free_unpacked(res, NULL);
    }
    CHECK(harness_store_calls == 2, "counter written through TykStoreData (%d)", harness_store_calls);
    CHECK(harness_get_calls == 2, "counter read through TykGetData (%d)", harness_get_calls);
    CHECK(harness_dispatch(obj, &res) == 0, "third request");
    CHECK(harness_response_code(res) == 429, "over the limit: 429 (%d)", harness_response_code(res));
    int retry_after = 0;
    if (res && res->request && res->request->return_overrides) {
        Coprocess__ReturnOverrides *ro = res->request->return_overrides;
        for (size_t i = 0; i < ro->n_headers; i++)
            if (strcmp(ro->headers[i]->key, "Retry-After") == 0) retry_after = 1;
    }
    CHECK(retry_after, "Retry-After header");
    if (res) coprocess__object__free_unpacked(res, NULL);
    harness_object_free(obj);

    /* A corrupt shared counter is a middleware failure (-4), with a reason. */
    harness_reset();
    obj = limited("client-b");
    CHECK(harness_dispatch(obj, &res) == 0, "first request of client-b");
    if (res) coprocess__object__free_unpacked(res, NULL);
    CHECK(harness_store_calls == 1, "one counter stored");
    harness_store_overwrite_all("not-a-number");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_MIDDLEWARE, "corrupt counter");
    CHECK(strstr(CoProcessLastError(), "not a number") != NULL, "reason: %s", CoProcessLastError());
    harness_object_free(obj);

    /* Not in this library: the built-ins were left out. */
    obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
    CHECK(harness_dispatch(obj, &res) == COPROCESS_ERR_NOT_FOUND, "no built-ins in this library");
    harness_object_free(obj);
    harness_reset();
    return harness_summary();
}
