/*
 * tools/connrate.c — new-connection rate: TCP connect + close, as fast as it goes.
 *
 *   connrate -t SECONDS [-c WORKERS] [-timeout MS] IP:PORT
 *
 * netperf's TCP_CC test (connect/close, no data) is the usual measure of how many new
 * connections a path sustains; netperf is non-free in Debian, so this is its equivalent.
 * Each worker process loops until the deadline: socket(), SO_LINGER 0, a blocking connect()
 * (bounded by -timeout through SO_SNDTIMEO), close(). The close sends a RST, so neither side
 * keeps TIME_WAIT and reused ports never wait. It is C because the rate is what is measured:
 * an interpreter's per-connection cost (tens of microseconds in Python) would dilute the
 * data plane's share of it. Workers are processes, not threads: threads of one process share
 * its file table, whose locking costs every socket()/close() a few microseconds more.
 *
 * Prints one JSON object on stdout: tool, target, workers, duration_s (measured),
 * connections (completed connect()s), errors, connections_per_s, errors_by_errno.
 * Exit: 0 when at least one connect() completed, 1 when none did, 2 on bad arguments.
 * Bounded: -t is 1..3600 s, and an alarm ends the process at -t + timeout + 5 s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 256
#define MAX_ERRNO 256

struct worker {
	long connections;
	long errors[MAX_ERRNO];
};

static struct sockaddr_in target;
static struct timespec deadline;
static struct timeval connect_timeout;

static int before_deadline(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec < deadline.tv_sec ||
	       (now.tv_sec == deadline.tv_sec && now.tv_nsec < deadline.tv_nsec);
}

static void work(struct worker *w)
{
	const struct linger rst = { .l_onoff = 1, .l_linger = 0 };

	while (before_deadline()) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			w->errors[errno < MAX_ERRNO ? errno : 0]++;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &connect_timeout, sizeof(connect_timeout));
		if (connect(fd, (struct sockaddr *)&target, sizeof(target)) == 0)
			w->connections++;
		else
			w->errors[errno < MAX_ERRNO ? errno : 0]++;
		close(fd);
	}
}

static int usage(const char *why)
{
	fprintf(stderr, "connrate: %s\nusage: connrate -t SECONDS [-c WORKERS] [-timeout MS] IP:PORT\n",
		why);
	return 2;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
	long seconds = 0, count = 1, timeout_ms = 2000;
	const char *spec = NULL;
	char host[64];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			seconds = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-c") && i + 1 < argc)
			count = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-timeout") && i + 1 < argc)
			timeout_ms = strtol(argv[++i], NULL, 10);
		else if (argv[i][0] != '-' && !spec)
			spec = argv[i];
		else
			return usage("unknown or incomplete argument");
	}
	if (seconds < 1 || seconds > 3600)
		return usage("-t must be 1..3600 seconds (every load is bounded)");
	if (count < 1 || count > MAX_WORKERS)
		return usage("-c must be 1..256 workers");
	if (timeout_ms < 1 || timeout_ms > 60000)
		return usage("-timeout must be 1..60000 ms");
	const char *colon = spec ? strrchr(spec, ':') : NULL;
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		return usage("the target must be IP:PORT");
	memcpy(host, spec, colon - spec);
	host[colon - spec] = '\0';
	long port = strtol(colon + 1, NULL, 10);
	target.sin_family = AF_INET;
	target.sin_port = htons((unsigned short)port);
	if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &target.sin_addr) != 1)
		return usage("the target must be an IPv4 address and a port 1..65535");
	connect_timeout.tv_sec = timeout_ms / 1000;
	connect_timeout.tv_usec = (timeout_ms % 1000) * 1000;
	alarm((unsigned int)(seconds + timeout_ms / 1000 + 5)); /* the hard bound */

	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	deadline = start;
	deadline.tv_sec += seconds;
	int results[2];
	if (pipe(results) != 0) {
		fprintf(stderr, "connrate: cannot make a pipe for the workers' counts: %s\n",
			strerror(errno));
		return 1;
	}
	for (long i = 0; i < count; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			fprintf(stderr, "connrate: cannot start worker %ld: %s\n", i, strerror(errno));
			return 1;
		}
		if (pid == 0) {
			static struct worker mine;

			work(&mine);
			/* one write of < PIPE_BUF bytes is atomic: the counts never interleave */
			_exit(write(results[1], &mine, sizeof(mine)) == sizeof(mine) ? 0 : 1);
		}
	}
	close(results[1]);
	long connections = 0, errors = 0, by_errno[MAX_ERRNO] = { 0 };
	struct worker got;
	long reported = 0;
	while (read(results[0], &got, sizeof(got)) == sizeof(got)) {
		reported++;
		connections += got.connections;
		for (int e = 0; e < MAX_ERRNO; e++) {
			by_errno[e] += got.errors[e];
			errors += got.errors[e];
		}
	}
	while (wait(NULL) > 0)
		;
	if (reported != count) {
		fprintf(stderr, "connrate: only %ld of %ld workers reported\n", reported, count);
		return 1;
	}
	double elapsed = seconds_since(&start);

	printf("{\"tool\": \"connrate\", \"target\": \"%s\", \"workers\": %ld, "
	       "\"duration_s\": %.6f, \"connections\": %ld, \"errors\": %ld, "
	       "\"connections_per_s\": %.3f, \"errors_by_errno\": {",
	       spec, count, elapsed, connections, errors, connections / elapsed);
	const char *sep = "";
	for (int e = 0; e < MAX_ERRNO; e++) {
		if (by_errno[e]) {
			const char *name = e ? strerrorname_np(e) : NULL;
			printf("%s\"%s\": %ld", sep, name ? name : "other", by_errno[e]);
			sep = ", ";
		}
	}
	printf("}}\n");
	return connections > 0 ? 0 : 1;
}
