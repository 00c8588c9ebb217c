/* sample_step.cu — the CUDA backend's side of decode_batch_sample (core/sample_batch.h), on with
 * LFM2C_CUDA_SAMPLE=1: before a forward, the rows whose session has an item (dev_sample) and a
 * sampler without a filter hook become smp_jobs, their penalty windows, biases and masks staged
 * in one pinned arena; after the output head the jobs, the arena up, sample.cu's kernel, and only
 * the smp_out records down (the other rows' logits as before); after the stream is done, the
 * records into the items, and a row the device handed back (SMP_HOST) copied to its session. */
#include "cuda_sample.h"
extern "C" {
#include "core/forward.h"
#include "core/sample_batch.h"
#include "core/sampler.h"
#include "core/session.h"
}

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cu_sampler {
    int n, cap;                  /* jobs this forward; room for */
    smp_job *host_jobs, *dev_jobs;
    smp_out *host_out, *dev_out;
    sample_item **item;          /* [cap] each job's item */
    float **dst;                 /* [cap] its session's logits row (for a row handed back) */
    uint8_t *host_arena, *dev_arena;
    size_t arena_n, arena_cap;
    float *work;                 /* cap * n_vocab floats */
    int *row_job;                /* [rows] each output row's job, or -1 */
    int rows, rows_cap;          /* output rows this forward; room for */
    long taken;                  /* rows drawn here so far (not handed back) */
};

cu_sampler *cu_sampler_new(void) { return (cu_sampler *)calloc(1, sizeof(cu_sampler)); }

static void jobs_free(cu_sampler *cs) {
    cudaFreeHost(cs->host_jobs), cudaFree(cs->dev_jobs), cudaFreeHost(cs->host_out), cudaFree(cs->dev_out);
    cudaFree(cs->work);
    free(cs->item), free(cs->dst);
    cs->host_jobs = nullptr, cs->dev_jobs = nullptr, cs->host_out = nullptr, cs->dev_out = nullptr;
    cs->work = nullptr, cs->item = nullptr, cs->dst = nullptr;
    cs->cap = 0;
}

void cu_sampler_free(cu_sampler *cs) {
    if (!cs) return;
    jobs_free(cs);
    cudaFreeHost(cs->host_arena), cudaFree(cs->dev_arena);
    free(cs->row_job);
    free(cs);
}

static int fail(lfm2c_error *err, cudaError_t e, const char *what) {
    if (err) err->code = LFM2C_ENOMEM, snprintf(err->msg, sizeof err->msg, "CUDA: %s: %s", what, cudaGetErrorString(e));
    return -1;
}

/* room for n jobs of n_vocab and `bytes` of arrays, T output rows */
static int reserve(cu_sampler *cs, int n, int V, size_t bytes, int T, lfm2c_error *err) {
    cudaError_t e = cudaSuccess;
    if (n > cs->cap) {
        jobs_free(cs);
        e = cudaMallocHost((void **)&cs->host_jobs, sizeof(smp_job) * n);
        if (e == cudaSuccess) e = cudaMalloc((void **)&cs->dev_jobs, sizeof(smp_job) * n);
        if (e == cudaSuccess) e = cudaMallocHost((void **)&cs->host_out, sizeof(smp_out) * n);
        if (e == cudaSuccess) e = cudaMalloc((void **)&cs->dev_out, sizeof(smp_out) * n);
        if (e == cudaSuccess) e = cudaMalloc((void **)&cs->work, sizeof(float) * (size_t)n * V);
        cs->item = (sample_item **)malloc(sizeof(sample_item *) * n);
        cs->dst = (float **)malloc(sizeof(float *) * n);
        if (e == cudaSuccess && (!cs->item || !cs->dst)) e = cudaErrorMemoryAllocation;
        if (e != cudaSuccess) return jobs_free(cs), fail(err, e, "the sampler's jobs");
        cs->cap = n;
    }
    if (bytes > cs->arena_cap) {
        cudaFreeHost(cs->host_arena), cudaFree(cs->dev_arena);
        cs->host_arena = nullptr, cs->dev_arena = nullptr, cs->arena_cap = 0;
        e = cudaMallocHost((void **)&cs->host_arena, bytes);
        if (e == cudaSuccess) e = cudaMalloc((void **)&cs->dev_arena, bytes);
        if (e != cudaSuccess) return fail(err, e, "the sampler's arrays");
        cs->arena_cap = bytes;
    }
    if (T > cs->rows_cap) {
        free(cs->row_job);
        cs->row_job = (int *)malloc(sizeof(int) * T);
        if (!cs->row_job) return cs->rows_cap = 0, fail(err, cudaErrorMemoryAllocation, "the sampler's rows");
        cs->rows_cap = T;
    }
    cs->rows = T;
    return 0;
}

