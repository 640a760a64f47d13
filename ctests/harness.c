#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int harness_passed, harness_failed;

void harness_check(int ok, const char *expr, const char *file, int line, const char *fmt, ...) {
    if (ok) { harness_passed++; return; }
    harness_failed++;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (last error: %s)\n", CoProcessLastError());
}

int harness_summary(void) {
    printf("%d passed, %d failed\n", harness_passed, harness_failed);
    return harness_failed == 0 ? 0 : 1;
}

/* ---- host functions ---- */
struct harness_event harness_events[HARNESS_MAX_RECORDS];
int harness_event_count;
struct harness_log harness_logs[HARNESS_MAX_RECORDS];
int harness_log_count;
int harness_store_calls, harness_get_calls, harness_if_absent_calls;
int harness_store_down;

struct store_entry { char *key; char *value; time_t expires; };
static struct store_entry store[1024];
static int store_len;

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "(null)");
}

void TykTriggerEvent(char *event_name, char *payload) {
    if (harness_event_count < HARNESS_MAX_RECORDS) {
        struct harness_event *e = &harness_events[harness_event_count++];
        copy_str(e->name, sizeof e->name, event_name);
        copy_str(e->payload, sizeof e->payload, payload);
    }
}

void CoProcessLog(char *msg, char *level) {
    if (harness_log_count < HARNESS_MAX_RECORDS) {
        struct harness_log *l = &harness_logs[harness_log_count++];
        copy_str(l->level, sizeof l->level, level);
        copy_str(l->msg, sizeof l->msg, msg);
    }
}

static struct store_entry *store_find(const char *key) {
    for (int i = 0; i < store_len; i++)
        if (strcmp(store[i].key, key) == 0) return &store[i];
    return NULL;
}

void harness_store_put(const char *key, const char *value, int ttl) {
    struct store_entry *e = store_find(key);
    if (!e) {
        if (store_len == (int)(sizeof store / sizeof store[0])) return;
        e = &store[store_len++];
        e->key = strdup(key);
        e->value = NULL;
    }
    free(e->value);
    e->value = strdup(value);
    e->expires = ttl > 0 ? time(NULL) + ttl : 0;
}

void harness_store_overwrite_all(const char *value) {
    for (int i = 0; i < store_len; i++) {
        free(store[i].value);
        store[i].value = strdup(value);
    }
}

const char *harness_store_get(const char *key) {
    struct store_entry *e = store_find(key);
    if (!e || (e->expires != 0 && time(NULL) >= e->expires)) return NULL;
    return e->value;
}

void TykStoreData(char *key, char *value, int ttl) {
    harness_store_calls++;
    harness_store_put(key, value, ttl);
}

char *TykGetData(char *key) {
    harness_get_calls++;
    const char *v = harness_store_get(key);
    return v ? strdup(v) : NULL;
}

int CoProcessStoreDataIfAbsent(char *key, char *value, int ttl) {
    harness_if_absent_calls++;
    if (harness_store_down) return -1;
    if (harness_store_get(key)) return 0;
    harness_store_put(key, value, ttl);
    return 1;
}

void harness_reset(void) {
    harness_event_count = harness_log_count = harness_store_calls = harness_get_calls = harness_if_absent_calls = 0;
    harness_store_down = 0;
    for (int i = 0; i < store_len; i++) { free(store[i].key); free(store[i].value); }
    store_len = 0;
}

int harness_logged(const char *needle) {
    for (int i = 0; i < harness_log_count; i++)
        if (strstr(harness_logs[i].msg, needle)) return 1;
    return 0;
}

/* ---- building Objects ---- */
typedef Coprocess__MiniRequestObject__HeadersEntry StrEntry; /* all string maps share this layout */

static void add_entry(size_t *n, void ***entries, const char *key, const char *value) {
    StrEntry *e = malloc(sizeof *e);
    coprocess__mini_request_object__headers_entry__init(e);
    e->key = strdup(key);
    e->value = strdup(value);
    *entries = realloc(*entries, (*n + 1) * sizeof(void *));
    (*entries)[(*n)++] = e;
}

Coprocess__Object *harness_object(Coprocess__HookType type, const char *hook_name) {
    Coprocess__Object *obj = malloc(sizeof *obj);
    coprocess__object__init(obj);
    obj->hook_type = type;
    obj->hook_name = strdup(hook_name);
    Coprocess__MiniRequestObject *req = malloc(sizeof *req);
    coprocess__mini_request_object__init(req);
    Coprocess__ReturnOverrides *ro = malloc(sizeof *ro);
    coprocess__return_overrides__init(ro);
    ro->response_code = -1;
    req->return_overrides = ro;
    req->method = strdup("GET");
    req->url = strdup("/");
    req->request_uri = strdup("/");
    req->scheme = strdup("http");
    obj->request = req;
    harness_add_spec(obj, "APIID", "api-1");
    harness_add_spec(obj, "OrgID", "org-1");
    return obj;
}

