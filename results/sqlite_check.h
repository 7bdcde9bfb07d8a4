/* results/sqlite_check.h: the one check macro for SQLite calls (STYLE.md "Errors").
 *
 *   if (sqliteCheck(h, path, rc, err, "insert results")) goto fail;
 *
 * evaluates to 0 when rc is SQLITE_OK, SQLITE_ROW or SQLITE_DONE; otherwise it fills err with
 *   "<db path>: <what>: <sqlite3_errmsg(h)> (sqlite code <extended rc>) [file:line]"
 * and evaluates to -1. Call it right after the failing call: sqlite3_errmsg() describes the latest call on h. */
#ifndef RESULTS_SQLITE_CHECK_H
#define RESULTS_SQLITE_CHECK_H

#include "core/common.h"

#include <sqlite3.h>

static inline int sqlite_check_at(sqlite3 *h, const char *path, int rc, const char *what, const char *file,
                                  int line, Error *err) {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return 0;
    /* errmsg needs a handle; without one (open ran out of memory) the code's own text is all there is. */
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
    int code = h ? sqlite3_extended_errcode(h) : rc;
    return err_set(err, "%s: %s: %s (sqlite code %d) [%s:%d]", path ? path : "(no path)", what, msg, code, file,
                   line);
}

#define sqliteCheck(h, path, rc, err, what) sqlite_check_at((h), (path), (rc), (what), __FILE__, __LINE__, (err))

#endif
