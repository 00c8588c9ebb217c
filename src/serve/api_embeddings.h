/* api_embeddings.h — the embedding routes of `lfm2c serve` (api_embeddings.c): OpenAI's /v1/embeddings,
 * Ollama's /api/embed and /api/embeddings. Internal to the server. */
#ifndef LFM2C_API_EMBEDDINGS_H
#define LFM2C_API_EMBEDDINGS_H
#include "serve/http.h"

extern const http_route embedding_routes[];
extern const int embedding_n_routes;
#endif
