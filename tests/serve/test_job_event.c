/* test_job_event.c — every API renders the job engine's neutral events (src/serve/job_event.h)
 * itself, without a model or a scheduler: one synthetic stream (start, thinking, text, a tool call,
 * finish, end) and a failed one, handed to each dialect's event function (api_openai.c,
 * api_anthropic.c, api_ollama.c, api_responses.c), must come out as that API's exact
 * bytes / events in order; a delta a JSON string cannot hold (invalid UTF-8) is sent by none of
 * the translated APIs; and a neutral final answer (text taken out, a call) becomes each one's
 * answer object. */
#include "serve/job.h"
#include "serve/api_dialect.h"
#include "test.h"

#include <string.h>

typedef struct out {
    char s[16384];
    size_t n;
} out;

static void put(void *ctx, const char *s, size_t n) {
    out *o = ctx;
    if (o->n + n >= sizeof o->s) return;
    memcpy(o->s + o->n, s, n);
    o->n += n;
    o->s[o->n] = 0;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counter;
static job_run run = {.n_prompt = 10, .n_cached = 4, .n_generated = 7, .stop_hit = -1};

static dl_server view(resp_store *rs) {
    return (dl_server){
        .alias = "m", .n_ctx = 256, .started = 1, .responses = rs, .id_mu = &mu, .id_counter = &counter, .owner = ""};
}

/* The synthetic stream: start, "hm" thinking, "Hi" + an invalid byte, a call, finish, end. */
static void feed(const dialect *dl, const dl_server *s, void *state, const job *j, out *o) {
    job_event evs[] = {
        {.kind = JOB_EV_START},
        {.kind = JOB_EV_REASONING, .text = "hm", .n = 2},
        {.kind = JOB_EV_TEXT, .text = "Hi", .n = 2},
        {.kind = JOB_EV_TEXT, .text = "\xff", .n = 1},
        {.kind = JOB_EV_TOOL_CALL, .call_id = "call_abc", .call_name = "f", .call_args = "{\"a\":1}"},
        {.kind = JOB_EV_FINISH, .finish = JOB_TOOL_CALLS},
        {.kind = JOB_EV_END},
    };
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++) {
        evs[i].run = &run;
        evs[i].job = j;
        dl->event(s, state, &evs[i], put, o);
    }
}

/* The needles appear in s in this order. */
static bool in_order(const char *s, const char *const *needles, int n) {
    for (int i = 0; i < n; i++) {
        const char *p = strstr(s, needles[i]);
        if (!p) {
            fprintf(stderr, "missing or out of order: %s\n", needles[i]);
            return false;
        }
        s = p + strlen(needles[i]);
    }
    return true;
}

/* A dialect's request state for body (the translated APIs keep ids and options there). */
static void *state_for(const dialect *dl, const dl_server *s, const char *body) {
    json_t *b = json_loads(body, 0, NULL);
    void *state = NULL;
    bool legacy = false;
    dl_err e = {0};
    json_t *chat = dl->request(s, b, &state, &legacy, &e);
    CHECK(chat != NULL, "%s request: %s", dl->name, e.msg);
    json_decref(chat);
    json_decref(b);
    return state;
}

static void test_openai(void) {
    job j = {.chat = true, .id = "chatcmpl-x", .created = 5, .model_id = "m"};
    out o = {0};
    dl_server s = view(NULL);
    feed(&dialect_openai, &s, NULL, &j, &o);
    const char *want =
        "data: "
        "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: "
        "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"reasoning_content\":\"hm\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: "
        "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: "
        "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: "
        "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"tool_calls\":[{\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\":1}\"},"
        "\"index\":0}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        "data: "
        "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: [DONE]\n\n";
    CHECK(!strcmp(o.s, want), "OpenAI stream:\n%s", o.s);
}

