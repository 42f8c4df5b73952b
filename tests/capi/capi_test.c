//go:build ignore

// (The constraint above keeps the go tool from treating this directory as a
// cgo package: capi_test.go compiles this program with gcc itself.)

/*
 * capi_test.c — drives libfff.so through fff.h against a running `fffd local`
 * (started by capi_test.go). Usage: capi_test ADDRESS TOKEN LOCALDIR
 * FFF_CLUSTER and FFF_TOKEN name the same cluster (for client 0 / NULL).
 * Prints one line per check; exits 1 on the first failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fff.h"
#include "libfff.h" /* the cgo-generated header: must not conflict with fff.h */

static const char *addr, *token, *localdir;

#define CHECK(cond, ...)                                                                       \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
			fprintf(stderr, __VA_ARGS__);                                          \
			fprintf(stderr, " [errmsg: %s]\n", fff_errmsg());                      \
			exit(1);                                                               \
		}                                                                              \
	} while (0)
#define OK(call) CHECK((call) == 0, "%s", fff_errmsg())
#define WANT(call, code)                                                                       \
	do {                                                                                   \
		int64_t rc_ = (call);                                                          \
		CHECK(rc_ == (code) || rc_ == -(int64_t)(code), "got %lld, want %d",           \
		      (long long)rc_, (int)(code));                                            \
		CHECK(fff_errmsg()[0] != 0, "empty errmsg for code %d", (int)(code));         \
	} while (0)
#define MSG_HAS(s) CHECK(strstr(fff_errmsg(), (s)) != NULL, "errmsg lacks \"%s\"", (s))

