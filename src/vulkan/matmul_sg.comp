// matmul_sg.comp — the GEMV (matmul.glsl) with its lanes' sums reduced by subgroupAdd: used
// where the device reports subgroup arithmetic in compute shaders with a subgroup size that
// divides 32 (backend_vulkan.c's subgroup_ok).
#version 450
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define MM_SUBGROUP 1
#include "matmul.glsl"
