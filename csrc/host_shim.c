/* Weak imports of the gateway's host functions.
 *
 * The host process (the Go gateway through cgo //export, or a C program) defines these. A
 * weak undefined reference keeps them in the library's dynamic symbol table (nm -D shows
 * "w") while letting the library load in a host that defines none of them: the address is
 * then NULL and the Rust side falls back (stderr logging, a process-local store).
 * Rust cannot declare weak imports on stable, hence this file. Each wrapper reports through
 * its return value or *present whether the host function exists and was called. */

#include <stddef.h>

extern void TykTriggerEvent(char *event_name, char *payload) __attribute__((weak));
extern void CoProcessLog(char *msg, char *level) __attribute__((weak));
extern void TykStoreData(char *key, char *value, int ttl) __attribute__((weak));
extern char *TykGetData(char *key) __attribute__((weak));
extern int CoProcessStoreDataIfAbsent(char *key, char *value, int ttl) __attribute__((weak));

int coprocess_shim_trigger_event(char *event_name, char *payload) {
    if (TykTriggerEvent == NULL) return 0;
    TykTriggerEvent(event_name, payload);
    return 1;
}

int coprocess_shim_log(char *msg, char *level) {
    if (CoProcessLog == NULL) return 0;
    CoProcessLog(msg, level);
    return 1;
}

int coprocess_shim_store_data(char *key, char *value, int ttl) {
    if (TykStoreData == NULL) return 0;
    TykStoreData(key, value, ttl);
    return 1;
}

/* On return *present is 1 when the host defines TykGetData. The result is the host's
 * malloc'd string (the caller frees it) or NULL. */
char *coprocess_shim_get_data(char *key, int *present) {
    if (TykGetData == NULL) { *present = 0; return NULL; }
    *present = 1;
    return TykGetData(key);
}

/* On return *present is 1 when the host defines CoProcessStoreDataIfAbsent; the result is
 * then the host's answer (1 stored, 0 already present, negative: store unavailable). */
int coprocess_shim_store_data_if_absent(char *key, char *value, int ttl, int *present) {
    if (CoProcessStoreDataIfAbsent == NULL) { *present = 0; return 0; }
    *present = 1;
    return CoProcessStoreDataIfAbsent(key, value, ttl);
}

/* Whether the host defines TykGetData or TykStoreData (its own store). */
int coprocess_shim_has_store(void) {
    return TykGetData != NULL || TykStoreData != NULL;
}
