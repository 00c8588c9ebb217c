/* test_toolcall.c — the tool-call parser (src/chat/toolcall.c): the golden cases of
 * data/toolcalls/cases.json, our own cases for every form / escape / malformed input, the OpenAI
 * shape, and streaming in random chunkings against the one-shot parse. */
#include "lfm2c.h"
#include "test.h"
#include "chat/toolcall.h"
#include "base/os.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

/* JSON equality as check_toolcalls.py defines it: numbers by value, true is not 1, key order free. */
static bool same(const json_t *a, const json_t *b) {
    if (!a || !b) return a == b;
    if (json_is_boolean(a) || json_is_boolean(b)) return json_typeof(a) == json_typeof(b);
    if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b)) return false;
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach((json_t *)a, k, kl, v) {
            if (!same(v, json_object_getn(b, k, kl))) return false;
        }
        return true;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* Parses text and compares the printed JSON object with `expected` (JSON text). */
static void check_parse(const char *label, const char *text, size_t len, const char *expected) {
    char *got_s = lfm2c_parse_tool_calls(text, len);
    json_error_t e;
    json_t *got = got_s ? json_loads(got_s, JSON_ALLOW_NUL, &e) : NULL;
    json_t *want = json_loads(expected, JSON_ALLOW_NUL, &e);
    CHECK(want != NULL, "%s: bad expected JSON: %s", label, e.text);
    CHECK(got != NULL, "%s: output is not JSON: %s", label, got_s ? got_s : "(null)");
    CHECK(same(got, want), "%s:\n  got  %s\n  want %s", label, got_s ? got_s : "(null)", expected);
    json_decref(got);
    json_decref(want);
    free(got_s);
}

#define PARSE(text, expected) check_parse(text, text, strlen(text), expected)
#define FAILS(text) check_parse(text, text, strlen(text), "{\"content\":" #text ",\"tool_calls\":[],\"parsed\":false}")

/* ---- streaming --------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Feeds text in chunks of 1..max_chunk bytes; returns shown+tail in *shown_out (malloc'd). */
static bool stream_once(const char *text, size_t len, uint64_t *rng, size_t max_chunk, toolcall_result *r, char **total,
                        size_t *total_len, size_t *shown_len, const char *label) {
    toolcall_stream *s = toolcall_stream_new();
    if (!s) return false;
    char *acc = malloc(len + 1);
    size_t na = 0, pos = 0;
    bool ok = acc != NULL;
    while (ok && pos < len) {
        size_t k = max_chunk ? 1 + rng_next(rng) % max_chunk : len;
        if (k > len - pos) k = len - pos;
        size_t n;
        const char *out = toolcall_stream_feed(s, text + pos, k, &n);
        ok = out != NULL;
        pos += k;
        if (!ok) break;
        memcpy(acc + na, out, n);
        na += n;
        /* What is shown is always a raw prefix of the text and never ends inside a character
         * (for valid UTF-8 input) nor contains a start marker. */
        CHECK(!memcmp(acc, text, na), "%s: shown text is not a prefix", label);
        CHECK(na == len || (text[na] & 0xC0) != 0x80, "%s: shown text ends inside a UTF-8 character", label);
        CHECK(!memmem(acc, na, TOOLCALL_START, strlen(TOOLCALL_START)), "%s: marker shown", label);
    }
    const char *tail = NULL;
    size_t tail_len = 0;
    ok = ok && toolcall_stream_finish(s, r, &tail, &tail_len);
    if (ok) {
        char *t = malloc(na + tail_len + 1);
        memcpy(t, acc, na);
        memcpy(t + na, tail, tail_len);
        t[na + tail_len] = 0;
        *total = t;
        *total_len = na + tail_len;
        *shown_len = na;
    }
    free(acc);
    toolcall_stream_free(s);
    return ok;
}

static bool same_result(const toolcall_result *a, const toolcall_result *b) {
    if (a->parsed != b->parsed || a->n_calls != b->n_calls || a->content_len != b->content_len ||
        memcmp(a->content, b->content, a->content_len))
        return false;
    for (int i = 0; i < a->n_calls; i++)
        if (strcmp(a->calls[i].name, b->calls[i].name) || strcmp(a->calls[i].arguments, b->calls[i].arguments))
            return false;
    return true;
}

/* Streams text in several random chunkings: the result must equal the one-shot parse, and what was
 * shown plus the tail must be the content (with calls, leading whitespace may have been shown). */
