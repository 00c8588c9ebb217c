/* cmd_synth.c — `lfm2c synth --preset P --type T -o FILE.gguf [overrides]`: write a random-weight
 * model of a real LFM2 architecture, laid out like the reference quantizer's files. */
#include "cli.h"
#include "formats/ggml_types.h"
#include "convert/synth.h"
#include "convert/lora_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lfm2c synth --preset NAME --type TYPE -o FILE.gguf [options]\n"
            "  --preset NAME     %s\n"
            "  --type TYPE       %s (default q4_k_m)\n"
            "  -o FILE           output GGUF\n"
            "  --seed S          random seed (default 1)\n"
            "  -t N              threads (default: all cores)\n"
            "overrides: --hidden N --layers N --attn-layers 2,6,... --heads N --kv-heads N --ff N\n"
            "           --experts N --experts-used N --expert-ff N --dense-layers N --vocab N --ctx N\n"
            "a random LoRA adapter (GGUF) for an existing model:\n"
            "  lfm2c synth --lora-for BASE.gguf -o ADAPTER.gguf [--rank R (8)] [--alpha A (2R)] [--seed S]\n"
            "              [--targets attn_q,attn_k,attn_v,attn_output,shortconv.in_proj,shortconv.out_proj,\n"
            "               ffn_gate,ffn_up,ffn_down,ffn_gate_exps,ffn_up_exps,ffn_down_exps (default: all)]\n",
            synth_preset_list(), quant_ftype_list());
}

static int parse_layers(const char *s, synth_config *c) {
    c->n_attn = 0;
    if (!*s) return 0;
    for (const char *p = s;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= SYNTH_MAX_LAYERS || c->n_attn == SYNTH_MAX_LAYERS) return -1;
        c->attn_layers[c->n_attn++] = (int)v;
        if (!*end) return 0;
        if (*end != ',') return -1;
        p = end + 1;
    }
}

static void progress(void *ud, uint64_t done, uint64_t total, const char *tensor) {
    int *last = ud, pct = total ? (int)(100 * done / total) : 100;
    if (pct == *last) return;
    *last = pct;
    char fill[41];
    for (int i = 0; i < 40; i++) fill[i] = i < pct * 40 / 100 ? '#' : '.';
    fill[40] = 0;
    fprintf(stderr, "\r[%s] %3d%%  %-40.40s", fill, pct, tensor);
    fflush(stderr);
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *type = "q4_k_m", *out = NULL;
    synth_params p = {.seed = 1};
    /* overrides are applied after the preset; -1 = not given */
    int hidden = -1, layers = -1, heads = -1, kv_heads = -1, ff = -1, experts = -1, used = -1, eff = -1;
    int dense = -1, vocab = -1, ctx = -1;
    const char *attn = NULL, *lora_for = NULL, *targets = NULL;
    int rank = 8;
    double alpha = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) preset = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--type")) type = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--seed")) {
            const char *v = cli_value(argc, argv, &i);
            char *end;
            p.seed = strtoull(v, &end, 10);
            if (end == v || *end) return cli_fail("synth: --seed expects an integer, got '%s'", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) p.n_threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--hidden")) hidden = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--layers")) layers = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--attn-layers")) attn = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--heads")) heads = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--kv-heads")) kv_heads = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--ff")) ff = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--experts")) experts = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--experts-used")) used = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--expert-ff")) eff = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--dense-layers")) dense = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--vocab")) vocab = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--ctx")) ctx = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--lora-for")) lora_for = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--rank")) rank = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--alpha")) alpha = cli_float(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--targets")) targets = cli_value(argc, argv, &i);
        else
            return cli_unknown_option(
                "synth", a,
                "--preset --type -o --output --seed -t --threads --hidden --layers --attn-layers --heads "
                "--kv-heads --ff --experts --experts-used --expert-ff --dense-layers --vocab --ctx "
                "--lora-for --rank --alpha --targets");
    }
    if (lora_for) {
        if (!out) return cli_fail("synth: -o ADAPTER.gguf is required");
        lora_synth_params lp = {rank, (float)alpha, p.seed, targets};
        lfm2c_error lerr = {0};
        if (!lora_synth(lora_for, &lp, out, &lerr)) return cli_fail("synth: %s", lerr.msg);
        printf("wrote %s: LoRA adapter for %s, rank %d, alpha %g\n", out, lora_for, rank,
               alpha > 0 ? alpha : 2.0 * rank);
        return 0;
    }
    if (!preset) return cli_fail("synth: --preset is required (%s)", synth_preset_list());
    if (!out) return cli_fail("synth: -o FILE.gguf is required");
    synth_config c;
    if (!synth_preset(preset, &c))
        return cli_fail("synth: unknown preset '%s' (expected one of %s)", preset, synth_preset_list());
    const quant_ftype *ft = quant_ftype_find(type);
    if (!ft) return cli_fail("synth: unknown type '%s' (expected one of %s)", type, quant_ftype_list());
    if (hidden >= 0) c.hidden = hidden;
    if (layers >= 0) {
        c.n_layer = layers;
        if (!attn) { /* keep the preset's attention layers that still exist */
            int k = 0;
            for (int i = 0; i < c.n_attn; i++)
                if (c.attn_layers[i] < layers) c.attn_layers[k++] = c.attn_layers[i];
            c.n_attn = k;
        }
    }
    if (attn && parse_layers(attn, &c))
        return cli_fail("synth: --attn-layers expects indices like 2,6,10, got '%s'", attn);
    if (heads >= 0) c.n_head = heads;
    if (kv_heads >= 0) c.n_head_kv = kv_heads;
    if (ff >= 0) c.ff = ff;
    if (vocab >= 0) c.vocab = vocab;
    if (ctx >= 0) c.ctx = ctx;
    if (experts >= 0 || used >= 0 || eff >= 0 || dense >= 0) {
        if (strcmp(c.arch, "lfm2moe"))
            return cli_fail("synth: expert options need an MoE preset (lfm2-8b-a1b, lfm2-24b-a2b)");
        if (experts >= 0) c.n_expert = experts;
        if (used >= 0) c.n_expert_used = used;
        if (eff >= 0) c.expert_ff = eff;
        if (dense >= 0) c.n_dense = dense;
    }
    int last = -1;
    if (isatty(fileno(stderr))) {
        p.progress = progress;
        p.progress_ud = &last;
    }
    synth_report rep;
    lfm2c_error err = {0};
    bool ok = synth_write(&c, ft, &p, out, &rep, &err);
    if (p.progress) fprintf(stderr, "\r%-90s\r", "");
    if (!ok) return cli_fail("synth: %s", err.msg);
    printf("wrote %s: %s %s, %d layers (%d attention), hidden %d, %.3f B params, %d tensors (", out, c.arch, ft->name,
           c.n_layer, c.n_attn, c.hidden, rep.n_params / 1e9, rep.n_tensors);
    for (int t = 0, first = 1; t < 64; t++)
        if (rep.type_count[t]) {
            printf("%s%s: %d", first ? "" : ", ", ggml_type_get((uint32_t)t)->name, rep.type_count[t]);
            first = 0;
        }
    printf("), %.2f MB in %.2f s (%.0f MB/s)\n", rep.file_bytes / 1e6, rep.seconds,
           rep.seconds > 0 ? rep.file_bytes / 1e6 / rep.seconds : 0.0);
    return 0;
}
