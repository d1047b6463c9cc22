/*
 * ck_file.h - the file store: a persistent L2 in a directory of entry files
 * (pure C, no Python). ck_file_record.c owns the record format; ck_file.c
 * the directory, atomic writes, reads and eviction.
 *
 * One entry = one file named by the 128-bit XXH3 of its key name (32 hex
 * digits). A record is a 64-byte header, the key name, then the value:
 *
 *   0  magic "CKF1"     4   version u8 (1), 3 reserved zero bytes
 *   8  created_ms u64   16  expires_ms u64 (wall clock; 0 = never)
 *   24 name_len u32     28  reserved u32 (zero)
 *   32 value_len u64    40  key hash (16 bytes, the file name's hash)
 *   56 checksum u64: XXH3-64 of bytes [0, 56) + name + value
 *
 * All integers little-endian. A record that is short, long, foreign (bad
 * magic/version), fails its checksum, or whose hash is not its file's is
 * corrupt: the reader counts it, deletes the file and reports a miss.
 */
#ifndef CK_FILE_H
#define CK_FILE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ck_error.h"

#define CK_FILE_HEADER 64
#define CK_FILE_NAME_HEX 32

typedef struct {
    uint64_t created_ms, expires_ms;
    const unsigned char *name; /* into the decoded buffer */
    size_t name_len;
    const unsigned char *value; /* into the decoded buffer */
    size_t value_len;
} ck_file_record;

/* 128-bit hash of a key name, as the 32 hex digits of its file name. */
void ck_file_key_hash(const char *name, size_t n, unsigned char hash[16]);
void ck_file_hash_hex(const unsigned char hash[16], char hex[CK_FILE_NAME_HEX + 1]);

/* Size of the record for (name_len, value_len); 0 on overflow. */
size_t ck_file_record_size(size_t name_len, size_t value_len);

/* Write the record into out (ck_file_record_size bytes). */
void ck_file_record_encode(unsigned char *out, const unsigned char hash[16], uint64_t created_ms,
                           uint64_t expires_ms, const char *name, size_t name_len,
                           const unsigned char *value, size_t value_len);

/* Parse and verify buf[0, len). hash: the expected key hash, or NULL to
   accept any. 0 with rec filled (pointing into buf), or -1 (CK_EFORMAT,
   CK_ECHECKSUM). Never reads outside buf. */
int ck_file_record_decode(const unsigned char *buf, size_t len, const unsigned char *hash,
                          ck_file_record *rec, ck_error *err);

/* ---------------------------------------------------------------- store */

typedef struct {
    char *dir;           /* the directory (owned) */
    int dir_fd;          /* open O_DIRECTORY */
    int lock_fd;         /* dir/.lock: flock'd while evicting */
    pthread_mutex_t evict_lock; /* one evicting thread per process */
    int mutex_ready;
    long pid;            /* the process lock_fd and evict_lock belong to */
    uint64_t max_bytes, max_entries, max_value;
    unsigned file_mode;
    int do_fsync;
    /* Eviction estimate (process-local, refreshed by each scan). */
    uint64_t est_bytes, est_entries, sets_since_scan;
    /* Counters (atomically updated). */
    uint64_t corrupt, evicted, too_large, scans;
} ck_file_store;

/* Open (creating with dir_mode if absent) dir. 0 or -1. */
int ck_file_open(ck_file_store *fs, const char *dir, uint64_t max_bytes, uint64_t max_entries,
                 uint64_t max_value, unsigned file_mode, unsigned dir_mode, int do_fsync,
                 ck_error *err);
void ck_file_close(ck_file_store *fs);

/* Read name's record. 1: found and fresh, *buf (malloc'd, caller frees) its
   bytes and rec pointing into it; 0: absent, expired or corrupt (counted and
   deleted); -1: an I/O error. */
int ck_file_get(ck_file_store *fs, const char *name, size_t n, unsigned char **buf,
                ck_file_record *rec, ck_error *err);

/* Store value under name (ttl_ms 0: no expiry). 1 stored, 0 skipped (larger
   than max_value; counted), -1 failed. Evicts when over the bounds. */
int ck_file_set(ck_file_store *fs, const char *name, size_t n, const unsigned char *value,
                size_t len, int64_t ttl_ms, ck_error *err);

/* Remove name. 1 removed, 0 absent, -1 failed. */
int ck_file_delete(ck_file_store *fs, const char *name, size_t n, ck_error *err);

/* Remove every entry whose key name starts with prefix (reads each record's
   name; len 0 removes all). Number removed, or -1. */
long ck_file_clear_prefix(ck_file_store *fs, const char *prefix, size_t n, ck_error *err);

/* Scan the directory and evict down to the bounds (under the lock file).
   Also removes expired entries and stale temp files. 0 or -1. */
int ck_file_evict(ck_file_store *fs, ck_error *err);

/* Totals from a fresh scan (no eviction). 0 or -1. */
int ck_file_usage(ck_file_store *fs, uint64_t *bytes, uint64_t *entries, ck_error *err);

uint64_t ck_file_now_ms(void);

#endif /* CK_FILE_H */
