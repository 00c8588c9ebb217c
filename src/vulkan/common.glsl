// common.glsl — what every shader of the Vulkan backend includes: buffers are reached through
// device addresses (GL_EXT_buffer_reference, passed as uvec2 in push constants, no descriptor
// sets), byte / half reads out of 32-bit words (no 8- or 16-bit storage features needed), and
// the GGUF block types' dequantization of 8 consecutive weights (layouts: formats/ggml_types.h;
// the same math as cuda/cuda_math.cuh's cm_dequant8), and float -> half rounded to nearest even.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
#extension GL_GOOGLE_include_directive : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32s { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32s { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer I32s { int v[]; };

// GGUF type ids (formats/ggml_types.h)
const uint T_F32 = 0u, T_F16 = 1u, T_Q4_0 = 2u, T_Q4_1 = 3u, T_Q5_0 = 6u, T_Q5_1 = 7u, T_Q8_0 = 8u,
           T_Q4_K = 12u, T_Q5_K = 13u, T_Q6_K = 14u, T_IQ4_NL = 20u, T_BF16 = 30u;

uint rd_u8(U32s w, uint off) { return (w.v[off >> 2] >> ((off & 3u) * 8u)) & 0xffu; }
// a 16-bit value at an even byte offset
uint rd_u16(U32s w, uint off) { return (w.v[off >> 2] >> ((off & 2u) * 8u)) & 0xffffu; }
uint rd_u32(U32s w, uint off) { return rd_u16(w, off) | (rd_u16(w, off + 2u) << 16); }
float rd_half(U32s w, uint off) { return unpackHalf2x16(rd_u16(w, off)).x; }
int rd_i8(U32s w, uint off) { return int(rd_u8(w, off) << 24) >> 24; }

