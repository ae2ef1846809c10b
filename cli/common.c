/* Helpers shared by the subcommands: options, secrets, sizes, JSON, progress. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("ferry: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ferry %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'ferry %s --help')\n", cmd);
	return EXIT_USAGE;
}

/* Check the whole command line before getopt_long sees it: GNU getopt takes
 * any unambiguous prefix of a long option (--read-dat for --read-data), and
 * prints its own messages.  Here every long option is written in full, and
 * each mistake is one line.  0, or EXIT_USAGE after printing the line. */
int cli_check_args(int argc, char **argv, const char *cmd, const char *shortopts, const struct option *longopts)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--"))
			return 0; /* the rest are operands */
		if (a[0] != '-' || !a[1])
			continue; /* an operand ("-" too) */
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const struct option *o, *prefix_of = NULL;

			for (o = longopts; o->name; o++) {
				if (strlen(o->name) == len && !strncmp(o->name, name, len))
					break;
				if (len && strlen(o->name) > len && !strncmp(o->name, name, len) && !prefix_of)
					prefix_of = o;
			}
			if (!o->name && prefix_of)
				return cli_usage_error(cmd, "option '%.*s' is abbreviated: write --%s in full",
						       (int)(len + 2), a, prefix_of->name);
			if (!o->name)
				return cli_usage_error(cmd, "unknown option '%.*s'", (int)(len + 2), a);
			if (o->has_arg == no_argument && eq)
				return cli_usage_error(cmd, "option --%s takes no value, not '%s'", o->name, a);
			if (o->has_arg == required_argument && !eq) {
				if (i + 1 >= argc)
					return cli_usage_error(cmd, "option --%s wants a value", o->name);
				i++; /* its value, whatever it looks like */
			}
			continue;
		}
		for (const char *c = a + 1; *c; c++) {
			const char *at = *c != ':' ? strchr(shortopts, *c) : NULL;

			if (!at)
				return cli_usage_error(cmd, "unknown option '-%c'%s%s%s", *c, c > a + 1 ? " (in '" : "",
						       c > a + 1 ? a : "", c > a + 1 ? "')" : "");
			if (at[1] == ':') {
				if (!c[1] && i + 1 >= argc)
					return cli_usage_error(cmd, "option -%c wants a value", *c);
				if (!c[1])
					i++;
				break; /* the rest of this word is its value */
			}
		}
	}
	return 0;
}

int cli_getopt(int argc, char **argv, const char *cmd, const struct option *longopts)
{
	int opt;

	/* optind is 1 before the first option (and again inside a first "-vq"). */
	if (optind == 1 && cli_check_args(argc, argv, cmd, CLI_COMMON_SHORTOPTS, longopts))
		return '?';
	opterr = 0;
	opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS, longopts, NULL);
	if (opt == '?' || opt == ':') {
		/* Not expected after check_args: say something anyway. */
		cli_usage_error(cmd, "bad option '%s'", argv[optind - 1]);
		return '?';
	}
	return opt;
}

int cli_common_opt(struct cli_common *c, int opt, const char *arg)
{
	switch (opt) {
	case 'r':
		c->repo = arg;
		return 1;
	case 'P':
		c->password_file = arg;
		return 1;
	case 'K':
		c->key_file = arg;
		return 1;
	case 'j':
		c->json = true;
		return 1;
	case 'v':
		c->verbose = true;
		return 1;
	case 'q':
		c->quiet = true;
		return 1;
	case CLI_OPT_S3_CA:
		/* Read by the s3:// store of every repository this command opens. */
		setenv("FERRY_S3_CA_FILE", arg, 1);
		return 1;
	case CLI_OPT_S3_INSECURE:
		setenv("FERRY_S3_INSECURE", "1", 1);
		return 1;
	case CLI_OPT_INSECURE:
		c->insecure = true;
		return 1;
	}
	return 0;
}

