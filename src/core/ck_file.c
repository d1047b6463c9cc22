/*
 * ck_file.c - the file store (ck_file.h): a directory of entry files shared
 * by any number of processes.
 *
 * Writes are atomic: the record goes to a temp file (O_EXCL, mode set with
 * fchmod so the umask cannot widen or narrow it), optionally fsync'd, then
 * renamed over the entry's name. A reader opens the name and gets either
 * the old inode or the new one, each complete: no torn reads, no locks on
 * the read or write path. A crash without fsync may leave a short or empty
 * file; its checksum fails and it is a miss.
 *
 * Reads use pread into one buffer rather than mmap: entries are cache
 * values (typically bytes to kilobytes), the value has to be copied into a
 * Python bytes object anyway, and mmap+munmap plus the page faults cost more
 * system calls than one pread for anything that small.
 *
 * Eviction is LRU by mtime: a hit bumps the file's mtime (at most once a
 * second per entry) and a write sets it. Each process keeps an estimate of
 * the directory's totals from its last scan plus its own writes; when the
 * estimate passes a bound, or every CK_FILE_SCAN_EVERY writes (to see other
 * processes' writes), it takes the directory's lock file (flock, never
 * waiting: if another process holds it, that process is already evicting),
 * scans, and removes the least recently used entries until both totals are
 * at most 90% of their bounds. Temp files left by a crashed writer are
 * removed by the scan once a minute old. Races are benign: an evictor may
 * remove an entry another process just rewrote, and a reader that found a
 * corrupt record may delete the fresh record that replaced it in between;
 * both are misses, never a wrong value.
 */
#define _GNU_SOURCE
#include "ck_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CK_FILE_SCAN_EVERY 256

uint64_t ck_file_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int io_error(ck_error *err, const char *what, int e)
{
    return ck_error_set(err, CK_ECONN, "file store: %s failed: %s", what, strerror(e));
}

/* ---------------------------------------------------------------- open */

int ck_file_open(ck_file_store *fs, const char *dir, uint64_t max_bytes, uint64_t max_entries,
                 uint64_t max_value, unsigned file_mode, unsigned dir_mode, int do_fsync,
                 ck_error *err)
{
    memset(fs, 0, sizeof(*fs));
    fs->dir_fd = -1;
    fs->lock_fd = -1;
    if (mkdir(dir, (mode_t)dir_mode) == 0) {
        /* mkdir applies the umask: set exactly what was asked. */
        if (chmod(dir, (mode_t)dir_mode) < 0) {
            return io_error(err, "chmod of the cache directory", errno);
        }
    } else if (errno != EEXIST) {
        return io_error(err, "creating the cache directory", errno);
    }
    fs->dir = strdup(dir);
    if (fs->dir == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    fs->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->dir_fd < 0) {
        int e = errno;
        ck_file_close(fs);
        return io_error(err, "opening the cache directory", e);
    }
    fs->lock_fd = openat(fs->dir_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                         (mode_t)file_mode);
    if (fs->lock_fd < 0) {
        int e = errno;
        ck_file_close(fs);
        return io_error(err, "opening the lock file", e);
    }
    if (pthread_mutex_init(&fs->evict_lock, NULL) != 0) {
        ck_file_close(fs);
        return ck_error_set(err, CK_ENOMEM, "cannot create a mutex");
    }
    fs->mutex_ready = 1;
    fs->pid = (long)getpid();
    fs->max_bytes = max_bytes;
    fs->max_entries = max_entries;
    fs->max_value = max_value;
    fs->file_mode = file_mode;
    fs->do_fsync = do_fsync;
    fs->sets_since_scan = CK_FILE_SCAN_EVERY; /* scan on the first write */
    return 0;
}

void ck_file_close(ck_file_store *fs)
{
    if (fs->lock_fd >= 0) {
        (void)close(fs->lock_fd);
        fs->lock_fd = -1;
    }
    if (fs->dir_fd >= 0) {
        (void)close(fs->dir_fd);
        fs->dir_fd = -1;
    }
    if (fs->mutex_ready) {
        (void)pthread_mutex_destroy(&fs->evict_lock);
        fs->mutex_ready = 0;
    }
    free(fs->dir);
    fs->dir = NULL;
}

/* ---------------------------------------------------------------- read */

