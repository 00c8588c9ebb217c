/* placeholder: the Jinja chat-template renderer replaces this file */
#include "lfm2c.h"
#include <stdio.h>
char *lfm2c_chat_render(const lfm2c_model *model, const char *template_src,
                        const char *messages_json, const char *tools_json,
                        bool add_generation_prompt, lfm2c_error *err) {
    if (err) { err->code = LFM2C_EUNSUPPORTED; snprintf(err->msg, sizeof err->msg, "chat templates not implemented yet"); }
    return NULL;
}
char *lfm2c_chat_render_template(const char *template_src, const char *messages_json,
                                 const char *tools_json, bool add_generation_prompt,
                                 const char *bos_token, const char *eos_token, lfm2c_error *err) {
    return lfm2c_chat_render(NULL, template_src, messages_json, tools_json, add_generation_prompt, err);
}
