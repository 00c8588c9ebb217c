/* test_grammar.c — the JSON-schema automaton: accepts exactly the valid texts, completes any
 * prefix into a valid value, and masks tokens of a vocabulary correctly. */
#include "chat/grammar.h"
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    "\"pos\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":{\"type\":\"number\"}},"
    "\"required\":[\"x\",\"y\"]}"
    "},\"required\":[\"name\",\"age\",\"tags\",\"pos\"],\"additionalProperties\":false}";

static void test_schema_accepts(void) {
    char err[256];
    grammar *g = grammar_from_schema(PERSON, err, sizeof err);
    CHECK(g != NULL, "compile: %s", err);
    if (!g) return;
    CHECK(valid(g, "{\"name\":\"Al\",\"age\":30,\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":-2.5e3}}"), "basic");
    CHECK(valid(g,
                "{\"age\": 0, \"pos\": {\"y\":1, \"x\":0.5}, \"tags\":[1.5, null], \"name\":\"\\u00e9\", \"ok\":null}"),
          "any order, one space, escapes");
    CHECK(
        valid(
            g,
            "{\"name\":\"h\xc3\xa9\",\"age\":1,\"tags\":[\"b\"],\"pos\":{\"x\":1,\"y\":2},\"kind\":\"x\",\"ok\":true}"),
        "utf-8, const, bool");
    CHECK(!valid(g, "{\"name\":\"Al\",\"age\":30,\"tags\":[\"a\"]}"), "missing required pos");
    CHECK(!accepts(g, "{\"nam\":", NULL), "unknown key");
    CHECK(!accepts(g, "{\"name\":\"\"", NULL), "minLength");
    CHECK(!accepts(g, "{\"name\":\"123456789", NULL), "maxLength");
    CHECK(!accepts(g, "{\"age\":-1", NULL), "minimum 0");
    CHECK(!accepts(g, "{\"age\":1.5", NULL), "integer");
    CHECK(!accepts(g, "{\"age\":01", NULL), "leading zero");
    CHECK(!accepts(g, "{\"age\":1234567890123456", NULL), "16 digits (unbounded integers: 15)");
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
    const char *bad[] = {"{\"not\":{}}",
                         "{\"$ref\":\"#/x\"}",
                         "{\"type\":\"strin\"}",
                         "{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}",
                         "{\"type\":\"string\",\"pattern\":\"(?=a)b\"}",
                         "{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"],\"additionalProperties\":false}",
                         "not json",
                         "{\"type\":3}",
                         "{\"enum\":[]}",
                         "{\"type\":\"integer\",\"minimum\":3,\"maximum\":2}",
                         "[1]",
                         "{\"$ref\":\"http://example.com/s.json\"}",
                         "{\"type\":\"string\",\"format\":\"json-pointer-uri-fragment\"}",
                         "{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"uniqueItems\":true,\"minItems\":2}",
                         "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}",
                         "{\"type\":\"integer\",\"minimum\":1e19}",
                         "{\"type\":\"number\",\"maximum\":-1e300}",
                         "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}",
                         "{\"type\":\"string\",\"not\":{\"type\":\"string\"}}",
                         "{\"type\":\"string\",\"pattern\":\"a(?=b)\"}",
                         "{\"minProperties\":1,\"additionalProperties\":false}",
                         "{\"allOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}",
                         "{\"type\":\"string\",\"pattern\":\"[a-\"}",
                         "{\"type\":\"string\",\"pattern\":\"a\\\\b\"}",
                         "{\"type\":\"number\",\"multipleOf\":0.25}",
                         "{\"type\":\"string\",\"pattern\":\"^a$\",\"format\":\"uuid\"}"};
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
static unsigned rnd(void) {
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

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


/* A schema (single quotes stand for double quotes) must accept each of ok[] as a complete value
 * and refuse each of bad[] (as a value: refused at some byte or incomplete). */
static void expect(const char *schema_sq, const char *const *ok, const char *const *bad) {
    char schema[4096], err[256];
    snprintf(schema, sizeof schema, "%s", schema_sq);
    for (char *p = schema; *p; p++)
        if (*p == '\'') *p = '"';
    grammar *g = grammar_from_schema(schema, err, sizeof err);
    CHECK(g != NULL, "compile %s: %s", schema, err);
    if (!g) return;
    for (int i = 0; ok && ok[i]; i++) CHECK(valid(g, ok[i]), "%s should accept %s", schema, ok[i]);
    for (int i = 0; bad && bad[i]; i++) CHECK(!valid(g, bad[i]), "%s should refuse %s", schema, bad[i]);
    grammar_free(g);
}
#define L(...) \
    (const char *const[]) { __VA_ARGS__, NULL }

static void test_integers(void) {
    expect("{'type':'integer','minimum':-5,'maximum':17}", L("-5", "0", "17", "9", "-0", "10"),
           L("-6", "18", "170", "-10", "1.0", "01", "-"));
    expect("{'type':'integer','exclusiveMinimum':10,'exclusiveMaximum':13}", L("11", "12"), L("10", "13", "1", "120"));
    expect("{'type':'integer','minimum':-9007199254740991,'maximum':9007199254740991}",
           L("9007199254740991", "-9007199254740991", "0", "123"),
           L("9007199254740992", "-9007199254740992", "10000000000000000"));
    expect("{'type':'integer','multipleOf':3}", L("0", "3", "-3", "999"), L("1", "-4", "1000"));
    expect("{'type':'integer','minimum':10,'maximum':20,'multipleOf':7}", L("14"), L("7", "21", "10", "1"));
    expect("{'type':'integer','minimum':100}", L("100", "12345"), L("99", "-100", "0"));
    expect("{'type':'integer','maximum':-100}", L("-100", "-5000"), L("-99", "0", "5"));
    expect("{'type':'integer','minimum':1.5,'maximum':3.5}", L("2", "3"), L("1", "4"));
    expect("{'type':'integer','minimum':0,'exclusiveMinimum':true}", L("1"), L("0"));
    expect("{'type':'integer','multipleOf':0.5}", L("1", "7"), L("1.5"));
}

static void test_numbers(void) {
    expect("{'type':'number','minimum':0.5,'maximum':2.25}", L("0.5", "1", "2.25", "2.2", "0.75", "1.999"),
           L("0.49", "2.26", "3", "-1", "0.4", "1e0", "2.250001"));
    expect("{'type':'number','exclusiveMinimum':0}", L("0.001", "5", "12.5"), L("0", "-0.5", "0.0", "-0"));
    expect("{'type':'number','minimum':-1,'maximum':1}", L("-1", "-0.5", "0", "1", "0.999"), L("-1.5", "1.1", "2"));
    expect("{'type':'number','multipleOf':0.01}", L("1.25", "3", "-0.01"), L("1.255", "0.001"));
    expect("{'type':'number','multipleOf':2}", L("4", "-8"), L("3", "4.5"));
    expect("{'type':'number'}", L("1e5", "-2.5E-3", "0"), L("1.", ".5", "+1", "01"));
}

static void test_strings(void) {
    expect("{'type':'string','minLength':2,'maxLength':3}",
           L("\"ab\"", "\"abc\"", "\"\xc3\xa9\xc3\xa9\"", "\"\xf0\x9f\x98\x80\xe4\xb8\xad\"", "\"\\u00e9x\"",
             "\"\\n\\t\""),
           L("\"a\"", "\"abcd\"", "\"\xc3\xa9\"", "\"\xf0\x9f\x98\x80\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad\""));
    expect("{'type':'string'}", L("\"\xe2\x82\xac\""),
           L("\"\xc0\x80\"", "\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xc3\"",
             "\"\\ud800\\udc00\"", "\"\x80\""));
    /* a token ending inside a character is a valid prefix */
    char err[256];
    grammar *g = grammar_from_schema("{\"type\":\"string\",\"maxLength\":1}", err, sizeof err);
    bool c;
    CHECK(g && accepts(g, "\"\xe4\xb8", &c) && !c, "half a character");
    CHECK(g && accepts(g, "\"\xe4\xb8\xad", NULL) && !accepts(g, "\"\xe4\xb8\xad\xe4", NULL),
          "maxLength in code points");
    grammar_free(g);
}

static void test_regex(void) {
    expect("{'type':'string','pattern':'^a+b?$'}", L("\"a\"", "\"aaab\""), L("\"\"", "\"b\"", "\"abb\"", "\"xa\""));
    expect("{'type':'string','pattern':'abc'}", L("\"abc\"", "\"xxabcyy\"", "\"abcabc\""), L("\"ab\"", "\"acb\""));
    expect("{'type':'string','pattern':'^\\\\d{3}-\\\\d{4}$'}", L("\"555-1234\""),
           L("\"55-1234\"", "\"555-12345\"", "\"abc-defg\""));
    expect("{'type':'string','pattern':'^(?:ab|cd){2}$'}", L("\"abcd\"", "\"cdcd\""),
           L("\"ab\"", "\"abc\"", "\"abcdab\""));
    expect("{'type':'string','pattern':'^[^x]{2,}$'}", L("\"ab\"", "\"\xc3\xa9\xc3\xa9\xc3\xa9\""),
           L("\"a\"", "\"axb\""));
    expect("{'type':'string','pattern':'^[A-Z][a-z]*(?<rest>[0-9]{1,2})?$'}", L("\"Ab\"", "\"A12\"", "\"Xyz9\""),
           L("\"ab\"", "\"A123\""));
    expect("{'type':'string','pattern':'^\\\\w+\\\\s\\\\S$'}", L("\"ab_1 x\""), L("\"ab  x\"", "\"a-b x\""));
    expect("{'type':'string','pattern':'^a.c$'}",
           L("\"abc\"", "\"a\xe2\x82\xac"
                        "c\""),
           L("\"ac\"", "\"a\\nc\""));
    expect("{'type':'string','pattern':'x$'}", L("\"x\"", "\"abx\""), L("\"xa\""));
    expect("{'type':'string','pattern':'^a|b$'}", L("\"ax\"", "\"xb\""), L("\"xa\"", "\"bx\""));
    expect("{'type':'string','pattern':'^[\\\\-+.]\\\\.\\\\u0041\\\\x42$'}", L("\"-.AB\"", "\"+.AB\""), L("\"a.AB\""));
    expect("{'type':'string','pattern':'^a{2,3}?$'}", L("\"aa\"", "\"aaa\""), L("\"a\"", "\"aaaa\""));
}

static void test_formats(void) {
    expect("{'type':'string','format':'date'}", L("\"2024-02-28\"", "\"1999-12-31\""),
           L("\"2024-13-01\"", "\"2024-04-31\"", "\"2024-1-01\"", "\"2024-02-30\""));
    expect("{'type':'string','format':'date-time'}", L("\"2024-05-06T07:08:09Z\"", "\"2024-05-06T23:59:59.123+02:00\""),
           L("\"2024-05-06 07:08:09Z\"", "\"2024-05-06T24:00:00Z\"", "\"2024-05-06T07:08:09\""));
    expect("{'type':'string','format':'time'}", L("\"07:08:09Z\"", "\"07:08:09-05:30\""),
           L("\"7:08:09Z\"", "\"07:60:00Z\""));
    expect("{'type':'string','format':'duration'}", L("\"P1D\"", "\"PT1H30M\"", "\"P1Y2M3DT4H5M6S\"", "\"P2W\""),
           L("\"P\"", "\"PT\"", "\"1D\"", "\"P1H\""));
    expect("{'type':'string','format':'email'}", L("\"a.b+c@example.com\"", "\"x@y.co\""),
           L("\"a@b\"", "\"@x.com\"", "\"a..b@x.com\"", "\"a b@x.com\""));
    expect("{'type':'string','format':'uuid'}", L("\"123e4567-e89b-12d3-a456-426614174000\""),
           L("\"123e4567e89b12d3a456426614174000\"", "\"123e4567-e89b-12d3-a456-42661417400g\""));
    expect("{'type':'string','format':'ipv4'}", L("\"192.168.0.1\"", "\"0.0.0.0\"", "\"255.255.255.255\""),
           L("\"256.1.1.1\"", "\"1.2.3\"", "\"01.2.3.4\""));
    expect("{'type':'string','format':'ipv6'}", L("\"2001:db8:0:0:0:0:0:1\"", "\"::1\"", "\"::\""),
           L("\"1:2:3\"", "\"12345::\""));
    expect("{'type':'string','format':'hostname'}", L("\"example.com\"", "\"a-b.c\""),
           L("\"-a.com\"", "\"a..b\"", "\"a_b\""));
    expect("{'type':'string','format':'uri'}", L("\"https://example.com/a/b?x=1#f\"", "\"http://h:8080\""),
           L("\"example.com\"", "\"http://\"", "\"https://a b\""));
    /* pattern and format together: both hold */
    expect("{'type':'string','format':'email','pattern':'@corp\\\\.com$'}", L("\"a@corp.com\""), L("\"a@x.com\""));
}

static const char *TREE =
    "{'$defs':{'Node':{'type':'object','properties':{'value':{'type':'integer'},"
    "'children':{'type':'array','items':{'$ref':'#/$defs/Node'}}},'required':['value','children'],"
    "'additionalProperties':false}},'$ref':'#/$defs/Node'}";

static void test_structure(void) {
    expect(TREE,
           L("{\"value\":1,\"children\":[]}",
             "{\"value\":1,\"children\":[{\"value\":2,\"children\":[{\"value\":3,\"children\":[]}]}]}"),
           L("{\"value\":1}", "{\"value\":1,\"children\":[{\"value\":2}]}"));
    expect("{'type':'object','properties':{'head':{'$ref':'#/definitions/L'}},'required':['head'],"
           "'definitions':{'L':{'anyOf':[{'type':'null'},{'type':'object','properties':{'v':{'type':'string'},"
           "'next':{'$ref':'#/definitions/L'}},'required':['v','next']}]}}}",
           L("{\"head\":null}", "{\"head\":{\"v\":\"a\",\"next\":{\"v\":\"b\",\"next\":null}}}"),
           L("{\"head\":{\"v\":\"a\"}}", "{\"head\":1}"));
    /* anyOf with overlapping first bytes: a discriminated union of objects */
    const char *U =
        "{'oneOf':[{'type':'object','properties':{'kind':{'const':'circle'},'r':{'type':'number'}},"
        "'required':['kind','r'],'additionalProperties':false},"
        "{'type':'object','properties':{'kind':{'const':'rect'},'w':{'type':'number'},'h':{'type':'number'}},"
        "'required':['kind','w','h'],'additionalProperties':false}]}";
    expect(U,
           L("{\"kind\":\"circle\",\"r\":1}", "{\"kind\":\"rect\",\"w\":1,\"h\":2}", "{\"r\":2,\"kind\":\"circle\"}"),
           L("{\"kind\":\"circle\",\"w\":1,\"h\":2}", "{\"kind\":\"rect\",\"r\":1}", "{\"r\":1}"));
    expect("{'anyOf':[{'type':'string','maxLength':2},{'type':'integer','minimum':5},{'type':'null'}]}",
           L("\"ab\"", "7", "null"), L("\"abc\"", "4", "true"));
    expect("{'anyOf':[{'type':'string','pattern':'^a+$'},{'type':'string','pattern':'^b+$'}]}", L("\"aa\"", "\"bbb\""),
           L("\"ab\"", "\"\""));
    expect("{'type':'string','nullable':true,'maxLength':1}", L("null", "\"a\""), L("\"ab\"", "1"));
    expect("{'title':'T','description':'d','default':1,'examples':[1],'$schema':'x','$comment':'c','type':'integer'}",
           L("1"), L("\"1\""));
    expect("{'allOf':[{'type':'object','properties':{'a':{'type':'integer'}},'required':['a']},"
           "{'properties':{'b':{'type':'string'}},'required':['b']}]}",
           L("{\"a\":1,\"b\":\"x\"}"), L("{\"a\":1}", "{\"b\":\"x\"}"));
    expect("{'type':'object','properties':{'p':{'$ref':'#/$defs/P','description':'x'}},'required':['p'],"
           "'$defs':{'P':{'type':'string','enum':['a','b']}}}",
           L("{\"p\":\"a\"}"), L("{\"p\":\"c\"}"));
    expect("{'type':'array','prefixItems':[{'type':'integer'},{'type':'string'}],'items':false}",
           L("[1,\"a\"]", "[1]", "[]"), L("[1,\"a\",2]", "[\"a\"]"));
    expect("{'type':'array','prefixItems':[{'type':'integer'}],'items':{'type':'boolean'},'minItems':2}",
           L("[1,true]", "[1,true,false]"), L("[1]", "[1,2]"));
    expect("{'type':'array','items':{'enum':['a','b','c']},'uniqueItems':true}",
           L("[]", "[\"a\",\"c\"]", "[\"c\",\"b\",\"a\"]"), L("[\"a\",\"a\"]", "[\"b\",\"c\",\"b\"]"));
    expect("{'type':'array','items':{'type':'boolean'},'uniqueItems':true}", L("[true,false]"), L("[true,true]"));
    expect("{'type':'object','additionalProperties':{'type':'number'},'propertyNames':{'type':'string'}}",
           L("{}", "{\"a\":1,\"b\":2.5}"), L("{\"a\":\"x\"}"));
    expect("{'type':'object','properties':{'a':{'type':'integer'}},'additionalProperties':true}",
           L("{\"a\":1,\"zz\":[1]}"), L("{\"a\":1,\"a\":2}"));
}

/* Random walks through recursive / union schemas, then the completion: always valid. */
static void test_completion_more(void) {
    const char *schemas[] = {
        TREE,
        "{'anyOf':[{'type':'object','properties':{'n':{'type':'integer','minimum':10,'maximum':99}},'required':['n']},"
        "{'type':'object','properties':{'s':{'type':'string','format':'date'}},'required':['s']}]}",
        "{'type':'object','properties':{'id':{'type':'string','format':'uuid'},'t':{'type':'string','pattern':'^[A-Z]{"
        "3}\\\\d+$'},"
        "'x':{'type':'number','minimum':-2.5,'maximum':-1}},'required':['id','t','x']}"};
    const char alphabet[] = "{}[]\",:0123456789.-abcdefAZTnulr \\";
    for (size_t k = 0; k < sizeof schemas / sizeof *schemas; k++) {
        char schema[2048], err[256];
        snprintf(schema, sizeof schema, "%s", schemas[k]);
        for (char *p = schema; *p; p++)
            if (*p == '\'') *p = '"';
        grammar *g = grammar_from_schema(schema, err, sizeof err);
        CHECK(g != NULL, "compile %s: %s", schema, err);
        if (!g) continue;
        for (int trial = 0; trial < 200; trial++) {
            grammar_state st;
            grammar_state_init(g, &st);
            char text[4096];
            int n = 0, steps = (int)(rnd() % 80);
            for (int i = 0; i < steps * 8 && n < steps; i++) {
                char b = alphabet[rnd() % (sizeof alphabet - 1)];
                if (grammar_accept(g, &st, &b, 1)) text[n++] = b;
            }
            int m = grammar_completion(g, &st, text + n, (int)sizeof text - n);
            CHECK(m >= 0, "completion failed after %.*s", n, text);
            if (m < 0) continue;
            text[n + m] = 0;
            CHECK(valid(g, text), "completed text not accepted: %s", text);
            json_error_t je;
            json_t *j = json_loads(text, 0, &je);
            CHECK(j != NULL, "completed text not JSON: %s (%s)", text, je.text);
            json_decref(j);
        }
        grammar_free(g);
    }
}

/* The mask (trie walk plus its fast paths for plain text, pattern strings and free keys) must
 * equal a token-by-token check with grammar_accept, along random walks. */
static void test_mask_equivalence(void) {
    static const char *pieces[] = {"a",
                                   "b",
                                   "Z",
                                   "0",
                                   "1",
                                   "-",
                                   "@",
                                   ".",
                                   ":",
                                   " ",
                                   "\"",
                                   "\\",
                                   "{",
                                   "}",
                                   "[",
                                   "]",
                                   ",",
                                   "ab",
                                   "abc",
                                   " the",
                                   "com",
                                   ".com",
                                   "@ex",
                                   "12",
                                   "2024",
                                   "-01",
                                   "T1",
                                   "Z\"",
                                   "\",",
                                   "\":",
                                   "\"}",
                                   "\\n",
                                   "\\u00",
                                   "\xc3\xa9",
                                   "\xe4\xb8\xad",
                                   "\xe4\xb8",
                                   "\xad",
                                   "\xf0\x9f\x98\x80",
                                   "\xf0\x9f",
                                   "\x98\x80",
                                   "true",
                                   "null",
                                   "fa",
                                   "e",
                                   "E",
                                   "+",
                                   "ffff",
                                   "a1b2",
                                   "x_y",
                                   "aaaaaaaaaa",
                                   "\xc3",
                                   "\xa9x",
                                   "AB CD",
                                   "\t",
                                   ""};
    int n = (int)(sizeof pieces / sizeof *pieces), lens[128];
    for (int i = 0; i < n; i++) lens[i] = (int)strlen(pieces[i]);
    grammar_vocab *v = grammar_vocab_new(pieces, lens, n);
    const char *schemas[] = {"{\"type\":\"object\",\"properties\":{\"e\":{\"type\":\"string\",\"format\":\"email\"},"
                             "\"s\":{\"type\":\"string\",\"maxLength\":5},"
                             "\"p\":{\"type\":\"string\",\"pattern\":\"^[a-z\\u00e9\\u4e2d]*$\"}},"
                             "\"additionalProperties\":{\"type\":\"string\"}}",
                             "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"format\":\"date\"},{"
                             "\"type\":\"string\",\"maxLength\":3},{\"type\":\"integer\",\"minimum\":-5}]}}",
                             "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\",\"pattern\":\"ab\"}}"};
    bool allowed[128];
    int32_t end = n - 1;
    for (size_t k = 0; k < sizeof schemas / sizeof *schemas; k++) {
        char err[256];
        grammar *g = grammar_from_schema(schemas[k], err, sizeof err);
        CHECK(g != NULL, "compile: %s", err);
        if (!g) continue;
        for (int trial = 0; trial < 30; trial++) {
            grammar_state st;
            grammar_state_init(g, &st);
            for (int step = 0; step < 40; step++) {
                int cnt = grammar_allowed(g, &st, v, &end, 1, allowed);
                int ref = 0, ok[128], n_ok = 0;
                for (int t = 0; t < n; t++) {
                    grammar_state tmp = st;
                    bool a = t == end ? grammar_complete(g, &st) : grammar_accept(g, &tmp, pieces[t], (size_t)lens[t]);
                    ref += a;
                    CHECK(a == allowed[t], "schema %zu: token '%s' mask %d, accept %d", k, pieces[t], allowed[t], a);
                    if (a && t != end) ok[n_ok++] = t;
                }
                CHECK(cnt == ref, "count %d vs %d", cnt, ref);
                if (!n_ok) break;
                int t = ok[rnd() % (unsigned)n_ok];
                grammar_accept(g, &st, pieces[t], (size_t)lens[t]);
            }
        }
        grammar_free(g);
    }
    grammar_vocab_free(v);
}

static void test_mask(void) {
    /* a toy vocabulary: single bytes, some merges, and a special token with no bytes */
    const char *toks[] = {"{", "}", "\"", "name",  "\":", "\"name\":\"", "Al",  "age", "1", "23",  ",",  "x",
                          "",  "[", "]",  "\"a\"", " ",   "tags",        "pos", "y",   ":", "\"}", "\\", "n"};
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

/* Raw text: a regex matched as a whole, and a choice of literal strings (vLLM's structured
 * outputs "regex" and "choice"): no JSON quoting, the mask and the completion follow the DFA. */
static void test_raw(void) {
    char err[256] = "";
    const char *rx = "[A-Z][a-z]+ (\\d{2}|n/a)";
    grammar *g = grammar_from_regex(rx, strlen(rx), NULL, err, sizeof err);
    CHECK(g != NULL && grammar_is_raw(g), "regex compiles: %s", err);
    CHECK(valid(g, "Alice 42") && valid(g, "Bo n/a"), "whole matches");
    CHECK(!accepts(g, "alice", NULL) && !accepts(g, "\"Alice", NULL) && !accepts(g, " Alice", NULL),
          "anchored at the start, no JSON quotes");
    bool c;
    CHECK(accepts(g, "Alice 4", &c) && !c, "a prefix is not a match");
    CHECK(!accepts(g, "Alice 421", NULL), "anchored at the end");
    char out[64];
    grammar_state st;
    grammar_state_init(g, &st);
    grammar_accept(g, &st, "Al", 2);
    int n = grammar_completion(g, &st, out, sizeof out);
    char whole[80];
    snprintf(whole, sizeof whole, "Al%s", n >= 0 ? out : "?");
    CHECK(n > 0 && valid(g, whole), "completion of 'Al' matches ('%s')", whole);
    grammar_free(g);

    /* code points beyond ASCII, quotes and newlines are plain text here */
    const char *rx2 = "\"[^\"]*\"\n(é|日本)+";
    g = grammar_from_regex(rx2, strlen(rx2), NULL, err, sizeof err);
    CHECK(g && valid(g, "\"a b\"\né日本") && !accepts(g, "\"a\"\n\xc3\xa8", NULL), "utf-8 and quotes: %s", err);
    CHECK(g && !accepts(g, "\"a\"\n\xc3", &c) == false && !c, "half a code point is a prefix, not a match");
    grammar_free(g);

    g = grammar_from_regex("(", 1, NULL, err, sizeof err);
    CHECK(!g && strstr(err, "pattern"), "a bad regex is an error (%s)", err);
    g = grammar_from_regex("a\\1", 3, NULL, err, sizeof err);
    CHECK(!g && strstr(err, "backreference"), "unsupported syntax is an error (%s)", err);
    const char *none = "[^\\u0000-\\u{10FFFF}]";
    g = grammar_from_regex(none, strlen(none), NULL, err, sizeof err);
    CHECK(!g && strstr(err, "never match"), "a regex matching nothing is an error (%s)", err);

    /* choices: literal strings, punctuation and control characters included */
    const char *ch[] = {"positive", "negative", "a.b*(c)?", "x\ty", ""};
    size_t cl[5];
    for (int i = 0; i < 5; i++) cl[i] = strlen(ch[i]);
    g = grammar_from_choices(ch, cl, 4, NULL, err, sizeof err);
    CHECK(g != NULL, "choices compile: %s", err);
    CHECK(valid(g, "positive") && valid(g, "negative") && valid(g, "a.b*(c)?") && valid(g, "x\ty"), "each choice");
    CHECK(!accepts(g, "pos ", NULL) && !valid(g, "posit") && !accepts(g, "positives", NULL) && !valid(g, "a.b*c"),
          "nothing else");
    CHECK(!valid(g, ""), "not the empty text");
    grammar_state_init(g, &st);
    grammar_accept(g, &st, "negative", 8);
    CHECK(st.depth == 0 && grammar_complete(g, &st), "a choice nothing extends ends the text (depth %d)", st.depth);
    grammar_free(g);
    g = grammar_from_choices(ch, cl, 5, NULL, err, sizeof err);
    CHECK(g && valid(g, "") && valid(g, "positive"), "an empty choice: %s", err);
    grammar_free(g);
    g = grammar_from_choices(ch, cl, 0, NULL, err, sizeof err);
    CHECK(!g && strstr(err, "empty"), "no choices is an error (%s)", err);

    /* the mask: from the start only tokens that begin a choice; at a whole choice, the end */
    const char *toks[] = {"pos", "itive", "neg", "ative", "\"", "p", "", "x", "\t", "y", "itives"};
    int nt = (int)(sizeof toks / sizeof *toks), lens[16];
    for (int i = 0; i < nt; i++) lens[i] = (int)strlen(toks[i]);
    grammar_vocab *v = grammar_vocab_new(toks, lens, nt);
    g = grammar_from_choices(ch, cl, 4, NULL, err, sizeof err);
    bool allowed[16];
    int32_t end = 6;
    grammar_state_init(g, &st);
    int k = grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(k == 4 && allowed[0] && allowed[2] && allowed[5] && allowed[7], "first tokens (got %d)", k);
    grammar_accept(g, &st, "pos", 3);
    k = grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(k == 1 && allowed[1], "after 'pos': 'itive' only (got %d)", k);
    grammar_accept(g, &st, "itive", 5);
    k = grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(k == 1 && allowed[6], "a whole choice: only the end (got %d)", k);
    grammar_state_init(g, &st);
    grammar_accept(g, &st, "x", 1);
    k = grammar_allowed(g, &st, v, &end, 1, allowed);
    CHECK(k == 1 && allowed[8], "a tab inside a choice (got %d)", k);
    grammar_free(g);
    grammar_vocab_free(v);
}

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\",\"f\"]},\"days\":{\"type\":"
    "\"integer\"},"
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
    /* a Pydantic / zod parameter schema: $defs, anyOf with null, bounded int, format, nested */
    const char *PY =
        "[{\"type\":\"function\",\"function\":{\"name\":\"book\",\"parameters\":{\"$defs\":{\"Room\":"
        "{\"enum\":[\"single\",\"double\"],\"type\":\"string\"}},\"properties\":{\"room\":{\"$ref\":\"#/$defs/Room\"},"
        "\"nights\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9007199254740991},\"day\":{\"type\":\"string\","
        "\"format\":\"date\"},"
        "\"note\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}],\"default\":null,\"title\":\"Note\"},"
        "\"vip\":{\"type\":\"boolean\"}},\"required\":[\"room\",\"nights\",\"day\"],\"title\":\"Book\",\"type\":"
        "\"object\"}}}]";
    g = grammar_tool_calls(PY, "book", false, err, sizeof err);
    CHECK(g != NULL, "pydantic tool: %s", err);
    if (g) {
        CHECK(valid(g, "[book(room=\"double\", nights=3, day=\"2025-01-31\", note=None, vip=True)]"), "pydantic call");
        CHECK(valid(g, "[book(room=\"single\", nights=1, day=\"2025-01-31\", note=\"x\")]"), "note as string");
        CHECK(!valid(g, "[book(room=\"double\", nights=0, day=\"2025-01-31\")]"), "nights minimum");
        CHECK(!valid(g, "[book(room=\"double\", nights=1, day=\"2025-02-30\")]"), "date format");
        CHECK(!valid(g, "[book(room=\"double\", nights=1, day=\"2025-01-31\", note=null)]"), "JSON null is not Python");
        grammar_state st;
        grammar_state_init(g, &st);
        char out[512];
        int m = grammar_completion(g, &st, out, sizeof out);
        CHECK(m > 0 && valid(g, out), "completion: %s", m > 0 ? out : "");
        grammar_free(g);
    }
    CHECK(grammar_tool_calls("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
                             "\"properties\":{\"a\":{\"type\":\"array\",\"contains\":{},\"maxContains\":1}}}}}]",
                             NULL, false, err, sizeof err) == NULL &&
              strstr(err, "maxContains"),
          "unsupported keyword in a tool names it: %s", err);
    CHECK(grammar_tool_calls("{}", NULL, false, err, sizeof err) == NULL, "tools not an array");
}

/* grammar_min_tokens: the fewest tokens of a whole answer, exact through the search and through
 * the greedy cut of the completion, a lower bound when the budget ends the search. */
static void test_min_tokens(void) {
    const char *toks[130];
    char singles[96][2];
    int n = 0, lens[130];
    for (int c = 0x20; c < 0x7f; c++) {
        singles[c - 0x20][0] = (char)c;
        singles[c - 0x20][1] = 0;
        toks[n++] = singles[c - 0x20];
    }
    int base = n;
    toks[n++] = "\"\""; /* merges */
    toks[n++] = "[get(";
    toks[n++] = "\"abcdef\"";
    for (int i = 0; i < n; i++) lens[i] = (int)strlen(toks[i]);
    grammar_vocab *plain = grammar_vocab_new(toks, lens, base), *merged = grammar_vocab_new(toks, lens, n);
    char err[256];
    grammar *g = grammar_from_schema("{\"type\":\"string\"}", err, sizeof err);
    CHECK(g && grammar_min_tokens(g, plain, true, 5, 1 << 20) <= 5, "a string fits in 5 single bytes");
    CHECK(g && grammar_min_tokens(g, plain, true, 1, 1 << 20) == 2, "a string takes 2 single bytes");
    CHECK(g && grammar_min_tokens(g, merged, true, 0, 1 << 20) == 1, "a string takes 1 token when '\"\"' is one");
    CHECK(g && grammar_min_tokens(g, plain, true, 1, 1) == -1, "out of budget before the limit: undecided");
    grammar_free(g);
    g = grammar_from_schema("{\"type\":\"string\",\"minLength\":3}", err, sizeof err);
    CHECK(g && grammar_min_tokens(g, plain, true, 3, 1 << 20) == 5, "minLength 3: 5 single bytes");
    CHECK(g && grammar_min_tokens(g, merged, true, 0, 1 << 20) == 1, "minLength 3: '\"abcdef\"' is one token");
    CHECK(g && grammar_min_tokens(g, plain, true, 4, 1) == -1, "no budget: undecided");
    grammar_free(g);
    g = grammar_from_schema("{\"enum\":[\"abcdef\",\"xy\"]}", err, sizeof err);
    CHECK(g && grammar_min_tokens(g, plain, true, 3, 1 << 20) == 4, "enum: '\"xy\"' in 4 single bytes");
    CHECK(g && grammar_min_tokens(g, merged, true, 0, 1 << 20) == 1, "enum: the longer value is one token");
    grammar_free(g);
    g = grammar_from_schema("{\"type\":\"integer\"}", err, sizeof err);
    CHECK(g && grammar_min_tokens(g, plain, true, 1, 1 << 20) == 2, "an integer: a digit and an end token");
    CHECK(g && grammar_min_tokens(g, plain, false, 1, 1 << 20) > 1, "an integer without an end token never ends");
    grammar_free(g);
    g = grammar_tool_calls(TOOLS, "get", false, err, sizeof err);
    CHECK(g && grammar_min_tokens(g, plain, false, 6, 1 << 20) == 7, "[get()] in 7 single bytes");
    CHECK(g && grammar_min_tokens(g, merged, false, 2, 1 << 20) == 3, "[get()] in 3 tokens with '[get('");
    grammar_free(g);
    g = grammar_tool_calls(
        "[{\"type\":\"function\",\"function\":{\"name\":\"solo\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"s\":{\"type\":\"string\"},\"k\":{\"type\":\"boolean\"}},\"required\":[\"s\"]}}}]",
        NULL, false, err, sizeof err);
    int m = g ? grammar_min_tokens(g, plain, false, 5, 1 << 22) : 0;
    CHECK(m == (int)strlen("[solo(s=\"\")]"), "a call's shortest text, byte by byte (got %d)", m);
    grammar_free(g);
    /* integers' values make the states after k digits 10^k: the search stops when a level is
     * full, and what it says is then a lower bound, past the limit */
    g = grammar_tool_calls(TOOLS, "get_weather", false, err, sizeof err);
    m = g ? grammar_min_tokens(g, plain, false, 10, 1 << 22) : 0;
    CHECK(m > 10 && m <= (int)strlen("[get_weather(location=\"\")]"), "a lower bound past the limit (got %d)", m);
    m = g ? grammar_min_tokens(g, plain, false, 10, 1 << 8) : 0;
    CHECK(m == -1, "the budget spent before the limit: undecided (got %d)", m);
    grammar_free(g);
    grammar_vocab_free(plain);
    grammar_vocab_free(merged);
}

/* The JSON-schema features real-world schemas use (JSONSchemaBench): what each enforces. */
static void test_corpus_keywords(void) {
    /* oneOf: overlapping alternatives made exclusive (never both match) */
    expect("{'oneOf':[{'additionalProperties':false,'properties':{'key':{'type':'string'}}},"
           "{'additionalProperties':false,'properties':{'keys':{'type':'array'}}}]}",
           (const char *[]){"{\"key\":\"a\"}", "{\"keys\":[]}", NULL}, (const char *[]){"{}", NULL});
    expect("{'type':'object','oneOf':[{'properties':{'type':{'enum':['callback']},'value':{'type':'string'}}},"
           "{'properties':{'type':{'enum':['field','value']},'value':{}}}]}",
           (const char *[]){"{\"type\":\"callback\"}", "{\"type\":\"field\",\"value\":1}", NULL},
           (const char *[]){"{}", "{\"value\":\"x\"}", NULL});
    expect("{'oneOf':[{'type':['string','null']},{'type':'null'}]}", (const char *[]){"\"a\"", NULL},
           (const char *[]){"null", NULL});
    expect("{'oneOf':[{'pattern':'APPROVER'},{'pattern':'SIGNER'}],'type':'string'}",
           (const char *[]){"\"APPROVER\"", "\"SIGNER\"", NULL}, (const char *[]){"\"APPROVER SIGNER\"", NULL});
    expect("{'oneOf':[{'type':'integer','maximum':0},{'type':'integer','minimum':1}]}",
           (const char *[]){"0", "1", "-5", NULL}, NULL);
    /* integer formats; enum values outside the sibling type */
    expect("{'type':'integer','format':'int32'}", (const char *[]){"2147483647", "-2147483648", NULL},
           (const char *[]){"2147483648", "-2147483649", NULL});
    expect("{'type':'number','format':'int32'}", (const char *[]){"7", NULL}, (const char *[]){"1.5", "1e3", NULL});
    expect("{'type':'integer','format':'uint8'}", (const char *[]){"255", NULL}, (const char *[]){"256", "-1", NULL});
    expect("{'type':'string','enum':['a',null,1]}", (const char *[]){"\"a\"", NULL},
           (const char *[]){"null", "1", NULL});
    expect("{'type':'integer','maximum':9223372036854775808}", (const char *[]){"5", NULL}, NULL);
    /* lookaheads after '^' (zod 4's email) */
    expect("{'type':'string','pattern':\"^(?!\\\\.)(?!.*\\\\.\\\\.)([A-Za-z0-9_+\\\\-\\\\.]*)[A-Za-z0-9_+-]@([A-Za-z0-"
           "9][A-Za-z0-9\\\\-]*\\\\.)+[A-Za-z]{2,}$\"}",
           (const char *[]){"\"a.b@ex.com\"", NULL}, (const char *[]){"\".a@ex.com\"", "\"a..b@ex.com\"", NULL});
    expect("{'type':'string','pattern':'^(?=.*[0-9])(?=.*[A-Z]).{4}$'}", (const char *[]){"\"aB3c\"", NULL},
           (const char *[]){"\"abcd\"", "\"ab3c\"", "\"aB3cd\"", NULL});
    /* objects: patternProperties, required names outside properties, min/maxProperties,
     * dependencies, propertyNames, more than 64 properties */
    expect("{'type':'object','properties':{'x_a':{'type':'string'}},'patternProperties':{'^x_':{'maxLength':2}}}",
           (const char *[]){"{\"x_a\":\"ab\"}", NULL}, (const char *[]){"{\"x_a\":\"abc\"}", "{\"y\":1}", NULL});
    expect("{'type':'object','required':['x']}", (const char *[]){"{\"x\":[1]}", NULL}, (const char *[]){"{}", NULL});
    expect("{'type':'object','properties':{'a':{'type':'integer'},'b':{'type':'integer'},'c':{'type':'integer'}},"
           "'minProperties':1,'maxProperties':2}",
           (const char *[]){"{\"a\":1}", "{\"c\":1,\"b\":2}", NULL},
           (const char *[]){"{}", "{\"a\":1,\"b\":2,\"c\":3}", NULL});
    expect("{'properties':{'a':{},'b':{}},'required':['a'],'dependentRequired':{'a':['b']}}",
           (const char *[]){"{\"a\":1,\"b\":2}", NULL}, (const char *[]){"{\"a\":1}", NULL});
    expect("{'properties':{'a':{},'b':{}},'dependencies':{'a':{'required':['b']}}}",
           (const char *[]){"{\"b\":1}", NULL}, (const char *[]){"{\"a\":1}", NULL});
    expect("{'properties':{'ab':{},'b':{}},'propertyNames':{'maxLength':1}}", (const char *[]){"{\"b\":1}", NULL},
           (const char *[]){"{\"ab\":1}", NULL});
    {
        char big[8192];
        int n = snprintf(big, sizeof big, "{'type':'object','properties':{");
        for (int i = 0; i < 80; i++)
            n += snprintf(big + n, sizeof big - (size_t)n, "%s'p%d':{'type':'integer'}", i ? "," : "", i);
        snprintf(big + n, sizeof big - (size_t)n, "},'required':['p79']}");
        expect(big, (const char *[]){"{\"p79\":1,\"p0\":2}", NULL}, (const char *[]){"{\"p0\":2}", NULL});
    }
    expect("{'type':'array','items':{'type':['integer','string']},'contains':{'type':'string'}}",
           (const char *[]){"[\"a\",1]", NULL}, (const char *[]){"[]", "[1]", NULL});
    expect("{'type':'object','properties':{'x':{'enum':['a','b'],'const':'c'},'y':{}}}",
           (const char *[]){"{\"y\":1}", NULL}, (const char *[]){"{\"x\":\"c\"}", "{\"x\":\"a\"}", NULL});
    expect("{'type':'string','pattern':'^.$'}", (const char *[]){"\"\xc3\xa9\"", NULL},
           (const char *[]){"\"\xf0\x9f\x98\x80\"", NULL});
    /* if/then/else: one branch taken; minProperties past the declared names */
    expect("{'type':'object','properties':{'k':{'enum':['a','b']},'v':{}},'if':{'properties':{'k':{'const':'a'}}},"
           "'then':{'properties':{'v':{'type':'integer'}}},'else':{'properties':{'v':{'type':'string'}}}}",
           (const char *[]){"{\"k\":\"a\",\"v\":1}", NULL}, (const char *[]){"{\"k\":\"a\",\"v\":\"x\"}", NULL});
    expect("{'type':'object','if':{'required':['a'],'properties':{'a':false}},'then':{'required':['b']},"
           "'else':{'properties':{'c':{'type':'integer'}},'required':['c']}}",
           (const char *[]){"{\"c\":1}", NULL}, (const char *[]){"{}", NULL});
    expect("{'type':'object','additionalProperties':{'type':'integer'},'minProperties':2}",
           (const char *[]){"{\"property1\":1,\"property2\":2}", NULL}, (const char *[]){"{\"property1\":1}", NULL});
    /* not (by exclusion), uniqueItems over any items, large enums, additionalItems */
    expect("{'type':['string','null'],'not':{'type':'null'}}", (const char *[]){"\"a\"", NULL},
           (const char *[]){"null", NULL});
    expect("{'type':'string','not':{'pattern':'^a'}}", (const char *[]){"\"ba\"", NULL},
           (const char *[]){"\"ab\"", NULL});
    expect("{'type':'object','properties':{'a':{},'b':{}},'not':{'required':['a']}}",
           (const char *[]){"{\"b\":1}", NULL}, (const char *[]){"{\"a\":1}", NULL});
    expect("{'type':'array','items':{'type':'string'},'uniqueItems':true}", (const char *[]){"[]", "[\"a\"]", NULL},
           (const char *[]){"[\"a\",\"b\"]", NULL});
    expect("{'type':'array','items':{'type':'integer'},'additionalItems':false}", (const char *[]){"[1,2]", NULL},
           NULL);
    {
        char big[8192];
        int n = snprintf(big, sizeof big, "{'enum':[");
        for (int i = 0; i < 300; i++) n += snprintf(big + n, sizeof big - (size_t)n, "%s'v%03d'", i ? "," : "", i);
        snprintf(big + n, sizeof big - (size_t)n, "]}");
        expect(big, (const char *[]){"\"v000\"", "\"v299\"", "\"v150\"", NULL}, (const char *[]){"\"v300\"", NULL});
    }
    /* allOf: additionalProperties false of one side forbids the other side's properties */
    expect("{'allOf':[{'properties':{'a':{}},'additionalProperties':false},{'properties':{'b':{}}}]}",
           (const char *[]){"{\"a\":1}", NULL}, (const char *[]){"{\"b\":1}", NULL});
    /* unsatisfiable parts are never generated; deep optional recursion stops at the frame limit */
    expect(
        "{'type':'object','properties':{'n':{'allOf':[{'type':'string'},{'type':'integer'}]},'m':{'type':'integer'}}}",
        (const char *[]){"{\"m\":1}", NULL}, (const char *[]){"{\"n\":1}", NULL});
    test_completion("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"},\"b\":{\"type\":\"string\","
                    "\"pattern\":\"^[a-z]*\\\\.[a-z]*$\",\"maxLength\":3}}}");
    test_completion("{\"type\":\"object\",\"anyOf\":[{\"$ref\":\"#/$defs/i\"},{\"$ref\":\"#/$defs/l\"}],\"$defs\":{"
                    "\"i\":{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"},\"b\":{\"$ref\":\"#\"}},"
                    "\"required\":[\"a\",\"b\"]},"
                    "\"l\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":\"^\\\\w+"
                    "\\\\s\\\\w+$\"}},"
                    "\"required\":[\"name\"]}}}");
    char err[256];
    grammar *g = grammar_from_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}}}", err, sizeof err);
    CHECK(g != NULL, "optional recursion: %s", err);
    if (g) {
        char text[512] = "";
        for (int i = 0; i < GRAMMAR_MAX_DEPTH - 1; i++) strcat(text, "{\"a\":");
        grammar_state st;
        grammar_state_init(g, &st);
        CHECK(grammar_accept(g, &st, text, strlen(text)), "31 levels of optional recursion");
        CHECK(!grammar_accept(g, &st, "{\"a\":", 6), "a 32nd level is refused before its key");
        char out[256];
        CHECK(grammar_completion(g, &st, out, sizeof out) >= 0, "and the value still completes");
        grammar_free(g);
    }
}