// f as a half's bits, rounded to nearest even (the CPU's f32_to_fp16, F16C's rounding). Vulkan
// leaves packHalf2x16's rounding to the implementation (either neighbour); the KV cache is
// stored through this so its halves are the CPU's on every driver.
uint half_bits(float f) {
    uint x = floatBitsToUint(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;    // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;   // rounds past the largest half: inf
    if (a < 0x38800000u) {                         // a subnormal half, or zero
        if (a < 0x33000000u) return sign;          // under half the smallest subnormal
        uint man = (a & 0x7fffffu) | 0x800000u, shift = 126u - (a >> 23);
        uint q = man >> shift, rem = man & ((1u << shift) - 1u), hf = 1u << (shift - 1u);
        return sign | (q + uint(rem > hf || (rem == hf && (q & 1u) != 0u)));
    }
    uint q = (a >> 13) - (112u << 10), rem = a & 0x1fffu;
    return sign | (q + uint(rem > 0x1000u || (rem == 0x1000u && (q & 1u) != 0u)));
}
uint pack_half2(float lo, float hi) { return half_bits(lo) | (half_bits(hi) << 16); }

const int iq4nl_tab[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

// 6-bit scale / min of sub-block j of Q4_K / Q5_K (12 packed bytes at s)
void kq_scale_min(U32s w, uint s, uint j, out uint sc, out uint mn) {
    if (j < 4u) {
        sc = rd_u8(w, s + j) & 63u;
        mn = rd_u8(w, s + j + 4u) & 63u;
    } else {
        sc = (rd_u8(w, s + j + 4u) & 15u) | ((rd_u8(w, s + j - 4u) >> 6) << 4);
        mn = (rd_u8(w, s + j + 4u) >> 4) | ((rd_u8(w, s + j) >> 6) << 4);
    }
}

// The types read here are the rows of the type table (formats/ggml_types.h) with the Vulkan bit
// (the host refuses others at load, core/gpu_shapes.c); any other reads as 0.
// Weights k0 .. k0+7 (k0 a multiple of 8) of the row at byte `row` of w.
void dequant8(uint t, U32s w, uint row, uint k0, out float y[8]) {
    if (t == T_F32) {
        uint b = (row >> 2) + k0;
        for (int i = 0; i < 8; i++) y[i] = uintBitsToFloat(w.v[b + uint(i)]);
    } else if (t == T_F16) {
        uint b = (row >> 2) + k0 / 2u;
        for (int i = 0; i < 4; i++) {
            vec2 h = unpackHalf2x16(w.v[b + uint(i)]);
            y[2 * i] = h.x;
            y[2 * i + 1] = h.y;
        }
    } else if (t == T_BF16) {
        uint b = (row >> 2) + k0 / 2u;
        for (int i = 0; i < 4; i++) {
            uint u = w.v[b + uint(i)];
            y[2 * i] = uintBitsToFloat(u << 16);
            y[2 * i + 1] = uintBitsToFloat(u & 0xffff0000u);
        }
    } else if (t == T_Q4_0 || t == T_IQ4_NL) {   // 18 bytes: d, qs[16]
        uint b = row + (k0 / 32u) * 18u, j = k0 % 32u;
        float d = rd_half(w, b);
        uint q = b + 2u + (j & 15u);
        for (int i = 0; i < 8; i++) {
            uint v = rd_u8(w, q + uint(i));
            v = j < 16u ? v & 15u : v >> 4;
            y[i] = t == T_Q4_0 ? d * float(int(v) - 8) : d * float(iq4nl_tab[v]);
        }
    } else if (t == T_Q4_1) {   // 20 bytes: d, m, qs[16]
        uint b = row + (k0 / 32u) * 20u, j = k0 % 32u;
        float d = rd_half(w, b), m = rd_half(w, b + 2u);
        uint q = b + 4u + (j & 15u);
        for (int i = 0; i < 8; i++) {
            uint v = rd_u8(w, q + uint(i));
            y[i] = d * float(j < 16u ? v & 15u : v >> 4) + m;
        }
    } else if (t == T_Q5_0 || t == T_Q5_1) {   // 22: d, qh[4], qs[16]; 24: d, m, qh[4], qs[16]
        bool q50 = t == T_Q5_0;
        uint b = row + (k0 / 32u) * (q50 ? 22u : 24u), j = k0 % 32u;
        float d = rd_half(w, b), m = q50 ? 0.0 : rd_half(w, b + 2u);
        uint hoff = q50 ? 2u : 4u;
        uint h = rd_u16(w, b + hoff) | (rd_u16(w, b + hoff + 2u) << 16);
        uint q = b + hoff + 4u + (j & 15u);
        for (int i = 0; i < 8; i++) {
            uint v = rd_u8(w, q + uint(i));
            v = (j < 16u ? v & 15u : v >> 4) | (((h >> (j + uint(i))) & 1u) << 4);
            y[i] = q50 ? d * float(int(v) - 16) : d * float(v) + m;
        }
    } else if (t == T_Q8_0) {   // 34 bytes: d, qs[32]
        uint b = row + (k0 / 32u) * 34u;
        float d = rd_half(w, b);
        uint q = b + 2u + k0 % 32u;
        for (int i = 0; i < 8; i++) y[i] = d * float(rd_i8(w, q + uint(i)));
    } else if (t == T_Q4_K || t == T_Q5_K) {   // d, dmin, scales[12], (Q5_K: qh[32]), qs[128]
        bool q4k = t == T_Q4_K;
        uint b = row + (k0 / 256u) * (q4k ? 144u : 176u), j = k0 % 256u;
        uint c = j / 64u, hi = (j % 64u) / 32u, l = j % 32u, sub = 2u * c + hi, sc, mn;
        kq_scale_min(w, b + 4u, sub, sc, mn);
        float d = rd_half(w, b) * float(sc), m = rd_half(w, b + 2u) * float(mn);
        uint q = b + (q4k ? 16u : 48u) + 32u * c + l, qh = b + 16u + l;
        for (int i = 0; i < 8; i++) {
            uint v = rd_u8(w, q + uint(i));
            v = hi != 0u ? v >> 4 : v & 15u;
            if (!q4k) v += ((rd_u8(w, qh + uint(i)) >> sub) & 1u) << 4;
            y[i] = d * float(v) - m;
        }
    } else if (t == T_Q6_K) {   // ql[128], qh[64], scales[16] (int8), d
        uint b = row + (k0 / 256u) * 210u, j = k0 % 256u;
        uint n = j / 128u, r = j % 128u, quarter = r / 32u, l = r % 32u;
        int sc = rd_i8(w, b + 192u + 8u * n + l / 16u + 2u * quarter);
        float d = rd_half(w, b + 208u) * float(sc);
        uint ql = b + 64u * n + l + (quarter & 1u) * 32u, qh = b + 128u + 32u * n + l;
        for (int i = 0; i < 8; i++) {
            uint lo = rd_u8(w, ql + uint(i));
            lo = quarter < 2u ? lo & 15u : lo >> 4;
            int v = int(lo | (((rd_u8(w, qh + uint(i)) >> (2u * quarter)) & 3u) << 4)) - 32;
            y[i] = d * float(v);
        }
    } else {
        for (int i = 0; i < 8; i++) y[i] = 0.0;
    }
}