static void test_anthropic(void) {
    dl_server s = view(NULL);
    void *st =
        state_for(&dialect_anthropic, &s, "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}");
    out o = {0};
    feed(&dialect_anthropic, &s, st, NULL, &o);
    const char *want[] = {
        "event: message_start\n",
        "\"input_tokens\":6,\"output_tokens\":0,\"cache_read_input_tokens\":4",
        "event: ping\n",
        "event: content_block_start\ndata: "
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\"",
        "{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}",
        "\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}",
        "{\"type\":\"text_delta\",\"text\":\"Hi\"}",
        "{\"type\":\"content_block_stop\",\"index\":1}",
        "\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_abc\",\"name\":\"f\",\"input\":{}}",
        "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}",
        "{\"type\":\"content_block_stop\",\"index\":2}",
        "\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}",
        "event: message_stop\n"};
    CHECK(in_order(o.s, want, (int)(sizeof want / sizeof *want)), "Anthropic stream:\n%s", o.s);
    int deltas = 0;
    for (const char *p = o.s; (p = strstr(p, "text_delta")); p++) deltas++;
    CHECK(deltas == 1, "the invalid byte is no text delta (%d)", deltas);
    /* a failure: only the error event, in Anthropic's shape */
    out e = {0};
    http_err err;
    http_set_err(&err, 400, "unsatisfiable_request", NULL, "no");
    dialect_anthropic.event(&s, st, &(job_event){.kind = JOB_EV_ERROR, .err = &err, .run = &run}, put, &e);
    CHECK(!strcmp(e.s, "event: error\ndata: "
                       "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"no\"}}\n\n"),
          "Anthropic error:\n%s", e.s);
    /* the final answer: thinking, text, the call's input as an object */
    job_call call = {.id = "call_abc", .name = "f", .args = "{\"a\":1}"};
    job_choice c = {.text = "Hi",
                    .n = 2,
                    .reasoning = "hm",
                    .n_reasoning = 2,
                    .calls = &call,
                    .n_calls = 1,
                    .finish = JOB_TOOL_CALLS};
    job_final f = {.ch = &c, .n = 1};
    json_t *a = dialect_anthropic.final(&s, st, &f, &run);
    char *t = json_dumps(json_object_get(a, "content"), JSON_COMPACT);
    CHECK(t &&
              !strcmp(
                  t,
                  "[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"\"},{\"type\":\"text\",\"text\":\"Hi\"},"
                  "{\"type\":\"tool_use\",\"id\":\"toolu_abc\",\"name\":\"f\",\"input\":{\"a\":1}}]"),
          "Anthropic content: %s", t);
    CHECK(!strcmp(json_string_value(json_object_get(a, "stop_reason")), "tool_use"), "stop_reason");
    free(t);
    json_decref(a);
    dialect_anthropic.free_state(st);
}

static void test_ollama(void) {
    dl_server s = view(NULL);
    void *st = state_for(&dialect_ollama, &s, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}");
    out o = {0};
    feed(&dialect_ollama, &s, st, NULL, &o);
    const char *want[] = {"\"done\":false,\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hm\"}}\n",
                          "\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
                          "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},\"done\":false}\n",
                          "\"done\":true,\"done_reason\":\"stop\"",
                          "\"prompt_eval_count\":10",
                          "\"eval_count\":7"};
    CHECK(in_order(o.s, want, (int)(sizeof want / sizeof *want)), "Ollama stream:\n%s", o.s);
    int lines = 0;
    for (const char *p = o.s; (p = strchr(p, '\n')); p++) lines++;
    CHECK(lines == 4, "4 NDJSON lines (thinking, text, call, done), not %d", lines);
    out e = {0};
    http_err err;
    http_set_err(&err, 500, "generation_failed", NULL, "boom");
    dialect_ollama.event(&s, st, &(job_event){.kind = JOB_EV_ERROR, .err = &err, .run = &run}, put, &e);
    CHECK(!strcmp(e.s, "{\"error\":\"boom\"}\n"), "Ollama error: %s", e.s);
    job_call call = {.id = "call_abc", .name = "f", .args = "{\"a\":1}"};
    job_choice c = {.text = NULL, .calls = &call, .n_calls = 1, .finish = JOB_LENGTH};
    job_final f = {.ch = &c, .n = 1};
    json_t *a = dialect_ollama.final(&s, st, &f, &run);
    char *t = json_dumps(json_object_get(a, "message"), JSON_COMPACT);
    CHECK(t && !strcmp(t, "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
                          "\"arguments\":{\"a\":1}}}]}"),
          "Ollama message: %s", t);
    CHECK(!strcmp(json_string_value(json_object_get(a, "done_reason")), "length"), "done_reason");
    free(t);
    json_decref(a);
    dialect_ollama.free_state(st);
}

