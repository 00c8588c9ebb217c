/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'bench' is not implemented yet"); }
