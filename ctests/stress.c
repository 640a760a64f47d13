/* Concurrency stress through the real ABI: worker threads dispatch to every built-in and
 * check every answer while another thread rewrites the global configuration file and calls
 * Reload in a loop. Every dispatch must succeed and see one consistent configuration. Bounded:
 * a fixed number of dispatches per worker. Defines thread-safe host functions of its own. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api.h"
#include "coprocess.pb-c.h"

#define WORKERS 4
#define PER_WORKER 20000

static const char *CONFIG_PATH = "build/stress-config.json";
static atomic_int failures, reloads, reload_failures;
static atomic_long dispatches;
static atomic_int done_workers;

/* ---- thread-safe host functions (a tiny store, events and logs counted) ---- */
static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int events_seen;
void TykTriggerEvent(char *name, char *payload) { (void)name; (void)payload; atomic_fetch_add(&events_seen, 1); }
void CoProcessLog(char *msg, char *level) { (void)msg; (void)level; }
static char store_key[64][128], store_val[64][256];
static int store_n;
void TykStoreData(char *key, char *value, int ttl) {
    (void)ttl;
    pthread_mutex_lock(&host_lock);
    int i;
    for (i = 0; i < store_n && strcmp(store_key[i], key) != 0; i++) {}
    if (i < 64) {
        snprintf(store_key[i], sizeof store_key[i], "%s", key);
        snprintf(store_val[i], sizeof store_val[i], "%s", value);
        if (i == store_n) store_n++;
    }
    pthread_mutex_unlock(&host_lock);
}
char *TykGetData(char *key) {
    char *r = NULL;
    pthread_mutex_lock(&host_lock);
    for (int i = 0; i < store_n; i++)
        if (strcmp(store_key[i], key) == 0) r = strdup(store_val[i]);
    pthread_mutex_unlock(&host_lock);
    return r;
}

static void write_config(int version) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", CONFIG_PATH);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror("config"); exit(2); }
    fprintf(f, "{\"InjectHeaders\": {\"add\": {\"X-Version\": \"v%d\", \"X-Version-Copy\": \"v%d\"}},"
               " \"RelayEvent\": {\"event_name\": \"Relayed\"}}", version, version);
    fclose(f);
    rename(tmp, CONFIG_PATH); /* atomic replace: Reload never reads half a file */
}

/* ---- requests ---- */
struct request { uint8_t *bytes; size_t len; int kind; };
enum { INJECT, TOKEN_OK, TOKEN_BAD, HMAC_OK, HMAC_BAD, SIGN_UPSTREAM, REQHUB_MISSING, KINDS };

static struct request make_request(int kind) {
    Coprocess__Object obj = COPROCESS__OBJECT__INIT;
    Coprocess__MiniRequestObject req = COPROCESS__MINI_REQUEST_OBJECT__INIT;
    Coprocess__ReturnOverrides ro = COPROCESS__RETURN_OVERRIDES__INIT;
    Coprocess__Object__SpecEntry cd = COPROCESS__OBJECT__SPEC_ENTRY__INIT, api = COPROCESS__OBJECT__SPEC_ENTRY__INIT;
    Coprocess__Object__SpecEntry *spec[2] = { &api, &cd };
    Coprocess__MiniRequestObject__HeadersEntry h = COPROCESS__MINI_REQUEST_OBJECT__HEADERS_ENTRY__INIT;
    Coprocess__MiniRequestObject__HeadersEntry d = COPROCESS__MINI_REQUEST_OBJECT__HEADERS_ENTRY__INIT;
    Coprocess__MiniRequestObject__HeadersEntry *headers[2] = { &h, &d };
    ro.response_code = -1;
    req.return_overrides = &ro;
    req.method = "GET";
    req.url = req.request_uri = "/stress";
    api.key = "APIID"; api.value = "stress-api";
    cd.key = "config_data";
    cd.value = "{\"StaticTokenAuth\": {\"tokens\": {\"good\": {\"rate\": 7, \"per\": 1}}},"
               " \"HMACSignatureAuth\": {\"keys\": {\"k1\": \"c2VjcmV0\"}, \"clock_skew_ms\": 0},"
               " \"UpstreamRequestSigning\": {\"algorithm\": \"hmac-sha256\", \"keyId\": \"up\", \"secret\": \"s3\"},"
               " \"ReqHubMerchant\": {\"mode\": \"local\", \"api\": \"p1\", \"clients\": {\"c\": {\"private_key\": \"x\", \"api\": \"p1\"}}}}";
    obj.request = &req;
    obj.spec = spec;
    obj.n_spec = 2;
    h.key = "Authorization";
    d.key = "Date";
    d.value = "Fri, 03 May 2024 12:00:42 GMT";
    req.headers = headers;
    switch (kind) {
    case INJECT:
        obj.hook_type = COPROCESS__HOOK_TYPE__Pre;
        obj.hook_name = "InjectHeaders";
        obj.n_spec = 1;
        req.n_headers = 0;
        break;
    case TOKEN_OK: case TOKEN_BAD:
        obj.hook_type = COPROCESS__HOOK_TYPE__CustomKeyCheck;
        obj.hook_name = "StaticTokenAuth";
        h.value = kind == TOKEN_OK ? "good" : "bad";
        req.n_headers = 1;
        break;
    case HMAC_OK: case HMAC_BAD:
        /* The reference vector: key c2VjcmV0, this Date, hmac-sha512, URL-escaped signature. */
        obj.hook_type = COPROCESS__HOOK_TYPE__CustomKeyCheck;
        obj.hook_name = "HMACSignatureAuth";
        h.value = kind == HMAC_OK
            ? "Signature keyId=\"k1\",algorithm=\"hmac-sha512\",signature=\"9kwBK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D\""
            : "Signature keyId=\"k1\",algorithm=\"hmac-sha512\",signature=\"AAAAK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D\"";
        req.n_headers = 2;
        break;
    case SIGN_UPSTREAM:
        obj.hook_type = COPROCESS__HOOK_TYPE__Post;
        obj.hook_name = "UpstreamRequestSigning";
        req.headers = &headers[1]; /* only Date */
        req.n_headers = 1;
        break;
    case REQHUB_MISSING:
        obj.hook_type = COPROCESS__HOOK_TYPE__Pre;
        obj.hook_name = "ReqHubMerchant";
        req.n_headers = 0;
        break;
    }
    struct request r = { NULL, coprocess__object__get_packed_size(&obj), kind };
    r.bytes = malloc(r.len);
    coprocess__object__pack(&obj, r.bytes);
    return r;
}

