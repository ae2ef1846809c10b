/* The few S3 XML documents ferry reads, parsed with libxml2 (elements are
 * matched by local name, so the S3 namespace may or may not be present). */
#ifndef FERRY_S3XML_H
#define FERRY_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* <Error><Code>..</Code><Message>..</Message></Error>: 0 and both copied
 * (truncated to fit) when buf is such a document, -EINVAL otherwise. */
int fy_s3xml_error(const char *buf, size_t len, char *code, size_t codelen, char *msg, size_t msglen);

/* One entry of a listing: key (Contents/Key, Upload/Key, Version/Key), and
 * for uploads and versions the id (UploadId / VersionId); size for objects. */
struct fy_s3xml_entry {
	const char *key, *id;
	const char *time; /* LastModified / Initiated, ISO 8601 ("" if absent) */
	uint64_t size;
	bool delete_marker;
};
typedef int (*fy_s3xml_cb)(const struct fy_s3xml_entry *e, void *arg);

/* ListBucketResult (ListObjectsV2), ListMultipartUploadsResult or
 * ListVersionsResult: cb for every entry; *truncated and the markers for the
 * next page (next1: NextContinuationToken / NextKeyMarker, next2:
 * NextUploadIdMarker / NextVersionIdMarker) copied out (empty if absent).
 * Returns 0, cb's non-zero value, or -EBADMSG for a document that is not one. */
int fy_s3xml_list(const char *buf, size_t len, fy_s3xml_cb cb, void *arg, bool *truncated, char *next1,
		  size_t n1len, char *next2, size_t n2len);

/* The text of the first element named name anywhere in the document
 * (UploadId, ObjectLockEnabled, ...); -ENOENT when absent, -EBADMSG when
 * the body is not XML. */
int fy_s3xml_find(const char *buf, size_t len, const char *name, char *out, size_t outlen);

#endif
