/* results/h5check.c: HDF5 error stack -> Error (see h5check.h). */
#include "results/h5check.h"

#include <string.h>

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char api[64];     /* outermost frame: the API function the caller invoked */
    char desc[640];   /* innermost frame: the most specific description (often carries errno text) */
    char minor[128];  /* innermost frame's minor class, e.g. "Unable to open file" */
    unsigned frames;
} Walk;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    Walk *w = data;
    if (n == 0 && e->func_name) snprintf(w->api, sizeof w->api, "%s", e->func_name);
    snprintf(w->desc, sizeof w->desc, "%s", e->desc ? e->desc : "");
    w->minor[0] = 0;
    if (H5Eget_msg(e->min_num, NULL, w->minor, sizeof w->minor) < 0) w->minor[0] = 0;
    w->frames = n + 1;
    return 0;
}

/* "/work/main/results/h5rec.c" -> "results/h5rec.c": the last two path components. */
static const char *short_file(const char *file) {
    const char *last = strrchr(file, '/');
    if (!last) return file;
    const char *p = last;
    while (p > file && p[-1] != '/') p--;
    return p;
}

int h5_fail(Error *err, const char *file, int line, const char *path, const char *what, const char *call) {
    Walk w = {{0}, {0}, {0}, 0};
    hid_t stack = H5Eget_current_stack(); /* copies and clears the thread's stack */
    if (stack >= 0) {
        H5Ewalk2(stack, H5E_WALK_DOWNWARD, walk_cb, &w);
        H5Eclose_stack(stack);
    }
    const char *sep = what ? ": " : "";
    if (w.frames == 0)
        return err_set(err, "%s%s%s: %s failed (no HDF5 error message) [%s:%d]", path, sep, what ? what : "", call,
                       short_file(file), line);
    return err_set(err, "%s%s%s: %s: %s%s%s%s [%s:%d]", path, sep, what ? what : "", w.api[0] ? w.api : call, w.desc,
                   w.minor[0] ? " (" : "", w.minor, w.minor[0] ? ")" : "", short_file(file), line);
}

void h5_close(hid_t id) {
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}
