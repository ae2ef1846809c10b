/* What the change sources share: error lines and the request check. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "cbt/cbt_priv.h"

void fy_cbt_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

int fy_cbt_req_check(const struct fy_cbt_ops *ops, const char *argname, const struct fy_cbt_req *req,
		     const struct fy_bitmap *changed, char *why, size_t whylen)
{
	uint64_t nbits;

	if (!req || !changed || !changed->w) {
		fy_cbt_why(why, whylen, "%s: no request or no bitmap", ops->name);
		return -EINVAL;
	}
	if (argname && (!req->arg || !*req->arg)) {
		fy_cbt_why(why, whylen, "%s: no %s given", ops->name, argname);
		return -EINVAL;
	}
	if (!req->chunk_size) {
		fy_cbt_why(why, whylen, "%s: chunk size 0", ops->name);
		return -EINVAL;
	}
	nbits = req->size / req->chunk_size + (req->size % req->chunk_size != 0);
	if (changed->nbits != nbits) {
		fy_cbt_why(why, whylen, "%s: bitmap has %llu bits, a %llu-byte volume in %u-byte blocks needs %llu",
			   ops->name, (unsigned long long)changed->nbits, (unsigned long long)req->size,
			   req->chunk_size, (unsigned long long)nbits);
		return -EINVAL;
	}
	return 0;
}
