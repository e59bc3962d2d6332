/* The power-cut tracer: an LD_PRELOAD library that logs, in order, every file operation
 * under $POWERCUT_DIR to $POWERCUT_LOG (with the bytes written), so that the harness
 * (replay.py) can rebuild the disk as a power cut before any one of them would leave it.
 *
 * It changes nothing: every call goes on to the C library. It only watches paths under
 * $POWERCUT_DIR (and descriptors opened on them): opens (creating, truncating), writes at
 * their offset, fsync/fdatasync (the durability points), sync_file_range (logged, yet no
 * durability point), truncations, renames, unlinks, new folders and closes. One lock keeps the log in
 * the order the calls were made, across the threads of the process (SQLAlchemy's group
 * writer). Each entry is one write() of: a header (op, lengths, offset, size), the path,
 * the second path (rename), the data (writes). Built by the tests (conftest.py), never
 * installed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

enum op {
    OP_OPEN = 1, OP_WRITE, OP_SYNC, OP_TRUNCATE, OP_RENAME, OP_UNLINK, OP_CLOSE, OP_RANGE, OP_MKDIR
};
enum { OPEN_CREATED = 1, OPEN_TRUNCATED = 2 };

struct header { /* 40 bytes, native order: replay.py's HEADER */
    uint32_t op;
    uint32_t flags;
    int32_t fd;
    uint32_t path_len;
    uint32_t path2_len;
    uint32_t pad;
    int64_t offset;
    int64_t size;
};

#define MAX_FDS 65536
static char *fd_paths[MAX_FDS]; /* relative path of each watched descriptor, "" = the dir */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char watch_dir[4096];
static size_t watch_len;
static int log_fd = -1;
static int ready;

#define REAL(name) static __typeof__(name) *real_##name
REAL(open);
REAL(open64);
REAL(openat);
REAL(openat64);
REAL(creat);
REAL(write);
REAL(pwrite);
REAL(pwrite64);
REAL(writev);
REAL(pwritev);
REAL(fsync);
REAL(fdatasync);
REAL(sync_file_range);
REAL(ftruncate);
REAL(ftruncate64);
REAL(truncate);
REAL(rename);
REAL(renameat);
REAL(renameat2);
REAL(unlink);
REAL(unlinkat);
REAL(close);
REAL(mkdir);
REAL(mkdirat);

static void init(void) {
    if (ready) return;
#define LOAD(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)
    LOAD(open); LOAD(open64); LOAD(openat); LOAD(openat64); LOAD(creat);
    LOAD(write); LOAD(pwrite); LOAD(pwrite64); LOAD(writev); LOAD(pwritev);
    LOAD(fsync); LOAD(fdatasync); LOAD(sync_file_range);
    LOAD(ftruncate); LOAD(ftruncate64); LOAD(truncate);
    LOAD(rename); LOAD(renameat); LOAD(renameat2); LOAD(unlink); LOAD(unlinkat); LOAD(close);
    LOAD(mkdir); LOAD(mkdirat);
    const char *dir = getenv("POWERCUT_DIR");
    const char *log = getenv("POWERCUT_LOG");
    if (dir && log && strlen(dir) < sizeof(watch_dir)) {
        strcpy(watch_dir, dir);
        watch_len = strlen(watch_dir);
        while (watch_len > 1 && watch_dir[watch_len - 1] == '/') watch_dir[--watch_len] = 0;
        log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    ready = 1;
}

__attribute__((constructor)) static void start(void) { init(); }

static void emit(uint32_t op, uint32_t flags, int fd, const char *path, const char *path2,
                 int64_t offset, int64_t size, const void *data, size_t data_len) {
    struct header h = {op, flags, fd, (uint32_t)strlen(path),
                       path2 ? (uint32_t)strlen(path2) : 0, 0, offset, size};
    size_t total = sizeof h + h.path_len + h.path2_len + data_len;
    char *buf = malloc(total);
    if (!buf) abort();
    char *p = buf;
    memcpy(p, &h, sizeof h); p += sizeof h;
    memcpy(p, path, h.path_len); p += h.path_len;
    if (path2) { memcpy(p, path2, h.path2_len); p += h.path2_len; }
    if (data_len) memcpy(p, data, data_len);
    size_t done = 0;
    while (done < total) {
        ssize_t n = real_write(log_fd, buf + done, total - done);
        if (n <= 0) abort(); /* a log that misses an operation would prove nothing */
        done += (size_t)n;
    }
    free(buf);
}

/* The path relative to the watched folder ("" for the folder itself), or NULL. */
static char *watched(int dirfd, const char *path) {
    if (log_fd < 0 || !path) return NULL;
    char full[8192];
    if (path[0] == '/') {
        snprintf(full, sizeof full, "%s", path);
    } else if (dirfd == AT_FDCWD) {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) return NULL;
        snprintf(full, sizeof full, "%s/%s", cwd, path);
    } else if (dirfd >= 0 && dirfd < MAX_FDS && fd_paths[dirfd]) {
        snprintf(full, sizeof full, "%s/%s/%s", watch_dir, fd_paths[dirfd], path);
    } else {
        return NULL;
    }
    size_t len = strlen(full);
    while (len > 1 && full[len - 1] == '/') full[--len] = 0;
    if (strncmp(full, watch_dir, watch_len) != 0) return NULL;
    if (full[watch_len] == 0) return strdup("");
    if (full[watch_len] != '/') return NULL;
    return strdup(full + watch_len + 1);
}