static void check_stream(const char *label, const char *text, size_t len, uint64_t seed) {
    toolcall_result one;
    if (!toolcall_parse(text, len, &one)) {
        CHECK(0, "%s: parse failed", label);
        return;
    }
    char *ref_total = NULL;
    size_t ref_len = 0;
    for (int round = 0; round < 12; round++) {
        uint64_t rng = seed * 2654435761u + (uint64_t)round + 1;
        size_t max_chunk = round == 0 ? 0 : round < 4 ? 1 : round < 8 ? 5 : 23;
        toolcall_result r;
        char *total = NULL;
        size_t total_len = 0, shown = 0;
        if (!stream_once(text, len, &rng, max_chunk, &r, &total, &total_len, &shown, label)) {
            CHECK(0, "%s: stream failed", label);
            continue;
        }
        CHECK(same_result(&one, &r), "%s: streamed result differs (chunks <= %zu)", label, max_chunk);
        bool exact = total_len == one.content_len && !memcmp(total, one.content, total_len);
        size_t lead = 0;
        while (lead < total_len && strchr(" \t\n\r\f\v", total[lead]) && total[lead]) lead++;
        bool lead_ws_only = lead > 0 && one.parsed && memmem(text, len, TOOLCALL_START, strlen(TOOLCALL_START)) &&
                            total_len - lead == one.content_len && !memcmp(total + lead, one.content, one.content_len);
        CHECK(exact || lead_ws_only, "%s: shown+tail != content (chunks <= %zu): '%.*s'", label, max_chunk,
              (int)total_len, total);
        if (!ref_total) {
            ref_total = total;
            ref_len = total_len;
        } else {
            CHECK(total_len == ref_len && !memcmp(total, ref_total, ref_len), "%s: shown+tail depends on chunking",
                  label);
            free(total);
        }
        toolcall_result_free(&r);
    }
    free(ref_total);
    toolcall_result_free(&one);
}

/* ---- the golden cases -------------------------------------------------------------------- */

static void test_golden(void) {
    json_error_t e;
    json_t *cases = json_load_file(DATA("toolcalls/cases.json"), 0, &e);
    CHECK(cases && json_array_size(cases) >= 35, "cannot read cases.json: %s", e.text);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *id = json_string_value(json_object_get(c, "id"));
        json_t *out = json_object_get(c, "output");
        char *want = json_dumps(json_object_get(c, "expected"), JSON_ENCODE_ANY);
        check_parse(id, json_string_value(out), json_string_length(out), want);
        check_stream(id, json_string_value(out), json_string_length(out), i + 1);
        free(want);
    }
    json_decref(cases);
}

/* ---- our own cases ----------------------------------------------------------------------- */

