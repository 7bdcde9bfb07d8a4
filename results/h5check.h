/* results/h5check.h: the HDF5 check macro of the record (STYLE.md: one check macro per library).
 * Contract:
 *   - h5_quiet() turns off HDF5's automatic printing of its error stack; every public h5rec_ entry point
 *     calls it, so HDF5 never writes to stderr on its own: its errors become Error messages instead.
 *   - h5Check(call, err, path, what) evaluates an HDF5 call returning hid_t / herr_t / htri_t. On a negative
 *     result it fills err with "<path>: <what>: <API function>: <HDF5's innermost message> (<minor class>)
 *     [results/file.c:line]" (what may be NULL) and yields -1; otherwise it yields 0. Use it as
 *         if (h5Check(d = H5Dopen2(g, "step", H5P_DEFAULT), err, r->path, name)) goto fail;
 *     The HDF5 error stack is read and cleared at once, so it must be the next HDF5 call after the failure.
 *   - h5_close(id) closes any HDF5 id by its type (file, group, dataset, dataspace, datatype, attribute,
 *     property list); negative ids are ignored, so cleanup paths can close everything unconditionally. */
#ifndef RESULTS_H5CHECK_H
#define RESULTS_H5CHECK_H

#include <hdf5.h>

#include "core/common.h"

void h5_quiet(void);
int h5_fail(Error *err, const char *file, int line, const char *path, const char *what, const char *call);
void h5_close(hid_t id);

#define h5Check(call, err, path, what) (((call) < 0) ? h5_fail((err), __FILE__, __LINE__, (path), (what), #call) : 0)

#endif
