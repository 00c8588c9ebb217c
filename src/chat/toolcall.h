/* toolcall.h — LFM2 tool calls in model output (spec 6.3): one-shot and streaming parsing, and the
 * JSON shapes the CLI and the OpenAI server print.
 *
 * Forms accepted (tests/data/toolcalls/README.md rules 1-6):
 *   <|tool_call_start|>[f(a="x", b=2), pkg.g(c=True)]<|tool_call_end|>   Pythonic keyword calls
 *   <|tool_call_start|>[{"name": "f", "arguments": {...}}]<|tool_call_end|>  JSON mode
 *   [f(a="x")] at the very start of an output that has no marker          bare list (LFM2.5)
 * Several regions may appear; a start marker without an end marker runs to the end of the text.
 * If any region (or the bare list) does not parse, the result is parsed=false, no calls, and the
 * content is the whole text unchanged. */
#ifndef LFM2C_TOOLCALL_H
#define LFM2C_TOOLCALL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOOLCALL_START "<|tool_call_start|>"
#define TOOLCALL_END "<|tool_call_end|>"

typedef struct toolcall {
    char *name;      /* "get_weather", "Calendar.create_event" (valid UTF-8) */
    char *arguments; /* the keyword arguments as a compact JSON object text, e.g. {"city":"Paris"} */
} toolcall;

typedef struct toolcall_result {
    char *content; /* text outside the calls (rule 5); the whole text when nothing parsed; may hold
                      any bytes the model produced (NUL-terminated, length in content_len) */
    size_t content_len;
    toolcall *calls;
    int n_calls;
    bool parsed; /* false: a call was present but malformed (calls empty, content = whole text) */
} toolcall_result;

/* Parses model output text (special tokens written as text). Returns false only when out of
 * memory (then *out is empty); malformed calls are a result (parsed=false), not an error. */
bool toolcall_parse(const char *text, size_t len, toolcall_result *out);
void toolcall_result_free(toolcall_result *r);

/* {"content": "...", "tool_calls": [{"name": ..., "arguments": {...}}], "parsed": bool} as
 * malloc'd JSON text (what `lfm2c toolcalls` prints). Invalid UTF-8 in content becomes U+FFFD. */
char *toolcall_result_to_json(const toolcall_result *r);

/* The OpenAI `tool_calls` array of a chat completion message:
 *   [{"id": "call_<16 hex>", "type": "function", "function": {"name": ..., "arguments": "<JSON>"}}]
 * Each call's id is written by make_id(ctx, out, cap) (the server passes its random id maker, so
 * ids are unguessable and unique across requests); it must write a "call_"-prefixed string.
 * NULL when out of memory. */
typedef void (*toolcall_id_fn)(void *ctx, char *out, size_t cap);
json_t *toolcall_openai_json(const toolcall_result *r, toolcall_id_fn make_id, void *ctx);

/* The writer, inverse of the reader: calls [{"name": str, "arguments": {object}}, ...] as LFM2
 * writes them, TOOLCALL_START "[f(a=1, b=\"x\"), g()]" TOOLCALL_END (values as Python literals),
 * for assistant turns fed back through the chat template. Returns malloc'd text (*len bytes) or
 * NULL when a call lacks a name or object arguments, or out of memory. */
char *toolcall_format(const json_t *calls, size_t *len);

/* Where the text ends once a call region that has no end marker is dropped (a call cut by the
 * token budget is not a call, and its markers and arguments never become content): the offset of
 * the last TOOLCALL_START when no TOOLCALL_END follows it, else n. */
size_t toolcall_before_cut(const char *text, size_t n);

/* Streaming: feed the decoded text as tokens arrive; each feed returns the bytes that are now safe
 * to show as content (never part of a call, never half a UTF-8 character, never a piece of
 * "<|tool_call_start|>"). Held back: whitespace not yet followed by text (it may border a call),
 * a possible start of the marker, everything from a start marker on, and the whole output when it
 * begins like a bare call list "[name(". At the end, toolcall_stream_finish gives the same result
 * as toolcall_parse on the whole text, plus the tail still to show, so that
 *   (everything fed back) + tail == result.content
 * whenever the result is parsed=false or has no call region; with calls, the same holds except
 * that whitespace leading the output was already shown (the final content has it stripped). */
typedef struct toolcall_stream toolcall_stream;
toolcall_stream *toolcall_stream_new(void);
/* Returns a pointer to the newly safe bytes (valid until the next call) and their count in *n;
 * NULL with *n = 0 when out of memory (the stream is then unusable). */
const char *toolcall_stream_feed(toolcall_stream *s, const char *piece, size_t len, size_t *n);
/* Ends the stream: fills *out (see toolcall_parse) and points *tail / *tail_len at the content
 * still to show (inside out->content). Returns false when out of memory. */
bool toolcall_stream_finish(toolcall_stream *s, toolcall_result *out, const char **tail, size_t *tail_len);
void toolcall_stream_free(toolcall_stream *s);
#endif
