/* cmd_synth.c — `lfm2c synth --preset P --type T -o FILE.gguf [overrides]`: write a random-weight
 * model of a real LFM2 architecture, laid out like the reference quantizer's files. */
#include "cli.h"
#include "formats/ggml_types.h"
#include "convert/synth.h"
#include "convert/lora_file.h"
#include "base/os.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lfm2c synth --preset NAME --type TYPE -o FILE.gguf [options]\n"
            "  --preset NAME     %s,\n"
            "                    LFM2-VL: %s (the language model; --mmproj writes the vision part)\n"
            "                    LFM2-Audio: %s (the language model; --mmproj writes the audio encoder)\n"
            "  --type TYPE       %s (default q4_k_m)\n"
            "  -o FILE           output GGUF\n"
            "  --seed S          random seed (default 1)\n"
            "  -t N              threads (default: all cores)\n"
            "  --mmproj FILE     with an LFM2-VL or LFM2-Audio preset: also write its mmproj (the vision\n"
            "                    tower + projector, or the audio encoder + adapter)\n"
            "  --mmproj-type T   the mmproj's matrices: f32, f16 (default) or q8_0\n"
            "overrides: --hidden N --layers N --attn-layers 2,6,... --heads N --kv-heads N --ff N\n"
            "           --experts N --experts-used N --expert-ff N --dense-layers N --vocab N --ctx N\n"
            "a random LoRA adapter (GGUF) for an existing model:\n"
            "  lfm2c synth --lora-for BASE.gguf -o ADAPTER.gguf [--rank R (8)] [--alpha A (2R)] [--seed S]\n"
            "              [--targets attn_q,attn_k,attn_v,attn_output,shortconv.in_proj,shortconv.out_proj,\n"
            "               ffn_gate,ffn_up,ffn_down,ffn_gate_exps,ffn_up_exps,ffn_down_exps (default: all)]\n",
            synth_preset_list(), synth_vl_preset_list(), synth_audio_preset_list(), quant_ftype_list());
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

/* What synth's options set; the overrides apply after the preset (-1: not given). */
typedef struct synth_opts {
    const char *preset, *type, *out, *attn, *lora_for, *targets, *mmproj, *mmproj_type;
    synth_params p;
    int hidden, layers, heads, kv_heads, ff, experts, used, eff, dense, vocab, ctx, rank;
    double alpha;
} synth_opts;

/* The integer overrides: one row each. */
typedef struct synth_int {
    const char *name;
    size_t at;
} synth_int;
#define SI(name, field) \
    { name, offsetof(synth_opts, field) }
static const synth_int SYNTH_INTS[] = {
    SI("--hidden", hidden),     SI("--layers", layers), SI("--heads", heads),
    SI("--kv-heads", kv_heads), SI("--ff", ff),         SI("--experts", experts),
    SI("--experts-used", used), SI("--expert-ff", eff), SI("--dense-layers", dense),
    SI("--vocab", vocab),       SI("--ctx", ctx),
};
#undef SI

/* The command line into o: -1 to go on, else the exit code (0 after --help). */
static int synth_parse(int argc, char **argv, synth_opts *o) {
    *o = (synth_opts){.type = "q4_k_m", .mmproj_type = "f16", .p = {.seed = 1}, .rank = 8};
    for (size_t k = 0; k < sizeof SYNTH_INTS / sizeof *SYNTH_INTS; k++) *(int *)((char *)o + SYNTH_INTS[k].at) = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool taken = false;
        for (size_t k = 0; k < sizeof SYNTH_INTS / sizeof *SYNTH_INTS && !taken; k++)
            if ((taken = !strcmp(a, SYNTH_INTS[k].name)))
                *(int *)((char *)o + SYNTH_INTS[k].at) = cli_int(a, cli_value(argc, argv, &i));
        if (taken) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) o->preset = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--type")) o->type = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--seed")) {
            const char *v = cli_value(argc, argv, &i);
            char *end;
            o->p.seed = strtoull(v, &end, 10);
            if (end == v || *end) return cli_fail("synth: --seed expects an integer, got '%s'", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            o->p.n_threads = cli_threads(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--attn-layers")) o->attn = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--lora-for")) o->lora_for = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--rank")) o->rank = cli_positive(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--alpha")) o->alpha = cli_float(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--targets")) o->targets = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--mmproj")) o->mmproj = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--mmproj-type")) o->mmproj_type = cli_value(argc, argv, &i);
        else
            return cli_unknown_option(
                "synth", a,
                "--preset --type -o --output --seed -t --threads --hidden --layers --attn-layers --heads "
                "--kv-heads --ff --experts --experts-used --expert-ff --dense-layers --vocab --ctx "
                "--lora-for --rank --alpha --targets --mmproj --mmproj-type");
    }
    return -1;
}

