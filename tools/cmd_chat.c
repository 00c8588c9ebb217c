/* placeholder: replaced by the real command */
#include "cli.h"
int cmd_chat(int argc, char **argv) { (void)argc; (void)argv; return cli_fail("'chat' is not implemented yet"); }
