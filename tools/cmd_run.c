/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_run(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'run' is not implemented yet"); }
