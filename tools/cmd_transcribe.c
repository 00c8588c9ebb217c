/* cmd_transcribe.c — `lfm2c transcribe FILE -m MODEL -mm MMPROJ`: an audio file's speech as
 * text with an LFM2-Audio model, as its model card runs ASR (the system prompt "Perform ASR.",
 * the clip alone as the user's turn, greedy). It is `lfm2c run` with those settings (run's
 * options pass through, the later ones winning): a progress bar while the clip is decoded and
 * encoded on a terminal, the transcript on stdout, with -v the speeds and the real-time factor. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: lfm2c transcribe FILE -m MODEL.gguf -mm MMPROJ.gguf [options]\n"
    "  FILE               the audio (WAV, FLAC, MP3, Ogg Vorbis / Opus; mono or more channels, any\n"
    "                     rate: it is mixed down and resampled to 16 kHz)\n"
    "  -m MODEL           an LFM2-Audio language model; -hf ORG/NAME[:QUANT] from the Hub\n"
    "  -mm, --mmproj F    its audio mmproj (the Conformer encoder and adapter)\n"
    "  --system TEXT      the instruction (default \"Perform ASR.\", the model card's)\n"
    "  -n N               most tokens of text (default 512)    -t THREADS    --device NAME\n"
    "  -v, --verbose      speeds and the real-time factor (seconds taken per second of audio)\n"
    "any other option of `lfm2c run` applies (sampling: greedy unless --temp is given).\n";

int cmd_transcribe(int argc, char **argv) {
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(USAGE, stdout), 0;
        if (argv[i][0] != '-' && !file &&
            (i == 1 || argv[i - 1][0] != '-' || !strcmp(argv[i - 1], "-v") || !strcmp(argv[i - 1], "--verbose")))
            file = argv[i];
    }
    if (argc < 2) return fputs(USAGE, stderr), 2;
    if (!file) return cli_fail("transcribe: no audio file given (lfm2c transcribe --help)"), 2;
    char **av = calloc((size_t)argc + 16, sizeof *av);
    if (!av) return cli_fail("out of memory"), 1;
    int n = 0;
    const char *defaults[] = {"run", "--system", "Perform ASR.", "-p", "", "--temp", "0", "-n", "512", "--audio"};
    for (size_t k = 0; k < sizeof defaults / sizeof *defaults; k++) av[n++] = (char *)defaults[k];
    av[n++] = (char *)file;
    for (int i = 1; i < argc; i++)
        if (argv[i] != file) av[n++] = argv[i];
    const int rc = cmd_run(n, av);
    free(av);
    return rc;
}
