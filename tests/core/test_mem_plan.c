/* test_mem_plan.c — the GPU memory planner (core/mem_plan.c) on the real shapes of LFM2-24B-A2B,
 * LFM2-8B-A1B and LFM2-1.2B (lfm2c synth's presets, docs/LFM2-SPEC.md 1.3; the 24B's Q4_K_M file
 * size as published): the case, 1,024 sequences of 1,536 positions on an 80 GB card,
 * fits with the F16 KV cache and BF16 copies of the non-expert linears but not of the experts; an
 * H200 under an 80 GiB cap plans the same, and uncapped takes the experts' copies too; a card too
 * small says so with the most slots that fit (that many fit, one more does not); an F32 cache that
 * does not fit falls back to F16; the sizes parse; and the shapes of an opened model add up to its
 * parameter count. The host estimate (lfm2c_memory_estimate, `lfm2c info`, the server's
 * --memory-budget): its KV cache is the bytes the CPU backend's KV arrays hold at the full context,
 * its scratch the bytes the forward's slots hold after a pass of the batch, its logits the
 * session's rows, and the server's figure (lfm2c_memory_need_bytes) its total less the file;
 * sizes out of range are refused. */
#include "core/mem_plan.h"

#include "convert/synth.h"
#include "core/session.h"
#include "cpu/backend_cpu.h"
#include "cpu/scratch.h"
#include "lfm2c.h"
#include "test.h"

#include <string.h>

static const uint64_t GiB = 1ull << 30;

/* The shapes of a synth preset; weight bytes as published (24B) or at Q4_K_M's ~4.85 bits. */
static mem_shapes shapes_of(const char *preset, uint64_t weight_bytes) {
    synth_config c;
    mem_shapes sh;
    memset(&sh, 0, sizeof sh);
    CHECK(synth_preset(preset, &c), "%s", preset);
    const uint64_t H = (uint64_t)c.hidden, hd = H / (uint64_t)c.n_head, kvd = (uint64_t)c.n_head_kv * hd;
    sh.n_embd = c.hidden, sh.n_vocab = c.vocab, sh.n_layer = c.n_layer, sh.n_attn = c.n_attn;
    sh.n_conv = c.n_layer - c.n_attn, sh.head_dim = (int)hd, sh.n_head = c.n_head, sh.n_head_kv = c.n_head_kv;
    const bool moe = !strcmp(c.arch, "lfm2moe");
    sh.n_expert = moe ? c.n_expert : 0, sh.n_expert_used = moe ? c.n_expert_used : 0;
    sh.expert_ff = moe ? c.expert_ff : 0, sh.ff_max = c.ff;
    for (int l = 0; l < c.n_layer; l++) {
        bool attn = false;
        for (int a = 0; a < c.n_attn; a++) attn |= c.attn_layers[a] == l;
        sh.dense_params += attn ? 2 * H * H + 2 * kvd * H : 4 * H * H; /* q o k v | in (3H) out */
        if (!moe || l < c.n_dense) sh.dense_params += 3 * H * (uint64_t)c.ff;
        else {
            sh.dense_params += (uint64_t)c.n_expert * H; /* the router */
            sh.expert_params += 3 * (uint64_t)c.n_expert * c.expert_ff * H;
        }
    }
    sh.dense_params += (uint64_t)c.vocab * H; /* the head (tied to the embedding) */
    const uint64_t all = sh.dense_params + sh.expert_params + (uint64_t)c.vocab * H;
    sh.weight_bytes = weight_bytes ? weight_bytes : all * 485 / 800;
    return sh;
}

static mem_request request(uint64_t free_bytes, uint64_t cap, int slots, int ctx) {
    mem_request rq = {free_bytes, cap, slots, ctx, LFM2C_KV_F16, 8192};
    return rq;
}

static void show(const mem_plan *p, const mem_request *rq) {
    char buf[1024];
    mem_plan_text(p, rq, buf, sizeof buf);
    printf("%s", buf);
}

static bool same_choices(const mem_plan *a, const mem_plan *b) {
    return a->fits == b->fits && a->kv_type == b->kv_type && a->bf16_dense == b->bf16_dense &&
           a->bf16_experts == b->bf16_experts;
}

