/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_synth(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'synth' is not implemented yet"); }
