/* The floor of any plugin ABI that answers with a new buffer: a plain C call (no cgo) that
 * copies the message into a malloc(3)'d buffer and returns it, with Dispatch's signature.
 * Built as its own shared library so the driver calls it through the PLT, as it calls
 * Dispatch. */
#include <stdlib.h>
#include <string.h>

struct CoProcessMessage {
    void *p_data;
    int length;
};

int FloorCopy(struct CoProcessMessage *object, struct CoProcessMessage *new_object) {
    if (object == NULL || new_object == NULL || object->p_data == NULL || object->length < 0)
        return -1;
    void *p = malloc(object->length > 0 ? (size_t)object->length : 1);
    if (p == NULL)
        return -1;
    memcpy(p, object->p_data, (size_t)object->length);
    new_object->p_data = p;
    new_object->length = object->length;
    return 0;
}