/* Pattern compilation is bounded: a pattern whose DFA blows up is refused quickly, naming it. */
static void test_regex_budget(void) {
    char schema[8192], err[512];
    int n = snprintf(schema, sizeof schema, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 64; i++)
        n += snprintf(schema + n, sizeof schema - (size_t)n,
                      "%s\"p%d\":{\"type\":\"string\",\"pattern\":\"^(?:[a-z0-9]{1,40}[.-]){1,40}[a-z0-9]{1,40}%d$\"}",
                      i ? "," : "", i, i);
    snprintf(schema + n, sizeof schema - (size_t)n, "}}");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    grammar *g = grammar_from_schema(schema, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(g == NULL && strstr(err, "pattern") && strstr(err, "[a-z0-9]{1,40}"),
          "costly patterns refused naming one: %s", err);
    CHECK(s < 20, "the whole request's patterns took %.1f s", s);
    grammar_free(g);
    volatile bool cancel = true;
    g = grammar_from_schema_cancel("{\"type\":\"string\",\"pattern\":\"^(?:[a-z0-9]{1,40}[.-]){1,40}$\"}", &cancel, err,
                                   sizeof err);
    CHECK(g == NULL && strstr(err, "too costly"), "a cancelled compile stops: %s", err);
    grammar_free(g);
}

/* ---- corpus generator: test_grammar --generate N OUTDIR SCHEMA.json... ------------------- *
 * For each schema, N random outputs walking the automaton (random allowed chunks, then the
 * completion after a random budget), one per line in OUTDIR/<name>.jsonl, for the ajv oracle
 * (tests/test_grammar_corpus.sh). Prints failures and "N passed, N failed". */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static int generate_one(const grammar *g, char *text, int cap) {
    static const char *chunks[] = {"true",
                                   "false",
                                   "null",
                                   "\":",
                                   "\", \"",
                                   "0",
                                   "12",
                                   "-3",
                                   ".5",
                                   "e+2",
                                   "abc",
                                   "\xc3\xa9",
                                   "\xe4\xb8\xad",
                                   "\xf0\x9f\x98\x80",
                                   "\\n",
                                   "\\\"",
                                   "\\u00e9",
                                   "2024-",
                                   "T12:",
                                   "@ex",
                                   ".com",
                                   "http",
                                   "://",
                                   "[]",
                                   "{}",
                                   "\"a\"",
                                   ", ",
                                   "::",
                                   "Z"};
    enum { N_CHUNKS = sizeof chunks / sizeof *chunks };
    grammar_state *st = malloc(sizeof *st);
    if (!st) return -1;
    grammar_state_init(g, st);
    int n = 0, budget = 10 + (int)(rnd() % 150);
    for (int step = 0; step < budget && n < cap / 2; step++) {
        if (grammar_complete(g, st) && rnd() % 6 == 0) break;
        const char *opt[128 + N_CHUNKS];
        int lens[128 + N_CHUNKS], k = 0;
        static char bytes[96][2];
        for (int b = 0x20; b < 0x7f; b++) {
            bytes[b - 0x20][0] = (char)b;
            opt[k] = bytes[b - 0x20];
            lens[k++] = 1;
        }
        for (int c = 0; c < N_CHUNKS; c++) {
            opt[k] = chunks[c];
            lens[k++] = (int)strlen(chunks[c]);
        }
        /* a random option among those the automaton accepts */
        int ok_idx[128 + N_CHUNKS], n_ok = 0;
        grammar_state *t = malloc(sizeof *t);
        for (int i = 0; t && i < k; i++) {
            *t = *st;
            if (grammar_accept(g, t, opt[i], (size_t)lens[i])) ok_idx[n_ok++] = i;
        }
        int chosen = n_ok ? ok_idx[rnd() % (unsigned)n_ok] : -1;
        if (chosen >= 0) grammar_accept(g, st, opt[chosen], (size_t)lens[chosen]);
        free(t);
        if (chosen < 0) break;
        memcpy(text + n, opt[chosen], (size_t)lens[chosen]);
        n += lens[chosen];
    }
    int m = grammar_completion(g, st, text + n, cap - n);
    free(st);
    if (m < 0) {
        text[n] = 0;
        return -1;
    }
    n += m;
    text[n] = 0;
    return n;
}

static int generate(int argc, char **argv) {
    int n_out = atoi(argv[2]), pass = 0, failn = 0;
    const char *dir = argv[3];
    for (int a = 4; a < argc; a++) {
        char *schema = read_text(argv[a]), err[512];
        const char *base = strrchr(argv[a], '/');
        base = base ? base + 1 : argv[a];
        grammar *g = schema ? grammar_from_schema(schema, err, sizeof err) : NULL;
        if (!g) {
            printf("FAIL compile %s: %s\n", base, schema ? err : "unreadable");
            failn++;
            free(schema);
            continue;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/%.*s.jsonl", dir, (int)(strlen(base) - 5), base);
        FILE *f = fopen(path, "w");
        for (int i = 0; f && i < n_out; i++) {
            char text[16384];
            int n = generate_one(g, text, (int)sizeof text);
            grammar_state st;
            grammar_state_init(g, &st);
            if (n < 0 || !valid(g, text)) {
                printf("FAIL generate %s #%d: %s%s\n", base, i, n < 0 ? "no completion after " : "", text);
                failn++;
                continue;
            }
            fprintf(f, "%s\n", text);
            pass++;
        }
        if (f) fclose(f);
        grammar_free(g);
        free(schema);
    }
    printf("%d passed, %d failed\n", pass, failn);
    return failn ? 1 : 0;
}

/* test_grammar --survey N OUTDIR SCHEMA.json...: the corpus harness's step
 * (tests/grammar/jsonschemabench.mjs). Per schema one tab-separated line: name, then OK (N outputs
 * in OUTDIR/<name>.jsonl), REJECT (the compiler's message) or DEADEND (a prefix the automaton took
 * but can neither extend nor complete), then the compile time in ms. Always exits 0. */
static int survey(int argc, char **argv) {
    int n_out = atoi(argv[2]);
    const char *dir = argv[3];
    for (int a = 4; a < argc; a++) {
        char *schema = read_text(argv[a]), err[512] = "unreadable";
        const char *base = strrchr(argv[a], '/');
        base = base ? base + 1 : argv[a];
        int blen = (int)strlen(base) - 5;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        grammar *g = schema ? grammar_from_schema(schema, err, sizeof err) : NULL;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (!g) {
            for (char *p = err; *p; p++)
                if (*p == '\t' || *p == '\n') *p = ' ';
            printf("%.*s\tREJECT\t%s\t%.1f\n", blen, base, err, ms);
            free(schema);
            fflush(stdout);
            continue;
        }
        char path[1024];
        snprintf(path, sizeof path, "%s/%.*s.jsonl", dir, blen, base);
        FILE *f = fopen(path, "w");
        static char text[65536];
        bool dead = false;
        for (int i = 0; f && i < n_out && !dead; i++) {
            int n = generate_one(g, text, (int)sizeof text);
            if (n < 0 || !valid(g, text)) dead = true;
            else fprintf(f, "%s\n", text);
        }
        if (f) fclose(f);
        for (char *p = text; dead && *p; p++)
            if (*p == '\t' || *p == '\n') *p = ' ';
        if (dead) printf("%.*s\tDEADEND\t%.300s\t%.1f\n", blen, base, text, ms);
        else printf("%.*s\tOK\t%d\t%.1f\n", blen, base, n_out, ms);
        fflush(stdout);
        grammar_free(g);
        free(schema);
    }
    return 0;
}

/* test_grammar --reject NEGATIVE.jsonl SCHEMADIR: every {"schema","instance"} line is an invalid
 * instance the automaton must refuse. */
static int reject_mode(const char *path, const char *dir) {
    FILE *f = fopen(path, "r");
    int pass = 0, failn = 0;
    char line[8192];
    while (f && fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        const char *name = json_string_value(json_object_get(j, "schema"));
        char *inst = name ? json_dumps(json_object_get(j, "instance"), JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        char sp[1024], err[512];
        snprintf(sp, sizeof sp, "%s/%s.json", dir, name ? name : "");
        char *schema = inst ? read_text(sp) : NULL;
        grammar *g = schema ? grammar_from_schema(schema, err, sizeof err) : NULL;
        if (!g) {
            printf("FAIL negative: bad line or schema: %s", line);
            failn++;
        } else if (valid(g, inst)) {
            printf("FAIL negative %s: accepted %s\n", name, inst);
            failn++;
        } else pass++;
        grammar_free(g);
        free(schema);
        free(inst);
        json_decref(j);
    }
    if (f) fclose(f);
    else {
        printf("FAIL cannot read %s\n", path);
        failn++;
    }
    printf("%d passed, %d failed\n", pass, failn);
    return failn ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "--generate")) return generate(argc, argv);
    if (argc >= 4 && !strcmp(argv[1], "--survey")) return survey(argc, argv);
    if (argc == 4 && !strcmp(argv[1], "--reject")) return reject_mode(argv[2], argv[3]);
    test_schema_accepts();
    test_schema_errors();
    test_any_object();
    test_completion(PERSON);
    test_completion(NULL);
    test_completion("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                    "\"properties\":{\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}}},\"additionalProperties\":{"
                    "\"type\":\"integer\"}}");
    test_integers();
    test_numbers();
    test_strings();
    test_regex();
    test_formats();
    test_structure();
    test_completion_more();
    test_mask();
    test_mask_equivalence();
    test_tool_calls();
    test_min_tokens();
    test_corpus_keywords();
    test_regex_budget();
    test_raw();
    TEST_MAIN_END();
}
