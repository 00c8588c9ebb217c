/* test_reasoning.c — the thinking / answer splitter (src/chat/reasoning.c): every case is fed
 * whole, a byte at a time and in every two-piece split, and must give the same thinking and
 * answer: tags split across pieces, a block the prompt opened, whitespace, false tags, an
 * unclosed block, long whitespace runs, and what an LFM2.5 answer looks like. */
#include "test.h"
#include "lfm2c.h"

#include <stdbool.h>
#include <string.h>

typedef struct out {
    char think[4096], answer[4096];
    size_t nt, na;
    int phase;
} out;

static void feed(lfm2c_think *t, out *o, const char *s, size_t n) {
    char th[1024 + LFM2C_THINK_HOLD], an[1024 + LFM2C_THINK_HOLD];
    size_t nt = 0, na = 0;
    lfm2c_think_push(t, s, n, th, &nt, an, &na);
    memcpy(o->think + o->nt, th, nt);
    o->nt += nt;
    memcpy(o->answer + o->na, an, na);
    o->na += na;
}

static void finish(lfm2c_think *t, out *o) {
    char th[LFM2C_THINK_HOLD], an[LFM2C_THINK_HOLD];
    size_t nt = 0, na = 0;
    lfm2c_think_flush(t, th, &nt, an, &na);
    memcpy(o->think + o->nt, th, nt);
    o->nt += nt;
    memcpy(o->answer + o->na, an, na);
    o->na += na;
    o->think[o->nt] = o->answer[o->na] = 0;
    o->phase = t->phase;
}

/* splits: 0 whole, 1 byte by byte, k+2: two pieces at k */
static out split_run(const char *s, bool opened, size_t split) {
    out o = {0};
    lfm2c_think t;
    lfm2c_think_init(&t, opened);
    size_t n = strlen(s);
    if (split == 0) feed(&t, &o, s, n);
    else if (split == 1)
        for (size_t i = 0; i < n; i++) feed(&t, &o, s + i, 1);
    else {
        size_t k = split - 2;
        feed(&t, &o, s, k);
        feed(&t, &o, s + k, n - k);
    }
    finish(&t, &o);
    return o;
}

static void expect(const char *s, bool opened, const char *think, const char *answer) {
    size_t n = strlen(s);
    bool all = true;
    for (size_t split = 0; split < n + 3; split++) {
        out o = split_run(s, opened, split);
        if (strcmp(o.think, think) || strcmp(o.answer, answer)) {
            CHECK(false, "input \"%s\" (opened %d, split %zu): think \"%s\" answer \"%s\", want \"%s\" / \"%s\"", s,
                  opened, split, o.think, o.answer, think, answer);
            all = false;
            break;
        }
    }
    if (all) CHECK(true, "ok");
}

int main(void) {
    /* the usual shape */
    expect("<think>\nLet me see.\n</think>\n\nParis.", false, "Let me see.", "Paris.");
    expect("<think>a</think>b", false, "a", "b");
    expect("  \n<think> x </think>  y", false, "x", "y");
    /* no block: all answer, leading whitespace kept */
    expect("Hello <think>x</think>", false, "", "Hello <think>x</think>");
    expect("  Hello", false, "", "  Hello");
    expect("", false, "", "");
    expect("   ", false, "", "   ");
    /* false starts of the open tag */
    expect("<thin>k", false, "", "<thin>k");
    expect("<<think>x</think>", false, "", "<<think>x</think>");
    expect("<th", false, "", "<th");
    /* the prompt opened the block: no open tag in the output */
    expect("\nreasoning\n</think>\n\nanswer", true, "reasoning", "answer");
    expect("only thinking, cut", true, "only thinking, cut", "");
    expect("</think>answer", true, "", "answer");
    /* false close tags, tags inside the thinking */
    expect("<think>a </thinking> b < c </ d</think>e", false, "a </thinking> b < c </ d", "e");
    expect("<think>a<think>b</think>c</think>d", false, "a<think>b", "c</think>d");
    expect("<think>a </th", false, "a </th", "");
    expect("<think>x</think></think>", false, "x", "</think>");
    /* whitespace inside the thinking kept, around it dropped */
    expect("<think>\n\n one \n two \n\n</think>\n\n\n three \n", false, "one \n two", "three \n");
    expect("<think></think>answer", false, "", "answer");
    expect("<think>\n</think>", false, "", "");
    /* a long whitespace run inside the thinking is given out, not held without bound */
    {
        char s[400], want[400];
        snprintf(s, sizeof s, "<think>a%*sb</think>c", 200, "");
        snprintf(want, sizeof want, "a%*sb", 200, "");
        expect(s, false, want, "c");
        snprintf(s, sizeof s, "<think>a%*s", 200, "");
        out o = split_run(s, false, 1);
        CHECK(o.nt >= 1 + 200 - LFM2C_THINK_WS && o.nt <= 201, "trailing run of an unclosed block: %zu bytes given out",
              o.nt);
        /* a long whitespace run before anything: the output is an answer */
        snprintf(s, sizeof s, "%*s<think>x</think>", 100, "");
        snprintf(want, sizeof want, "%*s<think>x</think>", 100, "");
        expect(s, false, "", want);
    }
    /* the phase is reported */
    CHECK(split_run("<think>x", false, 0).phase == LFM2C_THINK_IN, "in the block");
    CHECK(split_run("<think>x</think>", false, 0).phase == LFM2C_THINK_ANSWER, "answer");
    CHECK(split_run("x", false, 0).phase == LFM2C_THINK_ANSWER, "answer without a block");
    {
        lfm2c_think t;
        lfm2c_think_init(&t, false);
        char th[64], an[64];
        size_t nt, na;
        lfm2c_think_push(&t, " <thi", 5, th, &nt, an, &na);
        CHECK(t.phase == LFM2C_THINK_START && nt == 0 && na == 0, "undecided: nothing given out yet");
        lfm2c_think_push(&t, "nk>", 3, th, &nt, an, &na);
        CHECK(t.phase == LFM2C_THINK_IN && nt == 0 && na == 0, "the open tag completes");
    }
    /* multi-byte text passes through unchanged */
    expect("<think>日本語 ✓</think>😀 ok", false, "日本語 ✓", "😀 ok");
    /* an LFM2.5-style answer with a tool call after the thinking */
    expect(
        "<think>The user wants the weather.</think><|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>",
        false, "The user wants the weather.", "<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>");
    TEST_MAIN_END();
}
