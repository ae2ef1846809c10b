/* The S3 client's pure parts: SigV4 against the examples AWS publishes in
 * "Signature Calculations for the Authorization Header" (Amazon S3 API
 * reference: the GET object, PUT object, GET bucket lifecycle and
 * ListObjects examples), key encoding, and the XML replies we parse.
 * The requests themselves are tested against Ceph RGW in
 * tests/integration/t_s3_*.sh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/s3xml.h"
#include "store/sigv4.h"
#include "store/store.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"

static void sign(const char *method, const char *path, const char *query, const struct fy_sig_header *h, size_t n,
		 const char *phash, const char *want_signed, const char *want_sig)
{
	struct fy_sig_req r = { .method = method, .path = path, .query = query, .headers = h, .nheaders = n,
				.payload_hash = phash, .amz_date = DATE, .region = "us-east-1", .service = "s3",
				.access_key = AK, .secret_key = SK };
	char out[512], want[512];

	assert_true(fy_sigv4_sign(&r, out, sizeof(out)) > 0);
	snprintf(want, sizeof(want),
		 "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,SignedHeaders=%s,Signature=%s",
		 want_signed, want_sig);
	assert_string_equal(out, want);
}

static void test_sigv4_get_object(void **state)
{
	(void)state;
	struct fy_sig_header h[] = { { "host", HOST }, { "range", "bytes=0-9" },
				     { "x-amz-content-sha256", FY_EMPTY_SHA256 }, { "x-amz-date", DATE } };

	sign("GET", "/test.txt", "", h, 4, FY_EMPTY_SHA256, "host;range;x-amz-content-sha256;x-amz-date",
	     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_sigv4_put_object(void **state)
{
	(void)state;
	const char *body = "Welcome to Amazon S3.";
	char hash[65], path[64];

	fy_sha256_hex(body, strlen(body), hash);
	assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	assert_int_equal(fy_s3_uri_encode("/test$file.text", 15, 1, path, sizeof(path)), 17);
	assert_string_equal(path, "/test%24file.text");
	struct fy_sig_header h[] = { { "date", "Fri, 24 May 2013 00:00:00 GMT" }, { "host", HOST },
				     { "x-amz-content-sha256", hash }, { "x-amz-date", DATE },
				     { "x-amz-storage-class", "REDUCED_REDUNDANCY" } };

	sign("PUT", path, "", h, 5, hash, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
	     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void test_sigv4_bucket_queries(void **state)
{
	(void)state;
	struct fy_sig_header h[] = { { "host", HOST }, { "x-amz-content-sha256", FY_EMPTY_SHA256 },
				     { "x-amz-date", DATE } };

	sign("GET", "/", "lifecycle=", h, 3, FY_EMPTY_SHA256, "host;x-amz-content-sha256;x-amz-date",
	     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	sign("GET", "/", "max-keys=2&prefix=J", h, 3, FY_EMPTY_SHA256, "host;x-amz-content-sha256;x-amz-date",
	     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_sigv4_rejects_unsorted(void **state)
{
	(void)state;
	struct fy_sig_header h[] = { { "x-amz-date", DATE }, { "host", HOST } };
	struct fy_sig_req r = { .method = "GET", .path = "/", .query = "", .headers = h, .nheaders = 2,
				.payload_hash = FY_EMPTY_SHA256, .amz_date = DATE, .region = "us-east-1",
				.service = "s3", .access_key = AK, .secret_key = SK };
	char out[512];

	assert_int_equal(fy_sigv4_sign(&r, out, sizeof(out)), -EINVAL);
	r.nheaders = 1;
	r.amz_date = "2013";
	assert_int_equal(fy_sigv4_sign(&r, out, sizeof(out)), -EINVAL);
}

static void test_uri_encode(void **state)
{
	(void)state;
	char out[64];

	assert_int_equal(fy_s3_uri_encode("a b=c/d~e_f.g-h+", 16, 0, out, sizeof(out)), 24);
	assert_string_equal(out, "a%20b%3Dc%2Fd~e_f.g-h%2B");
	assert_true(fy_s3_uri_encode("a/b", 3, 1, out, sizeof(out)) == 3);
	assert_string_equal(out, "a/b");
	assert_int_equal(fy_s3_uri_encode("\xc3\xa9", 2, 0, out, sizeof(out)), 6);
	assert_string_equal(out, "%C3%A9");
	assert_int_equal(fy_s3_uri_encode("abcdef", 6, 0, out, 6), -ENOSPC);
}

struct seen {
	char keys[8][64];
	uint64_t sizes[8];
	int n;
};

static int see(const struct fy_s3xml_entry *e, void *arg)
{
	struct seen *s = arg;

	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s|%s%s", e->key, e->id, e->delete_marker ? "|dm" : "");
	s->sizes[s->n++] = e->size;
	return 0;
}

static void test_xml_list_objects(void **state)
{
	(void)state;
	const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
			  "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			  "<Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
			  "<NextContinuationToken>tok/en=</NextContinuationToken>"
			  "<Contents><Key>p/chunks/ab</Key><Size>4194304</Size></Contents>"
			  "<Contents><Key>p/a&amp;b</Key><Size>0</Size></Contents></ListBucketResult>";
	struct seen s = { 0 };
	bool more = false;
	char n1[64], n2[64];

	assert_int_equal(fy_s3xml_list(doc, strlen(doc), see, &s, &more, n1, sizeof(n1), n2, sizeof(n2)), 0);
	assert_true(more);
	assert_string_equal(n1, "tok/en=");
	assert_int_equal(s.n, 2);
	assert_string_equal(s.keys[0], "p/chunks/ab|");
	assert_int_equal(s.sizes[0], 4194304);
	assert_string_equal(s.keys[1], "p/a&b|");

	/* A page that does not say whether more follow, or an entry without a
	 * key, is no listing to trust: an error, never a (short) list. */
	static const char *const bad[] = {
		"<ListBucketResult><Contents><Key>p/a</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents>"
		"</ListBucketResult>",
		"<ListBucketResult><IsTruncated>false</IsTruncated>",
		"<Error><Code>InternalError</Code></Error>",
		"not xml at all",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(fy_s3xml_list(bad[i], strlen(bad[i]), see, &s, &more, n1, sizeof(n1), n2, sizeof(n2)),
				 -EBADMSG);
}

