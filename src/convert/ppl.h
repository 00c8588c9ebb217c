/* ppl.h — perplexity and KL divergence over a text, as llama.cpp's llama-perplexity computes
 * them, and its logits file (what --kl-divergence-base writes and --kl-divergence reads), so that
 * `lfm2c perplexity` and llama-perplexity read each other's files and print the same figures.
 *
 * The rules (tools/cmd_perplexity.c runs them): the text is tokenized whole (BOS first where the
 * model adds one), cut into chunks of n_ctx tokens whose first token is replaced by BOS, each
 * chunk decoded from an empty cache; the logits of positions n_ctx/2 .. n_ctx-2 score the next
 * token, so every chunk scores n_ctx - 1 - n_ctx/2 tokens, each with all of the chunk's first
 * half as context. PPL = exp(mean NLL), its ± the standard error of the mean NLL times PPL.
 *
 * The logits file, little-endian: "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunk, the
 * n_chunk * n_ctx token ids (int32, before the BOS replacement), then for every chunk its
 * n_ctx - 1 - n_ctx/2 scored positions, one row each of kld_row_words(n_vocab) uint16: two floats
 * (scale, the smallest log-probability kept) and every token's log-probability quantized to 16
 * bits over [max logit - 16, max logit] (0 below), padded to an even count. */
#ifndef LFM2C_PPL_H
#define LFM2C_PPL_H
#include "lfm2c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The negative log-likelihood of token tok under one row of logits: log-sum-exp in double over
 * float exponentials (what llama-perplexity computes without a logits file). */
double ppl_nll(const float *logits, int n_vocab, int tok);

/* Words (uint16) of one row of the logits file. */
size_t kld_row_words(int n_vocab);
/* The logits file's row for these logits into row[0 .. kld_row_words), and the NLL of tok as the
 * reference computes it while writing one (in float). */
double kld_pack_row(const float *logits, int n_vocab, int tok, uint16_t *row);

/* Sums over the positions compared (the model under test, Q, against the base's rows). */
typedef struct kld_sums {
    double nll, nll2, nll_base, nll_base2, nll_nll_base, kld, kld2, p_diff, p_diff2, p_diff4;
    float max_p_diff;
    uint64_t same_top, count;
} kld_sums;
/* One position: Q's logits against the base's row for the same position (tok: the next token).
 * Adds to s; *kld and *p_diff get this position's KL divergence and p(tok) difference (Q - base). */
void kld_add_row(const float *logits, int n_vocab, const uint16_t *base, int tok, kld_sums *s, float *kld,
                 float *p_diff);

/* A logits file's header. */
typedef struct kld_header {
    int32_t n_ctx, n_vocab, n_chunk;
    int32_t *tokens; /* n_chunk * n_ctx, malloc'd */
} kld_header;
/* Scored positions (rows) per chunk. */
int kld_rows_per_chunk(int n_ctx);
/* Reads and checks a header from f, a file of file_size bytes: the magic, sizes in range, token
 * ids in [0, n_vocab), and file_size exactly what the header says. 0, or -1 with err set
 * (LFM2C_EFORMAT; the header is then empty). */
int kld_read_header(FILE *f, uint64_t file_size, kld_header *h, lfm2c_error *err);
void kld_header_free(kld_header *h);
/* Writes a header; false on a write error. */
bool kld_write_header(FILE *f, int n_ctx, int n_vocab, int n_chunk, const int32_t *tokens);

/* mean and its standard error of a quantity whose sum and sum of squares over n values are given
 * (0 error for 10 values or fewer: the reference's rule) */
void ppl_mean_err(double sum, double sum2, uint64_t n, double *mean, double *err);

/* The running figures of one chunk line of --kl-divergence, from the sums so far. */
typedef struct kld_line {
    double ppl, ppl_err, ln_ratio, ln_ratio_err, kld, kld_err, rms_dp, rms_dp_err, same_top, same_top_err;
} kld_line;
void kld_line_of(const kld_sums *s, kld_line *l);

/* The final statistics (percentiles as the reference interpolates them). */
enum { KLD_NPCT = 11, DP_NPCT = 13 };
extern const double KLD_PCT[KLD_NPCT]; /* 1 (max), .999, .99, .95, .90, .5 (median), .10, .05, .01, .001, 0 (min) */
extern const double DP_PCT[DP_NPCT];   /* the same with .75 and .25 */
typedef struct kld_stats {
    kld_line run; /* the figures of the last chunk line */
    double ppl_base, ppl_base_err, cor, ratio, ratio_err, diff, diff_err;
    double kld_pct[KLD_NPCT], dp_mean, dp_err, dp_pct[DP_NPCT];
    uint64_t count;
} kld_stats;
/* From the sums and every position's values (sorted in place). */
void kld_stats_of(const kld_sums *s, float *kld_values, float *dp_values, size_t n, kld_stats *st);
#endif
