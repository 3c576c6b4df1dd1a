/* fs.h — the file-system steps every layer needs, written once.
 *
 * md_mkdir_p() creates a directory and its missing parents (like mkdir -p);
 * md_write_atomic() replaces a file so that a reader (or a crash) sees either
 * the old or the whole new content: it writes "<path>.tmp.<pid>", fsyncs and
 * renames it over path, and removes the temporary file on failure;
 * md_read_file() reads a whole file into one NUL-terminated buffer. Every
 * failure sets an error naming the path and the system's reason. */
#ifndef MINIDET_FS_H
#define MINIDET_FS_H
#include <stddef.h>
#include "minidet/error.h"

/* Creates path and its missing parents (mode 0777 before the umask); existing directories are fine. */
md_status md_mkdir_p(const char *path);
/* Writes len bytes of data to path atomically ("<path>.tmp.<pid>", fsync, rename). */
md_status md_write_atomic(const char *path, const void *data, size_t len);
/* Reads the whole file into a malloc'ed buffer with a NUL after the last byte (*len excludes it). */
md_status md_read_file(const char *path, char **data, size_t *len);
/* 1 if something (file, directory, ...) exists at path. */
int md_path_exists(const char *path);

#endif