static void check_24b(void) {
    /* Q4_K_M of the 24B-A2B: 13.43 GiB (docs/LFM2-SPEC.md 1.3) */
    const mem_shapes sh = shapes_of("lfm2-24b-a2b", (uint64_t)(13.43 * GiB));
    /* the figures: ~1.8 GB of non-expert linears in BF16; 20,480 KV bytes a position */
    CHECK(2 * sh.dense_params > 1700000000ull && 2 * sh.dense_params < 1900000000ull, "dense %llu",
          (unsigned long long)sh.dense_params);
    CHECK(mem_kv_per_token(&sh, LFM2C_KV_F16) == 20480, "kv %llu", (unsigned long long)mem_kv_per_token(&sh, 1));
    mem_plan h100, h200cap, h200;
    mem_request r80 = request(79 * GiB, 0, 1024, 1536); /* an H100 80GB's free memory */
    CHECK(mem_plan_make(&sh, &r80, &h100), "80 GB");
    show(&h100, &r80);
    CHECK(h100.fits && h100.kv_type == LFM2C_KV_F16 && h100.bf16_dense && !h100.bf16_experts, "24B on 80 GB");
    CHECK(h100.total <= h100.budget && h100.max_slots >= 1024, "total %llu, %d slots", (unsigned long long)h100.total,
          h100.max_slots);
    mem_request rcap = request(139 * GiB, lfm2c_parse_size("80G"), 1024, 1536); /* an H200 under the cap */
    mem_plan_make(&sh, &rcap, &h200cap);
    show(&h200cap, &rcap);
    CHECK(same_choices(&h100, &h200cap), "an H200 under an 80 GiB cap plans otherwise");
    CHECK(h200cap.budget <= 80 * GiB, "the cap");
    mem_request rh200 = request(139 * GiB, 0, 1024, 1536);
    mem_plan_make(&sh, &rh200, &h200);
    CHECK(h200.fits && h200.bf16_dense && h200.bf16_experts, "24B on an uncapped H200: the experts in BF16 too");
    /* too small: the most slots that fit */
    mem_plan small, at, over;
    mem_request r40 = request(40 * GiB, 0, 1024, 1536);
    CHECK(!mem_plan_make(&sh, &r40, &small) && !small.fits, "24B x 1024 x 1536 on 40 GiB must not fit");
    CHECK(small.max_slots > 0 && small.max_slots < 1024, "max slots %d", small.max_slots);
    mem_request ra = request(40 * GiB, 0, small.max_slots, 1536), ro = request(40 * GiB, 0, small.max_slots + 1, 1536);
    CHECK(mem_plan_make(&sh, &ra, &at) && !mem_plan_make(&sh, &ro, &over), "%d slots fit, %d do not", small.max_slots,
          small.max_slots + 1);
    /* F32 asked where only F16 fits */
    mem_request r60 = request(60 * GiB, 0, 1024, 1536);
    r60.kv_type = LFM2C_KV_F32;
    mem_plan f32;
    CHECK(mem_plan_make(&sh, &r60, &f32) && f32.kv_type == LFM2C_KV_F16, "F32 KV fell back to F16");
}

static void check_others(void) {
    const mem_shapes s8 = shapes_of("lfm2-8b-a1b", 0), s12 = shapes_of("lfm2-1.2b", 0);
    CHECK(s8.expert_params > 7000000000ull && s8.expert_params < 8000000000ull, "8B experts %llu",
          (unsigned long long)s8.expert_params);
    mem_request r80 = request(79 * GiB, 0, 1024, 1536);
    mem_plan p8, p12;
    CHECK(mem_plan_make(&s8, &r80, &p8) && p8.bf16_dense && p8.bf16_experts, "8B-A1B on 80 GB: all in BF16");
    show(&p8, &r80);
    CHECK(mem_plan_make(&s12, &r80, &p12) && p12.bf16_dense && !p12.bf16_experts && p12.experts_bf16 == 0,
          "1.2B on 80 GB: BF16, no experts");
    CHECK(mem_kv_per_token(&s12, LFM2C_KV_F16) == 6 * 2 * 512 * 2, "1.2B KV a position");
}

static void check_parse(void) {
    CHECK(lfm2c_parse_size("80G") == 80 * GiB, "80G");
    CHECK(lfm2c_parse_size("80GB") == 80 * GiB, "80GB");
    CHECK(lfm2c_parse_size("79.5g") == (uint64_t)(79.5 * GiB), "79.5g");
    CHECK(lfm2c_parse_size("512M") == 512ull << 20, "512M");
    CHECK(lfm2c_parse_size("1073741824") == GiB, "bytes");
    CHECK(lfm2c_parse_size("80X") == 0 && lfm2c_parse_size("") == 0 && lfm2c_parse_size("-1G") == 0 &&
              lfm2c_parse_size("G") == 0 && lfm2c_parse_size(NULL) == 0,
          "bad sizes");
}

