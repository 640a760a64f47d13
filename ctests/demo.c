/* Demo host: loads libcoprocess.so, dispatches a few realistic requests through the built-in
 * middleware and prints what came back. (The Go gateway in go/ is the full demo.) */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdio.h>
#include <string.h>

static const char *CONFIG_DATA =
    "{\"StaticTokenAuth\": {\"header\": \"Authorization\", \"strip_prefix\": \"Bearer \","
    "   \"tokens\": {\"demo-token\": {\"rate\": 100, \"per\": 60, \"quota_max\": 1000, \"tags\": [\"demo\"]}}},"
    " \"InjectHeaders\": {\"add\": {\"X-Plugin\": \"coprocess\"}, \"remove\": [\"Cookie\"]}}";

static void show(const char *title, Coprocess__Object *obj) {
    Coprocess__Object *res = NULL;
    int rc = harness_dispatch(obj, &res);
    printf("\n== %s\n   Dispatch(%s) -> %d\n", title, obj->hook_name, rc);
    if (rc != 0) { printf("   error: %s\n", CoProcessLastError()); return; }
    Coprocess__MiniRequestObject *r = res->request;
    for (size_t i = 0; r && i < r->n_set_headers; i++)
        printf("   set header     %s: %s\n", r->set_headers[i]->key, r->set_headers[i]->value);
    for (size_t i = 0; r && i < r->n_delete_headers; i++)
        printf("   delete header  %s\n", r->delete_headers[i]);
    if (r && r->return_overrides && r->return_overrides->response_code != -1)
        printf("   answer client  %d %s\n", r->return_overrides->response_code, r->return_overrides->response_error);
    if (res->session)
        printf("   session        rate=%g per=%g quota_max=%lld tags=%zu\n", res->session->rate, res->session->per,
               (long long)res->session->quota_max, res->session->n_tags);
    const char *token = harness_metadata(res, "token");
    if (token) printf("   token          %s\n", token);
    if (obj->hook_type == COPROCESS__HOOK_TYPE__CustomKeyCheck)
        printf("   gateway does   %s\n", res->session && token ? "authenticated: continue" : "403 Forbidden");
    coprocess__object__free_unpacked(res, NULL);
}

int main(void) {
    printf("coprocess demo host, library ABI %s\n", CoProcessAbiVersion());
    Coprocess__Object *obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, "StaticTokenAuth");
    harness_add_spec(obj, "config_data", CONFIG_DATA);
    harness_add_header(obj, "Authorization", "Bearer demo-token");
    show("CustomKeyCheck with a known token", obj);
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__CustomKeyCheck, "StaticTokenAuth");
    harness_add_spec(obj, "config_data", CONFIG_DATA);
    harness_add_header(obj, "Authorization", "Bearer wrong-token");
    show("CustomKeyCheck with an unknown token", obj);
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "InjectHeaders");
    harness_add_spec(obj, "config_data", CONFIG_DATA);
    harness_add_header(obj, "Cookie", "session=abc");
    show("Pre hook injecting headers", obj);
    harness_object_free(obj);

    obj = harness_object(COPROCESS__HOOK_TYPE__Pre, "NoSuchPlugin");
    show("A hook name nobody registered", obj);
    harness_object_free(obj);

    const char *ev = "{\"message\":{\"Type\":\"AuthFailure\",\"Meta\":{\"Path\":\"/demo\"},\"TimeStamp\":\"now\"},"
                     "\"handler_name\":\"LogEvent\",\"spec\":{\"APIID\":\"api-1\"}}";
    int rc = harness_dispatch_event(ev);
    printf("\n== DispatchEvent(LogEvent) -> %d\n", rc);
    for (int i = 0; i < harness_log_count; i++) printf("   host log [%s] %s\n", harness_logs[i].level, harness_logs[i].msg);
    harness_reset();
    return 0;
}