static const char *fd_path(int fd) {
    return (log_fd >= 0 && fd >= 0 && fd < MAX_FDS) ? fd_paths[fd] : NULL;
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int at) {
    init();
    pthread_mutex_lock(&lock);
    char *rel = watched(dirfd, path);
    int existed = rel ? (faccessat(dirfd, path, F_OK, 0) == 0) : 1;
    int fd = at ? real_openat(dirfd, path, flags, mode) : real_open(path, flags, mode);
    int saved = errno;
    if (rel && fd >= 0 && fd < MAX_FDS) {
        uint32_t f = 0;
        if (!existed && (flags & O_CREAT)) f |= OPEN_CREATED;
        if (flags & O_TRUNC) f |= OPEN_TRUNCATED;
        emit(OP_OPEN, f, fd, rel, NULL, 0, 0, NULL, 0);
        free(fd_paths[fd]);
        fd_paths[fd] = rel;
    } else {
        free(rel);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return fd;
}

static mode_t mode_of(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_of(flags, ap); va_end(ap);
    return do_open(AT_FDCWD, path, flags, m, 0);
}
int open64(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_of(flags, ap); va_end(ap);
    return do_open(AT_FDCWD, path, flags, m, 0);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_of(flags, ap); va_end(ap);
    return do_open(dirfd, path, flags, m, 1);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); mode_t m = mode_of(flags, ap); va_end(ap);
    return do_open(dirfd, path, flags, m, 1);
}
int __open_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0, 0); }
int __open64_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0, 0); }
int __openat_2(int dirfd, const char *path, int flags) { return do_open(dirfd, path, flags, 0, 1); }
int __openat64_2(int dirfd, const char *path, int flags) {
    return do_open(dirfd, path, flags, 0, 1);
}
int creat(const char *path, mode_t mode) {
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0);
}
int creat64(const char *path, mode_t mode) {
    return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, 0);
}

/* A write of `n` bytes that ended at the descriptor's current offset (write, writev). */
static void log_seq_write(int fd, const void *data, ssize_t n) {
    const char *rel = fd_path(fd);
    if (rel && n > 0) {
        off_t end = lseek(fd, 0, SEEK_CUR);
        emit(OP_WRITE, 0, fd, rel, NULL, (int64_t)end - n, n, data, (size_t)n);
    }
}