/* Read at most max bytes of a small file. */
static ssize_t read_small(const char *path, char *buf, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	if (fd < 0)
		return -errno;
	while (got < max) {
		ssize_t n = read(fd, buf + got, max - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;

			close(fd);
			return e;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return (ssize_t)got;
}

static int load_key_file(struct cli_common *c)
{
	char buf[130];
	ssize_t n = read_small(c->key_file, buf, sizeof(buf));

	if (n < 0) {
		cli_error("cannot read key file %s: %s", c->key_file, strerror((int)-n));
		return 1;
	}
	if (n == 32) {
		memcpy(c->raw_key, buf, 32);
	} else {
		while (n > 0 && isspace((unsigned char)buf[n - 1]))
			n--;
		buf[n] = '\0';
		if (n != 64 || fy_unhex(buf, c->raw_key, 32) < 0) {
			cli_error("key file %s must hold 32 bytes, or 64 hex digits", c->key_file);
			OPENSSL_cleanse(buf, sizeof(buf));
			return 1;
		}
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	c->have_raw_key = true;
	return 0;
}

int cli_prepare(struct cli_common *c, const char *cmd, bool need_secret)
{
	if (!c->repo)
		c->repo = getenv("FERRY_REPO");
	if (!c->repo || !*c->repo)
		return cli_usage_error(cmd, "no repository: give --repo URL or set FERRY_REPO");
	if (c->insecure && (c->password_file || c->key_file))
		return cli_usage_error(cmd, "--insecure-no-encryption is for a repository without a password: "
				       "drop --%s", c->password_file ? "password-file" : "key-file");
	/* An unencrypted repository on purpose: no secret (FERRY_PASSWORD is
	 * not read), and an encrypted one then fails to open, saying so. */
	if (!need_secret || c->insecure)
		return 0;
	if (c->key_file)
		return load_key_file(c);
	if (c->password_file) {
		char buf[4097];
		ssize_t n = read_small(c->password_file, buf, sizeof(buf) - 1);

		if (n < 0) {
			cli_error("cannot read password file %s: %s", c->password_file, strerror((int)-n));
			return 1;
		}
		buf[n] = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		if (!buf[0]) {
			cli_error("password file %s is empty", c->password_file);
			return 1;
		}
		c->password = strdup(buf);
		OPENSSL_cleanse(buf, sizeof(buf));
	} else if (getenv("FERRY_PASSWORD")) {
		/* As an empty password file is: a password is never empty. */
		if (!*getenv("FERRY_PASSWORD")) {
			cli_error("FERRY_PASSWORD is set but empty: a password cannot be empty");
			return 1;
		}
		c->password = strdup(getenv("FERRY_PASSWORD"));
	}
	return 0;
}

void cli_free(struct cli_common *c)
{
	if (c->password) {
		OPENSSL_cleanse(c->password, strlen(c->password));
		free(c->password);
		c->password = NULL;
	}
	OPENSSL_cleanse(c->raw_key, sizeof(c->raw_key));
}

int cli_repos(struct cli_common *c, const char *cmd, struct fy_repo **repo, const char *const *more, size_t nmore,
	      struct fy_repo **more_out)
{
	return cli_repos_opt(c, cmd, repo, more, NULL, nmore, more_out, NULL);
}

int cli_repos_opt(struct cli_common *c, const char *cmd, struct fy_repo **repo, const char *const *more,
		  const bool *optional, size_t nmore, struct fy_repo **more_out, char (*why)[512])
{
	char err[512];
	int rc = cli_prepare(c, cmd, true);

	*repo = NULL;
	if (rc) {
		cli_free(c);
		return rc;
	}
	struct fy_secret sec = { .password = c->password, .raw_key = c->have_raw_key ? c->raw_key : NULL,
				 .insecure_no_encryption = c->insecure };

	rc = fy_repo_open(c->repo, &sec, repo, err, sizeof(err));
	for (size_t i = 0; i < nmore && rc == 0; i++) {
		char e2[512];

		more_out[i] = NULL;
		rc = fy_repo_open(more[i], &sec, &more_out[i], e2, sizeof(e2));
		if (rc < 0 && optional && optional[i]) {
			/* An optional copy that cannot even be opened is dropped. */
			snprintf(why[i], sizeof(why[i]), "%s", e2);
			more_out[i] = NULL;
			rc = 0;
			continue;
		}
		if (rc < 0) {
			snprintf(err, sizeof(err), "%s", e2);
			while (i--)
				fy_repo_close(more_out[i]); /* NULL for dropped ones: a no-op */
			fy_repo_close(*repo);
			*repo = NULL;
		}
	}
	cli_free(c); /* the repositories hold their keys now: drop the secret */
	if (rc < 0) {
		cli_error("%s", err);
		return 1;
	}
	return 0;
}

int cli_repo(struct cli_common *c, const char *cmd, struct fy_repo **repo)
{
	return cli_repos(c, cmd, repo, NULL, 0, NULL);
}

int cli_tag_opt(const char *cmd, char *arg, struct fy_label *labels, size_t *n)
{
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg)
		return cli_usage_error(cmd, "--tag wants KEY=VALUE, not '%s'", arg);
	if (*n == CLI_MAX_TAGS)
		return cli_usage_error(cmd, "at most %d tags", CLI_MAX_TAGS);
	*eq = '\0';
	labels[*n].key = arg;
	labels[*n].value = eq + 1;
	(*n)++;
	return 0;
}

int cli_check_snapshot_arg(const char *cmd, const char *arg)
{
	if (fy_snapshot_arg_valid(arg))
		return 0;
	return cli_usage_error(cmd, "'%s' is not a snapshot id (4 to 32 lower-case hex digits, or 'latest')", arg);
}

int cli_pick(const char *cmd, struct fy_repo *repo, const char *arg, const struct cli_select *sel,
	     uint8_t id[FY_SNAP_ID_LEN], Ferry__V1__Manifest **keep)
{
	char err[768];

	if (fy_snapshot_select(repo, arg, sel ? &sel->f : NULL, id, keep, err, sizeof(err)) < 0) {
		cli_error("%s failed: %s", cmd, err);
		return 1;
	}
	return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t mult = 1;

	if (errno || end == s || *s == '-')
		return -EINVAL;
	if (!strcasecmp(end, "") || !strcasecmp(end, "b"))
		mult = 1;
	else if (!strcasecmp(end, "k") || !strcasecmp(end, "kib") || !strcasecmp(end, "kb"))
		mult = 1ull << 10;
	else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib") || !strcasecmp(end, "mb"))
		mult = 1ull << 20;
	else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib") || !strcasecmp(end, "gb"))
		mult = 1ull << 30;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

void cli_human(uint64_t bytes, char *out, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, len, "%.1f %s", v, units[u]);
}

void cli_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	/* Whatever a repository holds, the output is JSON: control characters
	 * as \u00XX, bytes that are not UTF-8 as U+FFFD. */
	for (const unsigned char *p = (const unsigned char *)s; p && *p;) {
		size_t n = fy_printable_char((const char *)p);

		if (n == 1 && (*p == '"' || *p == '\\')) {
			fprintf(f, "\\%c", *p);
		} else if (n) {
			fwrite(p, 1, n, f);
		} else if (*p < 0x80) {
			fprintf(f, "\\u%04x", *p);
		} else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			fprintf(f, "\\u%04x", p[1]); /* a C1 control, U+0080..U+009F */
			n = 2;
		} else {
			fputs("\\ufffd", f);
		}
		p += n ? n : 1;
	}
	fputc('"', f);
}

