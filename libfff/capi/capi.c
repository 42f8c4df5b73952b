// The C side of libfff.so: the functions of fff.h. Each checks that the
// process was not forked after the library was loaded (a forked child has
// no Go runtime threads: entering Go there would hang) and calls the Go
// implementation (goFff*, exported by capi.go). The per-thread error
// message lives here, in C thread-local storage: exported Go functions run
// on the calling C thread, so the message set during a call is the
// caller's.

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fff.h"
#include "_cgo_export.h"

#ifndef FFF_VERSION
#define FFF_VERSION "devel"
#endif

#define FFF_ERRMSG_MAX 4096

// Only a pointer is thread-local: a library loaded with dlopen (Python's
// ctypes) gets its initial-exec TLS from glibc's small static TLS surplus,
// and a 4 KiB array there makes dlopen fail ("cannot allocate memory in
// static TLS block"). The buffer itself is allocated on a thread's first
// failure and freed when the thread exits.
static __thread char *fff_errbuf;
static pthread_key_t fff_errkey;
static volatile int fff_forked;

void fffSetErr(const char *msg, size_t n) {
	if (fff_errbuf == NULL) {
		fff_errbuf = calloc(1, FFF_ERRMSG_MAX);
		if (fff_errbuf == NULL) {
			return;
		}
		pthread_setspecific(fff_errkey, fff_errbuf);
	}
	if (n >= FFF_ERRMSG_MAX) {
		n = FFF_ERRMSG_MAX - 1;
	}
	memcpy(fff_errbuf, msg, n);
	fff_errbuf[n] = 0;
}

static void fff_atfork_child(void) { fff_forked = 1; }

__attribute__((constructor)) static void fff_init(void) {
	pthread_key_create(&fff_errkey, free);
	pthread_atfork(NULL, NULL, fff_atfork_child);
}

static const char fff_forked_msg[] =
	"libfff was loaded before this process forked: the Go runtime does not survive fork(), "
	"so the library cannot be used in this child. Start workers with the 'spawn' or "
	"'forkserver' method (multiprocessing, torch DataLoader multiprocessing_context), "
	"or load libfff only in the child";

static int fff_check_fork(void) {
	if (fff_forked) {
		fffSetErr(fff_forked_msg, sizeof fff_forked_msg - 1);
		return 1;
	}
	return 0;
}

#define FORK_INT                      \
	if (fff_check_fork()) {       \
		return FFF_EFORKED;   \
	}
#define FORK_I64                           \
	if (fff_check_fork()) {            \
		return -(int64_t)FFF_EFORKED; \
	}

const char *fff_version(void) { return "libfff " FFF_VERSION; }

const char *fff_errmsg(void) { return fff_errbuf != NULL ? fff_errbuf : ""; }

void fff_free(void *p) { free(p); }

int fff_close(int64_t h) {
	FORK_INT
	return goFffClose(h);
}

int fff_connect(const char *address, const char *token, int64_t *client) {
	FORK_INT
	return goFffConnect((char *)address, (char *)token, client);
}

int fff_client_stats(int64_t client, fff_stats_t *st) {
	FORK_INT
	return goFffClientStats(client, st);
}

int fff_stat(int64_t client, const char *path, fff_stat_t *st) {
	FORK_INT
	return goFffStat(client, (char *)path, st);
}

int fff_listdir(int64_t client, const char *path, char **names, int64_t *count) {
	FORK_INT
	return goFffListdir(client, (char *)path, names, count);
}

int fff_mkdir(int64_t client, const char *path, uint32_t mode, int parents) {
	FORK_INT
	return goFffMkdir(client, (char *)path, mode, parents);
}

int fff_remove(int64_t client, const char *path, int recursive) {
	FORK_INT
	return goFffRemove(client, (char *)path, recursive);
}

int fff_rename(int64_t client, const char *from, const char *to) {
	FORK_INT
	return goFffRename(client, (char *)from, (char *)to);
}

int fff_open(int64_t client, const char *path, int flags, uint32_t mode, int64_t *file) {
	FORK_INT
	return goFffOpen(client, (char *)path, flags, mode, file);
}

int64_t fff_read(int64_t file, void *buf, int64_t len) {
	FORK_I64
	return goFffRead(file, buf, len, -1);
}

int64_t fff_pread(int64_t file, void *buf, int64_t len, int64_t off) {
	FORK_I64
	if (off < 0) {
		fffSetErr("fff_pread: negative offset", 26);
		return -(int64_t)FFF_EINVAL;
	}
	return goFffRead(file, buf, len, off);
}

int64_t fff_write(int64_t file, const void *buf, int64_t len) {
	FORK_I64
	return goFffWrite(file, (void *)buf, len, -1);
}

int64_t fff_pwrite(int64_t file, const void *buf, int64_t len, int64_t off) {
	FORK_I64
	if (off < 0) {
		fffSetErr("fff_pwrite: negative offset", 27);
		return -(int64_t)FFF_EINVAL;
	}
	return goFffWrite(file, (void *)buf, len, off);
}

int64_t fff_seek(int64_t file, int64_t off, int whence) {
	FORK_I64
	return goFffSeek(file, off, whence);
}

int64_t fff_size(int64_t file) {
	FORK_I64
	return goFffSize(file);
}

int fff_truncate(int64_t file, int64_t size) {
	FORK_INT
	return goFffTruncate(file, size);
}

int fff_sync(int64_t file) {
	FORK_INT
	return goFffSync(file);
}

int fff_dataset_open(int64_t client, const char *path, int check, int64_t *dataset) {
	FORK_INT
	return goFffDatasetOpen(client, (char *)path, check, dataset);
}

int64_t fff_dataset_len(int64_t dataset) {
	FORK_I64
	return goFffDatasetLen(dataset);
}

int fff_dataset_sizes(int64_t dataset, const int64_t *idx, int64_t n, int64_t *out) {
	FORK_INT
	return goFffDatasetSizes(dataset, (int64_t *)idx, n, out);
}

int fff_dataset_read(int64_t dataset, const int64_t *idx, int64_t n, void *buf, int64_t buflen, int64_t *offsets) {
	FORK_INT
	return goFffDatasetRead(dataset, (int64_t *)idx, n, buf, buflen, offsets, NULL);
}

int fff_dataset_submit(int64_t dataset, const int64_t *idx, int64_t n, void *buf, int64_t buflen, int64_t *offsets,
		       int64_t *ticket) {
	FORK_INT
	if (ticket == NULL) {
		fffSetErr("fff_dataset_submit: ticket is NULL", 34);
		return FFF_EINVAL;
	}
	return goFffDatasetRead(dataset, (int64_t *)idx, n, buf, buflen, offsets, ticket);
}

int fff_ticket_wait(int64_t ticket, int64_t timeout_ms) {
	FORK_INT
	return goFffTicketWait(ticket, timeout_ms);
}

int fff_ticket_cancel(int64_t ticket) {
	FORK_INT
	return goFffTicketCancel(ticket);
}

int fff_writer_open(int64_t client, const char *path, int version, int64_t *writer) {
	FORK_INT
	return goFffWriterOpen(client, (char *)path, version, writer);
}

int fff_writer_write(int64_t writer, const void *sample, int64_t len) {
	FORK_INT
	return goFffWriterWrite(writer, NULL, 0, (void *)sample, len);
}

int fff_writer_write_keyed(int64_t writer, const char *key, const void *sample, int64_t len) {
	FORK_INT
	return goFffWriterWrite(writer, (char *)key, 1, (void *)sample, len);
}

int fff_writer_commit(int64_t writer) {
	FORK_INT
	return goFffWriterCommit(writer);
}