static void test_forms(void) {
    /* Pythonic, several calls, dotted and hyphenated names, keyword-named keys */
    PARSE("<|tool_call_start|>[a.b.c(x=1), my-tool(y=2)]<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"a.b.c\",\"arguments\":{\"x\":1}},"
          "{\"name\":\"my-tool\",\"arguments\":{\"y\":2}}],\"parsed\":true}");
    PARSE("<|tool_call_start|>[f(class='c', import=1, lambda=None, for=[], città='Roma')]<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"class\":\"c\",\"import\":1,"
          "\"lambda\":null,\"for\":[],\"città\":\"Roma\"}}],\"parsed\":true}");
    /* trailing commas everywhere, whitespace and newlines between any tokens */
    PARSE("<|tool_call_start|>\n[\n f (\n x = [1, 2,] ,\n y = {'a': 1,},\n ) ,\n]\n<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"x\":[1,2],\"y\":{\"a\":1}}}],"
          "\"parsed\":true}");
    /* a single call / a single JSON object without the brackets inside the markers */
    PARSE("<|tool_call_start|>f(x=1)<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"x\":1}}],\"parsed\":true}");
    PARSE("<|tool_call_start|>{\"name\": \"f\", \"arguments\": {\"x\": 1}}<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"x\":1}}],\"parsed\":true}");
    /* JSON mode: arguments missing / null / a JSON string / called "parameters"; "\/" is JSON's */
    PARSE("<|tool_call_start|>[{\"name\": \"a\"}, {\"name\": \"b\", \"arguments\": null}, "
          "{\"name\": \"c\", \"arguments\": \"{\\\"u\\\": \\\"a\\\\/b\\\"}\"}, {\"name\": \"d\", \"parameters\": "
          "{\"k\": [true]}}]"
          "<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"a\",\"arguments\":{}},{\"name\":\"b\",\"arguments\":{}},"
          "{\"name\":\"c\",\"arguments\":{\"u\":\"a/"
          "b\"}},{\"name\":\"d\",\"arguments\":{\"k\":[true]}}],\"parsed\":true}");
    /* JSON-mode objects written with Python literals still parse */
    PARSE(
        "<|tool_call_start|>[{'name': 'f', 'arguments': {'ok': True, 'n': None}}]<|tool_call_end|>",
        "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"ok\":true,\"n\":null}}],\"parsed\":true}");
    /* a list mixing both forms */
    PARSE(
        "<|tool_call_start|>[f(x=1), {\"name\": \"g\", \"arguments\": {}}]<|tool_call_end|>",
        "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"x\":1}},{\"name\":\"g\",\"arguments\":{}}],"
        "\"parsed\":true}");
    /* bare list: leading whitespace, dotted name, spaces before '(' */
    PARSE(
        " \n\t[ Calendar.create_event (title='x') ]\n\nDone. ",
        "{\"content\":\"Done.\",\"tool_calls\":[{\"name\":\"Calendar.create_event\",\"arguments\":{\"title\":\"x\"}}],"
        "\"parsed\":true}");
    /* not a bare list: JSON array, empty list, list after prose, a stray end marker present */
    PARSE("[{\"name\": \"f\", \"arguments\": {}}]",
          "{\"content\":\"[{\\\"name\\\": \\\"f\\\", \\\"arguments\\\": {}}]\",\"tool_calls\":[],\"parsed\":true}");
    PARSE("[] nothing", "{\"content\":\"[] nothing\",\"tool_calls\":[],\"parsed\":true}");
    PARSE("Try [f(x=1)]", "{\"content\":\"Try [f(x=1)]\",\"tool_calls\":[],\"parsed\":true}");
    PARSE("[f(x=1)]<|tool_call_end|>", "{\"content\":\"[f(x=1)]<|tool_call_end|>\",\"tool_calls\":[],\"parsed\":true}");
    PARSE("", "{\"content\":\"\",\"tool_calls\":[],\"parsed\":true}");
    PARSE(" \n ", "{\"content\":\" \\n \",\"tool_calls\":[],\"parsed\":true}");
    /* content: pieces stripped, empty ones dropped, joined by one newline */
    PARSE("  A  <|tool_call_start|>[f()]<|tool_call_end|> \n <|tool_call_start|>[g()]<|tool_call_end|>B\n"
          "<|tool_call_start|>[]<|tool_call_end|>  C",
          "{\"content\":\"A\\nB\\nC\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{}},{\"name\":\"g\",\"arguments\":{"
          "}}],"
          "\"parsed\":true}");
    /* a start marker without end, with the list then only whitespace */
    PARSE("Sure.<|tool_call_start|>[f(x=1)]\n",
          "{\"content\":\"Sure.\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"x\":1}}],\"parsed\":true}");
}

static void test_values(void) {
    PARSE("[f(a=+3, b=.5, c=5., d=0x1F, e=-0o17, f=0b101, g=1_000, h=007, i=-0.0, j=1E+2, k=- 4)]",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"a\":3,\"b\":0.5,\"c\":5.0,\"d\":31,"
          "\"e\":-15,\"f\":5,\"g\":1000,\"h\":7,\"i\":-0.0,\"j\":100.0,\"k\":-4}}],\"parsed\":true}");
    /* beyond 64 bits an integer keeps its magnitude as a float */
    PARSE("[f(n=123456789012345678901234567890)]",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"n\":1.2345678901234568e+29}}],"
          "\"parsed\":true}");
    /* tuples become lists; a parenthesised value is the value */
    PARSE("[f(t=(1, 'a'), one=(1,), e=(), p=(2))]", "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{"
                                                    "\"t\":[1,\"a\"],\"one\":[1],\"e\":[],\"p\":2}}],"
                                                    "\"parsed\":true}");
    /* deep nesting within the bound, and all literal kinds together */
    PARSE("[f(x={'a': [{'b': {'c': [[[True, False, None, true, false, null]]]}}], 'd': {}})]",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"x\":{\"a\":[{\"b\":{\"c\":[[[true,false,"
          "null,"
          "true,false,null]]]}}],\"d\":{}}}}],\"parsed\":true}");
    /* a repeated dict key keeps the last value (Python) */
    PARSE("[f(d={'k': 1, 'k': 2})]",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"d\":{\"k\":2}}}],\"parsed\":true}");
    /* the arguments JSON text is compact with floats in shortest form */
    toolcall_result r;
    const char *t = "<|tool_call_start|>[f(a=0.1, b=1e3, c='é\"', d=[1, 2.5e-05])]<|tool_call_end|>";
    CHECK(toolcall_parse(t, strlen(t), &r) && r.n_calls == 1, "parse");
    if (r.n_calls == 1)
        CHECK(!strcmp(r.calls[0].arguments, "{\"a\":0.1,\"b\":1000.0,\"c\":\"é\\\"\",\"d\":[1,2.5e-05]}"),
              "args text: %s", r.calls[0].arguments);
    toolcall_result_free(&r);
}

