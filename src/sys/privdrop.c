/* privdrop.c - raising the fd limit, then giving up root: switch user, drop every capability. */
#include "sys/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/log.h"

unsigned long priv_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	/* root may raise the hard limit itself, up to fs.nr_open */
	struct rlimit want = { .rlim_cur = 1048576, .rlim_max = 1048576 };
	if (want.rlim_max < rl.rlim_max)
		want = rl;
	if (setrlimit(RLIMIT_NOFILE, &want) < 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	return (unsigned long)rl.rlim_cur;
}

int priv_has_no_caps(void)
{
	cap_t caps = cap_get_proc();
	if (!caps)
		return 0;
	cap_t none = cap_init();
	int empty = none && cap_compare(caps, none) == 0;
	cap_free(none);
	cap_free(caps);
	return empty;
}

int priv_drop(const char *user)
{
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		log_err("cannot drop privileges: user \"%s\" not found%s%s", user,
			errno ? ": " : "", errno ? strerror(errno) : "");
		return errno ? -errno : -ENOENT;
	}
	/* the bounding set first: dropping it needs CAP_SETPCAP, lost below */
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
			int err = -errno;
			log_err("prctl(PR_CAPBSET_DROP, %d) failed: %s", cap, strerror(errno));
			return err;
		}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		int err = -errno;
		log_err("cannot switch to user %s: setgroups/setresgid/setresuid failed: %s", user,
			strerror(errno));
		return err;
	}
	/* switching away from uid 0 clears the capability sets; make sure */
	cap_t none = cap_init();
	if (!none || cap_set_proc(none) < 0) {
		int err = errno ? -errno : -ENOMEM;
		log_err("cap_set_proc() failed: %s", strerror(errno));
		cap_free(none);
		return err;
	}
	cap_free(none);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		log_warn("prctl(PR_SET_NO_NEW_PRIVS) failed: %s", strerror(errno));
	if (!priv_has_no_caps()) {
		log_err("capabilities remain after dropping privileges");
		return -EPERM;
	}
	/* switching user makes the process non-dumpable; keep it so (no core
	 * dumps of memory that held root's files) */
	log_info("running as user %s (uid %u, gid %u) with no capabilities", user,
		 (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	return 0;
}
