/* fuzz_imatrix.c — the files `lfm2c imatrix` and `lfm2c perplexity` read: the input as an
 * importance matrix (GGUF or llama-imatrix's legacy .dat, convert/imatrix.c), merged twice (the
 * second merge meets the first's sizes), its statistics and chunk count computed; and as a logits
 * file (convert/ppl.c): the header checked against the input's size and every row read. */
#include "fuzz_common.h"
#include "convert/imatrix.h"
#include "convert/ppl.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    imatrix im;
    imatrix_init(&im);
    lfm2c_error err = {0};
    if (imatrix_load_bytes(&im, data, size, 128, &err) == 0) {
        imatrix_load_bytes(&im, data, size, 7, &err);
        int n = 0;
        free(imatrix_stats(&im, &n));
        (void)imatrix_chunk_count(&im, 128);
    }
    imatrix_free(&im);
    if (!size) return 0;
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) return 0;
    kld_header h;
    if (kld_read_header(f, size, &h, &err) == 0) {
        const size_t words = kld_row_words(h.n_vocab);
        uint16_t *row = malloc(words * 2);
        for (long r = 0; row && r < (long)h.n_chunk * kld_rows_per_chunk(h.n_ctx); r++)
            if (fread(row, 2, words, f) != words) abort(); /* the header promised these bytes */
        free(row);
        kld_header_free(&h);
    }
    fclose(f);
    return 0;
}
