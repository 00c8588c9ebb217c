/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_quantize(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'quantize' is not implemented yet"); }
