/* api_openai.h — the OpenAI API's wire format of `lfm2c serve` (api_openai.c): its routes
 * (/v1/chat/completions, /v1/completions, /v1/models[/{id}], /tokenize, /detokenize) and its
 * dialect, dialect_openai (api_dialect.h), which renders the job engine's neutral events and
 * answers (job_event.h) as OpenAI's SSE chunks and objects. The requests run on the job engine
 * (job.h). Internal to the server. */
#ifndef LFM2C_API_OPENAI_H
#define LFM2C_API_OPENAI_H
#include "serve/http.h"

extern const http_route openai_routes[];
extern const int openai_n_routes;
#endif
