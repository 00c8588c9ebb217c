/* scratch.h — grow-only scratch buffers in numbered slots, kept across calls so a forward pass
 * allocates nothing once the batch size has been seen. A slot is a 64-byte-aligned buffer that
 * only grows (its contents are lost when it does). What each slot holds is its user's business:
 * forward.c's slot table names every use. */
#ifndef LFM2C_SCRATCH_H
#define LFM2C_SCRATCH_H
#include <stddef.h>

typedef struct scratch scratch;

scratch *scratch_new(int n_slots); /* all slots empty; NULL on allocation failure */
void scratch_free(scratch *s);
/* Slot `slot` with room for at least `bytes`; NULL when it cannot be grown. */
void *scratch_get(scratch *s, int slot, size_t bytes);
/* Bytes the slots hold now (the memory estimate's check, tests/core/test_mem_plan.c). */
size_t scratch_total(const scratch *s);
#endif
