/* The write-protect userfaultfd features of Linux 6.7 that the build host's headers (Debian 12:
 * 6.1) lack: the shim's tracking uffd and the wp-scan probe ask for them. */
#ifndef GUIDECOPY_UFFD_WP_COMPAT_H
#define GUIDECOPY_UFFD_WP_COMPAT_H
#include <linux/userfaultfd.h>
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1ull << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1ull << 15)
#endif
#endif