static void test_strings(void) {
    /* every Python escape, both quote kinds, raw newline, line continuation, triple quotes */
    PARSE("[f(a='\\x41\\101\\u00e9\\U0001F600\\ud83d\\ude00', b=\"\\a\\b\\f\\v\\0\", c='it\\'s', d=\"x\ny\", "
          "e='con\\\ntinued', f='''tri'ple\"''', g=\"\"\"a\"b\"\"\", h='')]",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"a\":\"AAé😀😀\",\"b\":"
          "\"\\u0007\\b\\f\\u000b\\u0000\","
          "\"c\":\"it's\",\"d\":\"x\\ny\",\"e\":\"continued\",\"f\":\"tri'ple\\\"\",\"g\":\"a\\\"b\",\"h\":\"\"}}],"
          "\"parsed\":true}");
    /* an unknown escape keeps its backslash, as in Python ("\d+" is a regex) */
    PARSE("[f(re='\\d+\\.\\w')]", "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"re\":\"\\\\d+"
                                  "\\\\.\\\\w\"}}],\"parsed\":true}");
    /* a lone surrogate has no UTF-8 form: U+FFFD */
    PARSE("[f(s='\\ud800x')]",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"s\":\"\\ufffdx\"}}],\"parsed\":true}");
    /* structure characters and markers-like text inside strings are not structure */
    PARSE("<|tool_call_start|>[f(s='a)], b=(\\'', t=\"[{'x'}]\")]<|tool_call_end|>",
          "{\"content\":\"\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"s\":\"a)], "
          "b=('\",\"t\":\"[{'x'}]\"}}],\"parsed\":true}");
    /* invalid UTF-8 in the output: still valid JSON, bytes replaced by U+FFFD */
    const char bad[] = "caf\xC3 \xFF<|tool_call_start|>[f(s='\xE9')]";
    check_parse(
        "invalid utf-8", bad, sizeof bad - 1,
        "{\"content\":\"caf\\ufffd \\ufffd\",\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"s\":\"\\ufffd\"}}],"
        "\"parsed\":true}");
    /* a NUL byte in the output is kept */
    const char nul[] = "a\0b";
    check_parse("NUL", nul, 3, "{\"content\":\"a\\u0000b\",\"tool_calls\":[],\"parsed\":true}");
}

static void test_malformed(void) {
    FAILS("<|tool_call_start|>[f(x=[1, 2)]<|tool_call_end|>");   /* unbalanced */
    FAILS("<|tool_call_start|>[f(x=1)]]<|tool_call_end|>");      /* extra bracket */
    FAILS("<|tool_call_start|>[f(x=1)<|tool_call_end|>");        /* list not closed */
    FAILS("<|tool_call_start|>[f(x={'a': 1)]<|tool_call_end|>"); /* dict not closed */
    FAILS("<|tool_call_start|>[f(1)]<|tool_call_end|>");         /* positional */
    FAILS("<|tool_call_start|>[f(x=1, 2)]<|tool_call_end|>");    /* positional after keyword */
    FAILS("<|tool_call_start|>[f(x)]<|tool_call_end|>");         /* bare name */
    FAILS("<|tool_call_start|>[f(**kw)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x=foo)]<|tool_call_end|>");  /* not a literal */
    FAILS("<|tool_call_start|>[f(x=g(1))]<|tool_call_end|>"); /* nested call */
    FAILS("<|tool_call_start|>[f(x==1)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x=1, x=2)]<|tool_call_end|>"); /* repeated keyword */
    FAILS("<|tool_call_start|>[f(x=1,,)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x={1: 2})]<|tool_call_end|>"); /* non-string key */
    FAILS("<|tool_call_start|>[f(x={'a' 2})]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x='\\x4')]<|tool_call_end|>"); /* bad escapes */
    FAILS("<|tool_call_start|>[f(x='\\u12')]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x='\\U00110000')]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x='abc\\')]<|tool_call_end|>");  /* escape eats the quote */
    FAILS("<|tool_call_start|>[f(x='''abc'')]<|tool_call_end|>"); /* unterminated triple */
    FAILS("<|tool_call_start|>[f(x=1e999)]<|tool_call_end|>");    /* not a finite number */
    FAILS("<|tool_call_start|>[f(x=1.2.3)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x=-)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x=0x)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[f(x=1) g(y=2)]<|tool_call_end|>"); /* missing comma */
    FAILS("<|tool_call_start|>[1(x=1)]<|tool_call_end|>");        /* not a name */
    FAILS("<|tool_call_start|>[a.(x=1)]<|tool_call_end|>");
    FAILS("<|tool_call_start|>Sure: [f(x=1)]<|tool_call_end|>");        /* text inside the region */
    FAILS("<|tool_call_start|><|tool_call_end|>");                      /* empty region */
    FAILS("I will call it.<|tool_call_start|>");                        /* cut off after the marker */
    FAILS("<|tool_call_start|>[{\"arguments\": {}}]<|tool_call_end|>"); /* JSON: no name */
    FAILS("<|tool_call_start|>[{\"name\": \"f\", \"arguments\": \"[1]\"}]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[{\"name\": \"f\", \"arguments\": 3}]<|tool_call_end|>");
    FAILS("<|tool_call_start|>[{\"name\": \"f\"}, 3]<|tool_call_end|>");
    /* one good region and one bad: nothing is extracted */
    FAILS("<|tool_call_start|>[f(x=1)]<|tool_call_end|> and <|tool_call_start|>[g(]<|tool_call_end|>");
    /* bare lists that start like calls but do not parse */
    FAILS("[f(x=1)");
    FAILS("[f(1)] hello");
    FAILS("  [f(x=1), 2]");
}

