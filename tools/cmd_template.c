/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_template(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'template' is not implemented yet"); }
