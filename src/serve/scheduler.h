/* scheduler.h — continuous batching of generation requests over one model.
 *
 * One thread owns the model: every step it runs ONE lfm2c_decode_batch over the next token of
 * every generating slot plus a chunk of the prompts still being read, samples, detokenizes,
 * applies stop strings and constrained decoding, and publishes the new text to the requests.
 * A slot keeps its session between requests: a new request goes to the free slot whose token
 * history shares the longest prefix with its prompt, and only the rest of the prompt is fed.
 * Requests beyond the slots wait in a bounded queue; submit fails when it is full. A request may
 * name a LoRA adapter: its slot's session runs with it (lfm2c_session_set_lora), so one step
 * batches sequences of different adapters; a slot keeps its prefix only for the same adapter. */
#ifndef LFM2C_SCHEDULER_H
#define LFM2C_SCHEDULER_H
#include "chat/grammar.h"
#include "lfm2c.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sched sched;

typedef struct sched_params {
    int n_slots;          /* sequences decoded together */
    int n_ctx;            /* context of each slot's session */
    int queue_max;        /* requests that may wait beyond the free slots; more are refused */
    int prefill_chunk;    /* prompt tokens per step (all prompts together) */
    bool no_prefix_reuse; /* always start from an empty session (for measuring the reuse) */
    /* each slot's checkpoints (lfm2c_session_set_checkpoints): one every ckpt_every positions
     * inside the forward, at most ckpt_max per slot; the prompt's end keeps its logits, so a
     * prompt read before is answered without a forward. 0, 0: the defaults below. */
    int ckpt_every, ckpt_max;
    /* speculative decoding per slot (lfm2c_spec): a draft model (borrowed) or prompt lookup
     * (spec.lookup_max > 0); spec_on false: off */
    bool spec_on;
    lfm2c_model *draft;
    lfm2c_spec_params spec;
    /* tokens one step's forward takes at most, decode rows first (each slot's next token and
     * draft), then prompt chunks in the room left (at least an eighth of it, at most
     * prefill_chunk), the prompt cut last step first; 0: no bound but prefill_chunk, the slots in
     * order (the CPU's way). lfm2c serve sets the CUDA backend's forward size (2048). */
    int token_budget;
} sched_params;

/* The checkpoint policy of a slot where sched_params leaves it 0 (bench/SERVE.md measured it). */
enum { SCHED_CKPT_EVERY = 32, SCHED_CKPT_MAX = 32, SCHED_CKPT_LOGITS = 2 };

enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH, FINISH_TOOL_CALLS, FINISH_CANCELLED, FINISH_ERROR };

#define SCHED_MAX_TOP_LOGPROBS 20

typedef struct sched_logprob {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_token[SCHED_MAX_TOP_LOGPROBS];
    float top_logprob[SCHED_MAX_TOP_LOGPROBS];
} sched_logprob;

/* A request: the caller fills the inputs, submits, then reads the outputs under sched_lock. */
typedef struct sched_req {
    /* inputs (not touched after submit) */
    int32_t *prompt;
    int n_prompt;
    float *rows; /* its images' rows (lfm2c_prompt_images; owned): each id below 0 of prompt takes the
                    next one (lfm2c_decode_batch_embd); NULL: none */
    lfm2c_sampler_params sampling;
    float *logit_bias; /* n_vocab entries or NULL (owned, freed with the request) */
    int max_tokens;    /* 0: read the prompt only (its logprobs) */
    bool ctx_bound;    /* max_tokens is the room the context leaves (the client asked for
                                   more, or set no bound): a constrained answer cut there fails
                                   (400 context_length_exceeded) instead of ending "length" */
    char **stop;       /* stop strings (owned) */
    int n_stop;
    int n_logprobs; /* -1: none; else top-N alternatives (0..20) per token */
    /* the grammars are borrowed: the caller may free them once it released the request (the
     * scheduler reads them only under its lock and only while the request is not cancelled) */
    const grammar *json_grammar; /* constrained output from the first token (borrowed) */
    const grammar *tool_grammar; /* tool-call list grammar (borrowed) */
    bool force_tool_call;        /* start with <|tool_call_start|> (tool_choice required/named) */
    bool tools_auto;             /* switch to tool_grammar when the model opens a call */
    bool prompt_logprobs;        /* also the log-probability of each prompt token (n_logprobs
                                   alternatives; echo of /v1/completions); reads the whole prompt */
    lfm2c_lora *lora;            /* the LoRA adapter it runs with (borrowed; NULL: the base model) */
    float lora_scale;
    int spec_n_max, spec_n_min; /* speculative.n_max / n_min: -1 = the server's (n_max at most it) */
    float spec_p_min;           /* speculative.p_min: < 0 = the server's */
    /* a thinking model's <think>...</think> block (lfm2c_think, lfm2c.h) */
    bool think_split;   /* the block's text goes to `reasoning`, the answer to `text`; false:
                                   all of it to `text` as generated (the phase is still followed) */
    bool think_opened;  /* the prompt ends inside an opened block */
    bool think_allowed; /* with constraints (json_grammar, force_tool_call): the output may
                                   open a block first, and they apply to the answer after it; false:
                                   they apply from the first token */
    int think_budget;   /* tokens inside the block before </think> is forced; -1: no limit */
    bool embed;         /* an embedding: the prompt is read in an embedding session (lfm2c.h)
                                   and pooled into `embedding`; nothing is generated */
    int pooling;        /* with embed: LFM2C_POOL_LAST or LFM2C_POOL_MEAN */
    int32_t *script;    /* tests (serve --test-script): the tokens to pick, each through the
                                   mask, then an end of generation (owned) */
    int n_script;
    struct sched_req *fork_of; /* an earlier request of the same submit with the same prompt:
                                   this one waits for its prefill and starts from a copy of its
                                   state (n choices share one prefill) */

    /* outputs (guarded by the scheduler lock) */
    char *text; /* generated text (the answer); text[0..n_released) may be shown */
    size_t n_text, cap_text, n_released;
    char *reasoning; /* with think_split: the thinking, all of it may be shown */
    size_t n_reasoning, cap_reasoning;
    int n_think_tokens;      /* tokens generated inside the block (the close tag's included) */
    sched_logprob *logprobs; /* one per generated token */
    int n_logprobs_out, cap_logprobs;
    sched_logprob *prompt_lp; /* with prompt_logprobs: one per prompt token once it is read
                                   (the first has logprob NAN: nothing predicts it) */
    int n_prompt_lp;
    float *embedding;          /* with embed: n_embd zeroes the caller allocates; the vector once finished
                                   (not normalized; owned, freed with the request) */
    int n_generated, n_cached; /* completion tokens; prompt tokens reused from a slot */
    double t_submit, t_first;  /* seconds (monotonic): submission and first token */
    int finish;                /* FINISH_*; != NONE: done */
    int stop_hit;              /* index of the stop string that ended it, -1: none */
    char error[600];
    int error_status;       /* with FINISH_ERROR: 400 when the request's own limits made it
                                   impossible (e.g. logit_bias bans every allowed token), else 0 */
    const char *error_code; /* with error_status 400: the API's error code (NULL: the default) */
    bool cancelled;         /* set by the caller (client went away) */

    pthread_cond_t cond;    /* signalled when outputs change */
    pthread_cond_t *notify; /* also signalled (set before submit: one waiter for several requests) */
    int refs;
} sched_req;

