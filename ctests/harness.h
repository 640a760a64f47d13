/* Test harness for the C ABI: defines the five host functions (recording every call),
 * builds Objects with protobuf-c, dispatches them through the real libcoprocess.so and
 * checks the answers. Each ctests/test_*.c is its own program linked with harness.c. */
#ifndef COPROCESS_HARNESS_H
#define COPROCESS_HARNESS_H

#include <stddef.h>
#include "api.h"
#include "coprocess.pb-c.h"

/* ---- checks ---- */
extern int harness_passed, harness_failed;
#define CHECK(cond, ...) harness_check((cond), #cond, __FILE__, __LINE__, __VA_ARGS__)
void harness_check(int ok, const char *expr, const char *file, int line, const char *fmt, ...);
/* Prints "N passed, N failed" and returns the process exit status. */
int harness_summary(void);

/* ---- recorded host calls ---- */
#define HARNESS_MAX_RECORDS 256
struct harness_event { char name[256]; char payload[8192]; };
struct harness_log { char level[16]; char msg[8192]; };
extern struct harness_event harness_events[HARNESS_MAX_RECORDS];
extern int harness_event_count;
extern struct harness_log harness_logs[HARNESS_MAX_RECORDS];
extern int harness_log_count;
extern int harness_store_calls, harness_get_calls, harness_if_absent_calls;
/* When set, CoProcessStoreDataIfAbsent answers -1 (the store is unavailable). */
extern int harness_store_down;
/* Store an entry in the host store as if another gateway node had written it. */
void harness_store_put(const char *key, const char *value, int ttl);
/* Replace the value of every stored entry (simulates another node corrupting the store). */
void harness_store_overwrite_all(const char *value);
/* The live value under key, or NULL. */
const char *harness_store_get(const char *key);
/* Forget recorded events, logs, counters and the store. */
void harness_reset(void);
/* Whether any recorded log line contains needle. */
int harness_logged(const char *needle);

/* ---- building Objects ---- */
/* A fresh Object with hook type, hook name and a request whose return_overrides
 * response_code is -1 (as the gateway sends). spec holds APIID and OrgID. Free with
 * harness_object_free. */
Coprocess__Object *harness_object(Coprocess__HookType type, const char *hook_name);
void harness_object_free(Coprocess__Object *obj);
/* Add (copies) an entry to request.headers, spec, or metadata. */
void harness_add_header(Coprocess__Object *obj, const char *key, const char *value);
void harness_add_spec(Coprocess__Object *obj, const char *key, const char *value);
void harness_set_method_url(Coprocess__Object *obj, const char *method, const char *url, const char *request_uri);

/* ---- dispatching ---- */
/* Pack obj, call Dispatch, unpack the answer into *out (NULL on failure; free with
 * coprocess__object__free_unpacked). Returns Dispatch's code. */
int harness_dispatch(const Coprocess__Object *obj, Coprocess__Object **out);
/* Dispatch raw bytes; returns the code and frees any answer. */
int harness_dispatch_bytes(const void *data, int length);
/* Call DispatchEvent on a NUL-terminated JSON string. */
int harness_dispatch_event(const char *json);

/* ---- reading answers ---- */
/* Value of a map entry (NULL when absent). */
const char *harness_map_get(size_t n, Coprocess__MiniRequestObject__SetHeadersEntry **entries, const char *key);
const char *harness_set_header(const Coprocess__Object *obj, const char *key);
const char *harness_metadata(const Coprocess__Object *obj, const char *key);
int harness_deleted_header(const Coprocess__Object *obj, const char *key);
int harness_response_code(const Coprocess__Object *obj);
const char *harness_response_error(const Coprocess__Object *obj);

/* Write a file (for COPROCESS_CONFIG) and return 0 on success. */
int harness_write_file(const char *path, const char *text);

#endif
