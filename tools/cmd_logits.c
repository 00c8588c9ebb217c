/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_logits(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'logits' is not implemented yet"); }