/* the session's item, with its job's parameters, when its row can be sampled on the device */
static sample_item *row_item(const fwd_token *t, smp_job *j, int *from, const float **bias) {
    sample_item *it = t->out_row >= 0 ? t->seq->dev_sample : nullptr;
    if (!it || sampler_job(it->smp, t->seq->n_past, j, from, bias)) return nullptr;
    return it;
}

static int64_t put(cu_sampler *cs, const void *p, size_t n) {
    int64_t off = (int64_t)cs->arena_n;
    memcpy(cs->host_arena + off, p, n);
    cs->arena_n += (n + 15) & ~(size_t)15;
    return off;
}

/* one job for out row `row` of token t */
static void add_job(cu_sampler *cs, const fwd_token *t, sample_item *it, smp_job j, int from, const float *bias,
                    int row, int V) {
    const lfm2c_session *s = t->seq;
    j.row = row;
    j.n_logprobs = it->n_logprobs < SMP_MAX_TOP ? it->n_logprobs : SMP_MAX_TOP;
    j.n_hist = s->n_past - from;
    if (j.n_hist > 0) j.hist_off = put(cs, s->tokens + from, sizeof(int32_t) * j.n_hist);
    if (bias) j.bias_off = put(cs, bias, sizeof(float) * V);
    if (it->mask) j.mask_off = put(cs, it->mask, sizeof(uint32_t) * ((V + 31) / 32));
    cs->row_job[row] = cs->n;
    cs->item[cs->n] = it;
    cs->dst[cs->n] = s->logits + (size_t)t->out_row * V;
    cs->host_jobs[cs->n++] = j;
}

int cu_sampler_plan(cu_sampler *cs, const fwd_token *toks, int T, int V, lfm2c_error *err) {
    int n = 0, rows = 0;
    size_t bytes = 16;
    for (int t = 0; t < T; t++) {
        smp_job j;
        int from;
        const float *bias;
        rows += toks[t].out_row >= 0;
        sample_item *it = row_item(&toks[t], &j, &from, &bias);
        if (!it) continue;
        n++;
        bytes += (sizeof(int32_t) * (toks[t].seq->n_past - from) + 15) + (bias ? sizeof(float) * V + 15 : 0) +
                 (it->mask ? sizeof(uint32_t) * ((V + 31) / 32) + 15 : 0);
    }
    cs->n = 0;
    cs->rows = 0;
    cs->arena_n = 0;
    if (!n) return 0;
    if (reserve(cs, n, V, bytes, rows, err)) return -1;
    for (int t = 0, row = 0; t < T; t++) {
        if (toks[t].out_row < 0) continue;
        smp_job j;
        int from;
        const float *bias;
        sample_item *it = row_item(&toks[t], &j, &from, &bias);
        cs->row_job[row] = -1;
        if (it) add_job(cs, &toks[t], it, j, from, bias, row, V);
        row++;
    }
    return cs->n;
}

bool cu_sampler_active(const cu_sampler *cs) { return cs && cs->n > 0; }

long cu_sampler_taken(const cu_sampler *cs) { return cs ? cs->taken : 0; }

bool cu_sampler_took(const cu_sampler *cs, int row) { return cs && cs->n && row < cs->rows && cs->row_job[row] >= 0; }

void cu_sampler_enqueue(cu_sampler *cs, cu_q *cq, const float *logits, float *host_logits, int n_out, int V) {
    cudaMemcpyAsync(cs->dev_jobs, cs->host_jobs, sizeof(smp_job) * cs->n, cudaMemcpyHostToDevice, cq->st);
    if (cs->arena_n) cudaMemcpyAsync(cs->dev_arena, cs->host_arena, cs->arena_n, cudaMemcpyHostToDevice, cq->st);
    cu_q_other(cq);
    cu_sample(cq, logits, (size_t)V, V, cs->dev_jobs, cs->n, cs->dev_arena, cs->work, cs->dev_out);
    cudaMemcpyAsync(cs->host_out, cs->dev_out, sizeof(smp_out) * cs->n, cudaMemcpyDeviceToHost, cq->st);
    for (int r = 0; r < n_out; r++) /* the rows sampled on the host: their logits as before */
        if (cs->row_job[r] < 0)
            cudaMemcpyAsync(host_logits + (size_t)r * V, logits + (size_t)r * V, sizeof(float) * V,
                            cudaMemcpyDeviceToHost, cq->st);
}

int cu_sampler_finish(cu_sampler *cs, const float *logits, int V, lfm2c_error *err) {
    for (int r = 0; r < cs->rows && cs->n; r++) {
        const int j = cs->row_job[r];
        if (j < 0) continue;
        cs->item[j]->out = cs->host_out[j];
        if (cs->host_out[j].status != SMP_HOST) {
            cs->taken++;
            continue;
        }
        cudaError_t e = cudaMemcpy(cs->dst[j], logits + (size_t)r * V, sizeof(float) * V, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) return fail(err, e, "a handed-back row of logits");
    }
    return 0;
}