/* Hostile nesting must fail cleanly (bounded recursion), not overflow the stack. */
static void test_deep_nesting(void) {
    size_t depth = 200000;
    const char *pre = "<|tool_call_start|>[f(x=", *post = ")]<|tool_call_end|>";
    size_t n = strlen(pre) + depth * 2 + strlen(post);
    char *t = malloc(n + 128), *p = t; /* room for the longer JSON-mode prefix too */
    p += sprintf(p, "%s", pre);
    memset(p, '[', depth), p += depth;
    memset(p, ']', depth), p += depth;
    sprintf(p, "%s", post);
    toolcall_result r;
    CHECK(toolcall_parse(t, n, &r) && !r.parsed && r.content_len == n, "deep Pythonic nesting");
    toolcall_result_free(&r);
    /* the same depth in JSON mode (read by jansson first) */
    p = t + sprintf(t, "<|tool_call_start|>[{\"name\": \"f\", \"arguments\": {\"x\": ");
    memset(p, '[', depth), p += depth;
    memset(p, ']', depth), p += depth;
    p += sprintf(p, "}}]<|tool_call_end|>");
    CHECK(toolcall_parse(t, (size_t)(p - t), &r) && !r.parsed, "deep JSON nesting");
    toolcall_result_free(&r);
    /* unclosed deep nesting and a bare list of only openers */
    memset(t, '[', n);
    t[1] = 'f', t[2] = '(', t[3] = 'x', t[4] = '=';
    CHECK(toolcall_parse(t, n, &r) && !r.parsed, "deep bare nesting");
    toolcall_result_free(&r);
    free(t);
    /* just under the bound parses */
    char ok[600];
    p = ok + sprintf(ok, "[f(x=");
    for (int i = 0; i < 100; i++) *p++ = '[';
    for (int i = 0; i < 100; i++) *p++ = ']';
    sprintf(p, ")]");
    CHECK(toolcall_parse(ok, strlen(ok), &r) && r.parsed && r.n_calls == 1, "depth 100 parses");
    toolcall_result_free(&r);
}

/* A test id maker: call_<counter>. */
static void counting_id(void *ctx, char *out, size_t cap) { snprintf(out, cap, "call_%d", (*(int *)ctx)++); }

static void test_openai(void) {
    const char *t = "<|tool_call_start|>[get_weather(city='Paris'), pkg.g(n=1.5, ok=True)]<|tool_call_end|>";
    toolcall_result r;
    CHECK(toolcall_parse(t, strlen(t), &r) && r.n_calls == 2, "parse");
    int counter = 7;
    json_t *a = toolcall_openai_json(&r, counting_id, &counter);
    CHECK(a && json_array_size(a) == 2 && counter == 9, "openai array");
    const char *id0 = json_string_value(json_object_get(json_array_get(a, 0), "id"));
    const char *id1 = json_string_value(json_object_get(json_array_get(a, 1), "id"));
    CHECK(id0 && id1 && !strncmp(id0, "call_", 5) && strcmp(id0, id1), "ids %s %s", id0, id1);
    json_t *c1 = json_array_get(a, 1);
    CHECK(!strcmp(json_string_value(json_object_get(c1, "type")), "function"), "type");
    json_t *fn = json_object_get(c1, "function");
    CHECK(!strcmp(json_string_value(json_object_get(fn, "name")), "pkg.g"), "name");
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    json_t *parsed_args = args ? json_loads(args, 0, NULL) : NULL;
    json_t *want = json_loads("{\"n\": 1.5, \"ok\": true}", 0, NULL);
    CHECK(same(parsed_args, want), "arguments string: %s", args ? args : "(null)");
    json_decref(parsed_args);
    json_decref(want);
    json_decref(a);
    toolcall_result_free(&r);
}

