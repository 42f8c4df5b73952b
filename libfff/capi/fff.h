/*
 * fff.h — the C API of libfff (libfff.so), the fff client for C and Python.
 *
 * Build: go build -buildmode=c-shared -o build/libfff.so ./libfff/capi
 * (make lib). Link with -lfff, or dlopen it (the Python package does).
 *
 * Conventions
 *  - Every object is an opaque int64 handle (> 0). 0 is "no handle". Handles
 *    are released with fff_close; using a released handle is FFF_EBADF.
 *  - Functions returning int return 0 on success or a positive error code
 *    (below). Functions returning int64_t return a count (>= 0) or a negated
 *    error code (< 0).
 *  - After a failure, fff_errmsg() returns a message for the calling thread
 *    describing the last failure on that thread (file, sample, what to do).
 *  - All functions are thread-safe and may block (the Python binding releases
 *    the GIL around every call). Buffers passed in are caller memory: the
 *    library writes into them only until the call returns (or, for the
 *    asynchronous fff_dataset_submit, until fff_ticket_wait reports the
 *    ticket finished or fff_ticket_cancel returns).
 *  - No Go memory is ever handed to C; strings and arrays the library returns
 *    are malloc'd and released with fff_free.
 *  - The library must not be used in a child created by fork() after the
 *    library was loaded in the parent (the Go runtime's threads do not survive
 *    fork): use spawn/forkserver, or load the library only in the child.
 */
#ifndef FFF_H
#define FFF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. POSIX errors keep their Linux errno values; fff's own codes
 * start at 1000. */
enum {
	FFF_OK = 0,
	FFF_EPERM = 1,
	FFF_ENOENT = 2,
	FFF_EIO = 5,
	FFF_EBADF = 9,
	FFF_EAGAIN = 11, /* fff_ticket_wait: not finished within the timeout */
	FFF_EACCES = 13,
	FFF_EEXIST = 17,
	FFF_EXDEV = 18,
	FFF_ENOTDIR = 20,
	FFF_EISDIR = 21,
	FFF_EINVAL = 22,
	FFF_EFBIG = 27,
	FFF_ENOSPC = 28,
	FFF_EROFS = 30,
	FFF_ENAMETOOLONG = 36,
	FFF_ENOTEMPTY = 39,
	FFF_ELOOP = 40,
	FFF_ENOTSUP = 95,
	FFF_ETIMEDOUT = 110,
	FFF_ECANCELED = 125,
	FFF_ECHECKSUM = 1001,   /* stored bytes failed their CRC32C */
	FFF_ECORRUPT = 1002,    /* a file is not a valid FFRecord file (header, index) */
	FFF_EUNAVAILABLE = 1003, /* the cluster cannot be reached or has no serving target */
	FFF_EAUTH = 1004,       /* the token was refused */
	FFF_ESHORTBUF = 1005,   /* the caller's buffer is too small */
	FFF_EFORKED = 1006,     /* called in a child forked after the library was loaded */
	FFF_EINTERNAL = 1099
};

/* fff_stat_t: what fff_stat reports. */
typedef struct {
	uint64_t ino;
	int64_t size;
	uint32_t mode;  /* st_mode bits: file type (S_IFREG, S_IFDIR, S_IFLNK) and permissions */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	int64_t mtime_ns;
	int64_t ctime_ns;
	int64_t atime_ns;
	uint32_t chunk_size; /* 0 for directories and symlinks */
	uint32_t stripe;     /* chains a file is striped over */
} fff_stat_t;

/* fff_stats_t: a client's counters since fff_connect (fff_client_stats). */
typedef struct {
	int64_t reads;           /* read operations (each pread, each sample of a dataset read) */
	int64_t read_bytes;
	int64_t read_errors;
	int64_t read_calls;      /* batched calls: what the latencies below time */
	int64_t local_bytes;     /* read from a same-host node's files directly; the rest through sockets */
	int64_t local_fallbacks; /* local reads that failed and went through a socket */
	int64_t retries;         /* chunk reads sent again (failover, a chunk being written, an outage) */
	int64_t writes;          /* chunk writes sent to storage */
	int64_t write_bytes;
	int64_t read_latency_count;
	int64_t read_latency_sum_ns;
	int64_t read_latency_p50_ns; /* upper bounds of power-of-two buckets: at most 2x off */
	int64_t read_latency_p99_ns;
	int64_t read_latency_max_ns;
} fff_stats_t;

/* Version of this library (a static string, do not free). */
const char *fff_version(void);

/* Last error message of the calling thread ("" when none; valid until the
 * thread's next failing call; do not free). */
const char *fff_errmsg(void);

/* Release memory the library returned (fff_listdir). */
void fff_free(void *p);

