/* job_event.h — what the job engine (job.c) tells an API about a generation, in no API's shape:
 * the neutral stream event (a choice starts, answer text, thinking text, a whole tool call, a
 * choice finishes, the usage, an error, the end) and the neutral finished answer (per choice: the
 * answer text with the tool calls taken out, the thinking, the calls, the finish reason, the
 * logprob entries; the usage). Every API renders its wire format from these: OpenAI's SSE chunks
 * and objects (api_openai.c) as much as the Responses, Anthropic and Ollama shapes
 * (api_{responses,anthropic,ollama}.c); none parses another API's JSON. Internal to the server. */
#ifndef LFM2C_JOB_EVENT_H
#define LFM2C_JOB_EVENT_H
#include "serve/http.h"
#include "serve/scheduler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct job;

/* The generation's figures when an event is made (of the job's first choice: the APIs other than
 * OpenAI ask for one). */
typedef struct job_run {
    const int32_t *prompt; /* the prompt's token ids (n_prompt) */
    int n_prompt, n_generated, n_cached;
    int n_reasoning;                 /* generated tokens inside a thinking block */
    int stop_hit;                    /* index of the request's stop string that ended it, -1: none */
    const char *stop_text;           /* that string, NULL: none */
    double t_submit, t_first, t_now; /* seconds (monotonic) */
    double t_load;                   /* seconds the request waited for its model to load (0: loaded) */
} job_run;

/* Why a choice ended, as the client sees it (a call cut by max_tokens is "length"; a tool-call
 * finish without a parsed call is "stop"). */
typedef enum job_finish { JOB_STOP, JOB_LENGTH, JOB_TOOL_CALLS } job_finish;

/* Usage of all choices: each prompt counted once (its choices share it), completions summed. */
typedef struct job_usage {
    int prompt, cached, completion, reasoning;
} job_usage;

typedef enum job_ev_kind {
    JOB_EV_START,     /* a choice begins (before its first delta) */
    JOB_EV_TEXT,      /* answer text; n may be 0 when it only carries logprob entries */
    JOB_EV_REASONING, /* a thinking model's block text (may carry logprob entries) */
    JOB_EV_TOOL_CALL, /* one whole tool call, after the choice's text */
    JOB_EV_FINISH,    /* a choice ended (after its calls) */
    JOB_EV_USAGE,     /* every choice ended: the usage (only when the request asked) */
    JOB_EV_ERROR,     /* the job failed (one failed choice fails it); END follows */
    JOB_EV_END,       /* the stream's last event */
} job_ev_kind;

typedef struct job_event {
    job_ev_kind kind;
    int choice;       /* index of the choice (START..FINISH) */
    const char *text; /* TEXT, REASONING: text[0..n) (not NUL-terminated) */
    size_t n;
    const sched_logprob *lp; /* TEXT, REASONING: the logprob entries made with this delta, NULL: none */
    int n_lp, lp_from;       /* their count, and the index of lp[0] among the choice's entries */
    bool echo;               /* TEXT: the prompt, echoed (completions); its entries are the prompt's */
    const char *call_id, *call_name, *call_args; /* TOOL_CALL: arguments are JSON text */
    int call_index;                              /* TOOL_CALL: its place among the choice's calls */
    job_finish finish;                           /* FINISH */
    const job_usage *usage;                      /* USAGE */
    const http_err *err;                         /* ERROR */
    const job_run *run;                          /* the figures now */
    const struct job *job;                       /* the job (read by the OpenAI wire format only) */
} job_event;

/* One tool call of a finished choice (id: a fresh random call_... id). */
typedef struct job_call {
    char id[64];
    const char *name, *args;
} job_call;

/* One choice of a finished job. */
typedef struct job_choice {
    const char *text; /* the answer with its tool calls taken out (a call cut by max_tokens
                                  dropped); NULL when the calls are all there is */
    size_t n;
    const char *reasoning; /* the thinking, NULL: none */
    size_t n_reasoning;
    job_call *calls;
    int n_calls;
    job_finish finish;
    bool logprobs; /* logprobs were asked for: the generated tokens' entries lp[0..n_lp) */
    const sched_logprob *lp;
    int n_lp;
} job_choice;

typedef struct job_final {
    const struct job *job; /* read by the OpenAI wire format only */
    job_choice *ch;
    int n;
    job_usage usage;
} job_final;
#endif