/* an opened model's shapes: the linears and experts, with the embedding and the norms, make up
 * its parameters */
static void check_model_shapes(void) {
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-kq-moe-q4_k_m.gguf"), &mp, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    mem_shapes sh;
    mem_shapes_of(m, &sh);
    const lfm2c_model_info *in = lfm2c_model_get_info(m);
    const uint64_t emb = (uint64_t)in->n_vocab * in->n_embd;
    CHECK(sh.expert_params > 0 && sh.dense_params > 0 && sh.n_attn > 0 && sh.n_conv > 0, "shapes");
    const uint64_t sum = sh.dense_params + sh.expert_params + emb;
    /* what is left: norms, conv kernels, biases, and the head once more when it is tied */
    CHECK(sum <= in->n_params + emb && sum + (uint64_t)in->n_layer * 8 * in->n_embd + emb >= in->n_params,
          "%llu of %llu", (unsigned long long)sum, (unsigned long long)in->n_params);
    lfm2c_model_free(m);
}

/* The estimate's parts against what the CPU backend holds once a session has run. */
static void check_host_estimate(void) {
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    lfm2c_error err = {0};
    lfm2c_model *m = lfm2c_model_open(DATA("lfm2-kq-moe-q4_k_m.gguf"), &mp, &err);
    CHECK(m != NULL, "open: %s", err.msg);
    if (!m) return;
    lfm2c_memory_request rq = lfm2c_memory_default_request(m);
    CHECK(rq.n_ctx == 4096 && rq.n_seq == 1 && rq.n_batch == 512 && rq.ckpt_max == 16 && rq.logits_rows == 1,
          "the defaults");
    rq.n_ctx = 600;
    lfm2c_memory_need nd;
    CHECK(lfm2c_memory_estimate(m, &rq, &nd, &err) == 0, "estimate: %s", err.msg);
    CHECK(nd.total == nd.file + nd.kv + nd.state + nd.scratch + nd.logits + nd.other, "the parts add up");
    CHECK(nd.file == 7118368 && nd.logits == 8192 * 4 && nd.kv == lfm2c_kv_cache_bytes(m, 600), "file, logits, KV");
    lfm2c_session *s = lfm2c_session_new(m, 600, &err);
    int32_t t[600];
    for (int i = 0; i < 600; i++) t[i] = 1 + (i * 37) % 8000;
    CHECK(s && lfm2c_session_decode(s, t, 600, LFM2C_LOGITS_LAST, &err) == 0, "600 tokens: %s", err.msg);
    size_t kv = 0;
    for (int i = 0; s && i < 2 * m->n_attn; i++) kv += cpu_session_of(s)->cap[i];
    CHECK(kv == nd.kv, "the KV arrays hold %zu bytes, the estimate %llu", kv, (unsigned long long)nd.kv);
    const size_t sc = scratch_total(cpu_model_of(m)->scratch);
    CHECK(sc == nd.scratch, "the scratch holds %zu bytes after passes of 512, the estimate %llu", sc,
          (unsigned long long)nd.scratch);
    CHECK(lfm2c_memory_need_bytes(m, 600, 1) == nd.total - nd.file, "the server's figure");
    rq.n_seq = 3;
    lfm2c_memory_need three;
    lfm2c_memory_estimate(m, &rq, &three, &err);
    CHECK(three.kv == 3 * nd.kv && three.state == 3 * nd.state && three.scratch > nd.scratch, "three sequences");
    rq.type_k = rq.type_v = LFM2C_KV_F32;
    lfm2c_memory_estimate(m, &rq, &three, &err);
    CHECK(three.kv == 6 * nd.kv, "an F32 cache: twice the F16's");
    rq.type_k = rq.type_v = LFM2C_KV_Q8_0;
    CHECK(lfm2c_memory_estimate(m, &rq, &three, &err) == 0 && three.kv < 3 * nd.kv, "a q8_0 cache: %s", err.msg);
    rq.type_k = 7;
    CHECK(lfm2c_memory_estimate(m, &rq, &three, &err) < 0 && err.code == LFM2C_EINVAL, "an unknown type: %s", err.msg);
    rq = lfm2c_memory_default_request(m), rq.n_ctx = 0;
    CHECK(lfm2c_memory_estimate(m, &rq, &three, &err) < 0 && !lfm2c_memory_need_bytes(m, -1, 1), "no context");
    lfm2c_session_free(s);
    lfm2c_model_free(m);
}

int main(void) {
    check_host_estimate();
    check_24b();
    check_others();
    check_parse();
    check_model_shapes();
    TEST_MAIN_END();
}
