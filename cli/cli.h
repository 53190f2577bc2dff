/*
 * cli.h - declarations shared by the files of cli/ (the `docent` program).
 */
#ifndef DOCENT_CLI_H
#define DOCENT_CLI_H

#include "core/core.h"

#define EXIT_USAGE 2

/* cli_fail: print "docent: [what: ]message" for a runtime error; returns 1. */
int cli_fail(const char *what, const doc_err *e);
/* cli_usage_error: print a usage problem with a pointer to --help; returns 2. */
int cli_usage_error(const char *cmd, const char *msg);

/* store commands (store_cmds.c): in-process until the daemon serves them */
int cmd_ingest(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_collections(int argc, char **argv);
int cmd_reindex(int argc, char **argv);
int cmd_check(int argc, char **argv);

#endif