static void test_responses(void) {
    resp_store *rs = resp_store_new(4, 1 << 16);
    dl_server s = view(rs);
    void *st = state_for(&dialect_responses, &s, "{\"input\":\"q\",\"store\":false}");
    out o = {0};
    feed(&dialect_responses, &s, st, NULL, &o);
    const char *want[] = {
        "event: response.created\n",
        "\"sequence_number\":0}",
        "event: response.in_progress\n",
        "event: response.output_item.added\n",
        "\"type\":\"reasoning\"",
        "event: response.reasoning_text.delta\n",
        "\"delta\":\"hm\"",
        "event: response.output_item.done\n",
        "event: response.content_part.added\n",
        "\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}",
        "event: response.output_text.delta\n",
        "\"delta\":\"Hi\",\"logprobs\":[]",
        "event: response.content_part.done\n",
        "\"part\":{\"type\":\"output_text\",\"text\":\"Hi\",\"annotations\":[],\"logprobs\":[]}",
        "event: response.output_item.done\n",
        "\"type\":\"function_call\",\"status\":\"in_progress\",\"call_id\":\"call_abc\",\"name\":\"f\"",
        "event: response.function_call_arguments.delta\n",
        "\"delta\":\"{\\\"a\\\":1}\"",
        "event: response.function_call_arguments.done\n",
        "event: response.completed\n",
        "\"usage\":{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":4,\"cache_write_tokens\":0},"
        "\"output_tokens\":7"};
    CHECK(in_order(o.s, want, (int)(sizeof want / sizeof *want)), "Responses stream:\n%s", o.s);
    const char *first_usage = strstr(o.s, "\"usage\""), *done = strstr(o.s, "event: response.completed");
    CHECK(first_usage && done && first_usage > done, "no usage before response.completed (the spec allows no null)");
    int deltas = 0;
    for (const char *p = o.s; (p = strstr(p, "event: response.output_text.delta")); p++) deltas++;
    CHECK(deltas == 1, "the invalid byte is no text delta (%d)", deltas);
    job_call call = {.id = "call_abc", .name = "f", .args = "{\"a\":1}"};
    job_choice c = {.text = "Hi", .n = 2, .calls = &call, .n_calls = 1, .finish = JOB_TOOL_CALLS};
    job_final f = {.ch = &c, .n = 1, .usage = {.prompt = 10, .cached = 4, .completion = 7, .reasoning = 2}};
    void *st2 = state_for(&dialect_responses, &s, "{\"input\":\"q\",\"store\":false}");
    json_t *a = dialect_responses.final(&s, st2, &f, &run);
    json_t *outp = json_object_get(a, "output");
    CHECK(json_array_size(outp) == 2, "a message and a function_call item");
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(outp, 1), "arguments")), "{\"a\":1}"),
          "the call's arguments");
    CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(a, "usage"), "output_tokens_details"),
                                             "reasoning_tokens")) == 2,
          "reasoning tokens from the usage");
    json_decref(a);
    dialect_responses.free_state(st);
    dialect_responses.free_state(st2);
    resp_store_free(rs);
}

/* A stored response: its object and input items kept beside its conversation, for the owner
 * that stored it only, until deleted (its output items with it). */
static void test_responses_store(void) {
    resp_store *rs = resp_store_new(8, 1 << 16);
    dl_server s = view(rs);
    s.owner = "alice";
    void *st = state_for(&dialect_responses, &s,
                         "{\"input\":[{\"role\":\"user\",\"content\":\"q\"},{\"type\":\"function_call_output\","
                         "\"call_id\":\"c1\",\"output\":[{\"type\":\"input_text\",\"text\":\"sunny\"}]}]}");
    job_choice c = {.text = "Hi", .n = 2, .finish = JOB_STOP};
    job_final f = {.ch = &c, .n = 1, .usage = {.prompt = 10, .cached = 4, .completion = 7}};
    json_t *a = dialect_responses.final(&s, st, &f, &run);
    const char *id = json_string_value(json_object_get(a, "id"));
    const char *item = json_string_value(json_object_get(json_array_get(json_object_get(a, "output"), 0), "id"));
    json_t *x = resp_store_get_extra(rs, "alice", id);
    CHECK(x && json_equal(json_object_get(x, "response"), a), "the response object is kept as answered");
    json_t *in = json_object_get(x, "input");
    CHECK(json_array_size(in) == 2, "two input items");
    json_t *m = json_array_get(in, 0), *o = json_array_get(in, 1);
    CHECK(!strncmp(json_string_value(json_object_get(m, "id")), "msg_", 4) &&
              !strcmp(json_string_value(json_object_get(json_array_get(json_object_get(m, "content"), 0), "type")),
                      "input_text"),
          "a user message as an item with an id and input_text content");
    CHECK(!strcmp(json_string_value(json_object_get(o, "output")), "sunny") &&
              !strcmp(json_string_value(json_object_get(o, "status")), "completed"),
          "a call's output as the text the model read");
    json_decref(x);
    CHECK(!resp_store_get_extra(rs, "bob", id) && !resp_store_del(rs, "bob", id), "another owner's is not found");
    json_t *kept = resp_store_get(rs, "alice", item);
    CHECK(json_is_object(kept) && !resp_store_get_extra(rs, "alice", item), "an output item is kept, as no response");
    json_decref(kept);
    CHECK(resp_store_del(rs, "alice", id) && !resp_store_get_extra(rs, "alice", id) && !resp_store_get(rs, "alice", id),
          "deleted");
    CHECK(!resp_store_del(rs, "alice", id), "deleted once");
    json_decref(a);
    dialect_responses.free_state(st);
    resp_store_free(rs);
}

int main(void) {
    test_openai();
    test_anthropic();
    test_ollama();
    test_responses();
    test_responses_store();
    TEST_MAIN_END();
}
