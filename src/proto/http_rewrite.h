/* http_rewrite.h - rewrites parsed HTTP/1.1 heads for the next hop: hop-by-hop fields out, Forwarded/X-Forwarded-For/Via in. */
#ifndef PANDIT_PROTO_HTTP_REWRITE_H
#define PANDIT_PROTO_HTTP_REWRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sbuf.h"
#include "proto/http1.h"

/* How a request head is forwarded upstream. */
struct http_req_rewrite {
	const char *client_ip;	/* "192.0.2.1" or "2001:db8::1" (no brackets) */
	bool client_v6;
	bool forwarded;		/* add Forwarded, X-Forwarded-For, Via */
	bool upgrade;		/* keep Upgrade and send Connection: upgrade */
	bool http10;		/* send HTTP/1.0 and no keep-alive (an HTTP/1.0 client
				 * cannot read a chunked response) */
	const char *default_host; /* Host to send when the request has none (HTTP/1.0
				 * without Host): the address the client connected to */
};

/*
 * Appends the request head to send upstream for the request parsed in
 * buf (m from h1_parse): the request line with an origin-form target ("*"
 * for an absolute-form OPTIONS with no path, RFC 9112 3.2.4; authority-
 * and asterisk-form as received) and HTTP/1.1 (HTTP/1.0 when rw->http10:
 * only for an HTTP/1.0 request, which has no chunked body), every field
 * but the hop-by-hop ones
 * (Connection and the fields it names, Keep-Alive, Proxy-Connection, TE,
 * Upgrade unless upgrading, Expect: pandit answers 100-continue itself),
 * Host set to the authority that applies (the absolute-form target's wins),
 * then with rw->forwarded: X-Forwarded-For with the client appended to the
 * values received (one field), a Forwarded element for=...;proto=http
 * (;host=... when there is a host, quoted unless a token) after those
 * received, and Via "1.1 pandit" appended to the received list (one
 * field). Received X-Forwarded-For and Via fields named in Connection are
 * hop-by-hop and not joined.
 */
void http_rewrite_request(struct sbuf *out, const char *buf, const struct h1_msg *m,
			  const struct http_req_rewrite *rw);

/* How a response head is forwarded to the client. */
struct http_resp_rewrite {
	bool via;		/* append "1.1 pandit" to Via */
	bool close;		/* the client connection ends after this response */
	bool client_http10;	/* the client spoke HTTP/1.0: say keep-alive explicitly */
};

/*
 * Appends the response head to send to the client: "HTTP/1.1 <status>
 * <reason>", every field but the hop-by-hop ones, then Connection: close
 * (rw->close), Connection: keep-alive (HTTP/1.0 client kept alive) or, for
 * a 101, Connection: upgrade with the Upgrade field kept.
 */
void http_rewrite_response(struct sbuf *out, const char *buf, const struct h1_msg *m,
			   const struct http_resp_rewrite *rw);

/* Appends a complete response pandit answers itself (status 4xx/5xx) with
 * a short text body naming the status (only announced in answer to HEAD:
 * head). close: add Connection: close. */
void http_local_response(struct sbuf *out, uint16_t status, bool close, bool head);

/* The reason phrase of a status pandit may answer ("Bad Request"...). */
const char *http_status_reason(uint16_t status);

#endif
