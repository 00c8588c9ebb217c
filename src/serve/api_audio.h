/* api_audio.h — OpenAI's speech-to-text routes of `lfm2c serve` (api_audio.c):
 * POST /v1/audio/transcriptions and /v1/audio/translations, multipart/form-data uploads answered
 * by an LFM2-Audio model (its audio mmproj) as json, text, srt, vtt or verbose_json, or streamed as
 * transcript.text.delta / transcript.text.done events. Internal to the server. */
#ifndef LFM2C_API_AUDIO_H
#define LFM2C_API_AUDIO_H
#include "serve/http.h"

extern const http_route audio_routes[];
extern const int audio_n_routes;
#endif
