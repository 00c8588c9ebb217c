/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_toolcalls(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'toolcalls' is not implemented yet"); }
