/* test_gen_state.c — the thinking-and-constraint state machine (src/serve/gen_state.c) driven
 * directly over a small vocabulary of byte strings, no model: a block closed by its end tag (the
 * thinking and the answer apart, the block's tokens counted); closed by the budget (the close tag
 * forced at the budget's token, not before); a JSON constraint armed only after the block (no end
 * of generation inside it, the grammar's mask after it, the value complete ends the sequence, an
 * answer glued to the close tag fed to the grammar, one that does not fit refused, a close tag
 * across two tokens); a first token
 * that may open a block instead (the mask offers the open tag's pieces, a piece narrows it to the
 * rest, the constraints' token skips the block); a forced tool call (its marker forced, the list
 * constrained, complete: tool calls) and under "auto" beside a JSON format; tokens that leave the
 * grammar; the end of generation; stop strings across token boundaries. */
#include "serve/gen_state.h"
#include "chat/toolcall.h"
#include "test.h"

#include <string.h>

/* The vocabulary: special tokens have no bytes as text and their text when special. */
enum {
    T_EOG,
    T_OPEN,
    T_CLOSE,
    T_CALL,
    T_CALL_END, /* the special tokens end here */
    T_LT,
    T_THINK,
    T_GT,
    T_X,
    T_HELLO,
    T_LBRACE,
    T_KEY,
    T_COLON,
    T_ONE,
    T_RBRACE,
    T_LIST,
    T_FCALL,
    T_LIST_END,
    T_CLOSE_HI,
    T_CLOSE_OBJ,
    T_CLOSE_LBRACE,
    T_CLOSE_A,
    T_CLOSE_B,
    N_TOK
};
static const char *const TEXT[N_TOK] = {"<|im_end|>", "<think>", "</think>",   TOOLCALL_START,
                                        TOOLCALL_END, "<",       "think",      ">",
                                        "x",          "hello",   "{",          "\"a\"",
                                        ":",          "1",       "}",          "[",
                                        "f()",        "]",       "</think>hi", "</think>{\"a\":1}",
                                        "</think>{",  "</",      "think>"};
#define IS_SPECIAL(t) ((t) <= T_CALL_END)

static int tok_bytes(const void *user, int32_t t, bool special, char *buf, int cap) {
    (void)user;
    if (t < 0 || t >= N_TOK || (IS_SPECIAL(t) && !special)) return 0;
    int n = (int)strlen(TEXT[t]);
    if (n <= cap) memcpy(buf, TEXT[t], (size_t)n);
    return n;
}

static bool tok_eog(const void *user, int32_t t) {
    (void)user;
    return t == T_EOG;
}

static gen_vocab *vocab(void) {
    const char *bytes[N_TOK];
    int lens[N_TOK];
    for (int i = 0; i < N_TOK; i++) {
        bytes[i] = IS_SPECIAL(i) ? "" : TEXT[i];
        lens[i] = IS_SPECIAL(i) ? 0 : (int)strlen(TEXT[i]);
    }
    int32_t close[] = {T_CLOSE};
    gen_vocab src = {.n_vocab = N_TOK,
                     .bytes = tok_bytes,
                     .is_eog = tok_eog,
                     .tool_start = T_CALL,
                     .tool_end = T_CALL_END,
                     .close_toks = close,
                     .n_close = 1};
    return gen_vocab_new(&src, grammar_vocab_new(bytes, lens, N_TOK));
}

/* The text a run of tokens made, thinking and answer apart. */
typedef struct out {
    char think[256], answer[256];
    size_t n_think, n_answer;
} out;

/* Takes token t as the scheduler does; the begin's GEN_STOP is 100 + GEN_STOP. */
static int take(gen_state *st, int32_t t, bool forced, out *o) {
    if (gen_take_begin(st, t, forced) == GEN_STOP) return 100 + GEN_STOP;
    char think[64 + LFM2C_THINK_HOLD], answer[64 + LFM2C_THINK_HOLD];
    size_t nt = 0, na = 0;
    gen_split(st, TEXT[t], strlen(TEXT[t]), false, think, &nt, answer, &na);
    if (o && o->n_think + nt < sizeof o->think && o->n_answer + na < sizeof o->answer) {
        memcpy(o->think + o->n_think, think, nt);
        o->think[o->n_think += nt] = 0;
        memcpy(o->answer + o->n_answer, answer, na);
        o->answer[o->n_answer += na] = 0;
    }
    return gen_take_end(st, t, answer, na);
}