/* The overrides given, onto the preset's config c: 0, or the exit code with the message said. */
static int synth_override(const synth_opts *o, synth_config *c) {
    if (o->hidden >= 0) c->hidden = o->hidden;
    if (o->layers >= 0) {
        c->n_layer = o->layers;
        if (!o->attn) { /* keep the preset's attention layers that still exist */
            int k = 0;
            for (int i = 0; i < c->n_attn; i++)
                if (c->attn_layers[i] < o->layers) c->attn_layers[k++] = c->attn_layers[i];
            c->n_attn = k;
        }
    }
    if (o->attn && parse_layers(o->attn, c))
        return cli_fail("synth: --attn-layers expects indices like 2,6,10, got '%s'", o->attn);
    if (o->heads >= 0) c->n_head = o->heads;
    if (o->kv_heads >= 0) c->n_head_kv = o->kv_heads;
    if (o->ff >= 0) c->ff = o->ff;
    if (o->vocab >= 0) c->vocab = o->vocab;
    if (o->ctx >= 0) c->ctx = o->ctx;
    if (o->experts >= 0 || o->used >= 0 || o->eff >= 0 || o->dense >= 0) {
        if (strcmp(c->arch, "lfm2moe"))
            return cli_fail("synth: expert options need an MoE preset (lfm2-8b-a1b, lfm2-24b-a2b)");
        if (o->experts >= 0) c->n_expert = o->experts;
        if (o->used >= 0) c->n_expert_used = o->used;
        if (o->eff >= 0) c->expert_ff = o->eff;
        if (o->dense >= 0) c->n_dense = o->dense;
    }
    return 0;
}

/* --lora-for BASE: a random adapter for an existing model */
static int synth_lora(const synth_opts *o) {
    if (!o->out) return cli_fail("synth: -o ADAPTER.gguf is required");
    lora_synth_params lp = {o->rank, (float)o->alpha, o->p.seed, o->targets};
    lfm2c_error lerr = {0};
    if (!lora_synth(o->lora_for, &lp, o->out, &lerr)) return cli_fail("synth: %s", lerr.msg);
    printf("wrote %s: LoRA adapter for %s, rank %d, alpha %g\n", o->out, o->lora_for, o->rank,
           o->alpha > 0 ? o->alpha : 2.0 * o->rank);
    return 0;
}

static const struct {
    const char *name;
    uint32_t type;
} MMPROJ_TYPES[] = {{"f32", GGML_F32}, {"f16", GGML_F16}, {"q8_0", GGML_Q8_0}};

/* --mmproj-type's index in MMPROJ_TYPES, or -1 (said) */
static int mmproj_type(const synth_opts *o) {
    for (int k = 0; k < 3; k++)
        if (!strcasecmp(o->mmproj_type, MMPROJ_TYPES[k].name)) return k;
    cli_fail("synth: --mmproj-type expects f32, f16 or q8_0, got '%s'", o->mmproj_type);
    return -1;
}

/* --mmproj FILE of an LFM2-VL preset: its vision tower and projector */
static int synth_mmproj(const synth_opts *o, synth_vl_config *vc) {
    const int k = mmproj_type(o);
    if (k < 0) return 1;
    if (o->hidden >= 0) vc->proj_dim = o->hidden; /* the projector feeds the language model's width */
    lfm2c_error err = {0};
    if (!synth_mmproj_write(vc, MMPROJ_TYPES[k].type, o->p.seed, o->mmproj, &err))
        return cli_fail("synth: %s", err.msg);
    printf("wrote %s: LFM2-VL mmproj %s, %d blocks of %d, patch %d, projector %d -> %d\n", o->mmproj,
           MMPROJ_TYPES[k].name, vc->n_layer, vc->n_embd, vc->patch, vc->mm_hidden, vc->proj_dim);
    return 0;
}

