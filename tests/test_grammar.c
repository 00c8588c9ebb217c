/* test_grammar.c — the JSON-schema automaton: accepts exactly the valid texts, completes any
 * prefix into a valid value, and masks tokens of a vocabulary correctly. */
#include "grammar.h"
#include "test.h"

#include <jansson.h>
#include <string.h>

static bool accepts(const grammar *g, const char *text, bool *complete) {
    grammar_state st;
    grammar_state_init(g, &st);
    bool ok = grammar_accept(g, &st, text, strlen(text));
    if (complete) *complete = ok && grammar_complete(g, &st);
    return ok;
}

static bool valid(const grammar *g, const char *text) {
    bool c;
    return accepts(g, text, &c) && c;
}

static const char *PERSON =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",1.5,null]},\"minItems\":1,\"maxItems\":3},"
    "\"ok\":{\"type\":[\"boolean\",\"null\"]},"
    "\"kind\":{\"const\":\"x\"},"
    "\"pos\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},\"required\":[\"x\",\"y\"]}"
    "},\"required\":[\"name\",\"age\",\"tags\",\"pos\"],\"additionalProperties\":false}";

static void test_schema_accepts(void) {
    char err[256];
    grammar *g = grammar_from_schema(PERSON, err, sizeof err);
    CHECK(g != NULL, "compile: %s", err);
    if (!g) return;
    CHECK(valid(g, "{\"name\":\"Al\",\"age\":30,\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":-2.5e3}}"), "basic");
    CHECK(valid(g, "{\"age\": 0, \"pos\": {\"y\":1, \"x\":0.5}, \"tags\":[1.5, null], \"name\":\"\\u00e9\", \"ok\":null}"),
          "any order, one space, escapes");
    CHECK(valid(g, "{\"name\":\"h\xc3\xa9\",\"age\":1,\"tags\":[\"b\"],\"pos\":{\"x\":1,\"y\":2},\"kind\":\"x\",\"ok\":true}"),
          "utf-8, const, bool");
    CHECK(!valid(g, "{\"name\":\"Al\",\"age\":30,\"tags\":[\"a\"]}"), "missing required pos");
    CHECK(!accepts(g, "{\"nam\":", NULL), "unknown key");
    CHECK(!accepts(g, "{\"name\":\"\"", NULL), "minLength");
    CHECK(!accepts(g, "{\"name\":\"123456789", NULL), "maxLength");
    CHECK(!accepts(g, "{\"age\":-1", NULL), "minimum 0");
    CHECK(!accepts(g, "{\"age\":1.5", NULL), "integer");
    CHECK(!accepts(g, "{\"age\":01", NULL), "leading zero");
    CHECK(!accepts(g, "{\"age\":1234567890123456", NULL), "16 digits");
    CHECK(accepts(g, "{\"pos\":{\"x\":-123456789012345.123456789012345e-99", NULL), "15/15/2 digits");
    CHECK(!accepts(g, "{\"pos\":{\"x\":1e100", NULL), "3 exponent digits");
    CHECK(!accepts(g, "{\"tags\":[]", NULL), "minItems");
    CHECK(!accepts(g, "{\"tags\":[\"a\",\"a\",\"a\",", NULL), "maxItems");
    CHECK(!accepts(g, "{\"tags\":[\"c\"", NULL), "enum");
    CHECK(!accepts(g, "{\"tags\":[1.5e", NULL), "enum number");
    CHECK(!accepts(g, "{\"kind\":\"y", NULL), "const");
    CHECK(!accepts(g, "{\"ok\":1", NULL), "type union");
    CHECK(!accepts(g, "{  ", NULL), "two spaces");
    CHECK(!accepts(g, " {", NULL), "leading space");
    CHECK(!accepts(g, "{\"name\":\"a\nb", NULL), "raw newline in string");
    CHECK(!accepts(g, "{\"name\":\"\\x", NULL), "bad escape");
    CHECK(!accepts(g, "{\"name\":\"\xff", NULL), "bad utf-8");
    CHECK(!accepts(g, "{\"name\":\"Al\",\"name\":", NULL), "duplicate key");
    bool c;
    CHECK(accepts(g, "{\"name\":\"Al\",\"age\":3", &c) && !c, "prefix is not complete");
    CHECK(!accepts(g, "{\"name\":\"Al\",\"age\":30,\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}x", NULL),
          "nothing after the value");
    grammar_free(g);
}

static void test_schema_errors(void) {
    char err[256];
    const char *bad[] = {
        "{\"anyOf\":[{\"type\":\"string\"}]}", "{\"$ref\":\"#/x\"}", "{\"type\":\"strin\"}",
        "{\"type\":\"string\",\"pattern\":\"a+\"}", "{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"]}",
        "not json", "{\"type\":3}", "{\"enum\":[]}", "{\"type\":\"integer\",\"maximum\":3}", "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        grammar *g = grammar_from_schema(bad[i], err, sizeof err);
        CHECK(g == NULL && err[0], "schema %s should be rejected", bad[i]);
        grammar_free(g);
    }
}

static void test_any_object(void) {
    grammar *g = grammar_any_object();
    CHECK(valid(g, "{}"), "empty object");
    CHECK(valid(g, "{\"a\":[1,{\"b\":null},\"x\",true,-0.5E+2],\"c\":{}}"), "nested any");
    CHECK(!accepts(g, "[", NULL), "array at root");
    CHECK(!accepts(g, "\"s\"", NULL), "string at root");
    grammar_free(g);
}