/* Does the state's mask allow t (no mask: everything but what the filter bans)? */
static bool allows(gen_state *st, int32_t t) {
    bool al[N_TOK];
    float logits[N_TOK] = {0};
    if (!gen_filter(st, al, logits)) return false;
    return logits[t] == 0;
}

static grammar *json_grammar(void) {
    char err[256];
    grammar *g = grammar_from_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                                     "\"required\":[\"a\"],\"additionalProperties\":false}",
                                     err, sizeof err);
    CHECK(g != NULL, "schema: %s", err);
    return g;
}

static grammar *tool_grammar(void) {
    char err[256];
    grammar *g = grammar_tool_calls("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                                    "{\"type\":\"object\",\"properties\":{}}}}]",
                                    NULL, false, err, sizeof err);
    CHECK(g != NULL, "tools: %s", err);
    return g;
}

static void test_block_closed_by_tag(const gen_vocab *v) {
    gen_state st = {0};
    gen_start(&st, v, &(gen_rules){.think_budget = -1});
    out o = {0};
    bool al[N_TOK];
    int n = 0;
    CHECK(st.th == GEN_TH_FREE && !gen_mask(&st, al, &n) && allows(&st, T_EOG), "free text: no mask");
    CHECK(take(&st, T_OPEN, false, &o) == GEN_GO && st.think.phase == LFM2C_THINK_IN, "the open tag opens");
    CHECK(take(&st, T_X, false, &o) == GEN_GO && take(&st, T_CLOSE, false, &o) == GEN_GO, "x, then the close");
    CHECK(st.think.phase == LFM2C_THINK_ANSWER, "the close tag ends the block: %d", st.think.phase);
    CHECK(take(&st, T_HELLO, false, &o) == GEN_GO, "the answer");
    CHECK(st.n_tokens == 4 && st.n_think == 2, "tokens %d, in the block %d (x and the close)", st.n_tokens, st.n_think);
    CHECK(!strcmp(o.think, "x") && !strcmp(o.answer, "hello"), "think '%s' answer '%s'", o.think, o.answer);
    int32_t f;
    CHECK(!gen_forced(&st, &f), "nothing forced without a budget");
    CHECK(take(&st, T_EOG, false, &o) == 100 + GEN_STOP, "the end of generation ends free text");
    gen_free(&st);
}

static void test_block_closed_by_budget(const gen_vocab *v, const grammar *json) {
    gen_state st = {0};
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = 2});
    out o = {0};
    int32_t f = -1;
    CHECK(st.th == GEN_TH_WAIT && st.g == NULL, "an opened block: the constraint waits");
    CHECK(!allows(&st, T_EOG) && allows(&st, T_HELLO), "inside it: anything but the end of generation");
    CHECK(take(&st, T_X, false, &o) == GEN_GO && !gen_forced(&st, &f), "one token: under the budget");
    CHECK(take(&st, T_HELLO, false, &o) == GEN_GO, "two");
    CHECK(gen_forced(&st, &f) && f == T_CLOSE && st.think_closing, "the budget forces the close tag: %d", f);
    CHECK(!gen_forced(&st, &f), "once");
    CHECK(take(&st, T_CLOSE, true, &o) == GEN_GO && st.think.phase == LFM2C_THINK_ANSWER, "the block closed");
    CHECK(st.th == GEN_TH_FREE && st.g == json && st.answer_from == 3, "the constraint is armed after it");
    CHECK(allows(&st, T_LBRACE) && !allows(&st, T_HELLO) && !allows(&st, T_OPEN), "the grammar's mask");
    CHECK(take(&st, T_HELLO, false, &o) == GEN_FAIL_GRAMMAR, "a token outside the grammar fails");
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = 2});
    static const int32_t ans[] = {T_X, T_X, T_CLOSE, T_LBRACE, T_KEY, T_COLON, T_ONE, T_RBRACE};
    int rc = GEN_GO, i = 0;
    for (; i < 8 && rc == GEN_GO; i++) rc = take(&st, ans[i], ans[i] == T_CLOSE, NULL);
    CHECK(rc == GEN_STOP && i == 8, "the value complete ends it: %d at %d", rc, i);
    CHECK(st.n_think == 3, "the block's tokens: %d", st.n_think);
    gen_free(&st);
}

