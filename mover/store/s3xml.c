/* S3 XML responses, read with libxml2's tree API (no hand parsing). */
#include "store/s3xml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

static xmlDocPtr parse(const char *buf, size_t len)
{
	if (!buf || len == 0 || len > (size_t)INT32_MAX)
		return NULL;
	/* No network, no entity expansion, no error printing on stderr. */
	return xmlReadMemory(buf, (int)len, "s3.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static bool named(xmlNodePtr n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
		if (named(c, name))
			return c;
	return NULL;
}

/* Copy the text of parent/name into out; "" when absent. */
static void child_text(xmlNodePtr parent, const char *name, char *out, size_t outlen)
{
	xmlNodePtr c = child(parent, name);
	xmlChar *t = c ? xmlNodeGetContent(c) : NULL;

	if (outlen)
		snprintf(out, outlen, "%s", t ? (const char *)t : "");
	xmlFree(t);
}

int fy_s3xml_error(const char *buf, size_t len, char *code, size_t codelen, char *msg, size_t msglen)
{
	xmlDocPtr doc = parse(buf, len);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	int rc = -EINVAL;

	if (named(root, "Error")) {
		child_text(root, "Code", code, codelen);
		child_text(root, "Message", msg, msglen);
		rc = 0;
	}
	xmlFreeDoc(doc);
	return rc;
}

static xmlNodePtr find(xmlNodePtr n, const char *name)
{
	for (; n; n = n->next) {
		if (named(n, name))
			return n;
		xmlNodePtr f = find(n->children, name);

		if (f)
			return f;
	}
	return NULL;
}

int fy_s3xml_find(const char *buf, size_t len, const char *name, char *out, size_t outlen)
{
	xmlDocPtr doc = parse(buf, len);
	int rc = -EBADMSG;

	if (doc) {
		xmlNodePtr f = find(xmlDocGetRootElement(doc), name);
		xmlChar *t = f ? xmlNodeGetContent(f) : NULL;

		rc = f ? 0 : -ENOENT;
		if (f && outlen)
			snprintf(out, outlen, "%s", t ? (const char *)t : "");
		xmlFree(t);
	}
	xmlFreeDoc(doc);
	return rc;
}

int fy_s3xml_list(const char *buf, size_t len, fy_s3xml_cb cb, void *arg, bool *truncated, char *next1,
		  size_t n1len, char *next2, size_t n2len)
{
	xmlDocPtr doc = parse(buf, len);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	const char *n1 = NULL, *n2 = NULL;
	char tr[16];
	int rc = 0;

	if (named(root, "ListBucketResult")) {
		n1 = "NextContinuationToken";
	} else if (named(root, "ListMultipartUploadsResult")) {
		n1 = "NextKeyMarker";
		n2 = "NextUploadIdMarker";
	} else if (named(root, "ListVersionsResult")) {
		n1 = "NextKeyMarker";
		n2 = "NextVersionIdMarker";
	} else {
		xmlFreeDoc(doc);
		return -EBADMSG;
	}
	/* Whether more pages follow must be said: a page that does not say it
	 * could be the first of many, and is no complete listing. */
	child_text(root, "IsTruncated", tr, sizeof(tr));
	if (strcmp(tr, "true") != 0 && strcmp(tr, "false") != 0) {
		xmlFreeDoc(doc);
		return -EBADMSG;
	}
	*truncated = strcmp(tr, "true") == 0;
	child_text(root, n1, next1, n1len);
	if (n2)
		child_text(root, n2, next2, n2len);
	else if (n2len)
		next2[0] = '\0';
	for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
		struct fy_s3xml_entry e = { 0 };
		char key[1100], id[1100], size[32], when[64];

		if (named(c, "Contents")) {
			child_text(c, "Size", size, sizeof(size));
			e.size = strtoull(size, NULL, 10);
			id[0] = '\0';
			child_text(c, "LastModified", when, sizeof(when));
		} else if (named(c, "Upload")) {
			child_text(c, "UploadId", id, sizeof(id));
			child_text(c, "Initiated", when, sizeof(when));
		} else if (named(c, "Version") || named(c, "DeleteMarker")) {
			child_text(c, "VersionId", id, sizeof(id));
			child_text(c, "Size", size, sizeof(size));
			e.size = strtoull(size, NULL, 10);
			e.delete_marker = named(c, "DeleteMarker");
			child_text(c, "LastModified", when, sizeof(when));
		} else {
			continue;
		}
		if (!child(c, "Key")) {
			rc = -EBADMSG; /* an entry without a key: not a listing we can trust */
			break;
		}
		child_text(c, "Key", key, sizeof(key));
		e.key = key;
		e.id = id;
		e.time = when;
		rc = cb(&e, arg);
	}
	xmlFreeDoc(doc);
	return rc;
}