void cli_time(int64_t unix_nano, char *out, size_t len, bool iso)
{
	time_t t = (time_t)(unix_nano / 1000000000);
	struct tm tm;

	if (iso) {
		gmtime_r(&t, &tm);
		strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	} else {
		localtime_r(&t, &tm);
		strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
	}
}

struct cli_progress {
	struct fy_progress *p;
	const char *what;
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *progress_main(void *arg)
{
	struct cli_progress *cp = arg;
	double t0 = mono();

	pthread_mutex_lock(&cp->lock);
	while (!cp->stop) {
		/* Print first, then wait: even a short job shows one line. */
		uint64_t done = atomic_load(&cp->p->done), total = atomic_load(&cp->p->total);
		const char *phase = atomic_load(&cp->p->phase);
		char d[32], t[32], eta[32] = "--:--";
		struct timespec until;

		/* The rate counts from when bytes began to move, not from a listing before. */
		if (!done && !total)
			t0 = mono();
		double el = mono() - t0, rate = el > 0.05 ? done / el : 0;

		cli_human(done, d, sizeof(d));
		cli_human(total, t, sizeof(t));
		if (rate > 0 && total >= done) {
			unsigned s = (unsigned)((total - done) / rate);

			snprintf(eta, sizeof(eta), "%u:%02u", s / 60, s % 60);
		}
		if (!done && !total)
			fprintf(stderr, "\r\033[K%s: %s", cp->what, phase ? phase : "starting");
		else if (!total)
			fprintf(stderr, "\r\033[K%s %s  %.0f MB/s", cp->what, d, rate / 1e6);
		else
			fprintf(stderr, "\r\033[K%s %s / %s  %.0f MB/s  ETA %s", cp->what, d, t, rate / 1e6, eta);
		fflush(stderr);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 250000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&cp->cond, &cp->lock, &until);
	}
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
	pthread_mutex_unlock(&cp->lock);
	return NULL;
}

struct cli_progress *cli_progress_start(struct fy_progress *p, const char *what, bool quiet)
{
	struct cli_progress *cp;

	if (quiet || !isatty(STDERR_FILENO))
		return NULL;
	cp = calloc(1, sizeof(*cp));
	if (!cp)
		return NULL;
	cp->p = p;
	cp->what = what;
	pthread_mutex_init(&cp->lock, NULL);
	pthread_cond_init(&cp->cond, NULL);
	if (pthread_create(&cp->tid, NULL, progress_main, cp) != 0) {
		free(cp);
		return NULL;
	}
	return cp;
}

void cli_progress_stop(struct cli_progress *cp)
{
	if (!cp)
		return;
	pthread_mutex_lock(&cp->lock);
	cp->stop = true;
	pthread_cond_signal(&cp->cond);
	pthread_mutex_unlock(&cp->lock);
	pthread_join(cp->tid, NULL);
	pthread_mutex_destroy(&cp->lock);
	pthread_cond_destroy(&cp->cond);
	free(cp);
}

void cli_progress_note(struct cli_progress *cp, const char *line)
{
	if (!cp) {
		cli_error("%s", line);
		return;
	}
	/* Between two progress lines: clear the current one first. */
	pthread_mutex_lock(&cp->lock);
	fprintf(stderr, "\r\033[Kferry: %s\n", line);
	fflush(stderr);
	pthread_mutex_unlock(&cp->lock);
}