static void test_answer_glued_to_close(const gen_vocab *v, const grammar *json) {
    gen_state st = {0};
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = -1});
    CHECK(take(&st, T_CLOSE_OBJ, false, NULL) == GEN_STOP, "the value after the close tag, in its token");
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = -1});
    CHECK(take(&st, T_CLOSE_HI, false, NULL) == GEN_FAIL_ANSWER, "an answer that does not fit");
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = -1});
    CHECK(take(&st, T_CLOSE_LBRACE, false, NULL) == GEN_GO && st.gst.depth == 1, "the value begun in its token");
    CHECK(take(&st, T_KEY, false, NULL) == GEN_GO, "and goes on");
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = -1});
    CHECK(take(&st, T_CLOSE_A, false, NULL) == GEN_GO && st.g == NULL && st.th == GEN_TH_WAIT, "half a close tag");
    CHECK(take(&st, T_CLOSE_B, false, NULL) == GEN_GO && st.g == json && st.th == GEN_TH_FREE, "its other half");
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_opened = true, .think_budget = -1});
    CHECK(take(&st, T_CLOSE, false, NULL) == GEN_GO && st.g == json, "the close tag alone");
    CHECK(take(&st, T_LBRACE, false, NULL) == GEN_GO && st.gst.depth == 1, "the next token is the grammar's");
    gen_free(&st);
}

static void test_may_open(const gen_vocab *v, const grammar *json) {
    gen_state st = {0};
    gen_rules r = {.json_grammar = json, .think_allowed = true, .think_budget = -1};
    gen_start(&st, v, &r);
    CHECK(st.th == GEN_TH_MAY_OPEN && st.g == json, "may open a block");
    CHECK(allows(&st, T_LBRACE) && allows(&st, T_OPEN) && allows(&st, T_LT), "the value or the open tag");
    CHECK(!allows(&st, T_THINK) && !allows(&st, T_HELLO) && !allows(&st, T_EOG), "nothing else");
    CHECK(take(&st, T_LT, false, NULL) == GEN_GO && st.open_pos == 1, "a piece of the tag");
    CHECK(allows(&st, T_THINK) && !allows(&st, T_LBRACE) && !allows(&st, T_LT), "only the tag's rest");
    CHECK(take(&st, T_THINK, false, NULL) == GEN_GO && take(&st, T_GT, false, NULL) == GEN_GO, "the rest");
    CHECK(st.th == GEN_TH_WAIT && st.g == NULL && st.think.phase == LFM2C_THINK_IN, "a block: the value waits");
    CHECK(take(&st, T_HELLO, false, NULL) == GEN_GO, "free thinking");
    CHECK(take(&st, T_CLOSE, false, NULL) == GEN_GO && st.g == json && st.th == GEN_TH_FREE, "armed after");
    gen_start(&st, v, &r);
    CHECK(take(&st, T_LBRACE, false, NULL) == GEN_GO, "the value's first token");
    CHECK(st.th == GEN_TH_FREE && st.gst.depth == 1 && !allows(&st, T_OPEN), "no block after it");
    gen_start(&st, v, &(gen_rules){.json_grammar = json, .think_budget = -1});
    CHECK(st.th == GEN_TH_FREE && !allows(&st, T_OPEN), "not allowed: the constraint from the first token");
    gen_free(&st);
}

