/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_tokenize(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'tokenize' is not implemented yet"); }
int cmd_detokenize(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'detokenize' is not implemented yet"); }
