/* cmd_info.c — `lfm2c info`: what a GGUF holds — architecture, layer plan, sizes, tensor types,
 * and the memory running it needs for -np sequences of -c positions in passes of -b tokens
 * (lfm2c_memory_estimate: the file, the KV cache at each type, the state, the scratch); with
 * --device cuda or --gpu-mem, the GPU memory plan (lfm2c_memory_plan). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the GPU memory plan: --device cuda (the card's free memory) or --gpu-mem SIZE */
static int print_plan(const lfm2c_model *m, const char *mem, const char *cap, int slots, int ctx) {
    uint64_t free_b = mem ? lfm2c_parse_size(mem) : 0, cap_b = cap ? lfm2c_parse_size(cap) : 0;
    if (mem && !free_b) return cli_fail("--gpu-mem %s: not a size (e.g. 80G)", mem);
    if (cap && !cap_b) return cli_fail("--gpu-mem-cap %s: not a size (e.g. 80G)", cap);
    char buf[2048];
    lfm2c_error err = {0};
    if (lfm2c_memory_plan(m, free_b, cap_b, slots, ctx, buf, sizeof buf, &err) < 0) return cli_fail("%s", err.msg);
    fputs(buf, stdout);
    return 0;
}

/* An mmproj described (checked against m when given): 0, or 1 (said when m is given). */
static int info_mmproj(const char *path, const lfm2c_model *m) {
    lfm2c_error err = {0};
    lfm2c_mmproj *mm = lfm2c_mmproj_open(path, m, &err);
    if (!mm) return m ? cli_fail("%s: %s", path, err.msg) : 1;
    char line[512];
    lfm2c_mmproj_describe(mm, line, sizeof line);
    printf("mmproj:       %s\n              %s\n", path, line);
    lfm2c_mmproj_free(mm);
    return 0;
}

typedef struct {
    const char *path, *mmproj, *device, *gpu_mem, *gpu_cap;
    bool tensors;
    int slots, ctx, batch;
} info_opts;

static void info_usage(void) {
    printf("usage: lfm2c info -m MODEL.gguf [--mmproj MMPROJ.gguf] [--tensors] [-ctk TYPE] [-ctv TYPE]\n"
           "                  [-c CTX] [-np SEQS] [-b BATCH] [--device cuda | --gpu-mem SIZE] [--gpu-mem-cap SIZE]\n"
           "       lfm2c info -m MMPROJ.gguf   (an LFM2-VL vision tower and projector)\n"
           "  needs: the memory to run SEQS sequences (default 1) of CTX positions (default 4096) in passes of\n"
           "  BATCH tokens (default 512): the file, the KV cache (and at every KV type), the state, the scratch\n"
           "  --device cuda / --gpu-mem: also the GPU memory plan for SEQS sequences of CTX positions\n"
           "  (the CUDA card's free memory, or SIZE such as 80G), at most --gpu-mem-cap\n"
           "  (or $LFM2C_GPU_MEM_CAP)\n");
}

/* 0: parsed; -1: --help printed; else the exit status of a bad option (said). */
static int info_parse(int argc, char **argv, info_opts *o) {
    *o = (info_opts){.gpu_cap = getenv("LFM2C_GPU_MEM_CAP"), .slots = 1, .ctx = 4096, .batch = 512};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) o->path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--tensors")) o->tensors = true;
        else if (!strcmp(argv[i], "-mm") || !strcmp(argv[i], "--mmproj")) o->mmproj = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--device")) o->device = cli_device("--device", cli_value(argc, argv, &i));
        else if (!strcmp(argv[i], "--gpu-mem")) o->gpu_mem = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--gpu-mem-cap")) o->gpu_cap = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-np") || !strcmp(argv[i], "--parallel"))
            o->slots = cli_positive(argv[i], cli_value(argc, argv, &i));
        else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--ctx-size"))
            o->ctx = cli_positive(argv[i], cli_value(argc, argv, &i));
        else if (!strcmp(argv[i], "-b") || !strcmp(argv[i], "--batch-size"))
            o->batch = cli_positive(argv[i], cli_value(argc, argv, &i));
        else if (cli_kv_flag(argc, argv, &i)) continue;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return info_usage(), -1;
        else
            return cli_unknown_option(
                "info", argv[i],
                "-m --model --mmproj -mm --tensors -ctk -ctv --cache-type-k --cache-type-v --hugepages --no-hugepages "
                "--device --gpu-mem --gpu-mem-cap -np --parallel -c --ctx-size -b --batch-size");
    }
    return 0;
}