static void test_forced_call(const gen_vocab *v, const grammar *tools, const grammar *json) {
    gen_state st = {0};
    int32_t f = -1;
    gen_start(&st, v, &(gen_rules){.tool_grammar = tools, .force_tool_call = true, .think_budget = -1});
    CHECK(gen_constrained(&st), "a forced call is owed");
    CHECK(gen_forced(&st, &f) && f == T_CALL, "its marker is forced: %d", f);
    CHECK(take(&st, T_CALL, true, NULL) == GEN_GO && st.g == tools && st.g_tool, "the list's grammar");
    CHECK(allows(&st, T_LIST) && !allows(&st, T_LBRACE), "the list's mask");
    CHECK(take(&st, T_LIST, false, NULL) == GEN_GO && take(&st, T_FCALL, false, NULL) == GEN_GO, "[f()");
    CHECK(take(&st, T_LIST_END, false, NULL) == GEN_CALLS, "the list complete: tool calls");
    gen_start(&st, v,
              &(gen_rules){.tool_grammar = tools, .force_tool_call = true, .think_allowed = true, .think_budget = -1});
    CHECK(st.th == GEN_TH_MAY_OPEN && !gen_forced(&st, &f), "a block may come first: nothing forced");
    CHECK(allows(&st, T_CALL) && allows(&st, T_OPEN) && !allows(&st, T_HELLO), "the marker or the open tag");
    CHECK(take(&st, T_CALL, false, NULL) == GEN_GO && st.g_tool && st.th == GEN_TH_FREE, "the marker: the list");
    gen_start(&st, v,
              &(gen_rules){.json_grammar = json, .tool_grammar = tools, .tools_auto = true, .think_budget = -1});
    CHECK(allows(&st, T_CALL) && allows(&st, T_LBRACE), "auto beside JSON: a call or the value first");
    CHECK(take(&st, T_CALL, false, NULL) == GEN_GO && st.g == tools, "the model opens a call");
    CHECK(take(&st, T_LIST, false, NULL) == GEN_GO && take(&st, T_FCALL, false, NULL) == GEN_GO, "[f()");
    CHECK(take(&st, T_CALL_END, false, NULL) == GEN_CALLS, "the end marker: tool calls");
    gen_start(&st, v,
              &(gen_rules){.json_grammar = json, .tool_grammar = tools, .tools_auto = true, .think_budget = -1});
    CHECK(take(&st, T_LBRACE, false, NULL) == GEN_GO && !allows(&st, T_CALL), "the value began: no call");
    CHECK(take(&st, T_CALL, true, NULL) == GEN_GO && st.g == json, "a marker in the value opens no call");
    CHECK(take(&st, T_EOG, false, NULL) == GEN_GO, "an unfinished value: not ended by an end of generation");
    gen_free(&st);
}

static void test_stops(void) {
    char *stop[] = {"STOP", "xyz"};
    char text[64] = "heST";
    size_t n = 4, rel = 0;
    CHECK(gen_stops(text, &n, 0, stop, 2, &rel) == -1 && rel == 2, "a stop's start held back: %zu", rel);
    strcat(text, "OP and");
    n = strlen(text);
    CHECK(gen_stops(text, &n, 4, stop, 2, &rel) == 0 && n == 2 && !strcmp(text, "he") && rel == 2,
          "across tokens: cut at it (%zu '%s')", n, text);
    strcpy(text, "STO");
    n = 3, rel = 0;
    CHECK(gen_stops(text, &n, 0, stop, 2, &rel) == -1 && rel == 0, "all of it may begin a stop: %zu", rel);
    strcpy(text, "axySTa");
    n = 6, rel = 0;
    CHECK(gen_stops(text, &n, 0, stop, 2, &rel) == -1 && rel == 6, "a start that did not go on is released");
    strcpy(text, "ab xyzSTOP");
    n = 10, rel = 0;
    CHECK(gen_stops(text, &n, 0, stop, 2, &rel) == 0 && n == 6, "the first stop string's match: %zu", n);
    strcpy(text, "already released STO");
    n = strlen(text), rel = 10;
    CHECK(gen_stops(text, &n, 17, stop, 2, &rel) == -1 && rel == 17, "held: %zu", rel);
    strcpy(text, "xSTOP");
    n = 5, rel = 5;
    CHECK(gen_stops(text, &n, 5, stop, 2, &rel) == -1, "text scanned before is not scanned again");
}

int main(void) {
    gen_vocab *v = vocab();
    CHECK(v != NULL, "vocabulary");
    if (!v) TEST_MAIN_END();
    CHECK(v->n_eog == 1 && v->n_open_toks == 5, "ends %d, open tag pieces %d", v->n_eog, v->n_open_toks);
    grammar *json = json_grammar(), *tools = tool_grammar();
    if (json && tools) {
        test_block_closed_by_tag(v);
        test_block_closed_by_budget(v, json);
        test_answer_glued_to_close(v, json);
        test_may_open(v, json);
        test_forced_call(v, tools, json);
    }
    test_stops();
    grammar_free(json);
    grammar_free(tools);
    gen_vocab_free(v);
    TEST_MAIN_END();
}