/* --mmproj FILE of an LFM2-Audio preset: its Conformer and adapter */
static int synth_audio_mmproj(const synth_opts *o, synth_audio_config *ac) {
    const int k = mmproj_type(o);
    if (k < 0) return 1;
    if (o->hidden >= 0) ac->proj_dim = o->hidden; /* the adapter feeds the language model's width */
    lfm2c_error err = {0};
    if (!synth_audio_mmproj_write(ac, MMPROJ_TYPES[k].type, o->p.seed, o->mmproj, &err))
        return cli_fail("synth: %s", err.msg);
    printf("wrote %s: LFM2-Audio mmproj %s, %d Conformer blocks of %d (%d heads, feed-forward %d), %d mel bins, "
           "adapter %d -> %d\n",
           o->mmproj, MMPROJ_TYPES[k].name, ac->n_layer, ac->n_embd, ac->n_head, ac->n_ff, ac->n_mel, ac->mm_hidden,
           ac->proj_dim);
    return 0;
}

/* The preset into c, its mmproj written when asked; 0, or the exit status (said). */
static int synth_presets(const synth_opts *o, synth_config *c) {
    synth_vl_config vc;
    synth_audio_config ac;
    const bool vl = synth_vl_preset(o->preset, c, &vc), audio = !vl && synth_audio_preset(o->preset, c, &ac);
    if (!vl && !audio && !synth_preset(o->preset, c))
        return cli_fail("synth: unknown preset '%s' (expected one of %s, %s, %s)", o->preset, synth_preset_list(),
                        synth_vl_preset_list(), synth_audio_preset_list());
    if (o->mmproj && !vl && !audio)
        return cli_fail("synth: --mmproj needs an LFM2-VL or LFM2-Audio preset (%s, %s)", synth_vl_preset_list(),
                        synth_audio_preset_list());
    if (o->mmproj) return vl ? synth_mmproj(o, &vc) : synth_audio_mmproj(o, &ac);
    return 0;
}

int cmd_synth(int argc, char **argv) {
    synth_opts o;
    int rc = synth_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.lora_for) return synth_lora(&o);
    if (!o.preset) return cli_fail("synth: --preset is required (%s)", synth_preset_list());
    if (!o.out) return cli_fail("synth: -o FILE.gguf is required");
    synth_config c;
    if ((rc = synth_presets(&o, &c))) return rc;
    const quant_ftype *ft = quant_ftype_find(o.type);
    if (!ft) return cli_fail("synth: unknown type '%s' (expected one of %s)", o.type, quant_ftype_list());
    if ((rc = synth_override(&o, &c))) return rc;
    int last = -1;
    if (os_isatty(stderr)) {
        o.p.progress = progress;
        o.p.progress_ud = &last;
    }
    synth_report rep;
    lfm2c_error err = {0};
    bool ok = synth_write(&c, ft, &o.p, o.out, &rep, &err);
    if (o.p.progress) fprintf(stderr, "\r%-90s\r", "");
    if (!ok) return cli_fail("synth: %s", err.msg);
    printf("wrote %s: %s %s, %d layers (%d attention), hidden %d, %.3f B params, %d tensors (", o.out, c.arch, ft->name,
           c.n_layer, c.n_attn, c.hidden, rep.n_params / 1e9, rep.n_tensors);
    for (int t = 0, first = 1; t < GGML_NTYPES; t++)
        if (rep.type_count[t]) {
            printf("%s%s: %d", first ? "" : ", ", ggml_type_get((uint32_t)t)->name, rep.type_count[t]);
            first = 0;
        }
    printf("), %.2f MB in %.2f s (%.0f MB/s)\n", rep.file_bytes / 1e6, rep.seconds,
           rep.seconds > 0 ? rep.file_bytes / 1e6 / rep.seconds : 0.0);
    return 0;
}
