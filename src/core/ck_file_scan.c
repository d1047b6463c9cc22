/*
 * ck_file_scan.c - the file store's directory scans (ck_file.h): eviction
 * to the size and entry bounds (LRU by mtime, under the lock file; the
 * algorithm is described in ck_file.c), usage totals, and clearing by key
 * prefix (which reads each record's stored key name).
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

#define CK_FILE_TEMP_AGE_S 60

typedef struct {
    char name[CK_FILE_NAME_HEX + 1];
    int64_t mtime_ns;
    uint64_t size;
} scan_entry;

typedef struct {
    scan_entry *v;
    size_t n, cap;
    uint64_t bytes;
} scan_list;

static int is_entry_name(const char *s)
{
    size_t i;
    for (i = 0; i < CK_FILE_NAME_HEX; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return s[CK_FILE_NAME_HEX] == '\0';
}

/* List the entry files of the directory; stale temp files are removed. */
static int scan(ck_file_store *fs, scan_list *out, ck_error *err)
{
    DIR *d;
    struct dirent *de;
    int fd = dup(fs->dir_fd);
    time_t now = time(NULL);

    memset(out, 0, sizeof(*out));
    if (fd < 0) {
        return ck_error_set(err, CK_ECONN, "file store: dup failed: %s", strerror(errno));
    }
    d = fdopendir(fd);
    if (d == NULL) {
        (void)close(fd);
        return ck_error_set(err, CK_ECONN, "file store: opendir failed: %s", strerror(errno));
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        if (strncmp(de->d_name, ".tmp-", 5) == 0) {
            if (fstatat(fs->dir_fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                now - sb.st_mtime > CK_FILE_TEMP_AGE_S) {
                (void)unlinkat(fs->dir_fd, de->d_name, 0);
            }
            continue;
        }
        if (!is_entry_name(de->d_name) ||
            fstatat(fs->dir_fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode)) {
            continue; /* gone meanwhile, or not ours */
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 256;
            scan_entry *v = realloc(out->v, cap * sizeof(*v));
            if (v == NULL) {
                (void)closedir(d);
                free(out->v);
                out->v = NULL;
                return ck_error_set(err, CK_ENOMEM, "out of memory");
            }
            out->v = v;
            out->cap = cap;
        }
        memcpy(out->v[out->n].name, de->d_name, CK_FILE_NAME_HEX + 1);
        out->v[out->n].mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        out->v[out->n].size = (uint64_t)sb.st_size;
        out->bytes += (uint64_t)sb.st_size;
        out->n++;
    }
    (void)closedir(d);
    return 0;
}

static int by_mtime(const void *a, const void *b)
{
    const scan_entry *x = a, *y = b;
    return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* After fork: the parent's evict_lock may be held by a thread that does not
   exist here, and flock is per open file description, so a lock fd shared
   with the parent would not exclude it. Take a fresh mutex and lock fd. */
static void after_fork(ck_file_store *fs)
{
    int fd;

    if (fs->pid == (long)getpid()) {
        return;
    }
    (void)pthread_mutex_init(&fs->evict_lock, NULL);
    fd = openat(fs->dir_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                (mode_t)fs->file_mode);
    if (fd >= 0) {
        (void)close(fs->lock_fd);
        fs->lock_fd = fd;
    }
    fs->pid = (long)getpid();
}

int ck_file_evict(ck_file_store *fs, ck_error *err)
{
    scan_list list;
    size_t i;
    uint64_t entries, goal_bytes, goal_entries;
    int rc = -1;

    after_fork(fs);
    if (pthread_mutex_trylock(&fs->evict_lock) != 0) {
        return 0; /* another thread of this process is evicting */
    }
    if (flock(fs->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        (void)pthread_mutex_unlock(&fs->evict_lock);
        if (errno == EWOULDBLOCK) {
            return 0; /* another process is evicting */
        }
        return ck_error_set(err, CK_ECONN, "file store: flock failed: %s", strerror(errno));
    }
    if (scan(fs, &list, err) < 0) {
        goto done;
    }
    __atomic_add_fetch(&fs->scans, 1, __ATOMIC_RELAXED);
    entries = list.n;
    if (list.bytes > fs->max_bytes || entries > fs->max_entries) {
        goal_bytes = fs->max_bytes - fs->max_bytes / 10;
        goal_entries = fs->max_entries - fs->max_entries / 10;
        qsort(list.v, list.n, sizeof(*list.v), by_mtime);
        for (i = 0; i < list.n && (list.bytes > goal_bytes || entries > goal_entries); i++) {
            if (unlinkat(fs->dir_fd, list.v[i].name, 0) == 0) {
                __atomic_add_fetch(&fs->evicted, 1, __ATOMIC_RELAXED);
            }
            list.bytes -= list.v[i].size;
            entries--;
        }
    }
    __atomic_store_n(&fs->est_bytes, list.bytes, __ATOMIC_RELAXED);
    __atomic_store_n(&fs->est_entries, entries, __ATOMIC_RELAXED);
    __atomic_store_n(&fs->sets_since_scan, 0, __ATOMIC_RELAXED);
    free(list.v);
    rc = 0;
done:
    (void)flock(fs->lock_fd, LOCK_UN);
    (void)pthread_mutex_unlock(&fs->evict_lock);
    return rc;
}

int ck_file_usage(ck_file_store *fs, uint64_t *bytes, uint64_t *entries, ck_error *err)
{
    scan_list list;

    if (scan(fs, &list, err) < 0) {
        return -1;
    }
    *bytes = list.bytes;
    *entries = list.n;
    free(list.v);
    return 0;
}

/* Does the record in file name hold a key name starting with prefix? */
static int has_prefix(ck_file_store *fs, const char *name, const char *prefix, size_t n)
{
    unsigned char head[CK_FILE_HEADER];
    char *stored;
    uint32_t name_len;
    int fd = openat(fs->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), match = 0;

    if (fd < 0) {
        return 0;
    }
    if (pread(fd, head, sizeof(head), 0) != (ssize_t)sizeof(head) || memcmp(head, "CKF1", 4) != 0) {
        (void)close(fd);
        return 1; /* corrupt or foreign in our directory: clear it too */
    }
    name_len = (uint32_t)head[24] | ((uint32_t)head[25] << 8) | ((uint32_t)head[26] << 16) |
               ((uint32_t)head[27] << 24);
    if (name_len >= n && (stored = malloc(n > 0 ? n : 1)) != NULL) {
        match = pread(fd, stored, n, CK_FILE_HEADER) == (ssize_t)n && memcmp(stored, prefix, n) == 0;
        free(stored);
    }
    (void)close(fd);
    return match;
}

long ck_file_clear_prefix(ck_file_store *fs, const char *prefix, size_t n, ck_error *err)
{
    scan_list list;
    size_t i;
    long removed = 0;

    if (scan(fs, &list, err) < 0) {
        return -1;
    }
    for (i = 0; i < list.n; i++) {
        if ((n == 0 || has_prefix(fs, list.v[i].name, prefix, n)) &&
            unlinkat(fs->dir_fd, list.v[i].name, 0) == 0) {
            removed++;
        }
    }
    free(list.v);
    return removed;
}
