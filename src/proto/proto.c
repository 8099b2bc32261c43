/* proto.c - the table of protocol handlers, and tcp's (the plain relay, nothing to watch). */
#include "proto/proto.h"

const struct proto_handler proto_tcp = { .name = "tcp" };

const struct proto_handler *proto_handler(enum app_protocol p)
{
	switch (p) {
	case PROTO_FOO:
		return &proto_foo;
	case PROTO_HTTP:
		return &proto_http;
	case PROTO_TCP:
	default:
		return &proto_tcp;
	}
}
