// matmul.comp — the GEMV (matmul.glsl) with its lanes' sums reduced in shared memory: for
// devices without subgroup arithmetic.
#version 450
#include "matmul.glsl"
