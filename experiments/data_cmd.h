/* experiments/data_cmd.h: `runexp data ...` (docs/data.md):
 *   runexp data mini-vtab --out DIR [--size 32] [--seed S] [--fashion-mnist DIR]   generate mini-VTAB-19
 *   runexp data tasks                                                             the VTAB-1k task table */
#ifndef EXPERIMENTS_DATA_CMD_H
#define EXPERIMENTS_DATA_CMD_H
/* argv[0] is "data"; returns the process exit code (0 ok, 1 failure, 2 usage). */
int runexp_data_main(int argc, char **argv);
#endif