static void test_xml_versions_and_uploads(void **state)
{
	(void)state;
	const char *v = "<ListVersionsResult><IsTruncated>false</IsTruncated>"
			"<Version><Key>k</Key><VersionId>v1</VersionId><Size>5</Size></Version>"
			"<DeleteMarker><Key>k</Key><VersionId>v2</VersionId></DeleteMarker></ListVersionsResult>";
	const char *u = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>k</NextKeyMarker>"
			"<NextUploadIdMarker>u9</NextUploadIdMarker>"
			"<Upload><Key>k</Key><UploadId>u1</UploadId></Upload></ListMultipartUploadsResult>";
	struct seen s = { 0 };
	bool more = true;
	char n1[64], n2[64];

	assert_int_equal(fy_s3xml_list(v, strlen(v), see, &s, &more, n1, sizeof(n1), n2, sizeof(n2)), 0);
	assert_false(more);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.keys[0], "k|v1");
	assert_string_equal(s.keys[1], "k|v2|dm");
	s.n = 0;
	assert_int_equal(fy_s3xml_list(u, strlen(u), see, &s, &more, n1, sizeof(n1), n2, sizeof(n2)), 0);
	assert_true(more);
	assert_string_equal(n1, "k");
	assert_string_equal(n2, "u9");
	assert_string_equal(s.keys[0], "k|u1");
}

