/* chat.c — rendering conversations with a chat template: the model's own
 * (tokenizer.chat_template), one given by the caller, or the built-in LFM2 format when the file
 * carries none. All three go through the same Jinja interpreter (jinja.c); the built-in format is
 * just the official LFM2 template text kept here. */
#include "lfm2c.h"
#include "base/error.h"
#include "chat/jinja.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The LFM2 chat template (spec section 6.1), as published with the LFM2 models; the same text
 * synth embeds in synthetic models. */
#include "chat/lfm2_chat_template.h"

const char *lfm2c_chat_builtin_template(void) { return LFM2_CHAT_TEMPLATE; }

/* Parses a JSON document given to the renderer; what names it in errors. */
static json_t *parse_json(const char *text, const char *what, lfm2c_error *err) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) {
        char where[64];
        snprintf(where, sizeof where, "line %d column %d", je.line, je.column);
        char msg[300];
        snprintf(msg, sizeof msg, "%s (%s)", je.text, where);
        lfm2c_set_error(err, LFM2C_EINVAL, "bad %s JSON: %s", what, msg);
    }
    return j;
}

/* The caller's limits as the interpreter's options (0 fields keep the interpreter's defaults). */
static jinja_options options_of(const lfm2c_template_limits *l) {
    jinja_options o = {0};
    if (l) {
        o.memory_limit = l->max_memory;
        o.max_steps = l->max_steps;
        o.max_output = l->max_output;
        o.max_depth = l->max_depth;
        o.max_seconds = l->max_seconds;
        o.cancel = l->cancel;
    }
    return o;
}

static char *render_template(const char *template_src, const char *messages_json, const char *tools_json,
                             bool add_generation_prompt, const char *bos_token, const char *eos_token,
                             const lfm2c_template_limits *limits, lfm2c_error *err) {
    if (!template_src) template_src = LFM2_CHAT_TEMPLATE;
    if (!messages_json) {
        lfm2c_set_error(err, LFM2C_EINVAL, "no messages given");
        return NULL;
    }
    json_t *msgs = parse_json(messages_json, "messages", err);
    if (!msgs) return NULL;
    /* an object {"messages": [...], "tools": [...], other variables} is accepted as well as the
     * bare array: its other keys are variables of the template (chat_template_kwargs, e.g.
     * enable_thinking), under the ones set here */
    json_t *tools_in = NULL, *vars = json_object();
    if (json_is_object(msgs)) {
        json_t *m = json_object_get(msgs, "messages");
        tools_in = json_object_get(msgs, "tools");
        if (m) json_incref(m);
        if (tools_in) json_incref(tools_in);
        json_object_update(vars, msgs);
        json_decref(msgs);
        msgs = m;
    }
    if (!json_is_array(msgs)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "messages must be a JSON array of {\"role\", \"content\"} objects");
        json_decref(msgs);
        json_decref(tools_in);
        json_decref(vars);
        return NULL;
    }
    json_t *tools = tools_in;
    if (tools_json) {
        json_decref(tools_in);
        tools = parse_json(tools_json, "tools", err);
        if (!tools) {
            json_decref(msgs);
            json_decref(vars);
            return NULL;
        }
    }
    if (tools && !json_is_array(tools) && !json_is_null(tools)) {
        lfm2c_set_error(err, LFM2C_EINVAL, "tools must be a JSON array");
        json_decref(msgs);
        json_decref(tools);
        json_decref(vars);
        return NULL;
    }
    json_object_set_new(vars, "messages", msgs);
    json_object_set_new(vars, "tools", tools ? tools : json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    json_object_set_new(vars, "bos_token", json_string(bos_token ? bos_token : ""));
    json_object_set_new(vars, "eos_token", json_string(eos_token ? eos_token : ""));

    char *out = NULL;
    jinja_template *t = jinja_parse(template_src, strlen(template_src), err);
    if (t) {
        jinja_options o = options_of(limits);
        out = jinja_render(t, vars, &o, NULL, err);
        jinja_free(t);
    }
    json_decref(vars);
    if (!out && err) { /* say where the error comes from, keeping one line */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "chat template: %.490s", err->msg);
        memcpy(err->msg, msg, sizeof msg);
    }
    return out;
}

/* The text of a special token (bos/eos) as the template sees it; "" when absent. */
static char *token_text(const lfm2c_model *model, int id) {
    char tmp[256];
    int n = id >= 0 ? lfm2c_token_to_bytes(model, id, true, tmp, (int)sizeof tmp) : 0;
    if (n < 0) n = 0;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    if (n <= (int)sizeof tmp) memcpy(s, tmp, (size_t)n);
    else n = lfm2c_token_to_bytes(model, id, true, s, n);
    s[n] = 0;
    return s;
}

char *lfm2c_chat_render_template(const char *template_src, const char *messages_json, const char *tools_json,
                                 bool add_generation_prompt, const char *bos_token, const char *eos_token,
                                 lfm2c_error *err) {
    return render_template(template_src, messages_json, tools_json, add_generation_prompt, bos_token, eos_token, NULL,
                           err);
}

char *lfm2c_chat_render(const lfm2c_model *model, const char *template_src, const char *messages_json,
                        const char *tools_json, bool add_generation_prompt, lfm2c_error *err) {
    return lfm2c_chat_render_limited(model, template_src, messages_json, tools_json, add_generation_prompt, NULL, err);
}

char *lfm2c_chat_render_limited(const lfm2c_model *model, const char *template_src, const char *messages_json,
                                const char *tools_json, bool add_generation_prompt, const lfm2c_template_limits *limits,
                                lfm2c_error *err) {
    if (!model)
        return render_template(template_src, messages_json, tools_json, add_generation_prompt, "<|startoftext|>",
                               "<|im_end|>", limits, err);
    if (!template_src) template_src = lfm2c_model_meta_str(model, "tokenizer.chat_template");
    const lfm2c_model_info *info = lfm2c_model_get_info(model);
    char *bos = token_text(model, info->bos_id), *eos = token_text(model, info->eos_id);
    char *out = NULL;
    if (!bos || !eos) lfm2c_set_error(err, LFM2C_ENOMEM, "out of memory");
    else out = render_template(template_src, messages_json, tools_json, add_generation_prompt, bos, eos, limits, err);
    free(bos);
    free(eos);
    return out;
}