void harness_add_header(Coprocess__Object *obj, const char *key, const char *value) {
    add_entry(&obj->request->n_headers, (void ***)&obj->request->headers, key, value);
}

void harness_add_spec(Coprocess__Object *obj, const char *key, const char *value) {
    add_entry(&obj->n_spec, (void ***)&obj->spec, key, value);
}

void harness_set_method_url(Coprocess__Object *obj, const char *method, const char *url, const char *request_uri) {
    Coprocess__MiniRequestObject *r = obj->request;
    free(r->method); free(r->url); free(r->request_uri);
    r->method = strdup(method);
    r->url = strdup(url);
    r->request_uri = strdup(request_uri);
}

static void free_entries(size_t n, void **entries) {
    for (size_t i = 0; i < n; i++) {
        StrEntry *e = entries[i];
        free(e->key); free(e->value); free(e);
    }
    free(entries);
}

/* Frees what harness_object and the harness_add_* helpers allocate. */
void harness_object_free(Coprocess__Object *obj) {
    Coprocess__MiniRequestObject *r = obj->request;
    if (r) {
        free_entries(r->n_headers, (void **)r->headers);
        free(r->method); free(r->url); free(r->request_uri); free(r->scheme);
        free(r->return_overrides);
        free(r);
    }
    free_entries(obj->n_spec, (void **)obj->spec);
    free_entries(obj->n_metadata, (void **)obj->metadata);
    free(obj->hook_name);
    free(obj);
}

/* ---- dispatching ---- */
int harness_dispatch(const Coprocess__Object *obj, Coprocess__Object **out) {
    size_t len = coprocess__object__get_packed_size(obj);
    uint8_t *buf = malloc(len ? len : 1);
    coprocess__object__pack(obj, buf);
    struct CoProcessMessage in = { buf, (int)len };
    struct CoProcessMessage res = { (void *)1, 99 };
    int rc = Dispatch(&in, &res);
    free(buf);
    *out = NULL;
    if (rc != 0) {
        if (res.p_data != NULL || res.length != 0) {
            fprintf(stderr, "FAIL: failed Dispatch left new_object = {%p, %d}\n", res.p_data, res.length);
            harness_failed++;
        }
        return rc;
    }
    *out = coprocess__object__unpack(NULL, (size_t)res.length, res.p_data);
    if (*out == NULL) {
        fprintf(stderr, "FAIL: Dispatch answer does not unpack\n");
        harness_failed++;
    }
    free(res.p_data);
    return rc;
}

int harness_dispatch_bytes(const void *data, int length) {
    struct CoProcessMessage in = { (void *)data, length };
    struct CoProcessMessage res = { NULL, 0 };
    int rc = Dispatch(&in, &res);
    CoProcessFree(res.p_data);
    return rc;
}

int harness_dispatch_event(const char *json) {
    struct CoProcessMessage in = { (void *)json, (int)strlen(json) };
    return DispatchEvent(&in);
}

/* ---- reading answers ---- */
const char *harness_map_get(size_t n, Coprocess__MiniRequestObject__SetHeadersEntry **entries, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(entries[i]->key, key) == 0) return entries[i]->value;
    return NULL;
}

const char *harness_set_header(const Coprocess__Object *obj, const char *key) {
    if (!obj || !obj->request) return NULL;
    return harness_map_get(obj->request->n_set_headers, obj->request->set_headers, key);
}

const char *harness_metadata(const Coprocess__Object *obj, const char *key) {
    if (!obj) return NULL;
    return harness_map_get(obj->n_metadata, (Coprocess__MiniRequestObject__SetHeadersEntry **)obj->metadata, key);
}

int harness_deleted_header(const Coprocess__Object *obj, const char *key) {
    if (!obj || !obj->request) return 0;
    for (size_t i = 0; i < obj->request->n_delete_headers; i++)
        if (strcmp(obj->request->delete_headers[i], key) == 0) return 1;
    return 0;
}

int harness_response_code(const Coprocess__Object *obj) {
    if (!obj || !obj->request || !obj->request->return_overrides) return 0;
    return obj->request->return_overrides->response_code;
}

const char *harness_response_error(const Coprocess__Object *obj) {
    if (!obj || !obj->request || !obj->request->return_overrides) return "";
    return obj->request->return_overrides->response_error;
}

int harness_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}