/* What a server sees: text is shown as soon as it is safe, calls are held. */
static void test_stream_behaviour(void) {
    toolcall_stream *s = toolcall_stream_new();
    size_t n;
    const char *o = toolcall_stream_feed(s, "Hello world, ", 13, &n);
    CHECK(n == 12 && !memcmp(o, "Hello world,", 12), "plain text shown at once (%zu)", n);
    o = toolcall_stream_feed(s, "ok <|tool_", 10, &n);
    CHECK(n == 3 && !memcmp(o, " ok", 3), "marker prefix held (%zu)", n);
    o = toolcall_stream_feed(s, "call_start|>[f(x=1)]<|tool_call_end|> after", 43, &n);
    CHECK(n == 0, "call held");
    toolcall_result r;
    const char *tail;
    size_t tail_len;
    CHECK(toolcall_stream_finish(s, &r, &tail, &tail_len), "finish");
    CHECK(r.parsed && r.n_calls == 1 && tail_len == 6 && !memcmp(tail, "\nafter", 6), "tail '%.*s'", (int)tail_len,
          tail);
    toolcall_result_free(&r);
    toolcall_stream_free(s);

    /* a bare list at the start is held until the end; "[1, 2]" is released as soon as it is not */
    s = toolcall_stream_new();
    toolcall_stream_feed(s, "\n[get_wea", 9, &n);
    CHECK(n == 0, "undecided start held");
    toolcall_stream_feed(s, "ther(city='x')] Looking", 23, &n);
    CHECK(n == 0, "bare list held");
    toolcall_stream_free(s);
    s = toolcall_stream_new();
    toolcall_stream_feed(s, "[", 1, &n);
    CHECK(n == 0, "'[' may start a call");
    o = toolcall_stream_feed(s, "1, 2]", 5, &n);
    CHECK(n == 6 && !memcmp(o, "[1, 2]", 6), "released");
    /* half a UTF-8 character is never shown */
    o = toolcall_stream_feed(s, " caf\xC3", 5, &n);
    CHECK(n == 4, "split character held (%zu)", n);
    o = toolcall_stream_feed(s, "\xA9!", 2, &n);
    CHECK(n == 3 && !memcmp(o, "\xC3\xA9!", 3), "character completed");
    toolcall_stream_free(s);
}

/* ---- fuzz -------------------------------------------------------------------------------- */

typedef struct {
    char buf[1024];
    size_t n;
    uint64_t rng;
} gen;

static void gen_put(gen *g, const char *s) {
    size_t k = strlen(s);
    if (g->n + k < sizeof g->buf) {
        memcpy(g->buf + g->n, s, k);
        g->n += k;
    }
}