static void count(uint64_t *counter)
{
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* Read the whole file at fd (at most limit bytes) into a new buffer.
   1 read, 0 larger than limit, -1 I/O error. */
static int read_all(int fd, size_t limit, unsigned char **out, size_t *len, ck_error *err)
{
    struct stat sb;
    unsigned char *buf;
    size_t got = 0;

    if (fstat(fd, &sb) < 0) {
        return io_error(err, "fstat", errno);
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > limit) {
        return 0;
    }
    buf = malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1);
    if (buf == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    while (got < (size_t)sb.st_size) {
        ssize_t r = pread(fd, buf + got, (size_t)sb.st_size - got, (off_t)got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            int e = errno;
            free(buf);
            return io_error(err, "read", e);
        }
        if (r == 0) {
            break; /* truncated under us: the decoder sees a short record */
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = got;
    return 1;
}

int ck_file_get(ck_file_store *fs, const char *name, size_t n, unsigned char **buf,
                ck_file_record *rec, ck_error *err)
{
    unsigned char hash[16], *data = NULL;
    char hex[CK_FILE_NAME_HEX + 1];
    ck_error derr;
    size_t len = 0, limit;
    struct stat sb;
    int fd, rc;

    *buf = NULL;
    ck_file_key_hash(name, n, hash);
    ck_file_hash_hex(hash, hex);
    fd = openat(fs->dir_fd, hex, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno == ENOENT ? 0 : io_error(err, "open", errno);
    }
    limit = fs->max_value > SIZE_MAX - CK_FILE_HEADER - n ? SIZE_MAX : fs->max_value + CK_FILE_HEADER + n;
    rc = read_all(fd, limit, &data, &len, err);
    if (rc < 0) {
        (void)close(fd);
        return -1;
    }
    if (rc == 0 || ck_file_record_decode(data, len, hash, rec, &derr) < 0) {
        goto corrupt;
    }
    if (rec->name_len != n || memcmp(rec->name, name, n) != 0) {
        goto miss; /* a 128-bit hash collision: not ours, not corrupt */
    }
    if (rec->expires_ms != 0 && ck_file_now_ms() >= rec->expires_ms) {
        (void)unlinkat(fs->dir_fd, hex, 0);
        goto miss;
    }
    /* LRU: bump mtime, at most once a second per entry. */
    if (fstat(fd, &sb) == 0 && time(NULL) > sb.st_mtime) {
        struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
        (void)futimens(fd, times);
    }
    (void)close(fd);
    *buf = data;
    return 1;
corrupt:
    count(&fs->corrupt);
    (void)unlinkat(fs->dir_fd, hex, 0);
miss:
    (void)close(fd);
    free(data);
    return 0;
}

/* ---------------------------------------------------------------- write */

static int write_all(int fd, const unsigned char *p, size_t n, ck_error *err)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return io_error(err, "write", errno);
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ck_file_set(ck_file_store *fs, const char *name, size_t n, const unsigned char *value,
                size_t len, int64_t ttl_ms, ck_error *err)
{
    static uint64_t temp_seq;
    unsigned char hash[16], *rec = NULL;
    char hex[CK_FILE_NAME_HEX + 1], tmp[96];
    size_t size;
    uint64_t now = ck_file_now_ms();
    int fd = -1, rc = -1;

    if (len > fs->max_value) {
        count(&fs->too_large);
        return 0;
    }
    size = ck_file_record_size(n, len);
    if (size == 0) {
        return ck_error_set(err, CK_ELIMIT, "file store: entry too large");
    }
    rec = malloc(size);
    if (rec == NULL) {
        return ck_error_set(err, CK_ENOMEM, "out of memory");
    }
    ck_file_key_hash(name, n, hash);
    ck_file_hash_hex(hash, hex);
    ck_file_record_encode(rec, hash, now, ttl_ms > 0 ? now + (uint64_t)ttl_ms : 0, name, n, value,
                          len);
    (void)snprintf(tmp, sizeof(tmp), ".tmp-%ld-%llu-%s", (long)getpid(),
                   (unsigned long long)__atomic_add_fetch(&temp_seq, 1, __ATOMIC_RELAXED), hex);
    fd = openat(fs->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                (mode_t)fs->file_mode);
    if (fd < 0) {
        io_error(err, "creating a temp file", errno);
        goto done;
    }
    if (fchmod(fd, (mode_t)fs->file_mode) < 0) {
        io_error(err, "fchmod", errno);
        goto done;
    }
    if (write_all(fd, rec, size, err) < 0) {
        goto done;
    }
    if (fs->do_fsync && fsync(fd) < 0) {
        io_error(err, "fsync", errno);
        goto done;
    }
    if (close(fd) < 0) {
        fd = -1;
        io_error(err, "close", errno);
        goto done;
    }
    fd = -1;
    if (renameat(fs->dir_fd, tmp, fs->dir_fd, hex) < 0) {
        io_error(err, "rename", errno);
        goto done;
    }
    tmp[0] = '\0';
    rc = 1;
    __atomic_add_fetch(&fs->est_bytes, size, __ATOMIC_RELAXED);
    __atomic_add_fetch(&fs->est_entries, 1, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&fs->sets_since_scan, 1, __ATOMIC_RELAXED) >= CK_FILE_SCAN_EVERY ||
        fs->est_bytes > fs->max_bytes || fs->est_entries > fs->max_entries) {
        ck_error eerr;
        (void)ck_file_evict(fs, &eerr); /* best effort: the entry is stored */
    }
done:
    if (fd >= 0) {
        (void)close(fd);
    }
    if (tmp[0] != '\0' && rc < 0) {
        (void)unlinkat(fs->dir_fd, tmp, 0);
    }
    free(rec);
    return rc;
}

int ck_file_delete(ck_file_store *fs, const char *name, size_t n, ck_error *err)
{
    unsigned char hash[16];
    char hex[CK_FILE_NAME_HEX + 1];

    ck_file_key_hash(name, n, hash);
    ck_file_hash_hex(hash, hex);
    if (unlinkat(fs->dir_fd, hex, 0) == 0) {
        return 1;
    }
    return errno == ENOENT ? 0 : io_error(err, "unlink", errno);
}
