/* cmd_tokenize.c — `lfm2c tokenize` (text -> ids) and `lfm2c detokenize` (ids -> text).
 * Only the tokenizer is needed, so the GGUF is opened directly rather than as a whole model:
 * no weights are touched and it starts instantly on any model size. */
#include "cli.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "base/os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lfm2c_tokenizer *open_tokenizer(const char *path, gguf_file **g) {
    lfm2c_error err = {0};
    *g = gguf_open(path, &err);
    if (!*g) {
        cli_fail("%s", err.msg);
        return NULL;
    }
    lfm2c_tokenizer *t = tokenizer_new(*g, &err);
    if (!t) {
        cli_fail("%s: %s", path, err.msg);
        gguf_close(*g);
        *g = NULL;
    }
    return t;
}

/* A token piece for a terminal: printable UTF-8 as is, the rest escaped. */
static void print_piece(const char *s, int n) {
    for (int i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int r = utf8_valid_prefix((const uint8_t *)s + i, (size_t)(n - i));
        if (r > 1) {
            fwrite(s + i, 1, (size_t)r, stdout);
            i += r;
            continue;
        }
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c >= 0x7F) printf("\\x%02x", c);
        else putchar(c);
        i++;
    }
}

static void tokenize_usage(void) {
    fprintf(stderr, "usage: lfm2c tokenize -m MODEL.gguf [--no-bos] [--parse-special] [--ids] (TEXT | -f FILE)\n"
                    "  --no-bos         do not add BOS (and EOS when the model asks for it)\n"
                    "  --parse-special  text of control tokens (<|im_start|> ...) becomes their id\n"
                    "  --ids            print only a JSON array of ids (default: id<TAB>piece lines)\n"
                    "  -f FILE          read the text from FILE ('-' = stdin), byte for byte\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL;
    bool bos = true, special = false, ids_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--no-bos")) bos = false;
        else if (!strcmp(a, "--parse-special")) special = true;
        else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tokenize_usage();
            return 0;
        } else if (!strcmp(a, "--") && i + 1 < argc && !text) text = argv[++i];
        else if (a[0] == '-' && a[1])
            return cli_unknown_option("tokenize", a, "-m --model -f --file --no-bos --parse-special --ids");
        else if (!text) text = a;
        else return cli_fail("tokenize: give the text as one argument (quote it) or use -f FILE");
    }
    if (!model) {
        tokenize_usage();
        return cli_fail("tokenize: -m MODEL.gguf is required");
    }
    if (!text == !file) {
        tokenize_usage();
        return cli_fail("tokenize: give TEXT or -f FILE");
    }
    size_t len;
    char *buf = NULL;
    if (file) {
        buf = cli_read_file(file, &len);
        if (!buf) return 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    gguf_file *g;
    lfm2c_tokenizer *t = open_tokenizer(model, &g);
    if (!t) {
        free(buf);
        return 1;
    }
    lfm2c_error err = {0};
    int n;
    int32_t *ids = tokenizer_encode(t, text, len, bos, special, &n, &err);
    int rc = 0;
    if (!ids) {
        rc = cli_fail("%s", err.msg);
    } else if (ids_only) {
        putchar('[');
        for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    } else {
        char piece[512];
        for (int i = 0; i < n; i++) {
            int k = tokenizer_token_to_bytes(t, ids[i], true, piece, sizeof piece);
            printf("%d\t", ids[i]);
            print_piece(piece, k < (int)sizeof piece ? k : (int)sizeof piece);
            putchar('\n');
        }
    }
    free(ids);
    tokenizer_free(t);
    gguf_close(g);
    free(buf);
    return rc;
}

/* Ids as "1, 2, 3", "1 2 3" or a JSON array "[1,2,3]". */
static int parse_ids(const char *s, int32_t **out, int n_vocab) {
    size_t cap = 64;
    int n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        if (strchr("[], \t\r\n", *p)) {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= n_vocab) {
            cli_fail("detokenize: bad token id near '%.20s' (vocabulary has %d tokens)", p, n_vocab);
            free(ids);
            return -1;
        }
        if ((size_t)n == cap) {
            int32_t *b = realloc(ids, 2 * cap * sizeof *ids);
            if (!b) {
                free(ids);
                return -1;
            }
            ids = b;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    *out = ids;
    return n;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool special = true;
    size_t cap = 256, len = 0;
    char *idtext = calloc(cap, 1);
    if (!idtext) return cli_fail("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--no-special")) special = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fprintf(stderr, "usage: lfm2c detokenize -m MODEL.gguf [--no-special] IDS\n"
                            "  IDS: '1,2,3', '1 2 3' or '[1, 2, 3]'; prints the decoded bytes\n"
                            "  --no-special  leave out control tokens (<|im_end|> ...)\n");
            free(idtext);
            return 0;
        } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            free(idtext);
            return cli_unknown_option("detokenize", a, "-m --model --no-special");
        } else { /* ids may come as several arguments */
            size_t k = strlen(a);
            if (len + k + 2 > cap) {
                while (len + k + 2 > cap) cap *= 2;
                char *b = realloc(idtext, cap);
                if (!b) {
                    free(idtext);
                    return cli_fail("out of memory");
                }
                idtext = b;
            }
            memcpy(idtext + len, a, k);
            len += k;
            idtext[len++] = ' ';
            idtext[len] = 0;
        }
    }
    if (!model) {
        free(idtext);
        return cli_fail("detokenize: -m MODEL.gguf is required");
    }
    gguf_file *g;
    lfm2c_tokenizer *t = open_tokenizer(model, &g);
    if (!t) {
        free(idtext);
        return 1;
    }
    int32_t *ids = NULL;
    int n = parse_ids(idtext, &ids, tokenizer_n_vocab(t));
    int rc = n < 0;
    char piece[4096];
    for (int i = 0; i < n; i++) {
        int k = tokenizer_token_to_bytes(t, ids[i], special, piece, sizeof piece);
        if (k > (int)sizeof piece) { /* a very long token */
            char *big = malloc((size_t)k);
            if (!big) {
                rc = cli_fail("out of memory");
                break;
            }
            tokenizer_token_to_bytes(t, ids[i], special, big, k);
            fwrite(big, 1, (size_t)k, stdout);
            free(big);
        } else {
            fwrite(piece, 1, (size_t)k, stdout);
        }
    }
    if (n >= 0 && os_isatty(stdout)) putchar('\n');
    free(ids);
    free(idtext);
    tokenizer_free(t);
    gguf_close(g);
    return rc;
}