static void say(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	printf("ok ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

/* Sample i of file f: deterministic length and bytes. */
static int64_t sample_len(int f, int64_t i) { return (i % 10 == 9) ? 0 : 100 + (i * 37 + f * 11) % 5000; }
static uint8_t sample_byte(int f, int64_t i, int64_t j) { return (uint8_t)(f * 131 + i * 7 + j * 13 + (j >> 8)); }
static void fill_sample(int f, int64_t i, uint8_t *b) {
	for (int64_t j = 0; j < sample_len(f, i); j++) b[j] = sample_byte(f, i, j);
}
static int check_sample(int f, int64_t i, const uint8_t *b, int64_t n) {
	if (n != sample_len(f, i)) return 0;
	for (int64_t j = 0; j < n; j++)
		if (b[j] != sample_byte(f, i, j)) return 0;
	return 1;
}

/* write an FFRecord file of n samples of family f */
static void write_ffr(int64_t client, const char *path, int version, int f, int64_t n, int keyed) {
	int64_t w;
	OK(fff_writer_open(client, path, version, &w));
	uint8_t *b = malloc(6000);
	for (int64_t i = 0; i < n; i++) {
		fill_sample(f, i, b);
		if (keyed) {
			char key[64];
			snprintf(key, sizeof key, "k/%lld", (long long)i);
			OK(fff_writer_write_keyed(w, key, b, sample_len(f, i)));
		} else {
			OK(fff_writer_write(w, b, sample_len(f, i)));
		}
	}
	free(b);
	OK(fff_writer_commit(w));
	WANT(fff_writer_write(w, "x", 1), FFF_EBADF); /* commit released it */
}

/* A dataset of files (family f0, n0 samples), (f1, n1): sample i's family and index. */
struct layout {
	int f[2];
	int64_t n[2];
};
static void which(const struct layout *l, int64_t i, int *f, int64_t *j) {
	if (i < l->n[0]) {
		*f = l->f[0], *j = i;
	} else {
		*f = l->f[1], *j = i - l->n[0];
	}
}

static void check_read(int64_t ds, const struct layout *l, const int64_t *idx, int64_t n, const uint8_t *buf,
		       const int64_t *off) {
	CHECK(off[0] == 0, "offsets[0] = %lld", (long long)off[0]);
	for (int64_t k = 0; k < n; k++) {
		int f;
		int64_t j;
		which(l, idx[k], &f, &j);
		CHECK(check_sample(f, j, buf + off[k], off[k + 1] - off[k]), "dataset %lld sample %lld (file family %d #%lld) differs",
		      (long long)ds, (long long)idx[k], f, (long long)j);
	}
}

static void read_all(int64_t ds, const struct layout *l) {
	int64_t len = fff_dataset_len(ds);
	CHECK(len == l->n[0] + l->n[1], "len %lld", (long long)len);
	int64_t n = len + 5;
	int64_t *idx = malloc(n * sizeof *idx), *off = malloc((n + 1) * sizeof *off), *sz = malloc(n * sizeof *sz);
	for (int64_t k = 0; k < n; k++) idx[k] = (k * 7919) % len; /* out of order, repeats */
	OK(fff_dataset_sizes(ds, idx, n, sz));
	int64_t total = 0;
	for (int64_t k = 0; k < n; k++) {
		int f;
		int64_t j;
		which(l, idx[k], &f, &j);
		CHECK(sz[k] == sample_len(f, j), "size of %lld", (long long)idx[k]);
		total += sz[k];
	}
	uint8_t *buf = malloc(total + 1);
	/* too small: FFF_ESHORTBUF, offsets[n] says how much is needed */
	WANT(fff_dataset_read(ds, idx, n, buf, total - 1, off), FFF_ESHORTBUF);
	CHECK(off[n] == total, "offsets[n] %lld, want %lld", (long long)off[n], (long long)total);
	OK(fff_dataset_read(ds, idx, n, buf, total, off));
	CHECK(off[n] == total, "offsets[n]");
	check_read(ds, l, idx, n, buf, off);
	/* bad index */
	int64_t bad[2] = {0, len};
	WANT(fff_dataset_read(ds, bad, 2, buf, total, off), FFF_EINVAL);
	MSG_HAS("out of range");
	WANT(fff_dataset_sizes(ds, bad, 2, sz), FFF_EINVAL);
	/* empty batch */
	OK(fff_dataset_read(ds, idx, 0, NULL, 0, off));
	CHECK(off[0] == 0, "empty batch offsets");
	free(idx), free(off), free(sz), free(buf);
}

/* ---- asynchronous reads from several threads */

struct asyncarg {
	int64_t ds;
	const struct layout *l;
	int id;
	int failed;
};

static pthread_barrier_t barrier;

#define INFLIGHT 8
#define BATCH 64

static void *async_thread(void *p) {
	struct asyncarg *a = p;
	int64_t len = fff_dataset_len(a->ds);
	int64_t idx[INFLIGHT][BATCH], off[INFLIGHT][BATCH + 1], t[INFLIGHT];
	uint8_t *buf[INFLIGHT];
	for (int round = 0; round < 3; round++) {
		for (int k = 0; k < INFLIGHT; k++) {
			buf[k] = malloc(BATCH * 5200);
			for (int m = 0; m < BATCH; m++) idx[k][m] = (a->id * 1000 + round * 100 + k * 13 + m * 31) % len;
			if (fff_dataset_submit(a->ds, idx[k], BATCH, buf[k], BATCH * 5200, off[k], &t[k]) != 0) {
				fprintf(stderr, "FAIL thread %d: submit: %s\n", a->id, fff_errmsg());
				a->failed = 1;
				return NULL;
			}
			/* offsets are there before the data */
			if (off[k][0] != 0 || off[k][BATCH] <= 0) {
				fprintf(stderr, "FAIL thread %d: offsets not filled by submit\n", a->id);
				a->failed = 1;
				return NULL;
			}
		}
		for (int k = INFLIGHT - 1; k >= 0; k--) { /* out of order, some by polling */
			int rc;
			if (k % 2) {
				while ((rc = fff_ticket_wait(t[k], 0)) == FFF_EAGAIN) usleep(100);
			} else {
				rc = fff_ticket_wait(t[k], -1);
			}
			if (rc != 0) {
				fprintf(stderr, "FAIL thread %d: ticket %lld: %d %s\n", a->id, (long long)t[k], rc, fff_errmsg());
				a->failed = 1;
				return NULL;
			}
			if (fff_ticket_wait(t[k], 0) != FFF_EBADF) { /* released */
				fprintf(stderr, "FAIL thread %d: finished ticket not released\n", a->id);
				a->failed = 1;
				return NULL;
			}
			for (int m = 0; m < BATCH; m++) {
				int f;
				int64_t j;
				which(a->l, idx[k][m], &f, &j);
				if (!check_sample(f, j, buf[k] + off[k][m], off[k][m + 1] - off[k][m])) {
					fprintf(stderr, "FAIL thread %d: async sample %lld differs\n", a->id, (long long)idx[k][m]);
					a->failed = 1;
					return NULL;
				}
			}
			free(buf[k]);
		}
	}
	/* Per-thread error messages: each thread fails differently, then all
	 * check their own message once every thread has failed. */
	char path[64], want[64];
	snprintf(path, sizeof path, "/capi/missing-thread-%d", a->id);
	snprintf(want, sizeof want, "missing-thread-%d", a->id);
	int64_t client;
	if (fff_connect(addr, token, &client) != 0 || fff_stat(client, path, &(fff_stat_t){0}) != FFF_ENOENT) {
		fprintf(stderr, "FAIL thread %d: stat of a missing file\n", a->id);
		a->failed = 1;
	}
	pthread_barrier_wait(&barrier);
	if (!a->failed && strstr(fff_errmsg(), want) == NULL) {
		fprintf(stderr, "FAIL thread %d: errmsg '%s' is not this thread's\n", a->id, fff_errmsg());
		a->failed = 1;
	}
	fff_close(client);
	return NULL;
}

static void async_reads(int64_t ds, const struct layout *l) {
	enum { T = 4 };
	pthread_t th[T];
	struct asyncarg a[T];
	pthread_barrier_init(&barrier, NULL, T);
	for (int i = 0; i < T; i++) {
		a[i] = (struct asyncarg){ds, l, i, 0};
		CHECK(pthread_create(&th[i], NULL, async_thread, &a[i]) == 0, "pthread_create");
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		CHECK(!a[i].failed, "thread %d failed", i);
	}
	pthread_barrier_destroy(&barrier);
}

/* A big batch, to have a ticket in flight for a while. */
struct big {
	int64_t n, *idx, *off;
	uint8_t *buf;
	int64_t buflen;
};
static struct big big_batch(int64_t ds, int64_t n) {
	struct big b = {n, malloc(n * 8), malloc((n + 1) * 8), NULL, 0};
	int64_t len = fff_dataset_len(ds);
	for (int64_t k = 0; k < n; k++) b.idx[k] = k % len;
	int64_t *sz = malloc(n * 8);
	OK(fff_dataset_sizes(ds, b.idx, n, sz));
	for (int64_t k = 0; k < n; k++) b.buflen += sz[k];
	free(sz);
	b.buf = malloc(b.buflen);
	return b;
}
static void free_big(struct big *b) { free(b->idx), free(b->off), free(b->buf); }

static void async_edges(int64_t ds) {
	struct big b = big_batch(ds, 20000);
	int64_t t;
	/* poll: not finished yet right after submit */
	int again = 0;
	for (int i = 0; i < 5 && !again; i++) {
		OK(fff_dataset_submit(ds, b.idx, b.n, b.buf, b.buflen, b.off, &t));
		int rc = fff_ticket_wait(t, 0);
		if (rc == FFF_EAGAIN) {
			again = 1;
			MSG_HAS("not finished");
			OK(fff_ticket_wait(t, -1));
		} else {
			CHECK(rc == 0, "poll: %d", rc);
		}
	}
	CHECK(again, "fff_ticket_wait(t, 0) never reported FFF_EAGAIN");
	say("ticket poll: FFF_EAGAIN");
	/* timeout then finish */
	OK(fff_dataset_submit(ds, b.idx, b.n, b.buf, b.buflen, b.off, &t));
	int rc;
	while ((rc = fff_ticket_wait(t, 1)) == FFF_EAGAIN) {
	}
	CHECK(rc == 0, "wait with timeout: %d", rc);
	/* cancel: returns once the buffers are free, releases the ticket */
	for (int i = 0; i < 3; i++) {
		OK(fff_dataset_submit(ds, b.idx, b.n, b.buf, b.buflen, b.off, &t));
		OK(fff_ticket_cancel(t));
		WANT(fff_ticket_wait(t, 0), FFF_EBADF);
		WANT(fff_ticket_cancel(t), FFF_EBADF);
	}
	/* fff_close on a ticket cancels it */
	OK(fff_dataset_submit(ds, b.idx, b.n, b.buf, b.buflen, b.off, &t));
	OK(fff_close(t));
	WANT(fff_ticket_wait(t, 0), FFF_EBADF);
	say("ticket cancel");
	/* wrong kinds */
	WANT(fff_ticket_wait(ds, 0), FFF_EBADF);
	MSG_HAS("not a ticket handle");
	WANT(fff_dataset_len(t), FFF_EBADF);
	free_big(&b);
}

/* closing a dataset with tickets in flight: they end, canceled or done */
static void close_in_flight(int64_t client, const char *path) {
	int64_t ds, t[4];
	OK(fff_dataset_open(client, path, 0, &ds));
	struct big b[4];
	for (int i = 0; i < 4; i++) {
		b[i] = big_batch(ds, 20000);
		OK(fff_dataset_submit(ds, b[i].idx, b[i].n, b[i].buf, b[i].buflen, b[i].off, &t[i]));
	}
	OK(fff_close(ds));
	int canceled = 0;
	for (int i = 0; i < 4; i++) {
		int rc = fff_ticket_wait(t[i], -1);
		CHECK(rc == 0 || rc == FFF_ECANCELED, "ticket after dataset close: %d", rc);
		if (rc == FFF_ECANCELED) {
			MSG_HAS("was closed");
			canceled++;
		}
		free_big(&b[i]);
	}
	WANT(fff_dataset_len(ds), FFF_EBADF);
	say("dataset closed with tickets in flight (%d of 4 canceled)", canceled);
}

static void namespace(int64_t c) {
	fff_stat_t st;
	OK(fff_mkdir(c, "/capi/a/b", 0755, 1));
	OK(fff_stat(c, "fff:///capi/a", &st));
	CHECK(S_ISDIR(st.mode) && (st.mode & 07777) == 0755, "mode %o", st.mode);
	CHECK(st.chunk_size == 0, "dir chunk size");
	WANT(fff_mkdir(c, "/capi/a", 0755, 0), FFF_EEXIST);
	WANT(fff_mkdir(c, "/capi/nope/x", 0755, 0), FFF_ENOENT);
	WANT(fff_stat(c, "/capi/missing", &st), FFF_ENOENT);
	MSG_HAS("/capi/missing");
	WANT(fff_stat(c, "", &st), FFF_EINVAL);
	WANT(fff_stat(c, NULL, &st), FFF_EINVAL);
	OK(fff_mkdir(c, "/capi/a/c", 0700, 0));
	char *names;
	int64_t n;
	OK(fff_listdir(c, "/capi/a", &names, &n));
	CHECK(n == 2 && strcmp(names, "b") == 0 && strcmp(names + 2, "c") == 0, "listdir: %lld entries", (long long)n);
	fff_free(names);
	WANT(fff_listdir(c, "/capi/missing", &names, &n), FFF_ENOENT);
	OK(fff_rename(c, "/capi/a", "fff:///capi/z"));
	WANT(fff_stat(c, "/capi/a", &st), FFF_ENOENT);
	OK(fff_stat(c, "/capi/z/c", &st));
	CHECK(S_ISDIR(st.mode) && (st.mode & 0777) == 0700, "mode after rename %o", st.mode);
	WANT(fff_rename(c, "/capi/missing", "/capi/y"), FFF_ENOENT);
	WANT(fff_remove(c, "/capi/z", 0), FFF_ENOTEMPTY);
	OK(fff_remove(c, "/capi/z", 1));
	WANT(fff_stat(c, "/capi/z", &st), FFF_ENOENT);
	WANT(fff_remove(c, "/capi/z", 1), FFF_ENOENT);
	WANT(fff_remove(c, "/capi/z", 0), FFF_ENOENT);
	/* another cluster's path */
	WANT(fff_stat(c, "fff://127.0.0.1:1/x", &st), FFF_EXDEV);
	say("namespace");
}

static void files(int64_t c) {
	enum { N = 3 << 20 };
	uint8_t *data = malloc(N), *got = malloc(N);
	for (int i = 0; i < N; i++) data[i] = (uint8_t)(i * 2654435761u >> 13);
	int64_t f;
	OK(fff_open(c, "/capi/f.bin", O_CREAT | O_RDWR | O_TRUNC, 0640, &f));
	CHECK(fff_write(f, data, 1000) == 1000, "write");
	CHECK(fff_write(f, data + 1000, N - 1000 - 4096) == N - 1000 - 4096, "write");
	CHECK(fff_pwrite(f, data + N - 4096, 4096, N - 4096) == 4096, "pwrite");
	OK(fff_sync(f));
	CHECK(fff_size(f) == N, "size %lld", (long long)fff_size(f));
	CHECK(fff_seek(f, 0, SEEK_SET) == 0, "seek");
	int64_t at = 0, r;
	while ((r = fff_read(f, got + at, 777777)) > 0) at += r;
	CHECK(r == 0 && at == N, "read %lld, total %lld", (long long)r, (long long)at);
	CHECK(memcmp(got, data, N) == 0, "read bytes differ");
	memset(got, 0, N);
	CHECK(fff_pread(f, got, 5000, N - 3000) == 3000, "pread short at end");
	CHECK(memcmp(got, data + N - 3000, 3000) == 0, "pread bytes");
	CHECK(fff_pread(f, got, 10, N) == 0, "pread at end");
	CHECK(fff_seek(f, -10, SEEK_END) == N - 10, "seek end");
	CHECK(fff_seek(f, 5, SEEK_CUR) == N - 5, "seek cur");
	WANT(fff_seek(f, -1, SEEK_SET), FFF_EINVAL);
	WANT(fff_pread(f, got, 10, -1), FFF_EINVAL);
	WANT(fff_read(f, NULL, 10), FFF_EINVAL);
	OK(fff_truncate(f, N - 100));
	CHECK(fff_size(f) == N - 100, "truncate");
	OK(fff_close(f));
	WANT(fff_read(f, got, 10), FFF_EBADF);
	MSG_HAS("not open");
	WANT(fff_close(f), FFF_EBADF);

	fff_stat_t st;
	OK(fff_stat(c, "/capi/f.bin", &st));
	CHECK(S_ISREG(st.mode) && (st.mode & 0777) == 0640 && st.size == N - 100, "stat file: mode %o size %lld", st.mode,
	      (long long)st.size);
	CHECK(st.chunk_size > 0 && st.stripe > 0 && st.ino > 0 && st.mtime_ns > 0, "stat layout");
	OK(fff_open(c, "fff:///capi/f.bin", O_RDONLY, 0, &f));
	CHECK(fff_pread(f, got, N, 0) == N - 100, "reread");
	CHECK(memcmp(got, data, N - 100) == 0, "reread bytes");
	CHECK(fff_write(f, data, 10) < 0, "write to a read-only file");
	OK(fff_close(f));
	WANT(fff_open(c, "/capi/f.bin", O_CREAT | O_EXCL | O_WRONLY, 0644, &f), FFF_EEXIST);
	WANT(fff_open(c, "/capi/nope.bin", O_RDONLY, 0, &f), FFF_ENOENT);
	WANT(fff_open(c, "/capi", O_RDONLY, 0, &f), FFF_EISDIR);
	WANT(fff_listdir(c, "/capi/f.bin", &(char *){0}, &(int64_t){0}), FFF_ENOTDIR);
	WANT(fff_read(c, got, 10), FFF_EBADF); /* a client is not a file */
	MSG_HAS("is a client handle, not a file handle");
	free(data), free(got);
	say("files");
}

static void writers(int64_t c, const char *local) {
	char p[4096];
	int64_t w;
	OK(fff_mkdir(c, "/capi/ds", 0755, 1));
	write_ffr(c, "fff:///capi/ds/part-0.ffr", 1, 0, 300, 0);
	write_ffr(c, "fff:///capi/ds/part-1.ffr", 2, 1, 200, 1);
	write_ffr(0, "fff:///capi/other.ffr", 2, 2, 50, 0); /* client 0: the default cluster */
	/* v1 has no keys */
	OK(fff_writer_open(c, "fff:///capi/v1.ffr", 1, &w));
	WANT(fff_writer_write_keyed(w, "k", "abc", 3), FFF_EINVAL);
	MSG_HAS("version 2");
	OK(fff_close(w)); /* discarded */
	WANT(fff_stat(c, "/capi/v1.ffr", &(fff_stat_t){0}), FFF_ENOENT);
	WANT(fff_writer_open(c, "fff:///capi/v3.ffr", 3, &w), FFF_EINVAL);
	WANT(fff_writer_open(c, "fff:///capi/nodir/x.ffr", 2, &w), FFF_ENOENT);
	/* an uncommitted writer leaves nothing behind */
	OK(fff_writer_open(c, "fff:///capi/ds/part-2.ffr", 2, &w));
	OK(fff_writer_write(w, "abc", 3));
	OK(fff_close(w));
	WANT(fff_writer_write(w, "abc", 3), FFF_EBADF);
	char *names;
	int64_t n;
	OK(fff_listdir(c, "/capi/ds", &names, &n));
	CHECK(n == 2, "/capi/ds has %lld entries after an aborted writer", (long long)n);
	fff_free(names);

	snprintf(p, sizeof p, "%s/ds", local);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/ds/a.ffr", local);
	write_ffr(0, p, 1, 0, 300, 0);
	snprintf(p, sizeof p, "%s/ds/b.ffr", local);
	write_ffr(c, p, 2, 1, 200, 1); /* client ignored for local paths */
	snprintf(p, sizeof p, "%s/ds/c.ffr", local);
	OK(fff_writer_open(0, p, 2, &w));
	OK(fff_writer_write(w, "abc", 3));
	OK(fff_close(w));
	CHECK(access(p, F_OK) != 0, "aborted local writer left %s", p);
	snprintf(p, sizeof p, "%s/ds", local);
	int entries = 0;
	FILE *ls = popen((snprintf(p, sizeof p, "ls -A %s/ds", local), p), "r");
	while (fgets(p, sizeof p, ls)) entries++;
	pclose(ls);
	CHECK(entries == 2, "local ds has %d entries (temporary files left?)", entries);
	say("writers");
}

static void datasets(int64_t c, const char *local) {
	char p[4096];
	int64_t ds;
	struct layout one = {{0, 0}, {300, 0}}, two = {{0, 1}, {300, 200}}, other = {{2, 2}, {50, 0}};
	OK(fff_dataset_open(c, "fff:///capi/ds/part-0.ffr", 1, &ds));
	read_all(ds, &one);
	OK(fff_close(ds));
	OK(fff_dataset_open(0, "fff:///capi/ds", 1, &ds)); /* directory, client 0 */
	read_all(ds, &two);
	async_reads(ds, &two);
	async_edges(ds);
	OK(fff_close(ds));
	char hostpath[512];
	snprintf(hostpath, sizeof hostpath, "fff://%s/capi/other.ffr", addr);
	OK(fff_dataset_open(0, hostpath, 0, &ds)); /* fff://host:port/…, client 0 */
	read_all(ds, &other);
	OK(fff_close(ds));
	say("datasets in fff");

	snprintf(p, sizeof p, "%s/ds", local);
	OK(fff_dataset_open(c, p, 1, &ds));
	read_all(ds, &two);
	async_reads(ds, &two);
	OK(fff_close(ds));
	snprintf(p, sizeof p, "%s/ds/a.ffr", local);
	OK(fff_dataset_open(0, p, 0, &ds));
	read_all(ds, &one);
	OK(fff_close(ds));
	say("local datasets");

	WANT(fff_dataset_open(c, "fff:///capi/nope", 0, &ds), FFF_ENOENT);
	WANT(fff_dataset_open(c, "fff:///capi/f.bin", 0, &ds), FFF_ECORRUPT);
	MSG_HAS("fff ffr verify");
	snprintf(p, sizeof p, "%s/nope", local);
	WANT(fff_dataset_open(0, p, 0, &ds), FFF_ENOENT);
	snprintf(p, sizeof p, "%s/empty", local);
	mkdir(p, 0755);
	WANT(fff_dataset_open(0, p, 0, &ds), FFF_ENOENT);
	MSG_HAS("no *.ffr files");
	say("dataset open errors");

	close_in_flight(c, "fff:///capi/ds");
	snprintf(p, sizeof p, "%s/ds", local);
	close_in_flight(0, p);
}

/* flip one byte of the last sample of a local v1 file: check=1 sees it */
static void corruption(const char *local) {
	char p[4096];
	snprintf(p, sizeof p, "%s/bad.ffr", local);
	write_ffr(0, p, 1, 3, 20, 0);
	int fd = open(p, O_RDWR);
	CHECK(fd >= 0, "open %s", p);
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t b;
	CHECK(pread(fd, &b, 1, end - 1) == 1, "pread");
	b ^= 0x40;
	CHECK(pwrite(fd, &b, 1, end - 1) == 1, "pwrite");
	close(fd);
	int64_t ds, idx[3] = {0, 18, 1}, off[4];
	uint8_t buf[3 * 6000];
	OK(fff_dataset_open(0, p, 1, &ds));
	WANT(fff_dataset_read(ds, idx, 3, buf, sizeof buf, off), FFF_ECHECKSUM);
	MSG_HAS("bad.ffr");
	MSG_HAS("sample 18");
	int64_t t;
	OK(fff_dataset_submit(ds, idx, 3, buf, sizeof buf, off, &t));
	WANT(fff_ticket_wait(t, -1), FFF_ECHECKSUM);
	MSG_HAS("sample 18");
	OK(fff_close(ds));
	OK(fff_dataset_open(0, p, 0, &ds)); /* check=0: the damaged bytes come back */
	OK(fff_dataset_read(ds, idx, 3, buf, sizeof buf, off));
	CHECK(!check_sample(3, 18, buf + off[1], off[2] - off[1]), "damaged sample reads as good");
	CHECK(check_sample(3, 0, buf, off[1]), "sample 0");
	OK(fff_close(ds));
	/* not an FFRecord file at all */
	snprintf(p, sizeof p, "%s/text.ffr", local);
	FILE *fp = fopen(p, "w");
	fputs("hello, this is not an FFRecord file\n", fp);
	fclose(fp);
	WANT(fff_dataset_open(0, p, 1, &ds), FFF_ECORRUPT);
	say("corruption: FFF_ECHECKSUM with check=1");
}

int main(int argc, char **argv) {
	CHECK(argc == 4, "usage: capi_test ADDRESS TOKEN LOCALDIR");
	addr = argv[1], token = argv[2], localdir = argv[3];
	CHECK(fff_version() && strncmp(fff_version(), "libfff", 6) == 0, "version %s", fff_version());
	CHECK(fff_errmsg()[0] == 0, "errmsg before any failure");
	say("version %s", fff_version());

	int64_t c, bad;
	WANT(fff_connect(addr, "not-the-token", &bad), FFF_EAUTH);
	MSG_HAS("FFF_TOKEN");
	WANT(fff_connect("127.0.0.1:1", token, &bad), FFF_EUNAVAILABLE);
	OK(fff_connect(addr, token, &c));
	int64_t dflt;
	OK(fff_connect(NULL, NULL, &dflt)); /* FFF_CLUSTER / FFF_TOKEN */
	OK(fff_connect("", "", &c));
	OK(fff_close(c));
	OK(fff_connect(addr, token, &c));
	WANT(fff_stat(123456789, "/", &(fff_stat_t){0}), FFF_EBADF);
	WANT(fff_close(0), FFF_EBADF);
	WANT(fff_close(-5), FFF_EBADF);
	say("connect");

	OK(fff_mkdir(c, "/capi", 0755, 0));
	namespace(c);
	files(c);
	writers(c, localdir);
	datasets(c, localdir);
	corruption(localdir);

	/* closing a client: handles opened through it fail with FFF_EBADF */
	int64_t f, ds;
	OK(fff_open(dflt, "/capi/f.bin", O_RDONLY, 0, &f));
	OK(fff_dataset_open(dflt, "fff:///capi/ds", 0, &ds));
	OK(fff_close(dflt));
	WANT(fff_size(f), FFF_EBADF);
	MSG_HAS("client handle");
	WANT(fff_dataset_len(ds), FFF_EBADF);
	fff_close(f);
	fff_close(ds);
	WANT(fff_stat(dflt, "/", &(fff_stat_t){0}), FFF_EBADF);
	say("client close");

	/* a forked child gets FFF_EFORKED at once, never a hang */
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		alarm(10);
		int rc = fff_stat(c, "/", &(fff_stat_t){0});
		int64_t n = fff_dataset_len(ds);
		_exit(rc == FFF_EFORKED && n == -FFF_EFORKED && strstr(fff_errmsg(), "spawn") != NULL ? 0 : 1);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child: status %d", status);
	OK(fff_stat(c, "/", &(fff_stat_t){0})); /* the parent is unaffected */
	say("fork: FFF_EFORKED in the child");

	OK(fff_remove(c, "/capi", 1));
	OK(fff_close(c));
	printf("PASS\n");
	return 0;
}
