/* A host that defines none of the four host functions: the library must still load and
 * dispatch, falling back to stderr logging, a process-local store and dropped events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "coprocess.pb-c.h"

int main(void) {
    int failed = 0, passed = 0;
#define EXPECT(c) do { if (c) passed++; else { failed++; fprintf(stderr, "FAIL %s:%d %s (%s)\n", __FILE__, __LINE__, #c, CoProcessLastError()); } } while (0)
    Coprocess__Object obj = COPROCESS__OBJECT__INIT;
    Coprocess__MiniRequestObject req = COPROCESS__MINI_REQUEST_OBJECT__INIT;
    Coprocess__Object__SpecEntry cd = COPROCESS__OBJECT__SPEC_ENTRY__INIT;
    Coprocess__Object__SpecEntry *spec[1] = { &cd };
    Coprocess__MiniRequestObject__HeadersEntry h = COPROCESS__MINI_REQUEST_OBJECT__HEADERS_ENTRY__INIT;
    Coprocess__MiniRequestObject__HeadersEntry *headers[1] = { &h };
    cd.key = "config_data";
    cd.value = "{\"StaticTokenAuth\": {\"tokens\": {\"t1\": {\"rate\": 5, \"per\": 1}}}}";
    h.key = "Authorization";
    h.value = "t1";
    req.n_headers = 1;
    req.headers = headers;
    obj.hook_type = COPROCESS__HOOK_TYPE__CustomKeyCheck;
    obj.hook_name = "StaticTokenAuth";
    obj.request = &req;
    obj.n_spec = 1;
    obj.spec = spec;

    size_t len = coprocess__object__get_packed_size(&obj);
    uint8_t *buf = malloc(len);
    coprocess__object__pack(&obj, buf);
    struct CoProcessMessage in = { buf, (int)len }, out = { NULL, 0 };
    EXPECT(Dispatch(&in, &out) == 0);
    Coprocess__Object *res = coprocess__object__unpack(NULL, (size_t)out.length, out.p_data);
    EXPECT(res && res->session && res->session->rate == 5);
    EXPECT(res && res->n_metadata == 1 && strcmp(res->metadata[0]->value, "t1") == 0);
    coprocess__object__free_unpacked(res, NULL);
    CoProcessFree(out.p_data);
    free(buf);

    /* An event handler with no configuration: a clear -5, no crash. */
    const char *ev = "{\"message\":{\"Type\":\"X\"},\"handler_name\":\"RelayEvent\"}";
    struct CoProcessMessage evm = { (void *)ev, (int)strlen(ev) };
    EXPECT(DispatchEvent(&evm) == COPROCESS_ERR_CONFIG);
    const char *lev = "{\"message\":{\"Type\":\"X\"},\"handler_name\":\"LogEvent\"}";
    struct CoProcessMessage levm = { (void *)lev, (int)strlen(lev) };
    EXPECT(DispatchEvent(&levm) == 0); /* logs to stderr */
    EXPECT(Reload() == 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