/* Release any handle (client, file, dataset, writer; a ticket: as
 * fff_ticket_cancel). Closing a client does not close handles opened through
 * it; they fail with FFF_EBADF afterwards. Closing a dataset cancels its
 * tickets in flight and returns once none touches its buffers; waiting for
 * such a ticket then gives FFF_ECANCELED (or 0 if it had finished). */
int fff_close(int64_t h);

/* Clients.
 * address "" or NULL: FFF_CLUSTER, then the cluster `fff up` recorded
 * (~/.config/fff/cluster.json). token "" or NULL: FFF_TOKEN, then the
 * recorded one. */
int fff_connect(const char *address, const char *token, int64_t *client);
/* The client's counters. */
int fff_client_stats(int64_t client, fff_stats_t *st);

/* Namespace (paths: "/a/b" or "fff:///a/b"). */
int fff_stat(int64_t client, const char *path, fff_stat_t *st);
/* Names of a directory's entries, each NUL-terminated, back to back, in
 * *names (free with fff_free; never NULL on success); *count entries. */
int fff_listdir(int64_t client, const char *path, char **names, int64_t *count);
int fff_mkdir(int64_t client, const char *path, uint32_t mode, int parents);
int fff_remove(int64_t client, const char *path, int recursive);
int fff_rename(int64_t client, const char *from, const char *to);

/* Files. flags are Linux open(2) flags: O_RDONLY, O_WRONLY, O_RDWR, O_CREAT,
 * O_EXCL, O_TRUNC, O_APPEND. */
int fff_open(int64_t client, const char *path, int flags, uint32_t mode, int64_t *file);
int64_t fff_read(int64_t file, void *buf, int64_t len);            /* 0 at end of file */
int64_t fff_pread(int64_t file, void *buf, int64_t len, int64_t off); /* short only at end of file */
int64_t fff_write(int64_t file, const void *buf, int64_t len);
int64_t fff_pwrite(int64_t file, const void *buf, int64_t len, int64_t off);
int64_t fff_seek(int64_t file, int64_t off, int whence); /* SEEK_SET/CUR/END; new offset */
int64_t fff_size(int64_t file);
int fff_truncate(int64_t file, int64_t size);
int fff_sync(int64_t file); /* written bytes durable, length reported to meta */

/* FFRecord datasets: one .ffr file or a directory of them (sorted by name),
 * in fff ("fff:///…", "fff://host:port/…"; client 0 connects to the default
 * cluster) or on local disk (any other path; read with io_uring + O_DIRECT;
 * client ignored). check != 0 verifies every sample's checksum. */
int fff_dataset_open(int64_t client, const char *path, int check, int64_t *dataset);
int64_t fff_dataset_len(int64_t dataset);
/* Sizes of samples idx[0..n): out[i] = size of sample idx[i]. */
int fff_dataset_sizes(int64_t dataset, const int64_t *idx, int64_t n, int64_t *out);
/* Read samples idx[0..n) back to back into buf (buflen bytes, at least the
 * sum of their sizes, else FFF_ESHORTBUF, with offsets filled: offsets[n] is
 * the size needed): sample i occupies buf[offsets[i] .. offsets[i+1]);
 * offsets has n+1 entries. On failure the message names the first failed
 * sample. */
int fff_dataset_read(int64_t dataset, const int64_t *idx, int64_t n, void *buf, int64_t buflen, int64_t *offsets);
/* The same, asynchronously: offsets are filled before it returns (so the
 * caller can slice buf at once), the bytes when the ticket finishes. idx, buf
 * and offsets must stay valid until then (idx is in fact copied; buf must).
 * Each dataset reads at most 64 batches at once; further tickets queue. */
int fff_dataset_submit(int64_t dataset, const int64_t *idx, int64_t n, void *buf, int64_t buflen, int64_t *offsets, int64_t *ticket);
/* Wait up to timeout_ms (< 0: forever, 0: poll) for a ticket: 0 when it
 * finished successfully, FFF_EAGAIN when it has not finished yet, else the
 * batch's error. A finished ticket (any result but FFF_EAGAIN) is released. */
int fff_ticket_wait(int64_t ticket, int64_t timeout_ms);
/* Cancel a ticket and wait until the library no longer touches its buffers;
 * releases it. */
int fff_ticket_cancel(int64_t ticket);

/* FFRecord writers: version 1 (HFAiLab-compatible) or 2. path as for
 * fff_dataset_open (one file). The file appears atomically on close. */
int fff_writer_open(int64_t client, const char *path, int version, int64_t *writer);
int fff_writer_write(int64_t writer, const void *sample, int64_t len);
int fff_writer_write_keyed(int64_t writer, const char *key, const void *sample, int64_t len); /* v2 only */
int fff_writer_commit(int64_t writer); /* finish and publish the file; the handle is released */
/* fff_close on an uncommitted writer discards the partial file. */

#ifdef __cplusplus
}
#endif

#endif /* FFF_H */