static void test_xml_error_and_find(void **state)
{
	(void)state;
	const char *e = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message></Message>"
			"<RequestId>x</RequestId></Error>";
	const char *lock = "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			   "<ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>";
	char code[64], msg[64], v[32];

	assert_int_equal(fy_s3xml_error(e, strlen(e), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(code, "SignatureDoesNotMatch");
	assert_string_equal(msg, "");
	assert_int_equal(fy_s3xml_error(lock, strlen(lock), code, sizeof(code), msg, sizeof(msg)), -EINVAL);
	assert_int_equal(fy_s3xml_error("not xml", 7, code, sizeof(code), msg, sizeof(msg)), -EINVAL);
	assert_int_equal(fy_s3xml_find(lock, strlen(lock), "ObjectLockEnabled", v, sizeof(v)), 0);
	assert_string_equal(v, "Enabled");
	assert_int_equal(fy_s3xml_find(lock, strlen(lock), "UploadId", v, sizeof(v)), -ENOENT);
	assert_int_equal(fy_s3xml_find("<a", 2, "UploadId", v, sizeof(v)), -EBADMSG);
	assert_int_equal(fy_s3xml_list(lock, strlen(lock), see, NULL, &(bool){ 0 }, v, sizeof(v), v, sizeof(v)),
			 -EBADMSG);
}

/* Bad URLs are refused at open, naming what is wrong, before any request. */
static void test_url_errors(void **state)
{
	(void)state;
	static const struct {
		const char *url, *want;
	} cases[] = {
		{ "s3://", "bucket name" },
		{ "s3://Bad_Bucket/x", "bucket name" },
		{ "s3://bucket/x?region=a&frobnicate=1", "unknown or invalid parameter 'frobnicate=1'" },
		{ "s3://bucket?endpoint=ftp://h", "must begin with http:// or https://" },
		{ "s3://bucket?endpoint=http://h/path", "no path" },
		{ "s3://bucket?style=sideways", "style must be path or virtual" },
		{ "s3://bucket?lock=forever&lock-days=1", "lock must be compliance or governance" },
		{ "s3://bucket?lock=compliance", "needs lock-days" },
		{ "s3://bucket?lock-days=3", "need lock=" },
		{ "s3://bucket?part-size=1MiB", "part-size=1MiB" },
		{ "s3://bucket?connections=0", "connections=0" },
		{ "s3://bucket?conditional=yes", "conditional=yes" },
		{ "s3://bucket?as-of=yesterday", "as-of=yesterday is not a UTC time" },
		{ "s3://bucket?as-of=2026-11-21T10:00:00", "as-of=2026-11-21T10:00:00 is not a UTC time" },
		{ "s3://bucket?as-of=2026-11-21T10:00:00.Z", "as-of=2026-11-21T10:00:00.Z is not a UTC time" },
		{ "s3://bucket?credentials=/nonexistent/creds", "cannot read S3 credentials file /nonexistent/creds" },
		{ "s3://bucket?secret-dir=/nonexistent", "lacks the files AWS_ACCESS_KEY_ID" },
		{ "s3://bucket?ca-file=/nonexistent/ca.pem", "S3 CA file /nonexistent/ca.pem" },
		/* given twice, or empty where a value is needed: refused, naming it */
		{ "s3://bucket?region=eu-west-1&region=us-east-1", "parameter 'region' is given twice" },
		{ "s3://bucket?region=eu-west-1&endpoint=http://h&region=eu-west-1", "parameter 'region' is given twice" },
		{ "s3://bucket?connections=4&connections=8", "parameter 'connections' is given twice" },
		{ "s3://bucket?insecure&insecure=1", "parameter 'insecure' is given twice" },
		{ "s3://bucket?region=", "parameter 'region' has an empty value" },
		{ "s3://bucket?region", "parameter 'region' has an empty value" },
		{ "s3://bucket?endpoint=", "parameter 'endpoint' has an empty value" },
		{ "s3://bucket?profile=&credentials=/x", "parameter 'profile' has an empty value" },
		{ "s3://bucket?secret-dir=", "parameter 'secret-dir' has an empty value" },
		{ "s3://bucket?storage-class=", "parameter 'storage-class' has an empty value" },
		{ "s3://bucket?ca-file=", "parameter 'ca-file' has an empty value" },
		{ "s3://bucket?lock=&lock-days=1", "parameter 'lock' has an empty value" },
	};
	struct fy_store *st = NULL;
	char err[512];

	setenv("AWS_ACCESS_KEY_ID", "AK", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_true(fy_store_open(cases[i].url, &st, err, sizeof(err)) < 0);
		if (!strstr(err, cases[i].want))
			fail_msg("%s: error '%s' lacks '%s'", cases[i].url, err, cases[i].want);
		assert_null(st);
	}
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	setenv("HOME", "/nonexistent", 1);
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	assert_int_equal(fy_store_open("s3://bucket/p", &st, err, sizeof(err)), -ENOKEY);
	assert_non_null(strstr(err, "no S3 credentials"));
	/* A good URL opens without a request (no lock check without lock=). */
	setenv("AWS_ACCESS_KEY_ID", "AK", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
	assert_int_equal(fy_store_open("s3://bucket/p/q/?endpoint=http://127.0.0.1:9&region=eu-west-1", &st, err,
				       sizeof(err)),
			 0);
	assert_int_equal(fy_store_concurrency(st), 8);
	assert_int_equal(fy_store_digests(st), FY_DG_CRC32C | FY_DG_SHA256);
	fy_store_close(st);
	/* A flag without '=' (it crashed: the empty value was a string literal). */
	assert_int_equal(fy_store_open("s3://bucket/p?insecure&endpoint=https://127.0.0.1:9", &st, err, sizeof(err)), 0);
	fy_store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigv4_get_object),
		cmocka_unit_test(test_sigv4_put_object),
		cmocka_unit_test(test_sigv4_bucket_queries),
		cmocka_unit_test(test_sigv4_rejects_unsorted),
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_xml_list_objects),
		cmocka_unit_test(test_xml_versions_and_uploads),
		cmocka_unit_test(test_xml_error_and_find),
		cmocka_unit_test(test_url_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