/* A random walk of the automaton: random allowed bytes, then the completion, must give a text
 * that jansson parses and that the automaton accepts as complete. */
static unsigned rng_state = 12345;
static unsigned rnd(void) { rng_state = rng_state * 1103515245u + 12345u; return rng_state >> 8; }

static void test_completion(const char *schema) {
    char err[256];
    grammar *g = schema ? grammar_from_schema(schema, err, sizeof err) : grammar_any_object();
    CHECK(g != NULL, "compile: %s", err);
    if (!g) return;
    const char alphabet[] = "{}[]\",:0123456789.-+eEtruefalsnbxyzAgpkigo \\u";
    for (int trial = 0; trial < 300; trial++) {
        grammar_state st;
        grammar_state_init(g, &st);
        char text[4096];
        int n = 0, steps = (int)(rnd() % 60);
        for (int i = 0; i < steps * 8 && n < steps; i++) {
            char b = alphabet[rnd() % (sizeof alphabet - 1)];
            if (grammar_accept(g, &st, &b, 1)) text[n++] = b;
        }
        int m = grammar_completion(g, &st, text + n, (int)sizeof text - n);
        CHECK(m >= 0, "completion failed after %.*s", n, text);
        if (m < 0) continue;
        n += m;
        text[n] = 0;
        CHECK(valid(g, text), "completed text not accepted: %s", text);
        json_error_t je;
        json_t *j = json_loads(text, 0, &je);
        CHECK(j != NULL && json_is_object(j), "completed text not a JSON object: %s (%s)", text, je.text);
        json_decref(j);
    }
    grammar_free(g);
}

static void test_mask(void) {
    /* a toy vocabulary: single bytes, some merges, and a special token with no bytes */
    const char *toks[] = {"{", "}", "\"", "name", "\":", "\"name\":\"", "Al", "age", "1", "23", ",",
                          "x", "", "[", "]", "\"a\"", " ", "tags", "pos", "y", ":", "\"}", "\\", "n"};
    int n = (int)(sizeof toks / sizeof *toks), lens[32];
    for (int i = 0; i < n; i++) lens[i] = (int)strlen(toks[i]);
    grammar_vocab *v = grammar_vocab_new(toks, lens, n);
    CHECK(v != NULL, "vocab");
    char err[256];
    grammar *g = grammar_from_schema(PERSON, err, sizeof err);
    bool allowed[32];
    int32_t end = 12;
    grammar_state st;
    grammar_state_init(g, &st);
    int k = grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(k == 1 && allowed[0], "only '{' at the start (got %d)", k);
    grammar_accept(g, &st, "{", 1);
    grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(allowed[2] && allowed[5] && !allowed[16] && !allowed[1] && !allowed[3] && !allowed[12],
          "after '{': quote, merged key; not space, '}' (required), end");
    grammar_accept(g, &st, "\"name\":\"", 8);
    grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(allowed[6] && allowed[3] && allowed[22] && !allowed[2] && !allowed[21] && !allowed[12],
          "inside name: text and escapes, not an empty close");
    const char *rest = "Al\",\"age\":1,\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":23}}";
    CHECK(grammar_accept(g, &st, rest, strlen(rest)), "rest");
    k = grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(k == 1 && allowed[12], "complete: only the end token (got %d)", k);
    grammar_free(g);
    grammar_vocab_free(v);
}

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\",\"f\"]},\"days\":{\"type\":\"integer\"},"
    "\"hourly\":{\"type\":\"boolean\"}},\"required\":[\"location\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]";

static void test_tool_calls(void) {
    char err[256];
    grammar *g = grammar_tool_calls(TOOLS, NULL, true, err, sizeof err);
    CHECK(g != NULL, "compile tools: %s", err);
    if (!g) return;
    CHECK(valid(g, "[get_weather(location=\"Paris\")]"), "one call");
    CHECK(valid(g, "[get_weather(location=\"Paris\", unit=\"c\", hourly=False), get()]"), "parallel");
    CHECK(valid(g, "[get_weather(days=3,location=\"x\")]"), "any order");
    CHECK(!accepts(g, "[get_weather()", NULL), "missing required");
    CHECK(!accepts(g, "[get_weather(hourly=false", NULL), "python literals only");
    CHECK(!accepts(g, "[set(", NULL), "unknown function");
    CHECK(!accepts(g, "[get(x=", NULL), "unknown argument");
    grammar_state st;
    grammar_state_init(g, &st);
    char out[512];
    int m = grammar_completion(g, &st, out, sizeof out);
    CHECK(m > 0 && valid(g, out), "completion from start: %s", m > 0 ? out : "");
    grammar_free(g);

    g = grammar_tool_calls(TOOLS, "get", false, err, sizeof err);
    CHECK(g && valid(g, "[get()]") && !accepts(g, "[get_", NULL) && !accepts(g, "[get(), ", NULL),
          "named function, no parallel");
    grammar_free(g);
    CHECK(grammar_tool_calls(TOOLS, "nope", false, err, sizeof err) == NULL, "unknown named tool");
    CHECK(grammar_tool_calls("{}", NULL, false, err, sizeof err) == NULL, "tools not an array");
}

int main(void) {
    test_schema_accepts();
    test_schema_errors();
    test_any_object();
    test_completion(PERSON);
    test_completion(NULL);
    test_completion("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                    "\"properties\":{\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}}},\"additionalProperties\":{\"type\":\"integer\"}}");
    test_mask();
    test_tool_calls();
    TEST_MAIN_END();
}