ssize_t write(int fd, const void *buf, size_t count) {
    init();
    if (!fd_path(fd)) return real_write(fd, buf, count);
    pthread_mutex_lock(&lock);
    ssize_t n = real_write(fd, buf, count);
    int saved = errno;
    log_seq_write(fd, buf, n);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return n;
}

static ssize_t positioned(int fd, const void *buf, size_t count, off_t offset,
                          __typeof__(pwrite) *real) {
    init();
    if (!fd_path(fd)) return real(fd, buf, count, offset);
    pthread_mutex_lock(&lock);
    ssize_t n = real(fd, buf, count, offset);
    int saved = errno;
    if (n > 0) emit(OP_WRITE, 0, fd, fd_path(fd), NULL, offset, n, buf, (size_t)n);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return n;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    init();
    return positioned(fd, buf, count, offset, real_pwrite);
}
ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    init();
    return positioned(fd, buf, count, offset, real_pwrite64);
}

static char *gather(const struct iovec *iov, int iovcnt, ssize_t n) {
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf) abort();
    ssize_t done = 0;
    for (int i = 0; i < iovcnt && done < n; i++) {
        size_t take = iov[i].iov_len;
        if ((ssize_t)take > n - done) take = (size_t)(n - done);
        memcpy(buf + done, iov[i].iov_base, take);
        done += (ssize_t)take;
    }
    return buf;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    init();
    if (!fd_path(fd)) return real_writev(fd, iov, iovcnt);
    pthread_mutex_lock(&lock);
    ssize_t n = real_writev(fd, iov, iovcnt);
    int saved = errno;
    if (n > 0) {
        char *buf = gather(iov, iovcnt, n);
        log_seq_write(fd, buf, n);
        free(buf);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    init();
    if (!fd_path(fd)) return real_pwritev(fd, iov, iovcnt, offset);
    pthread_mutex_lock(&lock);
    ssize_t n = real_pwritev(fd, iov, iovcnt, offset);
    int saved = errno;
    if (n > 0) {
        char *buf = gather(iov, iovcnt, n);
        emit(OP_WRITE, 0, fd, fd_path(fd), NULL, offset, n, buf, (size_t)n);
        free(buf);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return n;
}

static int synced(int fd, int (*real)(int)) {
    init();
    if (!fd_path(fd)) return real(fd);
    pthread_mutex_lock(&lock);
    int r = real(fd);
    int saved = errno;
    if (r == 0) emit(OP_SYNC, 0, fd, fd_path(fd), NULL, 0, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int fsync(int fd) { init(); return synced(fd, real_fsync); }
int fdatasync(int fd) { init(); return synced(fd, real_fdatasync); }

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    init();
    if (!fd_path(fd)) return real_sync_file_range(fd, offset, nbytes, flags);
    pthread_mutex_lock(&lock);
    int r = real_sync_file_range(fd, offset, nbytes, flags);
    int saved = errno;
    if (r == 0) emit(OP_RANGE, flags, fd, fd_path(fd), NULL, offset, nbytes, NULL, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static int truncated(int fd, off_t length, int (*real)(int, off_t)) {
    if (!fd_path(fd)) return real(fd, length);
    pthread_mutex_lock(&lock);
    int r = real(fd, length);
    int saved = errno;
    if (r == 0) emit(OP_TRUNCATE, 0, fd, fd_path(fd), NULL, 0, length, NULL, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int ftruncate(int fd, off_t length) { init(); return truncated(fd, length, real_ftruncate); }
int ftruncate64(int fd, off_t length) { init(); return truncated(fd, length, real_ftruncate64); }

int truncate(const char *path, off_t length) {
    init();
    pthread_mutex_lock(&lock);
    char *rel = watched(AT_FDCWD, path);
    int r = real_truncate(path, length);
    int saved = errno;
    if (rel && r == 0) emit(OP_TRUNCATE, 0, -1, rel, NULL, 0, length, NULL, 0);
    free(rel);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static int do_rename(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                     unsigned int flags, int kind) {
    init();
    pthread_mutex_lock(&lock);
    char *from = watched(olddirfd, oldpath);
    char *to = watched(newdirfd, newpath);
    int r;
    if (kind == 0) r = real_rename(oldpath, newpath);
    else if (kind == 1) r = real_renameat(olddirfd, oldpath, newdirfd, newpath);
    else r = real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
    int saved = errno;
    if (r == 0 && (from || to)) {
        /* a move into or out of the watched folder: both ends must be watched */
        if (!from || !to) abort();
        emit(OP_RENAME, flags, -1, from, to, 0, 0, NULL, 0);
    }
    free(from);
    free(to);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int rename(const char *o, const char *n) { return do_rename(AT_FDCWD, o, AT_FDCWD, n, 0, 0); }
int renameat(int od, const char *o, int nd, const char *n) { return do_rename(od, o, nd, n, 0, 1); }
int renameat2(int od, const char *o, int nd, const char *n, unsigned int flags) {
    return do_rename(od, o, nd, n, flags, 2);
}

static int do_unlink(int dirfd, const char *path, int flags, int at) {
    init();
    pthread_mutex_lock(&lock);
    char *rel = watched(dirfd, path);
    int r = at ? real_unlinkat(dirfd, path, flags) : real_unlink(path);
    int saved = errno;
    if (rel && r == 0) emit(OP_UNLINK, (uint32_t)flags, -1, rel, NULL, 0, 0, NULL, 0);
    free(rel);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int unlink(const char *path) { return do_unlink(AT_FDCWD, path, 0, 0); }
int unlinkat(int dirfd, const char *path, int flags) { return do_unlink(dirfd, path, flags, 1); }

int close(int fd) {
    init();
    if (!fd_path(fd)) return real_close(fd);
    pthread_mutex_lock(&lock);
    emit(OP_CLOSE, 0, fd, fd_paths[fd], NULL, 0, 0, NULL, 0);
    free(fd_paths[fd]);
    fd_paths[fd] = NULL;
    int r = real_close(fd);
    int saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static int do_mkdir(int dirfd, const char *path, mode_t mode, int at) {
    init();
    pthread_mutex_lock(&lock);
    char *rel = watched(dirfd, path);
    int r = at ? real_mkdirat(dirfd, path, mode) : real_mkdir(path, mode);
    int saved = errno;
    if (rel && r == 0) emit(OP_MKDIR, 0, -1, rel, NULL, 0, 0, NULL, 0);
    free(rel);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

int mkdir(const char *path, mode_t mode) { return do_mkdir(AT_FDCWD, path, mode, 0); }
int mkdirat(int dirfd, const char *path, mode_t mode) { return do_mkdir(dirfd, path, mode, 1); }

/* Copies in the kernel (shutil.copyfile uses sendfile) carry bytes the log would not see:
 * refused loudly on a watched file rather than traced wrongly. */
REAL(sendfile);
REAL(copy_file_range);

static void refuse(const char *call) {
    static const char text[] = "powercut shim: a kernel copy into a watched file is not traced: ";
    real_write(2, text, sizeof text - 1);
    real_write(2, call, strlen(call));
    real_write(2, "\n", 1);
    abort();
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count) {
    init();
    if (!real_sendfile) real_sendfile = (__typeof__(real_sendfile))dlsym(RTLD_NEXT, "sendfile");
    if (fd_path(out_fd)) refuse("sendfile");
    return real_sendfile(out_fd, in_fd, offset, count);
}

ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count) {
    return sendfile(out_fd, in_fd, offset, count);
}

ssize_t copy_file_range(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out, size_t len,
                        unsigned int flags) {
    init();
    if (!real_copy_file_range)
        real_copy_file_range = (__typeof__(real_copy_file_range))dlsym(RTLD_NEXT, "copy_file_range");
    if (fd_path(fd_out)) refuse("copy_file_range");
    return real_copy_file_range(fd_in, off_in, fd_out, off_out, len, flags);
}