sched *sched_new(lfm2c_model *model, const sched_params *p, lfm2c_error *err);
/* Stops the thread; running and waiting requests finish as cancelled; later submits fail.
 * The requests' owners may still read and release them until sched_free. */
void sched_shutdown(sched *s);
void sched_free(sched *s);

/* The fewest tokens r's constrained answer needs (a forced tool call with its marker, the JSON
 * of a response format, or either where tools are "auto" beside a JSON format): a value > limit
 * when it cannot fit in limit tokens (the fewest, or a lower bound of it), else <= limit or -1
 * (fits, or undecided within the search's budget, or the answer is not constrained). Any thread:
 * it reads only what sched_new made. See grammar_min_tokens. */
int sched_min_answer_tokens(const sched *s, const sched_req *r, int limit);

sched_req *sched_req_new(void);
/* Queues the request. Returns 0, or -1 when the queue is full (the caller answers 503). */
int sched_submit(sched *s, sched_req *r);
/* Queues n requests together, all or none (-1: no room for all of them). */
int sched_submit_group(sched *s, sched_req **rs, int n);
/* Marks the request cancelled (frees its slot at the next step) and drops the caller's ref. */
void sched_release(sched *s, sched_req *r);

void sched_lock(sched *s);
void sched_unlock(sched *s);
/* Waits (lock held) until the request changes (its notify condition, if set, is signalled) or
 * timeout_ms passes; with a token budget, until a step changed any request (one wake a step for
 * every stream). */
void sched_wait(sched *s, sched_req *r, int timeout_ms);

/* Upper bounds (seconds) of the latency histogram buckets; +Inf is the count. */
#define SCHED_N_LAT 16
#define SCHED_LAT_BOUNDS \
    { 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0 }

typedef struct sched_stats {
    uint64_t requests, prompt_tokens, cached_tokens, generated_tokens;
    uint64_t prefill_tokens; /* prompt tokens actually fed */
    double prefill_seconds, decode_seconds;
    int queue_depth, active_slots, n_slots;
    uint64_t steps, batch_tokens;
    uint64_t spec_drafted, spec_accepted, spec_steps; /* speculative decoding: tokens drafted,
                                  accepted, verification forwards that carried a draft */
    double kv_usage;                                  /* tokens held by running requests / (slots x context), 0..1 */
    uint64_t prefix_copies;                           /* requests that took another slot's prefix (a copy) */
    /* where the scheduler thread's time goes, seconds in all: admitting requests (prefix sync
     * and copies), planning a step (drafts included), the forward, waiting for the lock after it
     * (held by the streams' renderers), sampling and taking the tokens (grammar, detokenizing,
     * stop strings), waiting for work */
    double t_admit, t_plan, t_forward, t_lock, t_sample, t_idle;
    double t_render;   /* the streams' threads turning output into events under the lock (job.c) */
    int ckpt_count;    /* conv checkpoints held by all slots now */
    size_t ckpt_bytes; /* and their memory */
    int ckpt_max;      /* the bound per slot */
    /* latency histograms of finished requests (cumulative buckets up to SCHED_LAT_BOUNDS) */
    uint64_t ttft_bucket[SCHED_N_LAT], tpot_bucket[SCHED_N_LAT], e2e_bucket[SCHED_N_LAT];
    uint64_t ttft_count, tpot_count, e2e_count;
    double ttft_sum, tpot_sum, e2e_sum;
} sched_stats;
void sched_get_stats(sched *s, sched_stats *out);
/* A stream's thread spent `seconds` rendering under the lock (lock held): for sched_stats. */
void sched_add_render_time(sched *s, double seconds);

#endif
