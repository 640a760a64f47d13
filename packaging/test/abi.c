/* Built by make deb-test against the installed libcoprocess with
 *   cc abi.c $(pkg-config --cflags --libs coprocess)
 * Checks the ABI version and dispatches one InjectHeaders Object, encoded by hand (no
 * protobuf library needed): hook_type = Pre, hook_name, spec["config_data"]. */
#define _GNU_SOURCE
#include <api.h>
#include <stdio.h>
#include <string.h>

static size_t put(unsigned char *b, size_t n, unsigned char tag, const char *s) {
    size_t len = strlen(s); /* every string here is shorter than 128 bytes: a one-byte length */
    b[n++] = tag;
    b[n++] = (unsigned char)len;
    memcpy(b + n, s, len);
    return n + len;
}

int main(void) {
    const char *v = CoProcessAbiVersion();
    if (strcmp(v, COPROCESS_ABI_VERSION) != 0) {
        fprintf(stderr, "library ABI %s, header %s\n", v, COPROCESS_ABI_VERSION);
        return 1;
    }
    const char *config = "{\"InjectHeaders\":{\"add\":{\"X-Deb-Test\":\"c\"}}}";
    unsigned char obj[256], entry[128];
    size_t n = 0, e = 0;
    obj[n++] = 0x08; /* field 1 hook_type, varint */
    obj[n++] = 1;    /* Pre */
    n = put(obj, n, 0x12, "InjectHeaders");   /* field 2 hook_name */
    e = put(entry, e, 0x0a, "config_data");   /* map entry: key */
    e = put(entry, e, 0x12, config);          /* map entry: value */
    obj[n++] = 0x32; /* field 6 spec, one map entry */
    obj[n++] = (unsigned char)e;
    memcpy(obj + n, entry, e);
    n += e;

    struct CoProcessMessage in = {obj, (int)n}, out = {NULL, 0};
    int rc = Dispatch(&in, &out);
    if (rc != COPROCESS_OK) {
        fprintf(stderr, "Dispatch returned %d: %s\n", rc, CoProcessLastError());
        return 1;
    }
    /* request.set_headers gets the map entry {key "X-Deb-Test", value "c"}. */
    static const char want[] = "\x0a\x0aX-Deb-Test\x12\x01" "c";
    int found = memmem(out.p_data, (size_t)out.length, want, sizeof want - 1) != NULL;
    CoProcessFree(out.p_data);
    if (!found) {
        fprintf(stderr, "the answer (%d bytes) does not set X-Deb-Test: c\n", out.length);
        return 1;
    }
    printf("abi: %s; Dispatch(InjectHeaders) set X-Deb-Test: c\n", v);
    return 0;
}
