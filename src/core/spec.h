/* spec.h — what speculative decoding (spec.c) offers beyond include/lfm2c.h: a clock the
 * draft-length choice (draft_auto) reads its costs from, for tests that need those costs fixed
 * rather than measured on a machine whose timings vary. */
#ifndef LFM2C_SPEC_H
#define LFM2C_SPEC_H

#include "lfm2c.h"

/* draft_auto tries a neighbour of its chosen draft length every SPEC_AUTO_EXPLORE steps */
#define SPEC_AUTO_EXPLORE 8

/* Replaces the seconds draft_auto measures: the target's forward over n tokens then "takes"
 * fwd(arg, n) seconds and a drafted token draft_s. fwd NULL: measured again. */
void spec_set_costs(lfm2c_spec *sp, double (*fwd)(void *arg, int n), void *arg, double draft_s);

#endif
