/* privdrop.h - raising the fd limit, then giving up root: switch user, drop every capability. */
#ifndef PANDIT_PRIVDROP_H
#define PANDIT_PRIVDROP_H

/* Raises RLIMIT_NOFILE as far as allowed (a proxy needs two fds a
 * connection). Returns the new soft limit. */
unsigned long priv_raise_nofile(void);

/* Switches to `user` (its uid, gid, no supplementary groups), empties the
 * capability bounding set and every capability set, sets no_new_privs.
 * Must run before any other thread starts. Checks that CapEff is empty
 * afterwards. Returns 0 or a negative errno, logging the cause. */
int priv_drop(const char *user);

/* True when the process has no effective capability. */
int priv_has_no_caps(void);

#endif
