#ifndef OPENCLAW_CPROCESS_H
#define OPENCLAW_CPROCESS_H
#include <sys/types.h>

/// pidfd_open(2): a file descriptor that becomes readable when the process exits (-1 + errno on
/// failure). syscall(2) is variadic and cannot be called from Swift.
int openclaw_pidfd_open(pid_t pid);

/// The TCP sockets in LISTEN state on `port` (IPv4 and IPv6), asked of the kernel through
/// NETLINK_SOCK_DIAG: their inodes and owners' uids, at most `max`. Returns how many were found,
/// or -errno when netlink cannot be used (then read /proc/net/tcp instead). Unlike
/// /proc/net/tcp, the kernel only walks the listening sockets: fast even with 100k connections.
int openclaw_tcp_listeners(int port, unsigned long long *inodes, unsigned int *uids, int max);

/// The processes with an fd on one of the sockets `inodes` (n_inodes of them): their pids, at most
/// `max`. Every process in /proc order, or, with `first_only`, the newest process holding one
/// (scanning down from the highest pid, stopping there) and PID 1 if it holds one too: all a
/// refused start needs to name, at a fraction of the cost (each fd of each process is a
/// readlinkat). Processes this user cannot inspect are skipped.
int openclaw_socket_holders(const unsigned long long *inodes, int n_inodes, int *pids, int max, int first_only);

/// The owner (uid) of the TCP socket on this host whose own address is `source`:`source_port` and
/// whose peer is `destination`:`destination_port` (4 bytes for AF_INET, 16 for AF_INET6, network
/// order; ports in host order), asked of the kernel through NETLINK_SOCK_DIAG by that exact
/// four-tuple. For a loopback client of ours: source = its address, destination = ours. Returns
/// 0 with the uid in `*uid`, or -errno (-ENOENT: no such socket, it has gone).
int openclaw_tcp_socket_uid(int family, const void *source, int source_port, const void *destination, int destination_port, unsigned int *uid);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file (-1 + errno on failure). Glibc declares it
/// only under _GNU_SOURCE, which Swift's Glibc module does not set.
int openclaw_memfd_create(const char *name);

#endif