static const char *set_header(Coprocess__Object *o, const char *k) {
    for (size_t i = 0; o->request && i < o->request->n_set_headers; i++)
        if (strcmp(o->request->set_headers[i]->key, k) == 0) return o->request->set_headers[i]->value;
    return NULL;
}

static int check(const struct request *r, Coprocess__Object *o) {
    switch (r->kind) {
    case INJECT: {
        const char *a = set_header(o, "X-Version"), *b = set_header(o, "X-Version-Copy");
        return a && b && a[0] == 'v' && strcmp(a, b) == 0;
    }
    case TOKEN_OK:
        return o->session && o->session->rate == 7 && o->n_metadata == 1 && strcmp(o->metadata[0]->value, "good") == 0;
    case TOKEN_BAD:
        return o->session == NULL && o->n_metadata == 0;
    case HMAC_OK:
        return o->session && o->session->hmac_enabled && o->n_metadata == 1 && strcmp(o->metadata[0]->value, "k1") == 0;
    case HMAC_BAD:
        return o->session == NULL && o->request->return_overrides->response_code == 401 &&
               strcmp(o->request->return_overrides->response_error, "Custom middleware: Not authorized") == 0;
    case SIGN_UPSTREAM: {
        const char *a = set_header(o, "Authorization");
        return a && strncmp(a, "Signature keyId=\"up\",algorithm=\"hmac-sha256\",headers=\"", 54) == 0 && set_header(o, "Date") == NULL;
    }
    case REQHUB_MISSING:
        return o->request->return_overrides->response_code == 403 && strstr(o->request->return_overrides->response_error, "headers_missing");
    }
    return 0;
}

static void *worker(void *arg) {
    int id = (int)(long)arg;
    struct request reqs[KINDS];
    for (int k = 0; k < KINDS; k++) reqs[k] = make_request(k);
    for (int i = 0; i < PER_WORKER; i++) {
        struct request *r = &reqs[(i + id) % KINDS];
        struct CoProcessMessage in = { r->bytes, (int)r->len }, out = { NULL, 0 };
        int rc = Dispatch(&in, &out);
        atomic_fetch_add(&dispatches, 1);
        if (rc != 0) {
            if (atomic_fetch_add(&failures, 1) < 5) fprintf(stderr, "dispatch failed %d: %s\n", rc, CoProcessLastError());
            continue;
        }
        Coprocess__Object *o = coprocess__object__unpack(NULL, (size_t)out.length, out.p_data);
        if (!o || !check(r, o)) {
            if (atomic_fetch_add(&failures, 1) < 5) fprintf(stderr, "wrong answer for kind %d\n", r->kind);
        }
        if (o) coprocess__object__free_unpacked(o, NULL);
        CoProcessFree(out.p_data);
        if (i % 1000 == 0) {
            const char *ev = "{\"message\":{\"Type\":\"X\"},\"handler_name\":\"RelayEvent\"}";
            struct CoProcessMessage e = { (void *)ev, (int)strlen(ev) };
            if (DispatchEvent(&e) != 0) atomic_fetch_add(&failures, 1);
        }
    }
    for (int k = 0; k < KINDS; k++) free(reqs[k].bytes);
    atomic_fetch_add(&done_workers, 1);
    return NULL;
}

static void *reloader(void *arg) {
    (void)arg;
    int v = 1;
    while (atomic_load(&done_workers) < WORKERS) {
        write_config(++v);
        if (Reload() != 0) {
            atomic_fetch_add(&reload_failures, 1);
            fprintf(stderr, "Reload failed: %s\n", CoProcessLastError());
        }
        atomic_fetch_add(&reloads, 1);
        if (v % 25 == 0) { /* a broken file must be refused without disturbing anyone */
            FILE *f = fopen(CONFIG_PATH, "w");
            fputs("{\"InjectHeaders\": ", f);
            fclose(f);
            if (Reload() != COPROCESS_ERR_CONFIG) atomic_fetch_add(&reload_failures, 1);
        }
    }
    return NULL;
}

int main(void) {
    write_config(1);
    setenv("COPROCESS_CONFIG", CONFIG_PATH, 1);
    pthread_t w[WORKERS], r;
    for (long i = 0; i < WORKERS; i++) pthread_create(&w[i], NULL, worker, (void *)i);
    pthread_create(&r, NULL, reloader, NULL);
    for (int i = 0; i < WORKERS; i++) pthread_join(w[i], NULL);
    pthread_join(r, NULL);
    int failed = atomic_load(&failures) + atomic_load(&reload_failures);
    printf("stress: %ld dispatches on %d threads, %d reloads, %d events relayed, %d failures\n", atomic_load(&dispatches),
           WORKERS, atomic_load(&reloads), atomic_load(&events_seen), failed);
    printf("%d passed, %d failed\n", failed == 0 ? 1 : 0, failed == 0 ? 0 : 1);
    return failed == 0 ? 0 : 1;
}