/* The architecture and the layer plan; returns the number of attention layers. */
static int print_shape(const lfm2c_model_info *in, const char *path) {
    printf("model:        %s%s%s\n", path, in->name[0] ? "  name: " : "", in->name);
    printf("architecture: %s\n", in->arch);
    printf("parameters:   %.3f B total, %.3f B active per token\n", in->n_params / 1e9, in->n_params_active / 1e9);
    printf("hidden %d, layers %d, heads %d, kv heads %d, head dim %d, vocab %d, context %d\n", in->n_embd, in->n_layer,
           in->n_head, in->n_head_kv_max, in->head_dim, in->n_vocab, in->n_ctx_train);
    printf("rope theta %g, rms eps %g, conv L_cache %d\n", in->rope_theta, in->norm_eps, in->conv_l_cache);
    if (in->n_expert)
        printf("experts %d, used %d, expert FFN %d, leading dense layers %d (FFN %d)\n", in->n_expert,
               in->n_expert_used, in->n_ff_exp, in->n_dense_lead, in->n_ff);
    else printf("dense FFN %d\n", in->n_ff);
    printf("layer plan:   ");
    int n_attn = 0;
    for (int l = 0; l < in->n_layer; l++) {
        n_attn += in->is_attention[l];
        printf("%s%s%s", l ? " " : "", in->is_attention[l] ? "A" : "c", in->is_moe[l] ? "+moe" : "");
    }
    printf("\n              (A = attention, c = conv; %d attention, %d conv)\n", n_attn, in->n_layer - n_attn);
    printf("attention at: ");
    for (int l = 0, first = 1; l < in->n_layer; l++)
        if (in->is_attention[l]) {
            printf("%s%d", first ? "" : ",", l);
            first = 0;
        }
    printf("\n");
    return n_attn;
}

/* The tensor types' census (every tensor with --tensors) and the file type. */
static void print_tensors(lfm2c_model *m, const lfm2c_model_info *in, bool each) {
    const char *types[32];
    int counts[32] = {0}, n_types = 0;
    uint64_t bytes_by[32] = {0};
    int nt = lfm2c_model_n_tensors(m);
    for (int i = 0; i < nt; i++) {
        const char *name, *type;
        int64_t ne[4];
        int nd;
        uint64_t nb;
        lfm2c_model_tensor_desc(m, i, &name, &type, ne, &nd, &nb);
        int k = 0;
        while (k < n_types && strcmp(types[k], type)) k++;
        if (k == n_types && n_types < 32) types[n_types++] = type;
        if (k < 32) {
            counts[k]++;
            bytes_by[k] += nb;
        }
        if (each) {
            printf("  %-36s %-6s [", name, type);
            for (int d = 0; d < nd; d++) printf("%s%lld", d ? ", " : "", (long long)ne[d]);
            printf("]  %.2f MB\n", nb / 1e6);
        }
    }
    printf("tensor types: ");
    for (int k = 0; k < n_types; k++)
        printf("%s%s:%d (%.1f MB)", k ? ", " : "", types[k], counts[k], bytes_by[k] / 1e6);
    const char *ftn = lfm2c_file_type_name(in->file_type);
    if (ftn) printf("\nfile type:    %s\n", ftn);
    else printf("\nfile type:    %d (%s)\n", in->file_type, in->file_type < 0 ? "not given" : "unknown");
}