static const char *pick(gen *g, const char *const *v, size_t n) { return v[rng_next(&g->rng) % n]; }
#define PICK(g, ...) \
    pick(g, (const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

static void gen_value(gen *g, int depth) {
    int kind = (int)(rng_next(&g->rng) % (depth < 3 ? 6 : 4));
    if (kind == 0) gen_put(g, PICK(g, "1", "-2", "3.5", "1e3", "-0.25", "0x1F", "12345678901234"));
    else if (kind == 1)
        gen_put(g, PICK(g, "'a b'", "\"c\\\"d\"", "'\\u00e9\\n'", "\"x, y (z)]\"", "'é😀'", "''", "'\\x41'"));
    else if (kind == 2) gen_put(g, PICK(g, "True", "False", "None", "true", "false", "null"));
    else if (kind == 3) gen_put(g, PICK(g, "[]", "{}", "[1, 'a']", "{'k': 1}"));
    else {
        bool list = kind == 4;
        gen_put(g, list ? "[" : "{");
        int n = (int)(rng_next(&g->rng) % 3);
        for (int i = 0; i < n; i++) {
            if (i) gen_put(g, PICK(g, ", ", ",", " ,\n "));
            if (!list) gen_put(g, PICK(g, "'k': ", "\"j\" : ", "'x':"));
            gen_value(g, depth + 1);
        }
        gen_put(g, list ? "]" : "}");
    }
}

static void gen_call(gen *g) {
    gen_put(g, PICK(g, "f", "get_weather", "pkg.tool", "a.b.c"));
    gen_put(g, "(");
    int n = (int)(rng_next(&g->rng) % 4);
    for (int i = 0; i < n; i++) {
        if (i) gen_put(g, PICK(g, ", ", ",", " ,\n  "));
        static const char *keys[] = {"a", "from", "city", "x_1"};
        gen_put(g, keys[i]);
        gen_put(g, PICK(g, "=", " = "));
        gen_value(g, 0);
    }
    gen_put(g, ")");
}

static void gen_list(gen *g) {
    gen_put(g, "[");
    int n = (int)(rng_next(&g->rng) % 3) + (rng_next(&g->rng) % 8 != 0);
    for (int i = 0; i < n; i++) {
        if (i) gen_put(g, ", ");
        gen_call(g);
    }
    gen_put(g, "]");
}

/* A plausible model output: prose and call lists in every form. */
static void gen_output(gen *g) {
    g->n = 0;
    int form = (int)(rng_next(&g->rng) % 4);
    if (form == 0) { /* bare list at the start */
        gen_put(g, PICK(g, "", " ", "\n"));
        gen_list(g);
        gen_put(g, PICK(g, "", "\nDone.", " ok "));
        return;
    }
    int regions = form == 3 ? 0 : 1 + (int)(rng_next(&g->rng) % 2);
    gen_put(g, PICK(g, "", "Let me check. ", "  Sure\n", "[1, 2] "));
    for (int r = 0; r < regions; r++) {
        gen_put(g, TOOLCALL_START);
        if (rng_next(&g->rng) % 4 == 0)
            gen_put(g, PICK(g, "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}]",
                            "[{\"name\": \"g\", \"arguments\": \"{\\\"y\\\": [true]}\"}]"));
        else gen_list(g);
        if (rng_next(&g->rng) % 6) gen_put(g, TOOLCALL_END);
        else return; /* cut off: the region runs to the end */
        gen_put(g, PICK(g, "", " and ", "\n\n"));
    }
    gen_put(g, PICK(g, "", "Checking.", " done  "));
}

/* Break it: insert call-ish debris, delete bytes, or cut it short. */
static void gen_mutate(gen *g) {
    static const char *debris[] = {
        TOOLCALL_START, TOOLCALL_END, "[",    "]", "(", ")",    "{",    "}",        ",",      "=", "'",
        "\"",           "\\",         "\\x4", "x", "1", "\xC3", "\xFF", "\xF0\x9F", "<|tool", " ", "\n"};
    int n = 1 + (int)(rng_next(&g->rng) % 3);
    for (int m = 0; m < n && g->n; m++) {
        size_t at = rng_next(&g->rng) % (g->n + 1);
        int op = (int)(rng_next(&g->rng) % 3);
        if (op == 0) {
            const char *d = debris[rng_next(&g->rng) % (sizeof debris / sizeof debris[0])];
            size_t k = strlen(d);
            if (g->n + k >= sizeof g->buf) continue;
            memmove(g->buf + at + k, g->buf + at, g->n - at);
            memcpy(g->buf + at, d, k);
            g->n += k;
        } else if (op == 1 && at < g->n) {
            size_t k = 1 + rng_next(&g->rng) % 3;
            if (k > g->n - at) k = g->n - at;
            memmove(g->buf + at, g->buf + at + k, g->n - at - k);
            g->n -= k;
        } else g->n = at;
    }
}

/* Generated outputs, intact and broken: never crash, always valid JSON out, and streaming always
 * agrees with the one-shot parse. */
static void test_format(void) {
    json_t *calls =
        json_loads("[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris \\\"x\\\" \u00e9\",\"days\":3,"
                   "\"ok\":true,\"none\":null,\"list\":[1,2.5,false],\"obj\":{\"k\":\"v\"}}},"
                   "{\"name\":\"pkg.noargs\",\"arguments\":{}}]",
                   0, NULL);
    CHECK(calls != NULL, "test input parses");
    size_t n = 0;
    char *t = toolcall_format(calls, &n);
    CHECK(t && n == strlen(t), "format");
    CHECK(t && !strncmp(t, TOOLCALL_START "[get_weather(city=", strlen(TOOLCALL_START) + 18),
          "starts like LFM2's calls: %s", t ? t : "(null)");
    CHECK(t && strstr(t, "ok=True, none=None, list=[1, 2.5, False], obj={\"k\": \"v\"}), pkg.noargs()]" TOOLCALL_END),
          "python literals: %s", t ? t : "(null)");
    toolcall_result r = {0};
    CHECK(t && toolcall_parse(t, n, &r) && r.parsed && r.n_calls == 2, "the reader reads what the writer writes");
    if (r.n_calls == 2) {
        json_t *a0 = json_object_get(json_array_get(calls, 0), "arguments");
        char *want = json_dumps(a0, JSON_SORT_KEYS | JSON_COMPACT), *got = NULL;
        json_t *oa = toolcall_openai_json(&r, counting_id, &(int){1});
        json_t *back = json_loads(
            json_string_value(json_object_get(json_object_get(json_array_get(oa, 0), "function"), "arguments")), 0,
            NULL);
        got = json_dumps(back, JSON_SORT_KEYS | JSON_COMPACT);
        CHECK(want && got && !strcmp(want, got), "round trip of the arguments: %s vs %s", want, got);
        free(want);
        free(got);
        json_decref(back);
        json_decref(oa);
    }
    toolcall_result_free(&r);
    free(t);
    json_t *bad = json_loads("[{\"name\":\"f\",\"arguments\":[1]}]", 0, NULL);
    CHECK(toolcall_format(bad, NULL) == NULL, "non-object arguments are refused");
    json_decref(bad);
    json_decref(calls);
}

static void test_before_cut(void) {
    const char *t;
    t = "hi";
    CHECK(toolcall_before_cut(t, strlen(t)) == 2, "no call: all of it");
    t = "ok <|tool_call_start|>[f(a=1)]<|tool_call_end|>";
    CHECK(toolcall_before_cut(t, strlen(t)) == strlen(t), "a complete call stays");
    t = "ok <|tool_call_start|>[f(a=";
    CHECK(toolcall_before_cut(t, strlen(t)) == 3, "a cut call is dropped");
    t = "<|tool_call_start|>[f()]<|tool_call_end|> and <|tool_call_start|>[g(";
    CHECK(toolcall_before_cut(t, strlen(t)) == strlen(t) - strlen("<|tool_call_start|>[g("),
          "only the last, cut region");
    t = "<|tool_call_start|>";
    CHECK(toolcall_before_cut(t, 5) == 5, "a partial marker is not a region");
}

static void test_fuzz(void) {
    gen g = {.rng = 0x9E3779B97F4A7C15ull};
    int with_calls = 0, failed = 0;
    for (int iter = 0; iter < 4000; iter++) {
        gen_output(&g);
        bool broken = iter % 2;
        if (broken) gen_mutate(&g);
        g.buf[g.n] = 0;
        toolcall_result r;
        bool ok = toolcall_parse(g.buf, g.n, &r);
        CHECK(ok, "fuzz %d: parse failed", iter);
        if (!ok) continue;
        if (!broken) CHECK(r.parsed, "fuzz %d: a generated output did not parse: %s", iter, g.buf);
        with_calls += r.n_calls > 0;
        failed += !r.parsed;
        for (int i = 0; i < r.n_calls; i++) {
            json_t *a = json_loads(r.calls[i].arguments, JSON_ALLOW_NUL, NULL);
            CHECK(json_is_object(a), "fuzz %d: arguments are not a JSON object: %s", iter, r.calls[i].arguments);
            json_decref(a);
        }
        char *js = toolcall_result_to_json(&r);
        json_t *j = js ? json_loads(js, JSON_ALLOW_NUL, NULL) : NULL;
        CHECK(j && json_is_object(j), "fuzz %d: output is not a JSON object: %s", iter, js ? js : "(null)");
        json_decref(j);
        free(js);
        toolcall_result_free(&r);
        if (iter % 4 < 2) {
            char label[32];
            snprintf(label, sizeof label, "fuzz %d", iter);
            check_stream(label, g.buf, g.n, (uint64_t)iter);
        }
    }
    CHECK(with_calls > 1500 && failed > 300, "fuzz is not exercising both sides (%d with calls, %d failed)", with_calls,
          failed);
}

int main(void) {
    test_golden();
    test_forms();
    test_values();
    test_strings();
    test_malformed();
    test_deep_nesting();
    test_openai();
    test_stream_behaviour();
    test_format();
    test_before_cut();
    test_fuzz();
    static const char *stream_texts[] = {
        "  lead <|tool_call_start|>[f(x=1)]<|tool_call_end|>  mid  <|tool_call_start|>[g(y='<|')]<|tool_call_end|>end ",
        "\n\n[f(x=1)]\nafter",
        "[f(x=1)] <|tool_call_start|>[g()]<|tool_call_end|>",
        "no calls here <|tool_call_end|> at all   ",
        "<|tool_call_start|>[f(x=1)]<|tool_call_end|><|tool_call_start|>[bad(]<|tool_call_end|>",
        "<<|<|tool<|tool_call_start|>[f()]",
        "   ",
    };
    for (size_t i = 0; i < sizeof stream_texts / sizeof stream_texts[0]; i++)
        check_stream(stream_texts[i], stream_texts[i], strlen(stream_texts[i]), i + 100);
    TEST_MAIN_END();
}
