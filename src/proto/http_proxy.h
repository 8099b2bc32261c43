/* http_proxy.h - the HTTP/1.1 reverse proxy handler: owns client sockets, routes each request, pools upstream connections. */
#ifndef PANDIT_PROTO_HTTP_PROXY_H
#define PANDIT_PROTO_HTTP_PROXY_H

#include "proto/proto.h"

struct worker;

extern const struct proto_handler proto_http;

/* Worker hooks: before the loop sleeps (free what closed in the batch,
 * write the buffered access log lines), and at shutdown (close every http
 * client and pooled connection, free the worker's http state). */
void http_worker_before_sleep(struct worker *w);
void http_worker_stop(struct worker *w);

#endif