static void print_memory(lfm2c_model *m, const lfm2c_model_info *in, int n_attn) {
    double kv_per_tok = lfm2c_kv_cache_bytes(m, 32768) / 32768.0;
    int n_conv = in->n_layer - n_attn, tk, tv;
    cli_kv_current(&tk, &tv);
    printf("layout:       weights %s",
           in->weights_copied ? "copied into anonymous huge pages" : "mapped from the file");
    if (in->weights_packed) printf(", %d matrices interleaved for the kernels", in->weights_packed);
    printf("\n");
    printf("memory:       weights %.2f GB, read per token %.2f GB; KV cache %.1f KB/token (k %s, v %s), "
           "%.1f MB at 4096 tokens, %.1f MiB at 32768; conv state %.1f KB/sequence\n",
           in->weight_bytes / 1e9, in->weight_bytes_active / 1e9, kv_per_tok / 1024, lfm2c_kv_type_name(tk),
           lfm2c_kv_type_name(tv), lfm2c_kv_cache_bytes(m, 4096) / 1e6, lfm2c_kv_cache_bytes(m, 32768) / 1048576.0,
           n_conv * 2.0 * in->n_embd * 4 / 1024);
    printf("special:      bos %d, eos %d, pad %d, add_bos %s\n", in->bos_id, in->eos_id, in->pad_id,
           in->add_bos ? "yes" : "no");
}

static const char *mib(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else snprintf(buf, cap, "%.1f MiB", (double)b / (1 << 20));
    return buf;
}

/* What running it takes (lfm2c_memory_estimate, as the server's --memory-budget counts it), and
 * the KV cache at each type. */
static int print_needs(const lfm2c_model *m, const info_opts *o) {
    lfm2c_memory_request rq = lfm2c_memory_default_request(m);
    rq.n_ctx = o->ctx, rq.n_seq = o->slots, rq.n_batch = o->batch;
    lfm2c_memory_need nd;
    lfm2c_error err = {0};
    if (lfm2c_memory_estimate(m, &rq, &nd, &err))
        return cli_fail("-c %d -np %d -b %d: %s", o->ctx, o->slots, o->batch, err.msg);
    char a[6][32];
    printf("needs:        %s for %d sequence%s of %d positions, passes of %d tokens (-np, -c, -b)\n",
           mib(nd.total, a[0], 32), o->slots, o->slots == 1 ? "" : "s", o->ctx, o->batch);
    printf("              file %s, KV cache %s (k %s, v %s), state %s, scratch %s, logits %s, other %s\n",
           mib(nd.file, a[0], 32), mib(nd.kv, a[1], 32), lfm2c_kv_type_name(rq.type_k), lfm2c_kv_type_name(rq.type_v),
           mib(nd.state, a[2], 32), mib(nd.scratch, a[3], 32), mib(nd.logits, a[4], 32), mib(nd.other, a[5], 32));
    printf("KV by type:   at %d positions x %d:", o->ctx, o->slots);
    const int types[3] = {LFM2C_KV_F16, LFM2C_KV_Q8_0, LFM2C_KV_F32};
    for (int i = 0; i < 3; i++) {
        rq.type_k = rq.type_v = types[i];
        lfm2c_memory_need k;
        if (lfm2c_memory_estimate(m, &rq, &k, NULL) == 0)
            printf("%s %s %s (total %s)", i ? "," : "", lfm2c_kv_type_name(types[i]), mib(k.kv, a[0], 32),
                   mib(k.total, a[1], 32));
    }
    printf("\n");
    return 0;
}

int cmd_info(int argc, char **argv) {
    info_opts o;
    int prc = info_parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    lfm2c_model_params mp = lfm2c_model_default_params();
    mp.n_threads = 1;
    mp.no_populate = true; /* info reads only the header */
    lfm2c_error err = {0};
    cli_kv_apply(&mp);
    lfm2c_model *m = o.path ? lfm2c_model_open(o.path, &mp, &err) : NULL;
    if (!m && o.path && !o.mmproj && info_mmproj(o.path, NULL) == 0) return 0; /* -m an mmproj */
    if (!m) return cli_fail("%s", o.path ? err.msg : "no model given (-m MODEL.gguf)");
    if (o.mmproj && info_mmproj(o.mmproj, m)) {
        lfm2c_model_free(m);
        return 1;
    }
    const lfm2c_model_info *in = lfm2c_model_get_info(m);
    int n_attn = print_shape(in, o.path);
    print_tensors(m, in, o.tensors);
    print_memory(m, in, n_attn);
    int rc = print_needs(m, &o);
    if (!rc && (o.gpu_mem || (o.device && !strcmp(o.device, "cuda"))))
        rc = print_plan(m, o.gpu_mem, o.gpu_cap, o.slots, o.ctx);
    lfm2c_model_free(m);
    return rc;
}
